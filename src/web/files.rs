//! The web UI's bytes: uploads a browser sends (streamed to the home's
//! `uploads/` folder, never held in memory, then offered like any path),
//! fetching an offer to us ([`crate::node::fetch_offer`] on a blocking
//! thread, its progress on the event stream), and downloads of what was
//! fetched, from the download folder only.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{bad_request, error, ok, App, WebEvent};
use crate::control::api::{self, ApiError, ErrorCode};
use crate::node::{Offer, OfferProgress};
use crate::transfer::fetch::{Item, Progress};

/// Room left on the disk after an upload.
const SPARE: u64 = 64 << 20;

/// Removes upload batches older than `age` (their offers have expired).
pub fn prune_uploads(dir: &Path, age: Duration) {
    let Ok(list) = std::fs::read_dir(dir) else { return };
    for e in list.flatten() {
        let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a > age));
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A relative path from a URL, checked part by part: no `..`, `.`, empty
/// or hidden-by-backslash parts, no absolute path, not too deep or long.
pub fn safe_relative(path: &str) -> Option<PathBuf> {
    if path.is_empty() || path.len() > 4096 || path.contains('\0') || path.contains('\\') {
        return None;
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > 64 {
        return None;
    }
    let mut out = PathBuf::new();
    for p in parts {
        if p.is_empty() || p == "." || p == ".." || p.len() > 255 || p.chars().any(char::is_control) {
            return None;
        }
        out.push(p);
    }
    // Belt and braces: nothing but plain names.
    out.components().all(|c| matches!(c, Component::Normal(_))).then_some(out)
}

/// `PUT /api/upload/{batch}/{*path}`: the body, streamed into
/// `uploads/BATCH/PATH` (a `.part` file renamed when whole). The answer's
/// `path` is the batch's top-level entry PATH starts with: what to offer.
pub async fn upload(
    State(app): State<App>,
    UrlPath((batch, path)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let batch_ok = !batch.is_empty()
        && batch.len() <= 64
        && batch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let Some(rel) = safe_relative(&path).filter(|_| batch_ok) else {
        return bad_request(format!("{path:?} is not a file name Pigeon takes"));
    };
    let dir = app.uploads.join(&batch);
    let target = dir.join(&rel);
    let top = dir.join(rel.components().next().expect("a checked path has a part"));
    if let Err(e) = tokio::fs::create_dir_all(target.parent().expect("inside the batch")).await {
        return file_error(format!("cannot create a folder for {}: {e}", target.display()));
    }
    if tokio::fs::symlink_metadata(&target).await.is_ok() {
        return error(&ApiError::new(ErrorCode::File, format!("{} was uploaded already", rel.display())));
    }
    let free = crate::transfer::free_space(&dir).unwrap_or(u64::MAX);
    let room = free.saturating_sub(SPARE).min(app.max_upload);
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > room) {
        return too_big(&app, n, free);
    }
    let part = target.with_file_name(format!(
        "{}.part",
        target.file_name().expect("a checked path ends in a name").to_string_lossy()
    ));
    let mut out = match tokio::fs::File::create(&part).await {
        Ok(f) => f,
        Err(e) => return file_error(format!("cannot create {}: {e}", part.display())),
    };
    let mut stream = body.into_data_stream();
    let mut got = 0u64;
    let failed = loop {
        match stream.next().await {
            Some(Ok(chunk)) => {
                got += chunk.len() as u64;
                if got > room {
                    break Some(too_big(&app, got, free));
                }
                if let Err(e) = out.write_all(&chunk).await {
                    break Some(file_error(format!("cannot write {}: {e}", part.display())));
                }
            }
            Some(Err(e)) => break Some(bad_request(format!("the upload broke: {e}"))),
            None => break None,
        }
    };
    let done = match failed {
        Some(r) => Err(r),
        None => match out.sync_all().await {
            Ok(()) => tokio::fs::rename(&part, &target)
                .await
                .map_err(|e| file_error(format!("cannot rename {}: {e}", part.display()))),
            Err(e) => Err(file_error(format!("cannot write {}: {e}", part.display()))),
        },
    };
    drop(out);
    if let Err(r) = done {
        let _ = tokio::fs::remove_file(&part).await;
        return r;
    }
    ok(serde_json::json!({"path": top, "size": got}))
}

fn file_error(text: String) -> Response {
    error(&ApiError::new(ErrorCode::File, text))
}

fn too_big(app: &App, n: u64, free: u64) -> Response {
    let text = format!(
        "{} MiB is more than this node takes: at most {} MiB per file (web_max_upload_mb), and {} MiB are free",
        n >> 20,
        app.max_upload >> 20,
        free.saturating_sub(SPARE) >> 20
    );
    let mut r = error(&ApiError::new(ErrorCode::File, text));
    *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    r
}

#[derive(Debug, Deserialize)]
pub struct FetchRequest {
    user: String,
    host: String,
    packet_no: String,
    /// File ids; none: every file not fetched or declined yet.
    #[serde(default)]
    files: Option<Vec<u64>>,
}

/// `POST /api/fetch`: fetches files of an offer to us into the download
/// folder, in the background; `progress`, `fetched` and `fetch_failed`
/// events follow on the event stream.
pub async fn fetch(State(app): State<App>, Json(f): Json<FetchRequest>) -> Response {
    let app2 = app.clone();
    let (user, host, packet_no) = (f.user.clone(), f.host.clone(), f.packet_no.clone());
    let found = super::with_store(&app, move |s| {
        let Some(id) = s.offer_message_id(&user, &host, &packet_no)? else {
            anyhow::bail!("no offer {packet_no} from {user}@{host}");
        };
        let m = s.message(id)?.ok_or_else(|| anyhow::anyhow!("no offer {packet_no} from {user}@{host}"))?;
        let list = m.attachments_json.as_deref().map(api::AttachmentView::from_column).unwrap_or_default();
        let expiry = app2.eff.offer_expiry();
        let states = api::offered_files(s, &m, &list, expiry)?;
        let src = crate::node::offer_source(&app2.eff, s, &m)?;
        Ok((m, states, src))
    })
    .await;
    let (m, states, src) = match found {
        Ok(v) => v,
        Err(r) => return r,
    };
    let wanted: Vec<Item> = states
        .iter()
        .filter(|o| match &f.files {
            Some(ids) => ids.contains(&o.file.id),
            None => matches!(o.state, api::OfferState::New | api::OfferState::Expired),
        })
        .map(|o| Item {
            id: o.file.id,
            name: o.file.name.clone(),
            size: o.file.size,
            mtime: o.file.mtime,
            dir: o.file.is_dir(),
        })
        .collect();
    if wanted.is_empty() {
        return bad_request("nothing of that offer is left to fetch");
    }
    {
        let mut busy = app.fetching.lock().expect("not poisoned");
        let sender = format!("{}@{}", f.user, f.host);
        if wanted.iter().any(|i| busy.contains(&(sender.clone(), f.packet_no.clone(), i.id))) {
            return error(&ApiError::new(ErrorCode::BadRequest, "that file is being fetched already"));
        }
        for i in &wanted {
            busy.insert((sender.clone(), f.packet_no.clone(), i.id));
        }
    }
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || {
        let (user, host, packet_no) = (m.peer.user.clone(), m.peer.host.clone(), m.packet_no.clone());
        let db = app2.eff.home.database();
        let into = app2.downloads.clone();
        let offer = Offer { src: &src, from: (&user, &host), packet_no: &packet_no, into: &into, db: &db };
        let mut last = Instant::now();
        let send = |e: WebEvent| {
            let _ = app2.progress.send(e);
        };
        crate::node::fetch_offer(&offer, &wanted, false, &mut |p| match p {
            OfferProgress::Item(_) => last = Instant::now(),
            OfferProgress::Progress(item, Progress::Start { total, offset, .. }) => send(WebEvent::Progress {
                user: user.clone(),
                host: host.clone(),
                packet_no: packet_no.clone(),
                file: item.id,
                name: item.name.clone(),
                done: offset,
                total,
            }),
            // At most ten a second: a browser needs no more.
            OfferProgress::Progress(item, Progress::Bytes { done }) if last.elapsed() >= Duration::from_millis(100) => {
                last = Instant::now();
                send(WebEvent::Progress {
                    user: user.clone(),
                    host: host.clone(),
                    packet_no: packet_no.clone(),
                    file: item.id,
                    name: item.name.clone(),
                    done,
                    total: item.size,
                })
            }
            OfferProgress::Progress(..) => {}
            OfferProgress::Done(item, result) => {
                app2.fetching.lock().expect("not poisoned").remove(&(
                    format!("{user}@{host}"),
                    packet_no.clone(),
                    item.id,
                ));
                send(match result {
                    Ok(path) => WebEvent::Fetched {
                        user: user.clone(),
                        host: host.clone(),
                        packet_no: packet_no.clone(),
                        file: item.id,
                        name: item.name.clone(),
                        saved: path.to_string_lossy().into_owned(),
                        download: download_url(&into, path),
                    },
                    Err(e) => WebEvent::FetchFailed {
                        user: user.clone(),
                        host: host.clone(),
                        packet_no: packet_no.clone(),
                        file: item.id,
                        name: item.name.clone(),
                        error: e.to_string(),
                    },
                })
            }
        });
    });
    ok(api::Done {})
}

/// The `/download/…` link of a saved file or folder inside the download
/// folder (None for one elsewhere, or gone).
pub fn download_url(downloads: &Path, saved: &Path) -> Option<String> {
    if !saved.exists() {
        return None;
    }
    let rel = saved.strip_prefix(downloads).ok()?;
    let mut url = String::from("/download");
    for c in rel.components() {
        let Component::Normal(part) = c else { return None };
        url.push('/');
        url.push_str(&encode(&part.to_string_lossy()));
    }
    Some(url)
}

/// Percent-encodes all but the unreserved characters of a path segment.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /download/{*path}`: a file of the download folder, as an
/// attachment. Nothing outside it: no `..`, and a symbolic link that leads
/// out is refused (the real path must be inside the real folder).
pub async fn download(State(app): State<App>, UrlPath(path): UrlPath<String>) -> Response {
    let refused = || (StatusCode::NOT_FOUND, "no such file in the download folder").into_response();
    let Some(rel) = safe_relative(&path) else { return refused() };
    let (Ok(root), Ok(real)) = (std::fs::canonicalize(&app.downloads), std::fs::canonicalize(app.downloads.join(&rel)))
    else {
        return refused();
    };
    if !real.starts_with(&root) {
        return refused();
    }
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Its kind before opening it: opening a named pipe would wait for a writer.
    match std::fs::metadata(&real) {
        Ok(m) if m.is_dir() => return folder_as_tar(real, name),
        Ok(m) if m.is_file() => {}
        _ => return refused(),
    }
    let f = match tokio::fs::File::open(&real).await {
        Ok(f) => f,
        Err(_) => return refused(),
    };
    let len = match f.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        _ => return refused(),
    };
    let stream = futures_util::stream::unfold(Some(f), |state| async move {
        let mut f = state?;
        let mut buf = vec![0u8; 256 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename*=UTF-8''{}", encode(&name))),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A folder of the download folder as one `.tar`, made as it is sent (a
/// blocking thread writes the archive into a channel the answer reads):
/// symbolic links stay links, never followed.
fn folder_as_tar(dir: PathBuf, name: String) -> Response {
    struct Chunks(tokio::sync::mpsc::Sender<std::io::Result<axum::body::Bytes>>);
    impl std::io::Write for Chunks {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .blocking_send(Ok(axum::body::Bytes::copy_from_slice(b)))
                .map_err(|_| std::io::Error::other("the download was cancelled"))?;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let top = name.clone();
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(256 << 10, Chunks(tx)));
        tar.follow_symlinks(false);
        let done = tar
            .append_dir_all(&top, &dir)
            .and_then(|()| tar.into_inner()?.into_inner().map_err(|e| e.into_error()).map(drop));
        if let Err(e) = done {
            // The browser sees the download fail, not a short archive that looks whole.
            let _ = errors.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    (
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename*=UTF-8''{}.tar", encode(&name))),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(safe_relative("a.txt"), Some(PathBuf::from("a.txt")));
        assert_eq!(safe_relative("dir/sub/a b.txt"), Some(PathBuf::from("dir/sub/a b.txt")));
        assert_eq!(safe_relative("报告/图片 😀.png"), Some(PathBuf::from("报告/图片 😀.png")));
        for bad in
            ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a/", "..", ".", "a\\..\\b", "a\0b", "a\nb"]
        {
            assert_eq!(safe_relative(bad), None, "{bad:?}");
        }
        assert_eq!(safe_relative(&"a/".repeat(70)), None);
    }

    #[test]
    fn download_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/报告 1.txt"), "x").unwrap();
        assert_eq!(
            download_url(dir.path(), &dir.path().join("sub/报告 1.txt")).as_deref(),
            Some("/download/sub/%E6%8A%A5%E5%91%8A%201.txt")
        );
        assert_eq!(download_url(dir.path(), &dir.path().join("sub")).as_deref(), Some("/download/sub"), "a folder");
        assert_eq!(download_url(dir.path(), &dir.path().join("gone")), None, "gone");
        assert_eq!(download_url(dir.path(), Path::new("/etc/hostname")), None, "elsewhere");
    }
}
