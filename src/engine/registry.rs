//! A registry of your own (step 11): the images of a store, served over
//! the read side of the OCI distribution API.
//!
//! The source document: a registry stores and distributes images, and you
//! can run your own. Step 10 was the client of that API; this is the other
//! end, small enough to read whole. `GET /v2/` says "I speak the API";
//! `GET /v2/NAME/manifests/TAG` answers the manifest the store's image
//! `NAME:TAG` points at (or, by digest, any manifest it holds); `GET
//! /v2/NAME/blobs/DIGEST` answers a config or a layer. Every answer carries
//! its `Docker-Content-Digest`, and `HEAD` asks the same without the body.
//! Clients verify what they get, so a registry never has to be trusted for
//! integrity: only for availability.
//!
//! Pushing to it (upload sessions) is not built yet: fill its store with
//! `step9 load` or `step10 pull`. Plain HTTP: serve on loopback, or tell
//! clients it is insecure. Its HTTP is the least a `GET` needs, one request
//! per connection, written out below; the daemon's is hyper's
//! ([`super::server`]), because it must also stream and upgrade.
//!
//! What a client sends is untrusted, and it is checked before it is used:
//! a repository name and a reference must match the distribution spec's
//! grammar (`NAME_INVALID`, `TAG_INVALID`, `DIGEST_INVALID`, with `400`)
//! before any lookup is built from them; a client gets [`Limits`]'s time
//! to send its request, and the connections served at once are capped
//! (`503` past the cap), as the daemon's are.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

mod names;

use super::EngineError;
use super::server::Limits;
use crate::image::store::Store;
use names::Route;

/// How long an answer may take to be taken: a client that stops reading
/// a blob gives its place back after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

// ANCHOR: registry_serve
/// Serves the store at `root` on `addr` (e.g. `127.0.0.1:5000`), one thread
/// per connection, at most `limits.max_connections` at once, forever.
pub fn serve(root: &Path, addr: &str, limits: Limits) -> Result<(), EngineError> {
    super::state::set_umask();
    let store = Store::open(root)?;
    let listener = TcpListener::bind(addr).map_err(|e| {
        EngineError::Conflict(format!(
            "cannot listen on {addr}: {e}: is another registry there? choose another --listen"
        ))
    })?;
    eprintln!(
        "caixa registry: serving {} on http://{addr}",
        root.display()
    );
    let served = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            // Out of file descriptors, most likely: wait for some to
            // close rather than spin.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // A client that stops reading its answer is let go after this.
        if stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
            continue;
        }
        if served.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
            served.fetch_sub(1, Ordering::SeqCst);
            // Told at once, rather than queued behind clients that may
            // take minutes; the answer fits in the socket's buffer.
            let _ = error(
                &mut &stream,
                503,
                "TOOMANYREQUESTS",
                &format!(
                    "the registry is serving {} connections, its limit: try again when one has ended",
                    limits.max_connections
                ),
            );
            continue;
        }
        let place = Place(served.clone());
        let store = store.clone();
        let spawned = std::thread::Builder::new()
            .name("registry-conn".into())
            .spawn(move || {
                let _ = answer(&store, &stream, limits.header_timeout);
                // The place first: a client that has seen its answer end
                // may count on it being free.
                drop(place);
                drop(stream);
            });
        if spawned.is_err() {
            // No thread to be had (the place and the connection went
            // with the closure): drop this client, keep serving.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A connection's place under the cap, given back when it ends (however).
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
// ANCHOR_END: registry_serve

// ANCHOR: registry_answer
/// Answers one request, if it comes whole within `patience`.
fn answer(store: &Store, stream: &TcpStream, patience: Duration) -> std::io::Result<()> {
    let mut out = stream;
    let until = Instant::now() + patience;
    let (method, path) = read_request(&mut BufReader::new(Deadline(stream, until)))?;
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return error(
            &mut out,
            405,
            "UNSUPPORTED",
            "this registry only serves pulls",
        );
    }
    if path == "/v2/" || path == "/v2" {
        return send(&mut out, "application/json", None, b"{}", head_only);
    }
    let route = match Route::parse(&path) {
        Ok(route) => route,
        Err(refused) => return error(&mut out, refused.status, refused.code, &refused.message),
    };
    match route {
        Route::Manifest { name, reference } => {
            // By digest: any manifest of the store; by tag: the image NAME:TAG.
            let digest = if reference.contains(':') {
                Some(reference.to_string())
            } else {
                store.resolve(&format!("{name}:{reference}")).ok()
            };
            let manifest = digest
                .as_deref()
                .and_then(|d| store.read_blob(d).ok().map(|body| (d.to_string(), body)))
                .filter(|(_, body)| is_manifest(body));
            let Some((digest, body)) = manifest else {
                return error(
                    &mut out,
                    404,
                    "MANIFEST_UNKNOWN",
                    &format!("no manifest {name}:{reference}"),
                );
            };
            let media = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(String::from))
                .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
            send(&mut out, &media, Some(&digest), &body, head_only)
        }
        Route::Blob { name, digest } => {
            let Ok(path) = store.blob_path(digest) else {
                return error(&mut out, 400, "DIGEST_INVALID", "not a sha256 digest");
            };
            let Ok(mut file) = std::fs::File::open(&path) else {
                return error(
                    &mut out,
                    404,
                    "BLOB_UNKNOWN",
                    &format!("no blob {digest} in {name}"),
                );
            };
            let len = file.metadata()?.len();
            head(&mut out, 200, "application/octet-stream", Some(digest), len)?;
            if !head_only {
                std::io::copy(&mut file, &mut out)?;
            }
            out.flush()
        }
    }
}
// ANCHOR_END: registry_answer

/// A connection read against a deadline for the whole request, not per
/// read: a client that sends a byte a second must not hold its place for
/// ever (the "slowloris" attack).
struct Deadline<'a>(&'a TcpStream, Instant);

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.1.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request took too long to arrive",
            ));
        }
        self.0.set_read_timeout(Some(left))?;
        (&mut &*self.0).read(buf)
    }
}

/// Reads a request's head: its method and its path (as sent: no name or
/// reference of the API has a character that needs escaping, so an
/// escaped one is refused by the grammar rather than decoded; the query
/// dropped). The headers are read past and ignored: a pull's `GET` and
/// `HEAD` carry no body.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<(String, String)> {
    let mut line = String::new();
    reader.by_ref().take(8192).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an HTTP request line",
        ));
    };
    let mut header = String::new();
    for _ in 0..100 {
        header.clear();
        if reader.by_ref().take(8192).read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    Ok((method.to_string(), path.to_string()))
}

/// Whether `body` is a manifest or an index (not a config or a layer that
/// happens to be asked for by digest on the manifests path).
fn is_manifest(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| {
        v["schemaVersion"] == 2 && (v["layers"].is_array() || v["manifests"].is_array())
    })
}

fn head(
    out: &mut impl Write,
    status: u16,
    content_type: &str,
    digest: Option<&str>,
    len: u64,
) -> std::io::Result<()> {
    let digest = digest
        .map(|d| format!("Docker-Content-Digest: {d}\r\n"))
        .unwrap_or_default();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         {digest}Docker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n\r\n"
    )
}

fn send(
    out: &mut impl Write,
    content_type: &str,
    digest: Option<&str>,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    head(out, 200, content_type, digest, body.len() as u64)?;
    if !head_only {
        out.write_all(body)?;
    }
    out.flush()
}

/// The distribution API's error body: `{"errors": [{"code", "message"}]}`.
fn error(out: &mut impl Write, status: u16, code: &str, message: &str) -> std::io::Result<()> {
    let body = json!({ "errors": [{ "code": code, "message": message }] }).to_string();
    head(out, status, "application/json", None, body.len() as u64)?;
    out.write_all(body.as_bytes())?;
    out.flush()
}
