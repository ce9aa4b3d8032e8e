//! Every example of README.md's "Commands" section, run on a two-node LAN.
//!
//! The README is read when the test runs: every line of a code block
//! (indented, or fenced with a `$ ` prompt) between `## Commands` and the
//! next `## ` heading whose pipeline runs `pigeon` is an example, so a new
//! example is covered without touching this file. Each one runs on host A
//! with `sh -c` (pipes, redirections and `~` work as in a terminal), with
//! the `pigeon` under test first on PATH, `PIGEON_HOME` set to A's home,
//! `HOME` a temporary folder and the working folder one holding the files
//! the examples name (`report.pdf`, `photos/`, `build.tar.gz`,
//! `datagram.bin`, `other.bin`, `lan.pcap`, a capture of the LAN made
//! during the setup). `HOME`'s folders that the examples write into
//! (`~/.zfunc`, `~/.local/share/bash-completion/completions`) exist, as on
//! a machine where someone would type them.
//!
//! The two hosts, named as the examples name them:
//!
//! - A (198.18.0.11): "you", `carol@pc-carol`, nick `Carol`; its daemon
//!   runs for the whole test, so the examples go through it;
//! - B (198.18.0.12): the peer, nick `Alice` (`pigeon send Alice …`), user
//!   and host `bob@pc-bob` (`pigeon fetch … --from bob@pc-bob`), in group
//!   `QA` (`pigeon send group:QA …`). It is driven through its control
//!   socket: it acknowledges, offers files and sends messages to A.
//!
//! What is adapted, and why ([`SUBSTITUTIONS`], [`PLACEHOLDERS`]):
//!
//! - `192.168.1.20` (an address on the README's LAN) is B's address here,
//!   and `测试机` (the shake example's peer) is B's nick, `Alice`;
//! - `sudo ` is dropped: the test runs as root already, and sudo's
//!   `secure_path` would hide the binary under test (and sudo may be absent);
//! - the numbers that stand for an offer or a message (`fetch 12`,
//!   `decline 12`, `fetch 1795313923 --from …`, `cancel 1795313923`,
//!   `open 1795313923`) become a real one, made for that example just
//!   before it runs (an offer from B, an offer of ours, a sealed message
//!   from B).
//!
//! How each example is judged ([`kind`]):
//!
//! - the chat (`pigeon`, `pigeon chat …`) is skipped: it needs a terminal,
//!   and `tests/chat.rs` drives it in tmux;
//! - `pigeon … daemon` runs first, before A's own daemon (they would share
//!   the port): it must serve its control socket, be listed by B, still
//!   run, and on SIGTERM leave the LAN (B no longer lists it) and exit 0;
//! - `pigeon listen …` is started, B sends it a message, and it must have
//!   printed that message and still run when it is ended (SIGTERM);
//! - every other example must exit 0 (the exit codes of the README's table)
//!   within [`LIMIT`]; with `--json` (and no pipe or redirection) its output
//!   must be JSON or JSON Lines holding every key the example's comment
//!   names (`# [{"user","host",…}]`); a redirection (`> FILE`) must leave a
//!   non-empty file.
//!
//! All failures are reported together, each with the README line, the
//! command as run, its exit status, stdout and stderr.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{enabled, Host, Lan};
use crate::messaging::{wait_for, Node};

/// The longest any example may take (`peers --refresh` takes about 10 s,
/// `send --wait 30` at most 30 s).
const LIMIT: Duration = Duration::from_secs(40);

/// Fewer examples than this means the README's layout changed under the parser.
const MIN_EXAMPLES: usize = 50;

/// Host A's identity ("you").
const ME: [(&str, &str); 4] = [("user", "carol"), ("host", "pc-carol"), ("nick", "Carol"), ("group", "Dev")];
/// Host B's identity: the names the examples give their peer.
const PEER: [(&str, &str); 4] = [("user", "bob"), ("host", "pc-bob"), ("nick", "Alice"), ("group", "QA")];

/// Words of the examples replaced before they run: (word, replacement, why).
/// `{peer_addr}` is B's address.
const SUBSTITUTIONS: &[(&str, &str, &str)] = &[
    ("192.168.1.20", "{peer_addr}", "an address on the README's LAN: the peer's here"),
    ("测试机", "Alice", "the shake example's peer: B, whose nick is Alice"),
    ("sudo", "", "the test is root already; sudo's secure_path would hide the binary under test"),
];

/// What a placeholder number of an example stands for.
#[derive(Clone, Copy, Debug)]
enum Fresh {
    /// The ID (`pigeon offers`) of a new offer from B to us.
    OfferToUsId,
    /// The packet number of a new offer from B to us.
    OfferToUsPacketNo,
    /// The packet number of a new offer of ours to B.
    OurOfferPacketNo,
    /// The packet number of a new sealed message from B to us.
    SealedToUsPacketNo,
}

/// (subcommand, placeholder word, what is made for it before the example runs).
const PLACEHOLDERS: &[(&str, &str, Fresh)] = &[
    ("fetch", "12", Fresh::OfferToUsId),
    ("decline", "12", Fresh::OfferToUsId),
    ("fetch", "1795313923", Fresh::OfferToUsPacketNo),
    ("cancel", "1795313923", Fresh::OurOfferPacketNo),
    ("open", "1795313923", Fresh::SealedToUsPacketNo),
];

/// Global flags that take a value (to find the subcommand after them).
const VALUE_FLAGS: &[&str] = &["--home", "--port", "--bind", "--broadcast", "--nick", "--user"];

/// One example command of the README.
#[derive(Clone, Debug)]
struct Example {
    /// Its line in README.md (1-based).
    line: usize,
    /// The command, without its comment.
    command: String,
    /// The comment after it (`# …`), if any.
    comment: String,
}

/// How an example is run and judged.
#[derive(Debug, PartialEq)]
enum Kind {
    Skip(&'static str),
    Daemon,
    Listen,
    Run,
}

fn kind(e: &Example) -> Kind {
    match subcommand(&e.command).as_str() {
        "chat" => Kind::Skip("the interactive chat needs a terminal; tests/chat.rs drives it in tmux"),
        "daemon" => Kind::Daemon,
        "listen" => Kind::Listen,
        _ => Kind::Run,
    }
}

/// The examples of the README's "## Commands" section, in order, each command once.
fn examples(readme: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let (mut in_section, mut fenced) = (false, false);
    for (i, raw) in readme.lines().enumerate() {
        if raw.starts_with("## ") {
            in_section = raw.trim_end() == "## Commands";
            fenced = false;
            continue;
        }
        if !in_section {
            continue;
        }
        if raw.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        // Indented blocks hold commands; fenced ones a session, commands after `$ `.
        let code = if fenced { raw.strip_prefix("$ ") } else { raw.strip_prefix("    ") };
        let Some(code) = code else { continue };
        let (command, comment) = split_comment(code);
        if pigeon_words(&command).is_none() || out.iter().any(|e| e.command == command) {
            continue;
        }
        out.push(Example { line: i + 1, command, comment });
    }
    out
}

/// Splits a shell line at its comment (a `#` after a blank, outside quotes).
fn split_comment(code: &str) -> (String, String) {
    let (mut single, mut double, mut prev) = (false, false, ' ');
    for (i, c) in code.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => {
                return (code[..i].trim().to_string(), code[i + 1..].trim().to_string());
            }
            _ => {}
        }
        prev = c;
    }
    (code.trim().to_string(), String::new())
}

/// The parts of a pipeline (split at `|` outside quotes).
fn segments(command: &str) -> Vec<&str> {
    let (mut single, mut double, mut start) = (false, false, 0);
    let mut out = Vec::new();
    for (i, c) in command.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '|' if !single && !double => {
                out.push(command[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(command[start..].trim());
    out
}

/// Whether a word is a variable assignment (`NO_COLOR=1`).
fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// The words of the part of the pipeline that runs `pigeon`, from `pigeon` on.
fn pigeon_words(command: &str) -> Option<Vec<&str>> {
    segments(command).into_iter().find_map(|s| {
        let words: Vec<&str> = s.split_whitespace().skip_while(|w| is_assignment(w) || *w == "sudo").collect();
        (words.first() == Some(&"pigeon")).then_some(words)
    })
}

/// The subcommand an example runs (`chat` when there is none).
fn subcommand(command: &str) -> String {
    let words = pigeon_words(command).unwrap_or_default();
    let mut it = words.iter().skip(1);
    while let Some(w) = it.next() {
        if VALUE_FLAGS.contains(w) {
            it.next();
        } else if !w.starts_with('-') {
            return w.to_string();
        }
    }
    "chat".into()
}

/// The value of `flag` in the pigeon part of a command.
fn flag_value<'a>(command: &'a str, flag: &str) -> Option<&'a str> {
    let words = pigeon_words(command)?;
    words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1).copied())
}

/// Replaces the whitespace-separated word `from` by `to` (the rest kept as written).
fn replace_word(command: &str, from: &str, to: &str) -> String {
    command.split(' ').map(|w| if w == from { to } else { w }).collect::<Vec<_>>().join(" ").trim().to_string()
}

/// The keys a `--json` example's comment promises: quoted lower-case words
/// between `{`, `[` or `,` and `,`, `:`, `}` or `]` (`[{"user","host",…}]`,
/// `{"state": …, "away": text}`), not the values or words in prose.
fn documented_keys(comment: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let parts: Vec<&str> = comment.split('"').collect();
    // Odd parts are inside quotes.
    for i in (1..parts.len().saturating_sub(1)).step_by(2) {
        let before = parts[i - 1].trim_end().chars().last();
        let after = parts[i + 1].trim_start().chars().next();
        let word = parts[i];
        if matches!(before, Some('{' | '[' | ','))
            && matches!(after, Some(',' | ':' | '}' | ']'))
            && !word.is_empty()
            && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !keys.iter().any(|k| k == word)
        {
            keys.push(word.to_string());
        }
    }
    keys
}

fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key) || m.values().any(|x| has_key(x, key)),
        Value::Array(a) => a.iter().any(|x| has_key(x, key)),
        _ => false,
    }
}

fn has_object(v: &Value) -> bool {
    match v {
        Value::Object(_) => true,
        Value::Array(a) => a.iter().any(has_object),
        _ => false,
    }
}

/// Output as one JSON document or JSON Lines.
fn json_values(out: &str) -> Result<Vec<Value>, String> {
    let t = out.trim();
    if t.is_empty() {
        return Err("no output".into());
    }
    if let Ok(v) = serde_json::from_str::<Value>(t) {
        return Ok(vec![v]);
    }
    t.lines().map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON: {l:?}: {e}"))).collect()
}

/// Checks a `--json` example's output against its comment; None when fine.
fn check_json(e: &Example, stdout: &str) -> Option<String> {
    let values = match json_values(stdout) {
        Ok(v) => v,
        Err(err) => return Some(err),
    };
    if !values.iter().any(has_object) {
        return None; // nothing to show (`[]`): no keys to check
    }
    let missing: Vec<String> =
        documented_keys(&e.comment).into_iter().filter(|k| !values.iter().any(|v| has_key(v, k))).collect();
    (!missing.is_empty()).then(|| format!("the comment names keys the output lacks: {missing:?}"))
}

/// A process of this test, ended by PID (TERM, then KILL) when dropped;
/// its output goes to files.
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn start(mut c: Command, dir: &Path, name: &str) -> Running {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let child = c
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn");
        Running { child, stdout, stderr }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// The exit status, if it ended within `limit`.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }

    fn output(&self) -> (String, String) {
        let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        (read(&self.stdout), read(&self.stderr))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.wait(Duration::ZERO).is_none() {
            self.signal(libc::SIGTERM);
            if self.wait(Duration::from_secs(3)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Where and how the examples run on host A.
struct Shell {
    host: Host,
    /// A's home (`PIGEON_HOME`).
    home: PathBuf,
    /// `HOME`.
    user_home: PathBuf,
    /// The working folder.
    work: PathBuf,
    /// Holds `pigeon`, the binary under test, first on PATH.
    bin: PathBuf,
    /// Output files of the long-running examples.
    logs: PathBuf,
}

impl Shell {
    /// `sh -c script` in host A with the examples' environment.
    fn command(&self, script: &str, assignments: &[(&str, &str)]) -> Command {
        let mut c = self.host.command("sh");
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        c.arg("-c").arg(script).current_dir(&self.work);
        c.env("PATH", path).env("HOME", &self.user_home).env("PIGEON_HOME", &self.home);
        c.env("MANPAGER", "cat").env("PAGER", "cat");
        for v in ["XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "XDG_STATE_HOME", "RUST_LOG", "NO_COLOR"] {
            c.env_remove(v);
        }
        for (k, v) in assignments {
            c.env(k, v);
        }
        c
    }

    /// Starts a long-running example as its own process (`exec`, so the PID
    /// is pigeon's and SIGTERM reaches it), its leading assignments as environment.
    fn start(&self, command: &str, name: &str) -> Running {
        let words: Vec<&str> = command.split_whitespace().collect();
        let n = words.iter().take_while(|w| is_assignment(w)).count();
        let assignments: Vec<(&str, &str)> = words[..n].iter().filter_map(|w| w.split_once('=')).collect();
        Running::start(self.command(&format!("exec {}", words[n..].join(" ")), &assignments), &self.logs, name)
    }

    /// A path as the shell reads it (`~/…`, or relative to the working folder).
    fn path(&self, p: &str) -> PathBuf {
        match p.strip_prefix("~/") {
            Some(rest) => self.user_home.join(rest),
            None => self.work.join(p),
        }
    }
}

fn write_config(home: &Path, id: &[(&str, &str)]) {
    let toml: String = id.iter().map(|(k, v)| format!("{k} = \"{v}\"\n")).collect();
    std::fs::write(home.join("config.toml"), toml).unwrap();
}

fn id_of<'a>(id: &[(&'a str, &'a str)], key: &str) -> &'a str {
    id.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).unwrap()
}

/// Files the examples name, in `dir`.
fn make_files(dir: &Path) {
    std::fs::write(dir.join("report.pdf"), b"%PDF-1.4\n% a report\n".repeat(2000)).unwrap();
    std::fs::create_dir_all(dir.join("photos/2026")).unwrap();
    std::fs::write(dir.join("photos/beach.jpg"), vec![0xffu8; 30_000]).unwrap();
    std::fs::write(dir.join("photos/2026/team.jpg"), vec![0xd8u8; 20_000]).unwrap();
    std::fs::write(dir.join("build.tar.gz"), (0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
}

fn packet_no(v: &Value) -> String {
    v.as_str().map(String::from).unwrap_or_else(|| v.to_string())
}

fn json_list(out: &std::process::Output) -> Vec<Value> {
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The LAN, its two nodes and the examples' shell.
struct Setup {
    a: Node,
    b: Node,
    shell: Shell,
    /// B's copy of the files it offers.
    b_files: PathBuf,
    made: usize,
}

impl Setup {
    /// Makes what `fresh` stands for; returns the number to use.
    fn make(&mut self, fresh: Fresh) -> String {
        self.made += 1;
        let text = format!("readme {fresh:?} #{}", self.made);
        let me = format!("{}@{}", id_of(&ME, "user"), id_of(&ME, "host"));
        match fresh {
            Fresh::OfferToUsId | Fresh::OfferToUsPacketNo => {
                let offer = self.offer_from_b(&text);
                if matches!(fresh, Fresh::OfferToUsId) {
                    offer["id"].to_string()
                } else {
                    packet_no(&offer["packet_no"])
                }
            }
            Fresh::OurOfferPacketNo => {
                let mine = |a: &Node| -> Vec<String> {
                    json_list(&a.pigeon(&["offers", "--mine", "--json"]))
                        .iter()
                        .map(|o| packet_no(&o["packet_no"]))
                        .collect()
                };
                let before = mine(&self.a);
                let file = self.shell.work.join("report.pdf");
                let r = self.a.control(&json!({"op": "send", "to": [id_of(&PEER, "nick")], "text": text,
                                               "files": [file.to_str().unwrap()], "wait": 10}));
                assert_eq!(r["results"][0]["status"], "delivered", "our offer to B: {r}");
                let mut found = None;
                wait_for(
                    Duration::from_secs(10),
                    || {
                        found = mine(&self.a).into_iter().find(|p| !before.contains(p));
                        found.is_some()
                    },
                    "our new offer in `offers --mine`",
                );
                found.unwrap()
            }
            Fresh::SealedToUsPacketNo => {
                let r = self.b.control(&json!({"op": "send", "to": [me], "text": text, "sealed": true, "wait": 10}));
                assert_eq!(r["results"][0]["status"], "delivered", "B's sealed message: {r}");
                let mut found = None;
                wait_for(
                    Duration::from_secs(10),
                    || {
                        let out = self.a.pigeon(&["history", "--export", "jsonl"]);
                        found = String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                            .find(|m| m["text"] == text.as_str());
                        found.is_some()
                    },
                    "B's sealed message in A's history",
                );
                packet_no(&found.unwrap()["packet_no"])
            }
        }
    }

    /// B offers report.pdf and photos/ to A with `text`; A's record of the offer.
    fn offer_from_b(&self, text: &str) -> Value {
        let me = format!("{}@{}", id_of(&ME, "user"), id_of(&ME, "host"));
        let files = [self.b_files.join("report.pdf"), self.b_files.join("photos")];
        let files: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
        let r = self.b.control(&json!({"op": "send", "to": [me], "text": text, "files": files, "wait": 10}));
        assert_eq!(r["results"][0]["status"], "delivered", "B's offer: {r}");
        let mut found = None;
        wait_for(
            Duration::from_secs(10),
            || {
                found = json_list(&self.a.pigeon(&["offers", "--json"])).into_iter().find(|o| o["text"] == text);
                found.is_some()
            },
            "B's offer in A's `offers`",
        );
        found.unwrap()
    }
}

/// What is said about a failed example.
/// Prints one example's verdict (`ok` or `FAIL`, its README line, how long
/// it took); a failure's report is kept for the end. `result`: its status,
/// stdout, stderr, and what was wrong if anything.
fn judge(
    e: &Example,
    cmd: &str,
    started: Instant,
    result: (Option<ExitStatus>, &str, &str, Option<String>),
    failures: &mut Vec<String>,
) {
    let (status, out, err, why) = result;
    eprintln!(
        "{} README.md:{} {cmd} ({:.1} s)",
        if why.is_none() { "ok  " } else { "FAIL" },
        e.line,
        started.elapsed().as_secs_f32()
    );
    if let Some(why) = why {
        failures.push(report(e, cmd, status, out, err, &why));
    }
}

fn report(e: &Example, run: &str, status: Option<ExitStatus>, stdout: &str, stderr: &str, why: &str) -> String {
    let cut = |s: &str| -> String {
        if s.len() > 4000 {
            let mut end = 4000;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}\n[… {} more bytes]", &s[..end], s.len() - end)
        } else {
            s.to_string()
        }
    };
    let status = status.map_or("killed after the time limit".to_string(), |s| s.to_string());
    format!(
        "README.md:{}: {}\n  ran:    {run}\n  why:    {why}\n  status: {status}\n  stdout:\n{}\n  stderr:\n{}\n",
        e.line,
        e.command,
        cut(stdout),
        cut(stderr)
    )
}

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn readme_examples_are_found() {
    let all = examples(&readme());
    assert!(all.len() >= MIN_EXAMPLES, "only {} examples found in README.md's Commands: {all:#?}", all.len());
    for e in &all {
        assert!(pigeon_words(&e.command).is_some(), "{e:?}");
    }
    assert!(all.iter().any(|e| kind(e) == Kind::Daemon), "no daemon example found");
    assert!(all.iter().any(|e| kind(e) == Kind::Listen), "no listen example found");
    assert_eq!(subcommand("RUST_LOG=debug pigeon --home ~/w daemon"), "daemon");
    assert_eq!(subcommand("echo x | pigeon send all -"), "send");
    assert_eq!(split_comment("pigeon a '#b' # c").0, "pigeon a '#b'");
    assert_eq!(documented_keys(r#"{"state": "online" | "away", "away": text, "nick": …}"#), ["state", "away", "nick"]);
}

#[test]
fn readme_command_examples_run_on_a_two_node_lan() {
    if !enabled("readme_command_examples_run_on_a_two_node_lan") {
        return;
    }
    let started = Instant::now();
    let all = examples(&readme());
    assert!(all.len() >= MIN_EXAMPLES, "only {} examples found in README.md's Commands", all.len());
    let unused: Vec<&str> = SUBSTITUTIONS
        .iter()
        .map(|s| s.0)
        .chain(PLACEHOLDERS.iter().map(|p| p.1))
        .filter(|w| !all.iter().any(|e| e.command.split(' ').any(|x| x == *w)))
        .collect();
    assert!(unused.is_empty(), "substitutions no example uses any more (remove them): {unused:?}");

    let lan = Lan::new(2);
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let p = tmp.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (work, user_home, bin, logs, b_files) = (dir("work"), dir("home"), dir("bin"), dir("logs"), dir("b-files"));
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pigeon"), bin.join("pigeon")).unwrap();
    for d in [".zfunc", ".local/share/bash-completion/completions"] {
        std::fs::create_dir_all(user_home.join(d)).unwrap();
    }
    make_files(&work);
    make_files(&b_files);
    // A real datagram and another (a BR_ENTRY with nick and group) for `decode`.
    std::fs::write(work.join("datagram.bin"), b"1:100:alice:alice-pc:32:lunch?\0").unwrap();
    std::fs::write(work.join("other.bin"), b"1:101:bob:pc-bob:1:Bob\0QA\0").unwrap();

    let a = Node::new(lan.host(1), id_of(&ME, "user"));
    write_config(&a.home, &ME);
    let mut b = Node::new(lan.host(2), id_of(&PEER, "user"));
    write_config(&b.home, &PEER);
    b.spawn();
    let shell = Shell { host: lan.host(1).clone(), home: a.home.clone(), user_home, work, bin, logs };
    let peer_addr = lan.host(2).addr.to_string();

    let mut failures: Vec<String> = Vec::new();
    let (mut ran, mut skipped) = (0, Vec::new());
    let prepared = |e: &Example| -> String {
        let mut c = e.command.clone();
        for (from, to, _) in SUBSTITUTIONS {
            c = replace_word(&c, from, &to.replace("{peer_addr}", &peer_addr));
        }
        c
    };

    // 1. The daemons, each alone on A.
    for (i, e) in all.iter().enumerate().filter(|(_, e)| kind(e) == Kind::Daemon) {
        let t = Instant::now();
        let cmd = prepared(e);
        let sock = flag_value(&cmd, "--home").map_or(shell.home.clone(), |h| shell.path(h)).join("pigeon.sock");
        let mut p = shell.start(&cmd, &format!("daemon{i}"));
        let mut why = None;
        let ready = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&sock).is_err() && Instant::now() < ready && p.wait(Duration::ZERO).is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let heard = Instant::now() + Duration::from_secs(10);
        while b.peer_count() != 1 && Instant::now() < heard && p.wait(Duration::ZERO).is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if UnixStream::connect(&sock).is_err() {
            why = Some(format!("no control socket at {} within 10 s", sock.display()));
        } else if b.peer_count() != 1 {
            why = Some("the peer did not list it within 10 s".into());
        } else if p.wait(Duration::from_millis(500)).is_some() {
            why = Some("it ended by itself".into());
        }
        p.signal(libc::SIGTERM);
        let status = p.wait(Duration::from_secs(10));
        if why.is_none() {
            if status.is_none_or(|s| !s.success()) {
                why = Some("SIGTERM did not end it with status 0".into());
            } else {
                let gone = Instant::now() + Duration::from_secs(10);
                while b.peer_count() != 0 && Instant::now() < gone {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if b.peer_count() != 0 {
                    why = Some("the peer still lists it 10 s after SIGTERM (no BR_EXIT?)".into());
                }
            }
        }
        let (out, err) = p.output();
        drop(p);
        ran += 1;
        judge(e, &cmd, t, (status, &out, &err, why), &mut failures);
    }

    // 2. A's daemon for everything else (the examples use it), and a capture for `decode --pcap`.
    let capture = lan.host(1).capture(&shell.work.join("lan.pcap"));
    let mut daemon = shell.start("pigeon daemon", "a-daemon");
    wait_for(Duration::from_secs(10), || UnixStream::connect(shell.home.join("pigeon.sock")).is_ok(), "A's daemon");
    wait_for(Duration::from_secs(15), || a.peer_count() == 1 && b.peer_count() == 1, "A and B to list each other");
    let mut setup = Setup { a, b, shell, b_files, made: 0 };
    // Something for `pigeon offers` to list, and a message for `history --search "测试 report"`.
    setup.offer_from_b("readme: this week's report");
    let r = setup.b.control(
        &json!({"op": "send", "to": [id_of(&ME, "nick")], "text": "测试 report: hello from Alice", "wait": 10}),
    );
    assert_eq!(r["results"][0]["status"], "delivered", "{r}");
    capture.finish();

    // 3. Every other example, in the README's order.
    for (i, e) in all.iter().enumerate() {
        let k = kind(e);
        if let Kind::Skip(why) = k {
            eprintln!("skip README.md:{} {}: {why}", e.line, e.command);
            skipped.push(e.line);
            continue;
        }
        if k == Kind::Daemon {
            continue;
        }
        let t = Instant::now();
        let mut cmd = prepared(e);
        let sub = subcommand(&cmd);
        for (s, word, fresh) in PLACEHOLDERS {
            if *s == sub && cmd.split(' ').any(|w| w == *word) {
                let real = setup.make(*fresh);
                cmd = replace_word(&cmd, word, &real);
            }
        }
        let (status, out, err, why) = if k == Kind::Listen {
            let mut p = setup.shell.start(&cmd, &format!("listen{i}"));
            std::thread::sleep(Duration::from_secs(2));
            let probe = format!("readme listen probe #{i}");
            let r = setup.b.control(&json!({"op": "send", "to": [id_of(&ME, "nick")], "text": probe, "wait": 10}));
            std::thread::sleep(Duration::from_secs(1));
            let ended = p.wait(Duration::ZERO);
            p.signal(libc::SIGTERM);
            let status = p.wait(Duration::from_secs(5)).or(ended);
            let (out, err) = p.output();
            let why = if r["results"][0]["status"] != "delivered" {
                Some(format!("the probe message was not delivered: {r}"))
            } else if ended.is_some_and(|s| !s.success()) {
                Some("it ended by itself, not with status 0".into())
            } else if !out.contains(&probe) {
                Some(format!("it did not print the message {probe:?}"))
            } else if cmd.contains("--json") {
                check_json(e, &out)
            } else {
                None
            };
            (status, out, err, why)
        } else {
            let mut p = Running::start(setup.shell.command(&cmd, &[]), &setup.shell.logs, &format!("ex{i}"));
            let status = p.wait(LIMIT);
            let (out, err) = p.output();
            drop(p);
            let piped = segments(&cmd).len() > 1 || cmd.contains('>');
            let redirect = cmd
                .split_once(" > ")
                .map(|(_, f)| f.split(|c: char| c.is_whitespace() || ";&|".contains(c)).next().unwrap_or(""));
            let why = match status {
                None => Some(format!("did not end within {LIMIT:?}")),
                Some(s) if s.code() != Some(0) => Some("the README's exit code is 0".to_string()),
                Some(_) if cmd.contains("--json") && !piped => check_json(e, &out),
                Some(_) => redirect.and_then(|f| {
                    let len = std::fs::metadata(setup.shell.path(f)).map_or(0, |m| m.len());
                    (len == 0).then(|| format!("{f} is missing or empty"))
                }),
            };
            (status, out, err, why)
        };
        ran += 1;
        judge(e, &cmd, t, (status, &out, &err, why), &mut failures);
    }
    daemon.signal(libc::SIGTERM);
    daemon.wait(Duration::from_secs(10));
    drop(daemon);
    eprintln!(
        "README examples: {} found, {ran} run, {} skipped (lines {skipped:?}), {} failed, in {:.0} s",
        all.len(),
        skipped.len(),
        failures.len(),
        started.elapsed().as_secs_f32()
    );
    assert!(failures.is_empty(), "{} of {ran} README examples failed:\n\n{}", failures.len(), failures.join("\n"));
}
