//! `pigeon completions` and `pigeon man` run as a packager runs them: the
//! scripts and pages come from the one clap definition, go to stdout (or
//! a directory), and leave the home alone.

use std::path::Path;
use std::process::{Command, Output};

/// Runs pigeon with a home of its own (which these commands must not
/// touch; they take no `--home`, so it is given as `PIGEON_HOME`).
fn pigeon(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pigeon")).args(args).env("PIGEON_HOME", home).output().expect("run pigeon")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn assert_untouched(home: &Path) {
    let left: Vec<_> = std::fs::read_dir(home).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "the home was written to: {left:?}");
}

#[test]
fn completions_name_the_subcommands_and_flags() {
    let home = tempfile::tempdir().unwrap();
    let bash = stdout(&pigeon(home.path(), &["completions", "bash"]));
    assert!(bash.contains("complete -F _pigeon"), "{bash}");
    for word in ["send", "broadcast", "peers", "history", "decode", "completions", "man", "--home", "--json"] {
        assert!(bash.contains(word), "bash completions lack {word}");
    }
    let zsh = stdout(&pigeon(home.path(), &["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef pigeon"), "{}", &zsh[..zsh.len().min(200)]);
    assert!(zsh.contains("send"));
    let fish = stdout(&pigeon(home.path(), &["completions", "fish"]));
    assert!(fish.contains("complete -c pigeon"), "{}", &fish[..fish.len().min(200)]);
    assert!(fish.contains("broadcast"));
    assert_untouched(home.path());
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let out = pigeon(home.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
    assert_untouched(home.path());
}

#[test]
fn man_prints_the_main_page() {
    let home = tempfile::tempdir().unwrap();
    let page = stdout(&pigeon(home.path(), &["man"]));
    assert!(page.starts_with(".TH pigeon 1 "), "{}", &page[..page.len().min(200)]);
    assert!(page.contains(".SH SYNOPSIS") && page.contains(".SH OPTIONS"), "{page}");
    // The subcommands' pages are named where man finds them.
    assert!(page.contains(".SH \"SEE ALSO\"") && page.contains("pigeon\\-send"), "{page}");
    assert!(page.contains(env!("CARGO_PKG_VERSION")));
    assert_untouched(home.path());
}

#[test]
fn man_dir_writes_one_page_per_subcommand() {
    let home = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("man1");
    let listed = stdout(&pigeon(home.path(), &["man", "--dir", dir.to_str().unwrap()]));
    for name in ["pigeon.1", "pigeon-send.1", "pigeon-broadcast.1", "pigeon-daemon.1", "pigeon-man.1"] {
        let path = dir.join(name);
        assert!(path.is_file(), "{name} missing; wrote:\n{listed}");
        assert!(listed.lines().any(|l| Path::new(l) == path), "{name} not listed:\n{listed}");
        let page = std::fs::read_to_string(&path).unwrap();
        let title = name.trim_end_matches(".1").replace('-', "\\-");
        assert!(page.starts_with(&format!(".TH {title} 1 ")), "{name}: {}", &page[..page.len().min(200)]);
    }
    let send = std::fs::read_to_string(dir.join("pigeon-send.1")).unwrap();
    assert!(send.contains("\\-\\-sealed"), "the send page documents its flags");
    assert!(send.contains(".SH EXAMPLES") && send.contains("lunch at 12?"), "{send}");
    assert!(!dir.join("pigeon-help.1").exists(), "no page for clap's help subcommand");
    assert_untouched(home.path());
}

/// Each subcommand's help (and man page) lists the flags it takes, and a
/// flag it does not take is refused, before or after it (never ignored).
#[test]
fn help_lists_only_the_flags_a_subcommand_takes() {
    let home = tempfile::tempdir().unwrap();
    let decode = stdout(&pigeon(home.path(), &["decode", "--help"]));
    for flag in ["--nick", "--broadcast", "--bind", "--user", "--home"] {
        assert!(!decode.contains(flag), "decode --help shows {flag}:\n{decode}");
    }
    // Its own --port: the capture's.
    assert!(decode.contains("--port <PORT>        The UDP port whose traffic `--pcap` decodes"), "{decode}");
    let send = stdout(&pigeon(home.path(), &["send", "--help"]));
    for flag in ["--home", "--port", "--bind", "--broadcast", "--nick", "--user"] {
        assert!(send.contains(flag), "send --help lacks {flag}:\n{send}");
    }
    let history = stdout(&pigeon(home.path(), &["history", "--help"]));
    assert!(history.contains("--home") && !history.contains("--nick") && !history.contains("--bind"), "{history}");

    let out = tempfile::tempdir().unwrap();
    stdout(&pigeon(home.path(), &["man", "--dir", out.path().to_str().unwrap()]));
    let page = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap();
    let decode = page("pigeon-decode.1");
    assert!(!decode.contains("\\-\\-nick") && !decode.contains("\\-\\-broadcast"), "{decode}");
    assert!(page("pigeon-send.1").contains("\\-\\-nick"));

    for args in [&["decode", "--nick", "x", "f.bin"][..], &["--nick", "x", "decode", "f.bin"]] {
        let o = pigeon(home.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(o.stdout.is_empty());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("error: unexpected argument '--nick' found"), "{args:?}: {err}");
        assert!(err.contains("Usage: pigeon decode"), "{args:?}: {err}");
    }
    let o = pigeon(home.path(), &["--port", "2426", "decode", "f.bin"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("`pigeon decode` takes no --port"), "{err}");
    assert_untouched(home.path());
}
