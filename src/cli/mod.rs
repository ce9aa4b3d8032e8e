//! The command line: every flag defined once with clap's derive, one module
//! per subcommand. `main` parses, runs the chosen subcommand and turns its
//! result into an exit code and a readable error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod decode;

/// A LAN messenger that talks to FeiQ (飞秋), IP Messenger and iptux.
#[derive(Debug, Parser)]
#[command(name = "pigeon", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode IPMsg / FeiQ / iptux packets from hex, raw datagram files or a capture.
    Decode(decode::DecodeArgs),
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pigeon: {e:#}");
            ExitCode::from(2)
        }
    }
}
