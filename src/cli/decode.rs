//! `pigeon decode`: show what IPMsg, FeiQ and iptux packets say, from hex
//! (`--hex`), files that each hold one raw datagram, or the UDP port 2425
//! traffic of a pcap/pcapng capture (`--pcap`). Human-readable by default,
//! one JSON object per packet with `--json`. Exits 1 if any packet could
//! not be decoded (after printing all of them), 2 if an input could not be read.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use pigeon_protocol::charset::{self, Charset};
use pigeon_protocol::crypto;
use pigeon_protocol::feiq::{FragmentAck, ImageFragment};
use pigeon_protocol::reply::{self, PacketRef};
use pigeon_protocol::request::FileRequest;
use pigeon_protocol::{ClientKind, Entry, FeiqVersion, HostList, MessageBody, Mode, Opts, Packet};
use serde::Serialize;

use crate::capture;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pigeon decode --hex 313a313a613a623a33323a6869\n  pigeon decode datagram.bin\n  pigeon decode --pcap lan.pcap --json"
)]
pub struct DecodeArgs {
    /// A datagram as hex (spaces and colons between bytes are allowed); repeatable.
    #[arg(long = "hex", value_name = "HEX")]
    pub hex: Vec<String>,
    /// Read the UDP payloads to or from the port (default 2425) in this pcap or pcapng capture.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// The UDP port whose traffic `--pcap` decodes.
    #[arg(long, default_value_t = 2425)]
    pub port: u16,
    /// Charset for peers that do not say which one they use (gbk, utf-8, cp932).
    #[arg(long, default_value = "gbk", value_parser = parse_charset)]
    pub charset: Charset,
    /// Print one JSON object per packet (JSON Lines).
    #[arg(long)]
    pub json: bool,
    /// Files that each hold one raw datagram (`-` reads standard input).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

fn parse_charset(s: &str) -> std::result::Result<Charset, String> {
    Charset::from_label(s).ok_or_else(|| format!("unknown charset {s:?} (use gbk, utf-8 or cp932)"))
}

/// Where a datagram came from.
#[derive(Debug, Serialize)]
pub struct Source {
    /// `hex #1`, a file name, or `pcap frame 12`.
    pub input: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    /// Capture time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// Everything `decode` says about one packet.
#[derive(Debug, Default, Serialize)]
pub struct Decoded {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub version: String,
    pub packet_no: String,
    pub user: String,
    pub host: String,
    pub command: u32,
    /// Mode name, or the number when no client names it.
    pub mode: serde_json::Value,
    pub options: Vec<String>,
    pub charset: &'static str,
    pub client: &'static str,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<AttachmentView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestView>,
    /// The packet an acknowledgement or release refers to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refers_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<HostView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feiq: Option<FeiqView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iptux: Option<IptuxView>,
    /// Length of the datagram in bytes.
    pub length: usize,
}

#[derive(Debug, Serialize)]
pub struct AttachmentView {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub mtime: u64,
    pub kind: &'static str,
    pub attr: String,
}

#[derive(Debug, Serialize)]
pub struct RequestView {
    pub packet_no: u64,
    pub file_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub kind: &'static str,
}

#[derive(Debug, Serialize)]
pub struct HostView {
    pub user: String,
    pub host: String,
    pub addr: String,
    pub nick: String,
    pub group: String,
    pub status: u32,
}

#[derive(Debug, Default, Serialize)]
pub struct FeiqView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub font: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageView>,
    /// The group ("群") number of a decrypted group message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ImageView {
    pub id: String,
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct IptuxView {
    pub icon: String,
    pub charset: String,
}

/// Decodes one datagram into its view; never fails (errors go in `error`).
pub fn decode(bytes: &[u8], legacy: Charset) -> Decoded {
    let p = match Packet::decode(bytes) {
        Ok(p) => p,
        Err(e) => return Decoded { error: Some(e.to_string()), length: bytes.len(), ..Default::default() },
    };
    let client = ClientKind::from_version(p.version);
    let mode = p.mode();
    let mut d = Decoded {
        version: String::from_utf8_lossy(p.version).into_owned(),
        packet_no: p.packet_no_str().into_owned(),
        command: p.command.0,
        mode: match mode.name() {
            Some(n) => n.into(),
            None => mode.0.into(),
        },
        options: p.command.option_names(),
        client: client.name(),
        length: bytes.len(),
        ..Default::default()
    };
    let mut cs = charset::detect(p.opts(), client, None, legacy, p.body());
    let mut font = None;
    let mut image = None;
    let mut group = None;
    let mut errors = Vec::new();

    match mode {
        m if m.is_presence() || m == Mode::BR_ISGETLIST2 || m == Mode::BR_ISGETLIST => {
            let (e, entry_cs) = Entry::decode(&p, legacy, None);
            cs = entry_cs;
            d.text = e.nick.clone();
            d.nick = Some(e.display_nick().to_string());
            d.group = Some(e.display_group().to_string());
            if let Some(t) = &e.trailer {
                // The trailer's names are the identity IPMsg uses from now on.
                d.user = t.user.clone().unwrap_or_default();
                d.host = t.host.clone().unwrap_or_default();
            }
            if let Some(x) = e.iptux {
                d.iptux = Some(IptuxView { icon: x.icon, charset: x.charset });
            }
        }
        Mode::SENDMSG => match MessageBody::decode(&p, legacy, None) {
            Ok((m, msg_cs)) => {
                cs = msg_cs;
                d.text = m.text;
                font = m.font;
                if p.opts().has(Opts::FILEATTACHOPT) {
                    d.attachments = Some(m.attachments.iter().map(attachment_view).collect());
                }
            }
            Err(e) => {
                d.text = cs.decode(p.body()).into_owned();
                errors.push(e.to_string());
            }
        },
        Mode::GETFILEDATA | Mode::GETDIRFILES => match FileRequest::decode(p.body()) {
            Ok(r) => {
                d.request = Some(RequestView {
                    packet_no: r.packet_no,
                    file_id: r.file_id,
                    offset: r.offset,
                    kind: if mode == Mode::GETFILEDATA { "file" } else { "dir" },
                })
            }
            Err(e) => errors.push(e.to_string()),
        },
        Mode::RECVMSG | Mode::READMSG | Mode::ANSREADMSG | Mode::DELMSG | Mode::RELEASEFILES => {
            match PacketRef::decode(p.body()) {
                Ok(r) => d.refers_to = Some(r.raw),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Mode::ANSLIST => match HostList::decode(p.body(), cs) {
            Ok(l) => {
                d.hosts = Some(
                    l.hosts
                        .into_iter()
                        .map(|h| HostView {
                            addr: format!("{}:{}", h.addr, h.port),
                            user: h.user,
                            host: h.host,
                            nick: h.nick,
                            group: h.group,
                            status: h.status,
                        })
                        .collect(),
                )
            }
            Err(e) => errors.push(e.to_string()),
        },
        Mode::GETPUBKEY => {
            if let Err(e) = reply::decode_getpubkey(p.body()) {
                errors.push(e.to_string());
            }
        }
        Mode::FEIQ_IMAGE => match ImageFragment::decode(p.payload) {
            Ok(f) => {
                image = Some(ImageView {
                    id: f.id,
                    index: f.index,
                    count: Some(f.count),
                    total: Some(f.total),
                    bytes: Some(f.data.len()),
                })
            }
            Err(e) => errors.push(e.to_string()),
        },
        Mode::FEIQ_GROUPMSG => {
            // Blowfish with the sender's MAC as key (protocol.md §8.6).
            let decrypted = FeiqVersion::parse(p.version)
                .and_then(|v| crypto::feiq_group_decrypt(&v.mac, p.payload))
                .and_then(|plain| crypto::GroupMessage::decode(&plain));
            match decrypted {
                Ok(g) => {
                    cs = Charset::Gbk;
                    let text = cs.decode(&g.text_bytes).into_owned();
                    let (t, f) = pigeon_protocol::feiq::split_font(&text);
                    d.text = t.to_string();
                    font = f.map(String::from);
                    group = Some(g.group);
                }
                Err(e) => errors.push(format!("FeiQ group message: {e}")),
            }
        }
        Mode::FEIQ_IMAGE_ACK => match FragmentAck::decode(p.body()) {
            Ok(a) => image = Some(ImageView { id: a.id, index: a.index, count: None, total: None, bytes: None }),
            Err(e) => errors.push(e.to_string()),
        },
        _ => {}
    }
    if d.text.is_empty() && mode != Mode::FEIQ_IMAGE && mode != Mode::FEIQ_GROUPMSG && !mode.is_presence() {
        d.text = cs.decode(p.body()).into_owned();
    }
    if d.user.is_empty() {
        d.user = cs.decode(p.user).into_owned();
    }
    if d.host.is_empty() {
        d.host = cs.decode(p.host).into_owned();
    }
    d.charset = cs.name();
    let mac = (client == ClientKind::Feiq).then(|| FeiqVersion::parse(p.version).ok().map(|v| v.mac)).flatten();
    if mac.is_some() || font.is_some() || image.is_some() || group.is_some() {
        d.feiq = Some(FeiqView { mac, font, image, group });
    }
    if !errors.is_empty() {
        d.error = Some(errors.join("; "));
    }
    d
}

fn attachment_view(a: &pigeon_protocol::Attachment) -> AttachmentView {
    AttachmentView {
        id: a.id,
        name: a.name.clone(),
        size: a.size,
        mtime: a.mtime,
        kind: if a.attr.is_dir() { "dir" } else { "file" },
        attr: format!("{:x}", a.attr.0),
    }
}

/// Runs `pigeon decode`.
pub fn run(args: &DecodeArgs) -> Result<ExitCode> {
    let mut inputs: Vec<(Source, Vec<u8>)> = Vec::new();
    for (i, h) in args.hex.iter().enumerate() {
        let clean: String = h.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
        let bytes = hex::decode(&clean).with_context(|| format!("--hex #{}: not hex", i + 1))?;
        inputs.push((Source { input: format!("hex #{}", i + 1), src: None, dst: None, time: None }, bytes));
    }
    for f in &args.files {
        let bytes = if f.as_os_str() == "-" {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b).context("cannot read standard input")?;
            b
        } else {
            std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?
        };
        inputs.push((Source { input: f.display().to_string(), src: None, dst: None, time: None }, bytes));
    }
    let mut notes = Vec::new();
    if let Some(path) = &args.pcap {
        let cap = capture::read_udp(path, args.port)?;
        for d in cap.datagrams {
            let time = chrono::DateTime::<chrono::Utc>::from_timestamp(d.time.as_secs() as i64, d.time.subsec_nanos())
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
            let source = Source {
                input: format!("{} frame {}", path.display(), d.frame),
                src: Some(d.src.to_string()),
                dst: Some(d.dst.to_string()),
                time,
            };
            inputs.push((source, d.payload));
        }
        if cap.fragments > 0 {
            notes.push(format!("{} IP fragments made {} datagrams", cap.fragments, cap.reassembled));
        }
        if cap.unknown_link > 0 {
            notes.push(format!("{} frames of an unknown link type were skipped", cap.unknown_link));
        }
    }
    if args.hex.is_empty() && args.files.is_empty() && args.pcap.is_none() {
        bail!("nothing to decode: give --hex HEX, FILE… or --pcap FILE");
    }

    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    let total = inputs.len();
    for (source, bytes) in inputs {
        let mut d = decode(&bytes, args.charset);
        if d.error.is_some() {
            failed += 1;
        }
        d.source = Some(source);
        if args.json && d.version.is_empty() {
            // Nothing but the error is known of a packet whose header is broken.
            let e = serde_json::json!({ "source": d.source, "error": d.error, "length": d.length });
            serde_json::to_writer(&mut out, &e)?;
            writeln!(out)?;
        } else if args.json {
            serde_json::to_writer(&mut out, &d)?;
            writeln!(out)?;
        } else {
            print_human(&mut out, &d, &bytes)?;
        }
    }
    out.flush()?;
    for n in notes {
        eprintln!("pigeon decode: note: {n}");
    }
    if failed > 0 {
        eprintln!("pigeon decode: {failed} of {} packets could not be fully decoded", total);
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The text output: what came from the packet goes through [`super::clean`]
/// (an escape sequence or a right-to-left override in a nick must not reach
/// the terminal); quoted fields are `{:?}`, which escapes them already.
fn print_human(out: &mut impl Write, d: &Decoded, bytes: &[u8]) -> std::io::Result<()> {
    use super::clean;
    let src = d.source.as_ref().expect("source set before printing");
    write!(out, "── {}", clean(&src.input))?;
    if let (Some(s), Some(t)) = (&src.src, &src.dst) {
        write!(out, "  {s} → {t}")?;
    }
    if let Some(t) = &src.time {
        write!(out, "  {t}")?;
    }
    writeln!(out, "  ({} bytes)", d.length)?;
    if d.version.is_empty() {
        writeln!(out, "  error: {}", clean(d.error.as_deref().unwrap_or("undecodable")))?;
        writeln!(out, "  raw: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).escape_debug())?;
        return Ok(());
    }
    let mode = match &d.mode {
        serde_json::Value::String(s) => s.clone(),
        other => format!("mode {other}"),
    };
    let opts = if d.options.is_empty() { String::new() } else { format!("|{}", d.options.join("|")) };
    writeln!(out, "  {mode}{opts}  ({})", d.command)?;
    writeln!(
        out,
        "  from {}@{}  packet {}  client {} ({})  charset {}",
        clean(&d.user),
        clean(&d.host),
        clean(&d.packet_no),
        d.client,
        clean(&d.version),
        d.charset
    )?;
    if let Some(n) = &d.nick {
        writeln!(out, "  nick {:?}  group {:?}", n, d.group.as_deref().unwrap_or(""))?;
    } else if !d.text.is_empty() {
        for (i, line) in d.text.lines().enumerate() {
            writeln!(out, "  {} {}", if i == 0 { "text:" } else { "     " }, clean(line))?;
        }
    }
    if let Some(list) = &d.attachments {
        for a in list {
            writeln!(out, "  {} #{} {:?} {} bytes, mtime {}", a.kind, a.id, a.name, a.size, a.mtime)?;
        }
    }
    if let Some(r) = &d.request {
        let off = r.offset.map(|o| format!(" from offset {o}")).unwrap_or_default();
        writeln!(out, "  asks for {} {} of packet {}{off}", r.kind, r.file_id, r.packet_no)?;
    }
    if let Some(r) = &d.refers_to {
        writeln!(out, "  refers to packet {}", clean(r))?;
    }
    if let Some(hosts) = &d.hosts {
        for h in hosts {
            writeln!(
                out,
                "  host {}@{} at {}  nick {:?} group {:?}",
                clean(&h.user),
                clean(&h.host),
                clean(&h.addr),
                h.nick,
                h.group
            )?;
        }
    }
    if let Some(f) = &d.feiq {
        if let Some(m) = &f.mac {
            writeln!(out, "  FeiQ MAC {}", clean(m))?;
        }
        if let Some(font) = &f.font {
            writeln!(out, "  FeiQ font {}", clean(font))?;
        }
        if let Some(g) = &f.group {
            writeln!(out, "  FeiQ group {}", clean(g))?;
        }
        if let Some(i) = &f.image {
            writeln!(out, "  FeiQ image {} fragment {}", clean(&i.id), i.index)?;
        }
    }
    if let Some(x) = &d.iptux {
        writeln!(out, "  iptux icon {:?}, reads {}", x.icon, clean(&x.charset))?;
    }
    if let Some(e) = &d.error {
        writeln!(out, "  error: {}", clean(e))?;
    }
    Ok(())
}
