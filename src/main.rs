//! `pigeon`: parse the command line, pick the face, run it.

fn main() -> std::process::ExitCode {
    pigeon::cli::main()
}
