//! Who may use the web UI: the token of this home (a 0600 file, shown once
//! in the URL, then an HttpOnly SameSite=Strict cookie, or a bearer
//! header for scripts), the Host header (DNS rebinding: only the listen
//! address, `localhost` when it is loopback, or an IP literal when it
//! listens on every address), the Origin of every state-changing request
//! and of the event stream (CSRF), and the headers every answer carries (a
//! Content-Security-Policy with no inline script).

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;

/// The cookie the token is kept in.
pub const COOKIE: &str = "pigeon_token";

/// Every answer's Content-Security-Policy: our own scripts, styles and
/// connections only; no inline script or style, no frames, no plugins.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The token file of a home.
pub fn token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("web-token")
}

/// This home's token: read, or made (32 random bytes, hex) in a file
/// created 0600. A token file others can read is refused, not used.
pub fn load_or_create_token(data_dir: &Path) -> Result<String> {
    let path = token_file(data_dir);
    for _ in 0..2 {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mode = std::fs::metadata(&path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    bail!(
                        "{} is readable by others (mode {:o}): `chmod 600` it, or delete it for a new token",
                        path.display(),
                        mode & 0o777
                    );
                }
                let token = text.trim();
                if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("{} does not hold a token: delete it for a new one", path.display());
                }
                return Ok(token.to_string());
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let mut raw = [0u8; 32];
                getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness for the web token: {e}"))?;
                let token = hex::encode(raw);
                std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
                match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                    Ok(mut f) => {
                        f.write_all(format!("{token}\n").as_bytes())
                            .and_then(|()| f.sync_all())
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        return Ok(token);
                    }
                    // Another process made it first: read theirs.
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
                }
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    bail!("cannot read or make {}", path.display())
}

/// Compares without stopping at the first difference.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Which Host headers name us: the listen address; `localhost` too when it
/// is a loopback address; any IP literal with our port when it listens on
/// every address. Never another name (a rebinding DNS name).
pub fn host_allowed(listen: SocketAddr, host: &str) -> bool {
    let Some((name, port)) = split_host(host) else { return false };
    if port != listen.port() {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return listen.ip().is_loopback();
    }
    match name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => ip == listen.ip() || listen.ip().is_unspecified(),
        Err(_) => false,
    }
}

/// `name:port` (`[v6]:port`); a Host without a port is port 80.
fn split_host(host: &str) -> Option<(&str, u16)> {
    if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        return Some((inside, port));
    }
    match host.rsplit_once(':') {
        Some((name, port)) => Some((name, port.parse().ok()?)),
        None => Some((host, 80)),
    }
}

/// An Origin that is one of our own addresses (`http://` + an allowed Host).
pub fn origin_allowed(listen: SocketAddr, origin: &str) -> bool {
    origin.strip_prefix("http://").is_some_and(|h| !h.contains('/') && host_allowed(listen, h))
}

/// The token a request carries: the cookie, or `Authorization: Bearer`.
fn carried(headers: &HeaderMap) -> (Option<String>, bool) {
    if let Some(b) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(t) = b.strip_prefix("Bearer ") {
            return (Some(t.trim().to_string()), true);
        }
    }
    let cookie = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        c.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_string())
        })
    });
    (cookie, false)
}

/// The token given in the query (`/?token=…`, the URL `pigeon web` prints).
pub fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| kv.strip_prefix("token=").map(str::to_string))
}

pub fn refuse(status: StatusCode, code: &str, error: &str) -> Response {
    let body = serde_json::json!({"ok": false, "code": code, "error": error});
    (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// The checks, in order: Host, token, Origin; then the headers.
pub async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    let listen = app.listen;
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !host_allowed(listen, host) {
        return with_headers(refuse(
            StatusCode::FORBIDDEN,
            "wrong_host",
            &format!("this is Pigeon's web UI at {listen}: open it by that address, not {host:?}"),
        ));
    }
    let path = req.uri().path();
    let (token, bearer) = carried(req.headers());
    let by_query = path == "/" && query_token(req.uri().query()).is_some_and(|t| same(&t, &app.token));
    if !by_query && !token.as_deref().is_some_and(|t| same(t, &app.token)) {
        let text = "open the address `pigeon web --url` prints (it carries this home's token)";
        if path == "/" {
            let page = format!(
                "<!doctype html><meta charset=utf-8><title>Pigeon</title><h1>Pigeon</h1><p>To use this page, {text}.</p>"
            );
            let mut r = (StatusCode::UNAUTHORIZED, axum::response::Html(page)).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return with_headers(r);
        }
        return with_headers(refuse(StatusCode::UNAUTHORIZED, "unauthorized", text));
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if changes || path == "/api/events" {
        match req.headers().get(header::ORIGIN).map(|v| v.to_str().unwrap_or("")) {
            Some(o) if origin_allowed(listen, o) => {}
            Some(o) => {
                return with_headers(refuse(
                    StatusCode::FORBIDDEN,
                    "wrong_origin",
                    &format!("a page of {o:?} may not use Pigeon's web UI"),
                ))
            }
            // A browser always sends Origin with these; a script with the
            // bearer token is not a browser acting for another site.
            None if changes && !bearer => {
                return with_headers(refuse(StatusCode::FORBIDDEN, "wrong_origin", "a request without an Origin"))
            }
            None => {}
        }
    }
    with_headers(next.run(req).await)
}

fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let lo: SocketAddr = "127.0.0.1:2426".parse().unwrap();
        assert!(host_allowed(lo, "127.0.0.1:2426"));
        assert!(host_allowed(lo, "localhost:2426"));
        assert!(host_allowed(lo, "LOCALHOST:2426"));
        assert!(!host_allowed(lo, "127.0.0.1:2427"));
        assert!(!host_allowed(lo, "127.0.0.1"));
        assert!(!host_allowed(lo, "evil.example:2426"));
        assert!(!host_allowed(lo, "127.0.0.1.nip.io:2426"));
        assert!(!host_allowed(lo, "127.0.0.2:2426"));
        assert!(!host_allowed(lo, ""));
        let lan: SocketAddr = "192.168.1.5:2426".parse().unwrap();
        assert!(host_allowed(lan, "192.168.1.5:2426"));
        assert!(!host_allowed(lan, "localhost:2426"));
        let any: SocketAddr = "0.0.0.0:2426".parse().unwrap();
        assert!(host_allowed(any, "10.0.0.9:2426"));
        assert!(!host_allowed(any, "attacker.example:2426"));
        let v6: SocketAddr = "[::1]:2426".parse().unwrap();
        assert!(host_allowed(v6, "[::1]:2426"));
        assert!(host_allowed(v6, "localhost:2426"));
        assert!(!host_allowed(v6, "[::1"));
    }

    #[test]
    fn origins() {
        let lo: SocketAddr = "127.0.0.1:2426".parse().unwrap();
        assert!(origin_allowed(lo, "http://127.0.0.1:2426"));
        assert!(origin_allowed(lo, "http://localhost:2426"));
        assert!(!origin_allowed(lo, "https://127.0.0.1:2426"));
        assert!(!origin_allowed(lo, "http://evil.example:2426"));
        assert!(!origin_allowed(lo, "null"));
        assert!(!origin_allowed(lo, "http://127.0.0.1:2426/x"));
    }

    #[test]
    fn tokens() {
        let dir = tempfile::tempdir().unwrap();
        let t = load_or_create_token(dir.path()).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(load_or_create_token(dir.path()).unwrap(), t, "kept");
        let mode = std::fs::metadata(token_file(dir.path())).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(token_file(dir.path()), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create_token(dir.path()).unwrap_err().to_string();
        assert!(e.contains("readable by others"), "{e}");
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert_eq!(query_token(Some("a=1&token=xyz")), Some("xyz".into()));
        assert_eq!(query_token(None), None);
    }
}
