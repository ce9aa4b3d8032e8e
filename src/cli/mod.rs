//! The command line: every flag defined once with clap's derive, one module
//! per subcommand. `main` parses, runs the chosen subcommand and turns its
//! result into an exit code and a readable error.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub mod client;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod dist;
pub mod doctor;
pub mod files;
pub mod history;
pub mod keys;
pub mod listen;
pub mod open;
pub mod peers;
pub mod send;
pub mod status;
pub mod web;

/// A LAN messenger that talks to FeiQ (飞秋), IP Messenger and iptux.
#[derive(Debug, Parser)]
#[command(name = "pigeon", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: crate::node::Global,
    /// Without one: the chat
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The interactive terminal chat (the default).
    Chat(crate::chat::ChatArgs),
    /// Run the node in the foreground and serve the control socket.
    Daemon(daemon::DaemonArgs),
    /// Open the web UI in a browser (prints its address; `--url` only that).
    Web(web::WebArgs),
    /// List who is online.
    Peers(peers::PeersArgs),
    /// Send a message with delivery receipts.
    Send(send::SendArgs),
    /// Send an announcement to everyone (no receipts).
    Broadcast(send::BroadcastArgs),
    /// Print events (peers, messages, receipts) as they happen.
    Listen(listen::ListenArgs),
    /// Go away (with an automatic reply) or come back online.
    Status(status::StatusArgs),
    /// Ask a peer for its program version and away text.
    Info(status::InfoArgs),
    /// Shake a peer's window (FeiQ's 抖一抖).
    Shake(status::ShakeArgs),
    /// List the files and folders offered to you.
    Offers(files::OffersArgs),
    /// Fetch an offered file or folder (resumes an interrupted fetch).
    Fetch(files::FetchArgs),
    /// Tell a sender you will not fetch its offer (it stops serving it).
    Decline(files::DeclineArgs),
    /// Stop serving one of your offers (`pigeon offers --mine` lists them).
    Cancel(files::CancelArgs),
    /// Show or search the message history.
    History(history::HistoryArgs),
    /// Open a sealed message (the sender sees that you read it).
    Open(open::OpenArgs),
    /// Show the effective configuration.
    Config(config::ConfigArgs),
    /// Show our key fingerprints and the peers' keys; trust a peer's changed key.
    Keys(keys::KeysArgs),
    /// Decode IPMsg / FeiQ / iptux packets from hex, raw datagram files or a capture.
    Decode(decode::DecodeArgs),
    /// Check why peers or files do not get through: port, firewall, interfaces, network, home.
    Doctor(doctor::DoctorArgs),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(dist::CompletionsArgs),
    /// Print the manual page (roff), or write every page into a directory.
    Man(dist::ManArgs),
}

/// The ids (and long names) of the flags in [`crate::node::Global`].
const SHARED: [&str; 6] = ["home", "port", "bind", "broadcast", "nick", "user"];

/// Which of `--home` and the node's flags a subcommand takes: those it
/// uses. Its help, man page and completions list only these; any other is
/// refused, before or after the subcommand.
pub fn flags_of(subcommand: &str) -> &'static [&'static str] {
    match subcommand {
        // The home's files only (the store; our keys for keys).
        "history" | "offers" | "cancel" | "keys" => &["home"],
        // Our nick when no daemon runs (the nick defaults to the user name).
        "status" => &["home", "nick", "user"],
        // A TCP connection to the sender, from --bind, asking as --user.
        "fetch" => &["home", "bind", "user"],
        // The port, address and targets a node would use (it asks as pigeon-doctor).
        "doctor" => &["home", "port", "bind", "broadcast"],
        // Neither a home nor a node (decode's own --port is the capture's).
        "decode" | "completions" | "man" => &[],
        // A node: chat, daemon and listen run one (or use the daemon's);
        // peers, send, broadcast, info, shake, decline and open start a
        // short-lived one when no daemon runs; config shows what they set.
        _ => &SHARED,
    }
}

/// The whole command line: [`Cli`], with the flags of [`crate::node::Global`]
/// copied into each subcommand that takes them ([`flags_of`]). Parsing,
/// completions and man pages all use this.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    let shared: Vec<clap::Arg> =
        cmd.get_arguments().filter(|a| SHARED.contains(&a.get_id().as_str())).cloned().collect();
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in names {
        let takes = flags_of(&name);
        // Global within the subcommand: `pigeon status away --home DIR` too.
        // Clap hands their values up to the top, where the subcommand's win.
        // Listed after the subcommand's own flags (before --help, at 999).
        let args: Vec<clap::Arg> = shared
            .iter()
            .enumerate()
            .filter(|(_, a)| takes.contains(&a.get_id().as_str()))
            .map(|(i, a)| a.clone().global(true).display_order(900 + i))
            .collect();
        cmd = cmd.mut_subcommand(name, |s| s.args(args));
    }
    cmd
}

/// Parses a command line. `--home` and the node's flags may come before
/// the subcommand or after it; one the subcommand does not take is a
/// usage error, wherever it is.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut cmd = command();
    let m = cmd.try_get_matches_from_mut(args)?;
    if let Some((name, _)) = m.subcommand() {
        // Values given after the subcommand are at the top too; one it
        // does not take can only have been given before it.
        let refused = SHARED
            .iter()
            .find(|id| !flags_of(name).contains(id) && m.value_source(id) == Some(ValueSource::CommandLine));
        if let Some(id) = refused {
            let sub = cmd.find_subcommand_mut(name).expect("the parsed subcommand");
            let mut err = clap::Error::new(ErrorKind::UnknownArgument).with_cmd(sub);
            err.insert(ContextKind::InvalidArg, ContextValue::String(format!("--{id}")));
            let tip = format!("`pigeon {name}` takes no --{id}, before or after it");
            err.insert(ContextKind::Suggested, ContextValue::StyledStrs(vec![tip.into()]));
            err.insert(ContextKind::Usage, ContextValue::StyledStr(sub.render_usage()));
            return Err(err);
        }
    }
    Cli::from_arg_matches(&m).map_err(|e| e.format(&mut cmd))
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let command = cli.command.unwrap_or_else(|| Command::Chat(Default::default()));
    // RUST_LOG: `debug`, `pigeon=debug,info`, … (targets and levels; no
    // regular expressions: that would cost the binary half a megabyte).
    use tracing_subscriber::{filter::Targets, fmt, prelude::*};
    let default = if matches!(command, Command::Daemon(_)) { "info" } else { "warn" };
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| default.parse().expect("a valid level"));
    let g = &cli.global;
    if matches!(command, Command::Chat(_)) {
        // The terminal is the chat's: logs go to chat.log in the home.
        let log = crate::config::Home::resolve(g.home.as_deref()).ok().and_then(|h| {
            h.create().ok()?;
            std::fs::OpenOptions::new().create(true).append(true).open(h.data_dir.join("chat.log")).ok()
        });
        match log {
            Some(f) => tracing_subscriber::registry()
                .with(fmt::layer().with_ansi(false).with_writer(std::sync::Mutex::new(f)))
                .with(filter)
                .init(),
            None => tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::OFF).init(),
        }
    } else {
        // Colours only for a terminal: a daemon's log in a file or the
        // journal stays plain text.
        use std::io::IsTerminal;
        tracing_subscriber::registry()
            .with(fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr))
            .with(filter)
            .init();
    }
    if !matches!(command, Command::Chat(_) | Command::Daemon(_)) {
        // A command whose output is piped into `head` ends quietly when the
        // reader goes (the conventional SIGPIPE status), instead of
        // panicking in println!. The daemon and the chat keep Rust's
        // default (writes to a closed socket are errors they handle); the
        // sockets commands use (TCP with MSG_NOSIGNAL) are not affected.
        // SAFETY: restoring a signal's default disposition, before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match &command {
        Command::Chat(a) => crate::chat::run(g, a),
        Command::Daemon(a) => daemon::run(g, a),
        Command::Web(a) => web::run(g, a),
        Command::Peers(a) => peers::run(g, a),
        Command::Send(a) => send::run(g, a),
        Command::Broadcast(a) => send::run_broadcast(g, a),
        Command::Listen(a) => listen::run(g, a),
        Command::Status(a) => status::run(g, a),
        Command::Info(a) => status::run_info(g, a),
        Command::Shake(a) => status::run_shake(g, a),
        Command::Offers(a) => files::run_offers(g, a),
        Command::Fetch(a) => files::run_fetch(g, a),
        Command::Decline(a) => files::run_decline(g, a),
        Command::Cancel(a) => files::run_cancel(g, a),
        Command::History(a) => history::run(g, a),
        Command::Open(a) => open::run(g, a),
        Command::Config(a) => config::run(g, a),
        Command::Keys(a) => keys::run(g, a),
        Command::Decode(a) => decode::run(a),
        Command::Doctor(a) => doctor::run(g, a),
        Command::Completions(a) => dist::run_completions(a),
        Command::Man(a) => dist::run_man(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // An error may quote what a peer sent (a nick in "did you mean",
            // a file name): cleaned like any text from the network.
            eprintln!("pigeon: {}", clean(&format!("{e:#}")));
            // The control API's error code says which (README: "Exit codes").
            ExitCode::from(crate::control::api::ApiError::code_of(&e).exit_code())
        }
    }
}

/// The terminal's text helpers, where the commands have always called them.
pub use crate::term::{clean, clean_path, pad, width as display_width};

/// A `--wait` value: finite seconds, 0 to one hour.
pub fn parse_wait(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=3600.0).contains(&v) {
        return Err(format!("{s}: give 0 to 3600 seconds"));
    }
    Ok(v)
}

/// The text argument, or standard input for `-`.
pub fn text_arg(t: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    if t == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("cannot read standard input")?;
        Ok(s.trim_end_matches('\n').to_string())
    } else {
        Ok(t.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{clean, command, parse_from, Command};

    #[test]
    fn the_command_line_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn shared_flags_go_before_or_after_a_subcommand_that_takes_them() {
        let cli =
            parse_from(["pigeon", "--home", "/h", "--bind", "127.0.0.1", "--nick", "A", "send", "bob", "hi"]).unwrap();
        assert_eq!(cli.global.home.as_deref(), Some(std::path::Path::new("/h")));
        assert_eq!(cli.global.bind, Some([127, 0, 0, 1].into()));
        assert_eq!(cli.global.nick.as_deref(), Some("A"));
        assert!(matches!(cli.command, Some(Command::Send(_))));
        // After it, and the subcommand's value wins.
        let cli = parse_from(["pigeon", "--nick", "A", "send", "--nick", "B", "--broadcast", "127.0.0.2", "bob", "hi"])
            .unwrap();
        assert_eq!(cli.global.nick.as_deref(), Some("B"));
        assert_eq!(cli.global.broadcast, ["127.0.0.2"]);
        // Into a nested subcommand.
        let cli = parse_from(["pigeon", "status", "away", "--home", "/h", "--nick", "N"]).unwrap();
        assert_eq!(cli.global.home.as_deref(), Some(std::path::Path::new("/h")));
        assert_eq!(cli.global.nick.as_deref(), Some("N"));
        // Without a subcommand: the chat's.
        let cli = parse_from(["pigeon", "--port", "2426", "--user", "u"]).unwrap();
        assert_eq!((cli.global.port, cli.global.user.as_deref()), (Some(2426), Some("u")));
        assert!(cli.command.is_none());
    }

    #[test]
    fn a_flag_a_subcommand_does_not_take_is_refused_wherever_it_is() {
        for args in [
            &["pigeon", "decode", "--nick", "x", "f.bin"][..],
            &["pigeon", "--nick", "x", "decode", "f.bin"],
            &["pigeon", "--home", "/h", "completions", "bash"],
            &["pigeon", "history", "--bind", "127.0.0.1"],
            &["pigeon", "--broadcast", "127.0.0.2", "history"],
            &["pigeon", "--port", "2426", "status", "away"],
            &["pigeon", "fetch", "--port", "2426", "3"],
            &["pigeon", "--nick", "x", "doctor"],
        ] {
            let e = parse_from(args).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument, "{args:?}");
            let flag = args.iter().find(|a| a.starts_with("--")).unwrap();
            assert!(e.to_string().contains(&format!("unexpected argument '{flag}' found")), "{args:?}: {e}");
        }
        // decode's --port is the capture's, and only after decode.
        let cli = parse_from(["pigeon", "decode", "--port", "2426", "--pcap", "x.pcap"]).unwrap();
        let Some(Command::Decode(d)) = cli.command else { panic!("decode") };
        assert_eq!((d.port, cli.global.port), (2426, None));
        let e = parse_from(["pigeon", "--port", "2426", "decode", "--pcap", "x.pcap"]).unwrap_err();
        assert!(e.to_string().contains("`pigeon decode` takes no --port"), "{e}");
        assert!(e.to_string().contains("Usage: pigeon decode"), "{e}");
    }

    #[test]
    fn each_help_lists_the_flags_its_subcommand_takes() {
        let mut root = command();
        root.build();
        let help = |name: &str| root.clone().find_subcommand_mut(name).unwrap().render_long_help().to_string();
        let decode = help("decode");
        for flag in ["--home", "--nick", "--user", "--bind", "--broadcast"] {
            assert!(!decode.contains(flag), "decode --help shows {flag}:\n{decode}");
        }
        assert_eq!(decode.matches("--port").count(), 1, "its own only:\n{decode}");
        let send = help("send");
        for flag in ["--home", "--port", "--nick", "--user", "--bind", "--broadcast"] {
            assert!(send.contains(flag), "send --help lacks {flag}:\n{send}");
        }
        let history = help("history");
        assert!(history.contains("--home") && !history.contains("--nick"), "{history}");
    }

    #[test]
    fn clean_keeps_text_and_replaces_what_could_fool_a_terminal() {
        assert!(matches!(clean("你好\tcafé\nok"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(clean("a\x1b]0;pwned\x07b"), "a\u{fffd}]0;pwned\u{fffd}b");
        // "Trojan Source": an override that would show "txt.exe" as "exe.txt".
        assert_eq!(clean("report\u{202e}txt.exe"), "report\u{fffd}txt.exe");
        assert_eq!(clean("\u{2066}x\u{2069}\u{200f}"), "\u{fffd}x\u{fffd}\u{fffd}");
    }
}
