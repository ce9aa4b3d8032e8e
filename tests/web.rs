//! The web UI (`pigeon web`, served by the daemon on `web_listen`) with the
//! real binary on loopback (127.0.0.180–199, port 42425, explicit targets).
//!
//! Plain HTTP, requests written by hand (always run): the token (query,
//! cookie, bearer), the Host check (DNS rebinding), the Origin check
//! (CSRF) of every state-changing request and of the event stream, the
//! Content-Security-Policy of every answer, downloads that cannot leave
//! the download folder (`..` in every spelling, a symbolic link out), and
//! uploads (streamed, hostile names refused, `web_max_upload_mb` enforced
//! with nothing left behind).
//!
//! In a headless Chromium driven by chromedriver (skipped with a line
//! saying so when they are not installed, unless PIGEON_REQUIRE_BROWSER=1):
//! discovery, sending with delivery state, a reply arriving live, an
//! upload offered and fetched by the peer, an offer accepted and
//! downloaded, and a hostile peer (HTML in its nick and text, a bidi
//! override) shown as text. A screenshot goes to target/web-screenshot.png.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{browser_or_skip, http, http_raw, random_file, sha256, wait_for, Browser, Daemon, HttpAnswer, WebUi};
use serde_json::{json, Value};

/// The loopback target of the HTTP tests' daemons: nobody listens there.
const NOBODY: &str = "127.0.0.199";

/// Every answer of the web UI carries a CSP that allows no inline script.
fn assert_csp(a: &HttpAnswer, what: &str) {
    let csp = a.header("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP\n{}", a.head));
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{what}: CSP {csp:?}");
    assert_eq!(a.header("x-content-type-options").as_deref(), Some("nosniff"), "{what}");
}

/// A request to the web UI, its CSP checked.
fn call(w: &WebUi, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpAnswer {
    let a = http(&w.addr, method, path, headers, body);
    assert_csp(&a, &format!("{method} {path}"));
    a
}

fn code(a: &HttpAnswer) -> String {
    a.json()["code"].as_str().unwrap_or_default().to_string()
}

/// The head of the event stream and its first event (the stream never
/// ends: read until the `hello` event, at most 10 s).
fn events_start(w: &WebUi, origin: Option<&str>) -> String {
    let mut s = std::net::TcpStream::connect(&w.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET /api/events HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n{origin}Connection: close\r\n\r\n",
        w.addr,
        w.cookie()
    )
    .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"hello\"") && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn token_host_origin_and_security_headers() {
    let d = Daemon::start("127.0.0.180", "wendy", "Wendy", &[NOBODY]);
    let w = d.web();
    assert!(w.addr.starts_with("127.0.0.180:") && w.token.len() == 64, "{w:?}");
    let cookie = w.cookie();
    let bearer = format!("Bearer {}", w.token);
    let origin = w.origin();
    let port = w.addr.rsplit_once(':').unwrap().1;

    // No token: 401, JSON for the API, a page for "/".
    let a = call(&w, "GET", "/api/state", &[], b"");
    assert_eq!((a.status, code(&a).as_str()), (401, "unauthorized"), "{}", a.text());
    let a = call(&w, "GET", "/", &[], b"");
    assert_eq!(a.status, 401);
    assert!(a.header("content-type").unwrap_or_default().starts_with("text/html"), "{}", a.head);
    assert!(a.text().contains("pigeon web --url"), "{}", a.text());
    let a = call(&w, "GET", "/assets/app.js", &[], b"");
    assert_eq!(a.status, 401, "assets need the token too");

    // The token in the query: a cookie (HttpOnly, SameSite=Strict), and
    // back to "/" without the token in the address bar.
    let a = call(&w, "GET", &format!("/?token={}", w.token), &[], b"");
    assert_eq!(a.status, 303, "{}", a.head);
    assert_eq!(a.header("location").as_deref(), Some("/"));
    let set = a.header("set-cookie").unwrap_or_else(|| panic!("no Set-Cookie\n{}", a.head));
    assert!(set.starts_with(&format!("pigeon_token={};", w.token)), "{set}");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let a = call(&w, "GET", "/api/state", &[("Cookie", &cookie)], b"");
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["ok"], true, "{}", a.text());
    assert_eq!(a.json()["me"]["user"], "wendy", "{}", a.text());
    let a = call(&w, "GET", "/", &[("Cookie", &cookie)], b"");
    assert_eq!(a.status, 200);
    assert!(a.header("content-type").unwrap_or_default().starts_with("text/html"), "{}", a.head);
    // Other cookies beside it are fine.
    let two = format!("theme=dark; {cookie}; x=1");
    assert_eq!(call(&w, "GET", "/api/state", &[("Cookie", &two)], b"").status, 200);

    // A wrong token, in any form: 401 (and no cookie for a wrong query).
    let wrong = format!("{}{}", &w.token[..63], if w.token.ends_with('0') { '1' } else { '0' });
    let a = call(&w, "GET", "/api/state", &[("Cookie", &format!("pigeon_token={wrong}"))], b"");
    assert_eq!((a.status, code(&a).as_str()), (401, "unauthorized"));
    let a = call(&w, "GET", &format!("/?token={wrong}"), &[], b"");
    assert_eq!(a.status, 401);
    assert!(a.header("set-cookie").is_none(), "{}", a.head);
    let a = call(&w, "GET", "/api/state", &[("Authorization", &format!("Bearer {wrong}"))], b"");
    assert_eq!(a.status, 401);
    assert_eq!(call(&w, "GET", "/api/state", &[("Cookie", "pigeon_token=")], b"").status, 401);
    // The bearer header (scripts).
    let a = call(&w, "GET", "/api/state", &[("Authorization", &bearer)], b"");
    assert_eq!(a.status, 200, "{}", a.text());

    // Another Host (a rebinding DNS name): 403 whatever the token.
    for host in [format!("evil.example:{port}"), format!("127.0.0.1.nip.io:{port}"), "127.0.0.180:1".into()] {
        for auth in [("Cookie", cookie.as_str()), ("Authorization", bearer.as_str())] {
            let a = call(&w, "GET", "/api/state", &[("Host", &host), auth], b"");
            assert_eq!((a.status, code(&a).as_str()), (403, "wrong_host"), "Host {host}: {}", a.text());
        }
        let a = call(&w, "GET", &format!("/?token={}", w.token), &[("Host", &host)], b"");
        assert_eq!(a.status, 403, "Host {host}");
        assert!(a.header("set-cookie").is_none(), "no cookie for Host {host}");
    }
    // localhost names a loopback listener too.
    let a = call(&w, "GET", "/api/state", &[("Host", &format!("localhost:{port}")), ("Cookie", &cookie)], b"");
    assert_eq!(a.status, 200);

    // POST /api: the cookie needs our Origin.
    let ping = br#"{"op":"ping"}"#;
    let json_type = ("Content-Type", "application/json");
    let a = call(&w, "POST", "/api", &[("Cookie", &cookie), ("Origin", "http://evil.example"), json_type], ping);
    assert_eq!((a.status, code(&a).as_str()), (403, "wrong_origin"), "{}", a.text());
    let a = call(&w, "POST", "/api", &[("Cookie", &cookie), ("Origin", "null"), json_type], ping);
    assert_eq!((a.status, code(&a).as_str()), (403, "wrong_origin"));
    let evil_port = format!("http://evil.example:{port}");
    let a = call(&w, "POST", "/api", &[("Cookie", &cookie), ("Origin", &evil_port), json_type], ping);
    assert_eq!((a.status, code(&a).as_str()), (403, "wrong_origin"));
    let a = call(&w, "POST", "/api", &[("Cookie", &cookie), json_type], ping);
    assert_eq!((a.status, code(&a).as_str()), (403, "wrong_origin"), "no Origin: {}", a.text());
    let a = call(&w, "POST", "/api", &[("Cookie", &cookie), ("Origin", &origin), json_type], ping);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["ok"], true, "{}", a.text());
    // A script with the bearer token and no Origin is no browser.
    let a = call(&w, "POST", "/api", &[("Authorization", &bearer), json_type], ping);
    assert_eq!(a.status, 200, "{}", a.text());
    // Not through the web UI: shutdown (the daemon keeps running).
    let a = call(&w, "POST", "/api", &[("Cookie", &cookie), ("Origin", &origin)], br#"{"op":"shutdown"}"#);
    assert_eq!(a.status, 400, "{}", a.text());
    // The token alone does not make another site's request good.
    let a = call(&w, "POST", "/api/fetch", &[("Cookie", &cookie), ("Origin", "http://evil.example"), json_type], b"{}");
    assert_eq!(a.status, 403);
    let a = call(&w, "PUT", "/api/upload/b1/x.txt", &[("Cookie", &cookie), ("Origin", "http://evil.example")], b"x");
    assert_eq!(a.status, 403);

    // The event stream: a foreign Origin is refused; ours gets `hello`.
    let a = call(&w, "GET", "/api/events", &[("Cookie", &cookie), ("Origin", "http://evil.example")], b"");
    assert_eq!((a.status, code(&a).as_str()), (403, "wrong_origin"));
    let a = call(&w, "GET", "/api/events", &[("Origin", &origin)], b"");
    assert_eq!(a.status, 401, "no token");
    let head = events_start(&w, Some(&origin));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("data: {\"event\":\"hello\"}"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-security-policy: "), "{head}");

    // The page and its assets, as the binary embeds them: what is in
    // src/web/assets now (a stale build would serve older ones), with
    // their types.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/assets");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = if name == "index.html" { "/".to_string() } else { format!("/assets/{name}") };
        let a = call(&w, "GET", &path, &[("Cookie", &cookie)], b"");
        assert_eq!(a.status, 200, "{path}");
        assert!(a.body == std::fs::read(e.path()).unwrap(), "{path} is not {} (a stale build?)", e.path().display());
        let kind = a.header("content-type").unwrap_or_default();
        let want = match name.rsplit_once('.').map(|(_, x)| x) {
            Some("html") => "text/html",
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("svg") => "image/svg+xml",
            _ => "",
        };
        assert!(kind.starts_with(want), "{path}: {kind}");
    }

    // Unknown paths and assets: 404, with the headers too.
    assert_eq!(call(&w, "GET", "/assets/nothing.js", &[("Cookie", &cookie)], b"").status, 404);
    assert_eq!(call(&w, "GET", "/nothing", &[("Cookie", &cookie)], b"").status, 404);
    // The daemon still runs (shutdown was refused).
    assert_eq!(d.control(&json!({"op": "ping"}))["ok"], true);
}

#[test]
fn downloads_stay_in_the_download_folder() {
    let area = tempfile::tempdir().unwrap();
    let downloads = area.path().join("downloads");
    std::fs::create_dir_all(downloads.join("sub")).unwrap();
    let secret = area.path().join("secret");
    let secret_bytes = b"TOP-SECRET-0xdeadbeef-never-served";
    std::fs::write(&secret, secret_bytes).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let far_secret = outside.path().join("secret");
    std::fs::write(&far_secret, secret_bytes).unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(downloads.join("report.bin"), &body).unwrap();
    std::fs::write(downloads.join("sub/报告 1.txt"), "中文").unwrap();
    std::os::unix::fs::symlink(&far_secret, downloads.join("link-to-secret")).unwrap();
    std::os::unix::fs::symlink(&secret, downloads.join("sub/up")).unwrap();
    std::os::unix::fs::symlink(outside.path(), downloads.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink(outside.path(), downloads.join("sub/far")).unwrap();
    // A named pipe: refused at once (opening it would wait for a writer).
    let fifo = std::process::Command::new("mkfifo").arg(downloads.join("pipe")).status().unwrap();
    assert!(fifo.success());
    let config = format!("download_dir = {}\n", toml::Value::String(downloads.to_string_lossy().into_owned()));
    let d = Daemon::start_with_config("127.0.0.184", "dora", "Dora", &[NOBODY], &config);
    let w = d.web();
    let cookie = w.cookie();

    let a = call(&w, "GET", "/download/report.bin", &[("Cookie", &cookie)], b"");
    assert_eq!(a.status, 200, "{}", a.head);
    assert!(a.body == body, "the file's bytes ({} of {})", a.body.len(), body.len());
    assert!(a.header("content-disposition").unwrap_or_default().starts_with("attachment"), "{}", a.head);
    let a = call(&w, "GET", "/download/sub/%E6%8A%A5%E5%91%8A%201.txt", &[("Cookie", &cookie)], b"");
    assert_eq!((a.status, a.text().as_str()), (200, "中文"));
    // The token is needed here too.
    assert_eq!(call(&w, "GET", "/download/report.bin", &[], b"").status, 401);

    // A folder comes as one .tar; its links stay links (never followed out).
    let a = call(&w, "GET", "/download/sub", &[("Cookie", &cookie)], b"");
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(a.header("content-type").as_deref(), Some("application/x-tar"), "{}", a.head);
    let entries = tar_entries(&a.body);
    let find = |name: &str| entries.iter().find(|e| e.0 == name).unwrap_or_else(|| panic!("no {name} in {entries:?}"));
    assert_eq!(find("sub/报告 1.txt").2, "中文".as_bytes());
    assert_eq!((find("sub/up").1, find("sub/up").3.as_str()), (b'2', secret.to_str().unwrap()), "a link, kept as one");
    assert_eq!(find("sub/far").1, b'2');
    assert!(!entries.iter().any(|e| e.0.starts_with("sub/far/")), "{entries:?}");
    assert!(!a.body.windows(10).any(|w| w == b"TOP-SECRET"), "the folder's tar has the secret");

    let far = far_secret.to_string_lossy().replace('/', "%2F");
    for path in [
        "/download/..%2Fsecret".to_string(),
        "/download/../secret".into(),
        "/download/%2e%2e/secret".into(),
        "/download/%2E%2E%2Fsecret".into(),
        "/download/sub/../../secret".into(),
        "/download/sub/%2e%2e/%2e%2e/secret".into(),
        "/download/./../secret".into(),
        "/download/..%5Csecret".into(),
        "/download/link-to-secret".into(),
        "/download/sub/up".into(),
        "/download/link-to-dir/secret".into(),
        format!("/download/{far}"),
        format!("/download/%2F{far}"),
        "/download//etc/passwd".into(),
        "/download/".into(),
        "/download/sub/far".into(),
        "/download/pipe".into(),
    ] {
        let a = call(&w, "GET", &path, &[("Cookie", &cookie)], b"");
        assert_eq!(a.status, 404, "{path}: {}\n{}", a.head, a.text());
        assert!(!a.text().contains("TOP-SECRET") && !a.text().contains("root:"), "{path} leaked: {}", a.text());
    }
}

/// (name, type flag, content, link target) of each entry of a tar
/// archive (ustar and GNU long names).
fn tar_entries(mut t: &[u8]) -> Vec<(String, u8, Vec<u8>, String)> {
    let field = |b: &[u8]| String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or(b)).into_owned();
    let mut out = Vec::new();
    let mut long_name: Option<String> = None;
    while t.len() >= 512 && t[..512].iter().any(|b| *b != 0) {
        let h = &t[..512];
        let size = usize::from_str_radix(field(&h[124..136]).trim(), 8).unwrap_or(0);
        let kind = h[156];
        let prefix = field(&h[345..500]);
        let mut name = field(&h[..100]);
        if !prefix.is_empty() && &h[257..262] == b"ustar" && h[263] != b' ' {
            name = format!("{prefix}/{name}");
        }
        let body = t[512..(512 + size).min(t.len())].to_vec();
        t = &t[(512 + size.div_ceil(512) * 512).min(t.len())..];
        match kind {
            b'L' => long_name = Some(field(&body)),
            _ => {
                let name = long_name.take().unwrap_or(name);
                out.push((name.trim_end_matches('/').to_string(), kind, body, field(&h[157..257])));
            }
        }
    }
    out
}

/// Regular files under `dir` (none if it does not exist).
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn uploads_are_streamed_checked_and_bounded() {
    let d = Daemon::start_with_config("127.0.0.185", "ulla", "Ulla", &[NOBODY], "web_max_upload_mb = 1\n");
    let w = d.web();
    let cookie = w.cookie();
    let origin = w.origin();
    let auth = [("Cookie", cookie.as_str()), ("Origin", origin.as_str())];
    let uploads = d.home.path().join("uploads");

    let a = call(&w, "PUT", "/api/upload/batch1/dir/a.txt", &auth, b"hello, pigeon");
    assert_eq!(a.status, 200, "{}", a.text());
    let path = a.json()["path"].as_str().unwrap_or_default().to_string();
    assert!(path.ends_with("/dir"), "{}", a.text());
    assert_eq!(a.json()["size"], 13);
    assert_eq!(std::fs::read(Path::new(&path).join("a.txt")).unwrap(), b"hello, pigeon");
    assert!(Path::new(&path).starts_with(&uploads), "{path} is in the home's uploads/");
    // A second file of the same folder; the same name again is refused.
    let a = call(&w, "PUT", "/api/upload/batch1/dir/sub/%E6%96%87%E4%BB%B6%201.txt", &auth, b"two");
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.json()["path"].as_str().unwrap_or_default().ends_with("/dir"));
    assert_eq!(std::fs::read(uploads.join("batch1/dir/sub/文件 1.txt")).unwrap(), b"two");
    let a = call(&w, "PUT", "/api/upload/batch1/dir/a.txt", &auth, b"again");
    assert!(a.status >= 400, "{}", a.text());
    assert_eq!(std::fs::read(uploads.join("batch1/dir/a.txt")).unwrap(), b"hello, pigeon", "not overwritten");
    // An empty file.
    let a = call(&w, "PUT", "/api/upload/batch2/empty.txt", &auth, b"");
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.json()["path"].as_str().unwrap_or_default().ends_with("/empty.txt"), "{}", a.text());

    // Hostile names: 400, nothing written outside.
    let before = files_under(d.home.path());
    for path in [
        "/api/upload/batch3/..%2Fx",
        "/api/upload/batch3/%2Fetc%2Fx",
        "/api/upload/batch3/a%2F..%2F..%2Fx",
        "/api/upload/batch3/%2e%2e/x",
        "/api/upload/batch3/a/./x",
        "/api/upload/batch3/a%5C..%5Cx",
        "/api/upload/batch3/a%00b",
        "/api/upload/..%2Fbatch/x",
        "/api/upload/%2e%2e/x",
        "/api/upload/a.b/x",
    ] {
        let a = call(&w, "PUT", path, &auth, b"payload");
        assert_eq!(a.status, 400, "{path}: {}", a.text());
    }
    assert_eq!(files_under(d.home.path()), before, "nothing new in the home");
    assert!(!Path::new("/etc/x").exists());
    // No Origin with the cookie: refused before anything is written.
    let a = call(&w, "PUT", "/api/upload/batch4/x.txt", &[("Cookie", &cookie)], b"x");
    assert_eq!((a.status, code(&a).as_str()), (403, "wrong_origin"));
    assert!(!uploads.join("batch4").exists());

    // Exactly web_max_upload_mb is taken.
    let mib = vec![7u8; 1 << 20];
    let a = call(&w, "PUT", "/api/upload/batch5/one-mib.bin", &auth, &mib);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(std::fs::metadata(uploads.join("batch5/one-mib.bin")).unwrap().len(), 1 << 20);

    // More: 413 for a declared length (before reading the body)…
    let big = vec![9u8; (1 << 20) + (512 << 10)];
    let a = call(&w, "PUT", "/api/upload/big1/big.bin", &auth, &big);
    assert_eq!(a.status, 413, "{}", a.text());
    assert!(files_under(&uploads.join("big1")).is_empty(), "{:?}", files_under(&uploads.join("big1")));
    // …and for a streamed body without a length (chunked), the part file removed.
    let mut chunked = Vec::new();
    for piece in big.chunks(64 << 10) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "PUT /api/upload/big2/big.bin HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nOrigin: {origin}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        w.addr
    );
    let a = http_raw(&w.addr, head.as_bytes(), &chunked);
    assert_csp(&a, "chunked upload");
    assert_eq!(a.status, 413, "{}", a.text());
    wait_for(|| files_under(&uploads.join("big2")).is_empty(), "the part file removed");
    // The daemon is fine afterwards.
    assert_eq!(call(&w, "GET", "/api/state", &[("Cookie", &cookie)], b"").status, 200);
}

// ---------------------------------------------------------------------------
// In a browser.

const PEERS: &str = r#"[aria-label="Peers"]"#;

/// `data-peer` of the first option of the Peers list whose accessible
/// name (aria-label, else its text) contains every needle; null if none.
const FIND_PEER: &str = r#"
const needles = arguments[0];
const list = document.querySelector('[aria-label="Peers"]');
if (!list) return null;
for (const o of list.querySelectorAll('[role="option"]')) {
  const name = o.getAttribute('aria-label') || o.textContent;
  if (needles.every(n => name.includes(n))) return o.getAttribute('data-peer') || '(no data-peer)';
}
return null;
"#;

/// `data-state` of the Conversation's message (an element with `data-id`)
/// whose text contains arguments[0]; null if none shows it.
const MESSAGE_STATE: &str = r#"
const log = document.querySelector('[role="log"][aria-label="Conversation"]');
if (!log) return null;
let found = null;
for (const m of log.querySelectorAll('[data-id]')) {
  if (m.textContent.includes(arguments[0])) found = m.getAttribute('data-state') || '(no data-state)';
}
return found;
"#;

/// Whether the Conversation's text contains arguments[0].
const CONVERSATION_HAS: &str = r#"
const log = document.querySelector('[role="log"][aria-label="Conversation"]');
return !!log && log.textContent.includes(arguments[0]);
"#;

async fn find(b: &Browser, how: fantoccini::Locator<'_>) -> fantoccini::elements::Element {
    match b.client.find(how).await {
        Ok(e) => e,
        Err(e) => panic!("no element {how:?}: {e}\nconsole: {:#?}", b.console()),
    }
}

async fn click(b: &Browser, how: fantoccini::Locator<'_>) {
    if let Err(e) = find(b, how).await.click().await {
        panic!("cannot click {how:?}: {e}\nconsole: {:#?}", b.console());
    }
}

/// Opens the conversation of the peer whose option's `data-peer` is `key`.
async fn open_conversation(b: &Browser, key: &str) {
    let css = format!(r#"{PEERS} [role="option"][data-peer="{key}"]"#);
    click(b, fantoccini::Locator::Css(&css)).await;
    b.wait_until(
        "return document.body.dataset.conversation || null",
        vec![],
        |v| v == key,
        Duration::from_secs(10),
        &format!("body[data-conversation={key:?}]"),
    )
    .await;
}

fn offers(d: &Daemon) -> Vec<Value> {
    let out = d.cli(&["offers", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn ok(out: std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const HOSTILE_NICK: &str = r#"<img src=x onerror="window.__pwned=1">"#;

#[test]
fn in_a_browser() {
    let Some(tools) = browser_or_skip("web UI in a browser") else { return };
    let t0 = Instant::now();
    let area = tempfile::tempdir().unwrap();
    let downloads = area.path().join("alice-downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let config = format!("download_dir = {}\n", toml::Value::String(downloads.to_string_lossy().into_owned()));
    let a = Daemon::start_with_config("127.0.0.181", "alice", "alice", &["127.0.0.182"], &config);
    let b = Daemon::start("127.0.0.182", "bob", "bob", &["127.0.0.181"]);
    wait_for(|| a.peers().len() == 1 && b.peers().len() == 1, "discovery");
    let w = a.web();
    let rt = common::runtime();
    let scenarios = async {
        let browser = Browser::start(&tools).await;
        println!("browser started after {:?}", t0.elapsed());
        scenarios(&browser, &a, &b, &w, area.path(), &downloads).await;
        browser.close().await;
    };
    rt.block_on(async {
        if tokio::time::timeout(Duration::from_secs(300), scenarios).await.is_err() {
            panic!("the browser scenarios did not finish in 300 s");
        }
    });
    println!("browser scenarios: {:?}", t0.elapsed());
}

async fn scenarios(browser: &Browser, a: &Daemon, b: &Daemon, w: &WebUi, area: &Path, downloads: &Path) {
    use fantoccini::Locator;
    let s10 = Duration::from_secs(10);
    let s20 = Duration::from_secs(20);
    if let Err(e) = browser.client.goto(&w.url).await {
        panic!("cannot open {}: {e}", w.url);
    }
    // The token went into the cookie; the address bar no longer has it.
    let here = browser.client.current_url().await.unwrap().to_string();
    assert_eq!(here, format!("{}/", w.origin()), "back to / without the token");
    browser.wait_js("return window.pigeonReady === true", vec![], s20, "window.pigeonReady").await;
    // The cookie is not readable by scripts (HttpOnly).
    assert_eq!(browser.js("return document.cookie", vec![]).await, "", "HttpOnly");
    // A mark that disappears if the page reloads.
    browser.js("window.__sameLoad = 42; return 1", vec![]).await;

    // 1. Bob shows up in the Peers list (name and address); a message to
    //    him arrives and is marked delivered.
    let bob_ip = b.ip;
    let key =
        browser.wait_js(FIND_PEER, vec![json!(["bob", bob_ip])], s20, "bob (and his address) in the Peers list").await;
    let bob_key = key.as_str().unwrap().to_string();
    let bob = &a.peers()[0];
    assert_eq!(bob_key, format!("{}@{}", bob["user"].as_str().unwrap(), bob["host"].as_str().unwrap()));
    open_conversation(browser, &bob_key).await;
    let text = "hello bob, from the browser 🐦 <3";
    let area_el = find(browser, Locator::Css(r#"textarea[aria-label="Message"]"#)).await;
    area_el.send_keys(&format!("{text}{}", char::from(fantoccini::key::Key::Enter))).await.unwrap();
    wait_for(|| b.history(&[]).iter().any(|m| m["text"] == text), "bob's history has the message");
    browser
        .wait_until(MESSAGE_STATE, vec![json!(text)], |v| v == "delivered", s20, "the message's data-state=delivered")
        .await;
    let left = browser.js(r#"return document.querySelector('textarea[aria-label="Message"]').value"#, vec![]).await;
    assert_eq!(left, "", "the textarea is emptied after sending");
    println!("1. sent and delivered");

    // 2. Bob's reply shows up without a reload.
    let reply = "bob's reply: got it & thanks";
    ok(b.cli(&["send", "alice", reply]), "bob replies");
    browser.wait_js(CONVERSATION_HAS, vec![json!(reply)], s20, "bob's reply in the Conversation").await;
    assert_eq!(browser.js("return window.__sameLoad", vec![]).await, 42, "no reload");
    println!("2. reply shown live");

    // 3. A file attached in the page: uploaded, offered, fetched by Bob.
    let up = area.join("from-the-browser.bin");
    random_file(&up, 3_000_000, 11);
    let input = find(browser, Locator::Css(r#"input[type="file"][aria-label="Attach files"]"#)).await;
    input.send_keys(up.to_str().unwrap()).await.unwrap();
    click(browser, Locator::XPath("//button[normalize-space(.)='Send' or @aria-label='Send']")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let offer = loop {
        let found = offers(b).into_iter().find(|o| {
            o["attachments"].as_array().is_some_and(|l| l.iter().any(|f| f["name"] == "from-the-browser.bin"))
        });
        if let Some(o) = found {
            break o;
        }
        assert!(Instant::now() < deadline, "bob has no offer of from-the-browser.bin: {:?}", offers(b));
        std::thread::sleep(Duration::from_millis(100));
    };
    let dst = area.join("bob-fetched");
    std::fs::create_dir_all(&dst).unwrap();
    let id = offer["id"].to_string();
    ok(b.cli(&["fetch", &id, "--to", dst.to_str().unwrap(), "--json"]), "bob fetches the upload");
    assert_eq!(sha256(&dst.join("from-the-browser.bin")), sha256(&up), "the upload, fetched by bob");
    println!("3. uploaded, offered, fetched");

    // 4. Bob offers Alice a file: Accept saves it in her download folder,
    //    with its path and a download link shown.
    let gift = area.join("gift from bob.bin");
    random_file(&gift, 1_500_000, 12);
    ok(b.cli(&["send", "alice", "here", "--file", gift.to_str().unwrap()]), "bob offers a file");
    let conv_button = |name: &str| {
        format!("//*[@role='log' and @aria-label='Conversation']//button[normalize-space(.)='{name}' or @aria-label='{name}']")
    };
    browser
        .wait_js(
            "return document.evaluate(arguments[0], document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue !== null",
            vec![json!(conv_button("Accept"))],
            s20,
            "an Accept button in the Conversation",
        )
        .await;
    find(browser, Locator::XPath(&conv_button("Decline"))).await;
    click(browser, Locator::XPath(&conv_button("Accept"))).await;
    let saved = downloads.join("gift from bob.bin");
    let link = browser
        .wait_js(
            r#"const a = document.querySelector('[role="log"][aria-label="Conversation"] a[href^="/download/"]');
               return a ? a.getAttribute('href') : null"#,
            vec![],
            Duration::from_secs(30),
            "a download link in the Conversation",
        )
        .await;
    browser
        .wait_js(CONVERSATION_HAS, vec![json!(saved.to_string_lossy())], s10, "the saved path in the Conversation")
        .await;
    assert_eq!(sha256(&saved), sha256(&gift), "the accepted file in alice's download folder");
    let link = link.as_str().unwrap();
    let got = http(&w.addr, "GET", link, &[("Cookie", &w.cookie())], b"");
    assert_eq!(got.status, 200, "{link}: {}", got.head);
    assert!(got.body == std::fs::read(&gift).unwrap(), "{link} serves the file");
    println!("4. offer accepted, saved, linked ({link})");

    // 5. A hostile peer: HTML in its nick and its text, a bidi override.
    let c = Daemon::start("127.0.0.183", "carol", HOSTILE_NICK, &["127.0.0.181"]);
    wait_for(|| c.peers().iter().any(|p| p["user"] == "alice"), "carol sees alice");
    let carol_key =
        browser.wait_js(FIND_PEER, vec![json!(["<img", "onerror"])], s20, "carol's nick, literally, in Peers").await;
    let carol_key = carol_key.as_str().unwrap().to_string();
    let hostile = "<b>bold</b><script>window.__pwned=2</script> look: \u{202E}txt.exe";
    ok(c.cli(&["send", "alice", hostile]), "carol sends HTML");
    open_conversation(browser, &carol_key).await;
    browser.wait_js(CONVERSATION_HAS, vec![json!("<b>bold</b>")], s20, "the HTML shown as text").await;
    tokio::time::sleep(Duration::from_millis(500)).await; // time for an onerror to fire
    let report = browser
        .js(
            r#"const log = document.querySelector('[role="log"][aria-label="Conversation"]');
               const peers = document.querySelector('[aria-label="Peers"]');
               // Anywhere in the page: the Conversation, Peers, the header, notices.
               const made = [];
               for (const e of document.querySelectorAll('b, img, script')) {
                 if (e.textContent.includes('bold') || e.getAttribute('src') === 'x' || e.hasAttribute('onerror')
                     || e.textContent.includes('__pwned')) made.push(e.outerHTML);
               }
               for (const e of document.querySelectorAll('[onerror], script:not([src])')) made.push(e.outerHTML);
               return {
                 pwned: typeof window.__pwned,
                 made,
                 text: log.innerText,
                 peers: peers.innerText,
                 hasRlo: log.innerText.includes('\u202e') || log.textContent.includes('\u202e'),
               };"#,
            vec![],
        )
        .await;
    assert_eq!(report["pwned"], "undefined", "{report:#}");
    assert_eq!(report["made"], json!([]), "elements made from a peer's text: {report:#}");
    let text = report["text"].as_str().unwrap();
    assert!(text.contains("<b>bold</b><script>window.__pwned=2</script>"), "{report:#}");
    assert!(report["peers"].as_str().unwrap().contains(HOSTILE_NICK), "{report:#}");
    assert_eq!(report["hasRlo"], false, "U+202E is shown as a marker, not obeyed: {report:#}");
    assert!(text.contains("txt.exe"), "{report:#}");
    let marker = text.split("look: ").nth(1).unwrap_or("").chars().take(20).collect::<String>();
    println!("5. hostile peer shown as text (the override shows as {marker:?})");

    // Notices (toasts) came: they leave the composer usable.
    let covered = browser
        .js(
            r#"const s = document.evaluate("//button[normalize-space(.)='Send' or @aria-label='Send']", document, null,
                 XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
               const r = s.getBoundingClientRect();
               const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
               return hit && (s === hit || s.contains(hit)) ? null : (hit ? hit.outerHTML.slice(0, 300) : 'nothing');"#,
            vec![],
        )
        .await;
    assert_eq!(covered, Value::Null, "the Send button is covered by another element");

    // Back to Bob for the picture.
    open_conversation(browser, &bob_key).await;
    browser.wait_js(CONVERSATION_HAS, vec![json!(reply)], s10, "bob's conversation again").await;
    let shot = browser.client.screenshot().await.unwrap();
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("web-screenshot.png");
    std::fs::write(&target, shot).unwrap();
    println!("screenshot: {}", target.display());
    let console = browser.console();
    let errors: Vec<&String> =
        console.iter().filter(|l| l.starts_with("SEVERE") || l.contains("Content Security Policy")).collect();
    if !errors.is_empty() {
        println!("the page's console errors: {errors:#?}");
    }
    assert!(!console.iter().any(|l| l.contains("Content Security Policy")), "CSP violations: {console:#?}");
    drop(c);
}
