//! The web UI in a real browser (a bench binary: `cargo bench --bench web`;
//! needs chromium and chromedriver). Two daemons of the bench build on
//! loopback (127.0.0.186 alice, 127.0.0.187 bob; port 42425, explicit
//! targets), alice's history filled beforehand with 5,000 messages to and
//! from bob, her web UI in headless Chromium:
//!
//! 1. the time to show that conversation, timed inside the page from the
//!    click on bob in the Peers list (a capturing listener's
//!    `performance.now()`) to the page's `conversation-shown` mark (goal
//!    < 150 ms), to his newest message in the Conversation (a
//!    MutationObserver) and to the frame painted after the mark;
//!    `PIGEON_WEB_RUNS` runs (default 10, after one warm-up), switching to
//!    Everyone and back, median and p90;
//! 2. the time from a peer's send (bob's control socket; the wall clock
//!    just before) to the message in the page (a MutationObserver's
//!    `Date.now()`); `PIGEON_WEB_SENDS` runs (default 50), median and p90
//!    (goal < 50 ms);
//! 3. the daemon's CPU (utime + stime of alice's daemon, /proc) over
//!    `PIGEON_WEB_IDLE_SECS` seconds (default 30) with the page open and
//!    idle (goal 0 ticks), and the same with no page open, for comparison;
//! 4. the page's weight: index.html and what it references, as served.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{http, wait_for, Browser, Daemon};
use pigeon::store::{Direction, MessageRecord, MessageState, PeerRecord, PeerRef, Store};
use serde_json::json;

const A_IP: &str = "127.0.0.186";
const B_IP: &str = "127.0.0.187";
const B_HOST: &str = "bench-b";
const MESSAGES: usize = 5000;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Alice's home: her identity and 5,000 messages with bob (every third
/// one hers; now and then a long one, Chinese text), all read.
fn fill(home: &Path) {
    std::fs::write(home.join("config.toml"), "host = \"bench-a\"\n").unwrap();
    let mut store = Store::open(&home.join("pigeon.db")).unwrap();
    let peer = PeerRef { user: "bob".into(), host: B_HOST.into(), nick: "bob".into(), addr: format!("{B_IP}:42425") };
    let start = chrono::Utc::now() - chrono::Duration::days(30);
    store
        .transaction(|tx| {
            tx.upsert_peer(&PeerRecord {
                user: "bob".into(),
                host: B_HOST.into(),
                nick: "bob".into(),
                group: String::new(),
                addr: format!("{B_IP}:42425"),
                client: "pigeon".into(),
                last_seen: start,
                marker: None,
            })?;
            for i in 0..MESSAGES {
                let out = i % 3 == 0;
                let text = if i == MESSAGES - 1 {
                    format!("the newest of {MESSAGES} messages")
                } else if i % 97 == 0 {
                    format!("第 {i} 条消息：{}", "今天的构建已经通过，请大家查看报告。".repeat(40))
                } else {
                    format!("message {i}: the build passed, see the report at http://ci.example/{i}")
                };
                tx.insert_message(&MessageRecord {
                    id: 0,
                    direction: if out { Direction::Out } else { Direction::In },
                    peer: peer.clone(),
                    packet_no: (100_000 + i).to_string(),
                    time: start + chrono::Duration::seconds(i as i64 * 400),
                    text,
                    command: 0x0000_0120,
                    state: if out { MessageState::Delivered } else { MessageState::Read },
                    attachments_json: None,
                    security: None,
                })?;
            }
            Ok(())
        })
        .unwrap();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.9), v[v.len() - 1])
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // After "pid (comm)": state is field 3; utime and stime are 14 and 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Arms the timing of opening bob's conversation: the click (a capturing
/// listener on the document), the page's `conversation-shown` mark for
/// that conversation, the mutation that put his newest message in the
/// Conversation, and the paint after the mark (a task queued from the
/// next animation frame runs once that frame is drawn).
const ARM_SHOW: &str = r#"
const [key, newest] = arguments;
Object.assign(window, {__clicked: null, __shown: null, __dom: null, __frame: null});
const onClick = (e) => {
  if (e.target.closest && e.target.closest(`[data-peer="${CSS.escape(key)}"]`)) {
    window.__clicked = performance.now();
    document.removeEventListener('click', onClick, true);
  }
};
document.addEventListener('click', onClick, true);
const log = document.querySelector('[role="log"][aria-label="Conversation"]');
const obs = new MutationObserver(() => {
  if (window.__dom === null && window.__clicked !== null && log.textContent.includes(newest)) {
    window.__dom = performance.now();
    obs.disconnect();
  }
});
obs.observe(log, {subtree: true, childList: true, characterData: true});
const po = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (e.name === 'conversation-shown' && window.__clicked !== null && window.__shown === null
        && document.body.dataset.conversation === key) {
      window.__shown = e.startTime;
      requestAnimationFrame(() => setTimeout(() => { window.__frame = performance.now(); }, 0));
      po.disconnect();
    }
  }
});
po.observe({type: 'mark'});
return true;
"#;

/// Records when a message with arguments[0] in its text is added to the Conversation.
const ARM_ARRIVAL: &str = r#"
const token = arguments[0];
window.__arrived = null;
const log = document.querySelector('[role="log"][aria-label="Conversation"]');
const obs = new MutationObserver((records) => {
  for (const r of records) for (const n of r.addedNodes) {
    if (window.__arrived === null && n.textContent.includes(token)) { window.__arrived = Date.now(); obs.disconnect(); }
  }
});
obs.observe(log, {subtree: true, childList: true});
return true;
"#;

async fn click_peer(b: &Browser, key: &str) {
    let css = format!(r#"[aria-label="Peers"] [role="option"][data-peer="{key}"]"#);
    let el = b.client.find(fantoccini::Locator::Css(&css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
    el.click().await.unwrap();
}

fn main() {
    let Some(tools) = common::browser_or_skip("web bench") else { return };
    let runs = env_or("PIGEON_WEB_RUNS", 10).max(1);
    let sends = env_or("PIGEON_WEB_SENDS", 50).max(1);
    let idle = env_or("PIGEON_WEB_IDLE_SECS", 30) as u64;
    let t0 = Instant::now();
    let a = Daemon::start_prepared(A_IP, "alice", "alice", &[B_IP], fill);
    let b = Daemon::start_with_config(B_IP, "bob", "bob", &[A_IP], &format!("host = \"{B_HOST}\"\n"));
    wait_for(|| a.peers().len() == 1 && b.peers().len() == 1, "discovery");
    let w = a.web();
    let bob_key = format!("bob@{B_HOST}");
    let newest = format!("the newest of {MESSAGES} messages");
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // 4. The page's weight, as served (the bytes of each body).
    let index = http(&w.addr, "GET", "/", &[("Cookie", &w.cookie())], b"");
    assert_eq!(index.status, 200);
    let mut weight = vec![("index.html".to_string(), index.body.len())];
    let html = index.text();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let url = part.split('"').next().unwrap_or("");
            if url.starts_with("/assets/") && !weight.iter().any(|(n, _)| n == url) {
                let a = http(&w.addr, "GET", url, &[("Cookie", &w.cookie())], b"");
                assert_eq!(a.status, 200, "{url}");
                weight.push((url.to_string(), a.body.len()));
            }
        }
    }
    // Modules the script imports (`import … from "./x.js"`).
    let app = http(&w.addr, "GET", "/assets/app.js", &[("Cookie", &w.cookie())], b"").text();
    for part in app.split("from \"./").chain(app.split("from './")).skip(1) {
        let name = part.split(['"', '\'']).next().unwrap_or("");
        let url = format!("/assets/{name}");
        if !name.is_empty() && !weight.iter().any(|(n, _)| *n == url) {
            let a = http(&w.addr, "GET", &url, &[("Cookie", &w.cookie())], b"");
            if a.status == 200 {
                weight.push((url, a.body.len()));
            }
        }
    }
    let total: usize = weight.iter().map(|(_, n)| n).sum();

    let rt = common::runtime();
    let (show, dom, frame, arrive, idle_open) = rt.block_on(async {
        let browser = Browser::start(&tools).await;
        browser.client.goto(&w.url).await.unwrap();
        let long = Duration::from_secs(30);
        browser.wait_js("return window.pigeonReady === true", vec![], long, "window.pigeonReady").await;
        browser
            .wait_js(
                r#"return !!document.querySelector(`[aria-label="Peers"] [role="option"][data-peer="${arguments[0]}"]`)"#,
                vec![json!(bob_key)],
                long,
                "bob in the Peers list",
            )
            .await;
        // The Everyone conversation: its option in the Peers list.
        let everyone = browser
            .js(
                r#"const o = [...document.querySelectorAll('[aria-label="Peers"] [role="option"]')]
                     .find(o => /everyone/i.test(o.getAttribute('aria-label') || o.textContent));
                   return o ? o.getAttribute('data-peer') : null"#,
                vec![],
            )
            .await;
        let everyone = everyone.as_str().expect("an Everyone option in the Peers list").to_string();

        // 1. Showing the 5,000-message conversation (one warm-up run).
        let (mut show, mut dom, mut frame) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..=runs {
            click_peer(&browser, &everyone).await;
            browser
                .wait_until(
                    "return document.body.dataset.conversation || null",
                    vec![],
                    |v| v == everyone.as_str(),
                    long,
                    "the Everyone conversation",
                )
                .await;
            browser.js(ARM_SHOW, vec![json!(bob_key), json!(newest)]).await;
            click_peer(&browser, &bob_key).await;
            let t = browser
                .wait_js(
                    "return window.__frame !== null && window.__dom !== null \
                     ? [window.__shown - window.__clicked, window.__dom - window.__clicked, window.__frame - window.__clicked] : null",
                    vec![],
                    long,
                    "bob's conversation shown (its mark, its newest message, the paint)",
                )
                .await;
            if i > 0 {
                let t: Vec<f64> = t.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
                show.push(t[0]);
                dom.push(t[1]);
                frame.push(t[2]);
            }
        }
        let count = browser
            .js(r#"return document.querySelectorAll('[role="log"][aria-label="Conversation"] [data-id]').length"#, vec![])
            .await;
        println!("bob's conversation shows {count} message elements of {MESSAGES}");

        // 2. A peer's send to the screen.
        let mut arrive = Vec::new();
        for i in 0..=sends {
            let token = format!("ping {i} {}", fastrand::u64(..));
            browser.js(ARM_ARRIVAL, vec![json!(token)]).await;
            let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1e3;
            let r = b.control(&json!({"op": "send", "to": ["alice"], "text": token}));
            assert_eq!(r["ok"], true, "{r}");
            let at = browser.wait_js("return window.__arrived", vec![], long, "the message on screen").await;
            if i > 0 {
                arrive.push(at.as_f64().unwrap() - before);
            }
        }

        // 3. The daemon's CPU with the page open and idle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pid = a.pid();
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let idle_open = cpu_ticks(pid) - before;
        let shot = browser.client.screenshot().await.unwrap();
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("web-bench-screenshot.png");
        let _ = std::fs::write(target, shot);
        browser.close().await;
        (show, dom, frame, arrive, idle_open)
    });
    // The same with no page open.
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_ticks(a.pid());
    std::thread::sleep(Duration::from_secs(idle));
    let idle_closed = cpu_ticks(a.pid()) - before;

    for (what, v, goal) in [
        ("click to conversation-shown mark", show, "< 150 ms"),
        ("click to newest message in the DOM", dom, ""),
        ("click to the frame painted after it", frame, ""),
    ] {
        let (m, p90, max) = summary(v);
        rows.push((
            format!("{MESSAGES}-message conversation: {what} ({runs} runs)"),
            format!("median {m:.1} ms, p90 {p90:.1} ms, max {max:.1} ms"),
            goal.into(),
        ));
    }
    let (m, p90, max) = summary(arrive);
    rows.push((
        format!("peer's send to on screen ({sends} runs)"),
        format!("median {m:.1} ms, p90 {p90:.1} ms, max {max:.1} ms"),
        "< 50 ms".into(),
    ));
    rows.push((format!("daemon CPU, page open and idle, {idle} s"), format!("{idle_open} ticks"), "0 ticks".into()));
    rows.push((format!("daemon CPU, no page open, {idle} s"), format!("{idle_closed} ticks"), "(reference)".into()));
    for (name, n) in &weight {
        rows.push((format!("page weight: {name}"), format!("{n} bytes"), String::new()));
    }
    rows.push((
        "page weight: total".into(),
        format!("{total} bytes ({:.1} KiB)", total as f64 / 1024.0),
        String::new(),
    ));
    let wide = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let mid = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    println!();
    println!("{:wide$}  {:mid$}  goal", "web UI (headless Chromium, bench build)", "result");
    for (name, result, goal) in &rows {
        println!("{name:wide$}  {result:mid$}  {goal}");
    }
    println!("\n(whole bench: {:.0} s)", t0.elapsed().as_secs_f64());
}
