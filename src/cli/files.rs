//! `pigeon offers` and `pigeon fetch`: the files and folders offered to us,
//! and fetching them — resumably, safely, with a progress bar on a
//! terminal and JSON progress events for scripts.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::control::api::{self, AttachmentView, OfferState};
use crate::node::OfferProgress;
use crate::node::{Effective, Global};
use crate::store::{Direction, HistoryQuery, MessageRecord, Store};
use crate::transfer::fetch::{self, Item, Progress};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  pigeon offers\n  pigeon offers --json | jq '.[0].id'")]
pub struct OffersArgs {
    /// A JSON array: id (what fetch takes), from, packet_no, text, time,
    /// attachments (each with its state: new, fetched and where it was saved, declined, expired)
    #[arg(long)]
    pub json: bool,
    /// The offers we made instead: to whom, each file, and whether it is
    /// served, fetched, released (cancelled by us or declined) or expired
    #[arg(long)]
    pub mine: bool,
}

/// The messages that offered us files, with those files.
fn offers(store: &Store) -> Result<Vec<(MessageRecord, Vec<AttachmentView>)>> {
    Ok(store
        .history(&HistoryQuery::default())?
        .into_iter()
        .filter(|m| m.direction == Direction::In)
        .filter_map(|m| {
            let list = AttachmentView::from_column(m.attachments_json.as_deref()?);
            (!list.is_empty()).then_some((m, list))
        })
        .collect())
}

/// One line of `fetch --json`.
fn event(e: &api::FetchEvent) -> String {
    serde_json::to_string(e).expect("plain data")
}

/// An offer to us with what became of each file ([`api::offered_files`]).
fn annotate(
    store: &Store,
    m: &MessageRecord,
    list: &[AttachmentView],
    expiry: chrono::Duration,
) -> Result<api::OfferEntry> {
    Ok(api::OfferEntry {
        id: m.id,
        from: api::FromView::from_ref(&m.peer),
        packet_no: m.packet_no.clone(),
        text: m.text.clone(),
        time: api::local_secs(m.time),
        attachments: api::offered_files(store, m, list, expiry)?,
    })
}

pub fn run_offers(g: &Global, args: &OffersArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let db = eff.home.database();
    if !db.exists() {
        // Nothing to show is not an error.
        if args.json {
            println!("[]");
        } else {
            println!("no offers");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.mine {
        return run_mine(&Store::open(&db)?, args.json);
    }
    let store = Store::open(&db)?;
    let expiry = eff.offer_expiry();
    let all = offers(&store)?
        .iter()
        .map(|(m, list)| Ok((m.clone(), annotate(&store, m, list, expiry)?)))
        .collect::<Result<Vec<_>>>()?;
    if args.json {
        let v: Vec<&api::OfferEntry> = all.iter().map(|(_, o)| o).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no offers");
    }
    for (m, offer) in &all {
        println!(
            "#{}  {}  from {} ({}@{}){}",
            m.id,
            m.time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M"),
            super::clean(&m.peer.nick),
            super::clean(&m.peer.user),
            super::clean(&m.peer.host),
            if m.text.is_empty() { String::new() } else { format!(": {}", super::clean(&m.text)) }
        );
        for a in &offer.attachments {
            let state = match a.state {
                OfferState::Fetched => format!("  fetched → {}", super::clean(a.saved.as_deref().unwrap_or(""))),
                OfferState::Declined => "  declined".to_string(),
                OfferState::Expired => "  expired (the sender has most likely stopped serving it)".to_string(),
                OfferState::New => String::new(),
            };
            let f = &a.file;
            println!("    {:<4} {}{}{state}", super::history::kind_name(f), super::clean(&f.name), size_note(f));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `  (2.9 MiB)` for an offered file; nothing for a folder whose size the
/// offer does not say.
pub fn size_note(a: &AttachmentView) -> String {
    if a.is_dir() && a.size == 0 {
        String::new()
    } else {
        format!("  ({})", crate::term::human_size(a.size))
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pigeon fetch 12                       # every file and folder of offer #12\n  pigeon fetch 12 --to ~/inbox --only report.pdf\n  pigeon fetch 12 --json                # JSON progress events\n  pigeon fetch 1795313923 --from bob@pc-bob   # by packet number, as `listen --json` shows offers\n\nAn interrupted fetch leaves NAME.part files; fetching again resumes."
)]
pub struct FetchArgs {
    /// The offer's id, as `pigeon offers` shows it, or its packet number (as
    /// the `offer` event of `pigeon listen --json` gives it)
    pub offer: String,
    /// With a packet number: the sender (user@host), when two peers used the same one
    #[arg(long, value_name = "USER@HOST")]
    pub from: Option<String>,
    /// Where to put it (default: the download folder)
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Only these names (repeatable)
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// JSON Lines progress: start, progress, file, done, error
    #[arg(long)]
    pub json: bool,
}

/// `pigeon offers --mine`: what we offered, grouped by message and peer.
fn run_mine(store: &Store, json_out: bool) -> Result<ExitCode> {
    let now = chrono::Utc::now();
    let all = store.offers_made_fetched()?;
    let state = |o: &crate::store::OfferRecord, fetched: &Option<chrono::DateTime<chrono::Utc>>| {
        if o.released {
            "released" // cancelled by us, or declined by the peer
        } else if fetched.is_some() {
            "fetched"
        } else if o.expires <= now {
            "expired"
        } else {
            "served"
        }
    };
    if json_out {
        let v: Vec<api::MyOfferEntry> = all
            .iter()
            .map(|(o, f)| api::MyOfferEntry {
                packet_no: o.packet_no.to_string(),
                to: format!("{}@{}", o.peer.user, o.peer.host),
                name: o.name.clone(),
                kind: if o.dir { api::FileKind::Dir } else { api::FileKind::File },
                size: o.size,
                path: o.path.to_string_lossy().into_owned(),
                state: state(o, f).to_string(),
                created: api::local_secs(o.created),
                expires: api::local_secs(o.expires),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("you offered nothing yet");
    }
    let mut last: Option<(u64, String)> = None;
    for (o, f) in &all {
        let to = format!("{}@{}", o.peer.user, o.peer.host);
        if last.as_ref() != Some(&(o.packet_no, to.clone())) {
            println!(
                "{}  {}  to {}",
                o.packet_no,
                o.created.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M"),
                super::clean(&to)
            );
            last = Some((o.packet_no, to));
        }
        let size = size_note(&AttachmentView::new(0, &o.name, o.size, 0, o.dir));
        println!("    {:<9} {}{size}", state(o, f), super::clean(&o.name));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pigeon offers --mine                  # packet numbers and states\n  pigeon cancel 1795313923              # no longer served, to anyone\n  pigeon cancel 1795313923 --to bob@pc-bob"
)]
pub struct CancelArgs {
    /// The packet number of our offer, as `pigeon offers --mine` shows it
    pub packet_no: u64,
    /// Only to this addressee (user@host)
    #[arg(long, value_name = "USER@HOST")]
    pub to: Option<String>,
}

/// `pigeon cancel`: our offer is no longer served (the file server reads
/// the store for each request, so it stops at once).
pub fn run_cancel(g: &Global, args: &CancelArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let db = eff.home.database();
    if !db.exists() {
        bail!("you offered nothing yet");
    }
    let store = Store::open(&db)?;
    let peer = match &args.to {
        Some(t) => Some(t.split_once('@').with_context(|| format!("{t:?}: give user@host"))?),
        None => None,
    };
    let n = store.cancel_offer(args.packet_no, peer)?;
    if n == 0 {
        bail!(
            "no offer {} of yours is served{} (`pigeon offers --mine` lists them)",
            args.packet_no,
            args.to.as_ref().map(|t| format!(" to {t}")).unwrap_or_default()
        );
    }
    println!("cancelled: {n} file{} no longer served", if n == 1 { "" } else { "s" });
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  pigeon decline 12\n  pigeon decline 1795313923 --from bob@pc-bob")]
pub struct DeclineArgs {
    /// The offer's id (`pigeon offers`) or packet number
    pub offer: String,
    /// With a packet number: the sender (user@host)
    #[arg(long, value_name = "USER@HOST")]
    pub from: Option<String>,
}

/// `pigeon decline`: tells the sender we will not fetch (RELEASEFILES), so
/// it stops serving the files.
pub fn run_decline(g: &Global, args: &DeclineArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let db = eff.home.database();
    if !db.exists() {
        bail!("no offer #{} (nothing was offered to you yet)", args.offer);
    }
    let (m, _) = find_offer(offers(&Store::open(&db)?)?, &args.offer, args.from.as_deref())?;
    let req = crate::control::api::Request::Decline {
        user: m.peer.user.clone(),
        host: m.peer.host.clone(),
        packet_no: m.packet_no.clone(),
    };
    let _: crate::control::api::Done =
        crate::node::runtime()?.block_on(super::client::request(&eff, &req, std::time::Duration::from_secs(2)))?;
    println!(
        "declined #{}: {} ({}@{}) was told you will not fetch it",
        m.id,
        super::clean(&m.peer.nick),
        super::clean(&m.peer.user),
        super::clean(&m.peer.host)
    );
    Ok(ExitCode::SUCCESS)
}

/// The offer `spec` names: its id (`pigeon offers`), else its packet
/// number (from `user@host` when given).
fn find_offer(
    all: Vec<(MessageRecord, Vec<AttachmentView>)>,
    spec: &str,
    from: Option<&str>,
) -> Result<(MessageRecord, Vec<AttachmentView>)> {
    let from_ok = |m: &MessageRecord| from.is_none_or(|f| f == format!("{}@{}", m.peer.user, m.peer.host));
    if from.is_none() {
        if let Ok(id) = spec.parse::<i64>() {
            if let Some(i) = all.iter().position(|(m, _)| m.id == id) {
                return Ok(all.into_iter().nth(i).expect("found"));
            }
        }
    }
    let mut by_no: Vec<(MessageRecord, Vec<AttachmentView>)> =
        all.into_iter().filter(|(m, _)| m.packet_no == spec && from_ok(m)).collect();
    match by_no.len() {
        1 => Ok(by_no.remove(0)),
        0 => bail!("no offer #{spec} (`pigeon offers` lists them)"),
        n => {
            let who: Vec<String> = by_no.iter().map(|(m, _)| format!("{}@{}", m.peer.user, m.peer.host)).collect();
            bail!("{n} offers have packet number {spec} ({}); say which with --from USER@HOST", who.join(", "))
        }
    }
}

/// What is being fetched: name, bytes so far, size.
type Interrupted = std::sync::Arc<std::sync::Mutex<Option<(String, u64, u64)>>>;

/// On SIGINT or SIGTERM: an `interrupted` event (`--json`) and how to
/// resume, then exit 130. The signals are blocked in every thread and
/// taken by one of its own (before any other thread starts).
fn on_interrupt(json_out: bool, offer: i64, current: Interrupted) {
    // SAFETY: a sigset_t is plain data, filled by sigemptyset/sigaddset;
    // pthread_sigmask changes this thread's mask (inherited by the threads
    // spawned later), before any other thread exists.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: waits for one of the blocked signals of `set`.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        let now = current.lock().ok().and_then(|c| c.clone());
        if json_out {
            let (name, bytes, size) = now.unwrap_or_default();
            println!("{}", event(&api::FetchEvent::Interrupted { name, bytes, size }));
        }
        eprintln!("\npigeon: interrupted; `pigeon fetch {offer}` resumes where it stopped");
        std::process::exit(130);
    });
}

pub fn run_fetch(g: &Global, args: &FetchArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let store = Store::open(&eff.home.database()).context("no history yet")?;
    let (m, list) = find_offer(offers(&store)?, &args.offer, args.from.as_deref())?;
    let offer_id = m.id;
    let into = args.to.clone().or_else(|| eff.file.download_dir.clone()).unwrap_or_else(crate::node::download_dir);
    if into.exists() && !into.is_dir() {
        anyhow::bail!("{} is a file: --to takes the folder to fetch into", super::clean_path(&into));
    }
    std::fs::create_dir_all(&into).with_context(|| format!("cannot create {}", into.display()))?;
    let src = crate::node::offer_source(&eff, &store, &m)?;
    let wanted: Vec<&AttachmentView> =
        list.iter().filter(|a| args.only.is_empty() || args.only.contains(&a.name)).collect();
    if wanted.is_empty() {
        bail!("offer #{offer_id} has nothing called {}", args.only.join(", "));
    }
    // Ctrl-C (or SIGTERM) says how to resume, and `--json` gets an event:
    // the partial files are kept for that.
    let current: Interrupted = Default::default();
    on_interrupt(args.json, offer_id, current.clone());
    let items: Vec<Item> = wanted
        .iter()
        .map(|a| Item { id: a.id, name: a.name.clone(), size: a.size, mtime: a.mtime, dir: a.is_dir() })
        .collect();
    let json = args.json;
    let new_bar = |item: &Item| {
        (!json && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(item.size);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("a valid template"),
            );
            b.set_message(super::clean(&item.name).into_owned());
            b
        })
    };
    // Per file: its bar, when it started, the last JSON progress event, and
    // the bytes that came over the network this time (a resume sends less).
    let mut bar = None;
    let mut started = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    let (mut first, mut latest) = (0u64, 0u64);
    let from = (m.peer.user.as_str(), m.peer.host.as_str());
    let db = eff.home.database();
    let offer = crate::node::Offer { src: &src, from, packet_no: &m.packet_no, into: &into, db: &db };
    let failed = crate::node::fetch_offer(&offer, &items, false, &mut |p| match p {
        OfferProgress::Item(item) => {
            bar = new_bar(item);
            started = std::time::Instant::now();
            last = std::time::Instant::now();
            (first, latest) = (0, 0);
        }
        OfferProgress::Progress(item, Progress::Start { name, total, offset, sealed }) => {
            // How we ask (§7.7): encrypted and signed to a sender whose key we hold.
            let (request_kind, body_kind) = match sealed {
                Some(fetch::SealedAs::EncryptedBody) => ("encrypted", "aes-256-ctr"),
                Some(fetch::SealedAs::PlainBody) => ("encrypted", "plain"),
                None => ("plain", "plain"),
            };
            first = offset;
            latest = offset;
            if let Ok(mut c) = current.lock() {
                *c = Some((name.to_string(), offset, total));
            }
            if json {
                println!(
                    "{}",
                    event(&api::FetchEvent::Start {
                        name: item.name.clone(),
                        size: total,
                        resumed_at: offset,
                        request: request_kind.into(),
                        body: body_kind.into(),
                    })
                );
            }
            if let Some(b) = &bar {
                b.set_position(offset);
                // Speed and ETA from what comes now, not as if the
                // resumed part had come at once.
                b.reset_eta();
            }
        }
        OfferProgress::Progress(item, Progress::Bytes { done }) => {
            latest = done;
            if let Ok(mut c) = current.lock() {
                if let Some(c) = c.as_mut() {
                    c.1 = done;
                }
            }
            if let Some(b) = &bar {
                b.set_position(done);
            }
            // At most 10 events a second: progress must not slow the stream.
            if json && last.elapsed() >= std::time::Duration::from_millis(100) {
                last = std::time::Instant::now();
                println!(
                    "{}",
                    event(&api::FetchEvent::Progress { name: item.name.clone(), bytes: done, size: item.size })
                );
            }
        }
        OfferProgress::Progress(_, Progress::File { path }) => {
            if json {
                println!("{}", event(&api::FetchEvent::File { path: path.to_string_lossy().into_owned() }));
            }
        }
        OfferProgress::Done(item, Ok(path)) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            let received = latest.saturating_sub(first);
            let secs = started.elapsed().as_secs_f64();
            if json {
                println!(
                    "{}",
                    event(&api::FetchEvent::Done {
                        name: item.name.clone(),
                        path: path.to_string_lossy().into_owned(),
                        seconds: secs,
                        received,
                    })
                );
            } else {
                println!("{}", super::clean_path(path));
            }
        }
        OfferProgress::Done(item, Err(e)) => {
            if let Some(b) = bar.take() {
                b.abandon();
            }
            if json {
                println!("{}", event(&api::FetchEvent::Error { name: item.name.clone(), error: e.to_string() }));
            } else {
                // The error may quote the name, or a name inside a folder.
                eprintln!("pigeon: {}", super::clean(&format!("{}: {e}", item.name)));
            }
        }
    });
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
