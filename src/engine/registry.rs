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
//! ([`super::server`]), because it must also stream, upgrade and defend
//! itself against slow or greedy clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use serde_json::json;

use super::EngineError;
use super::server::percent_decode;
use crate::image::store::Store;

// ANCHOR: registry_serve
/// Serves the store at `root` on `addr` (e.g. `127.0.0.1:5000`), one thread
/// per connection, forever.
pub fn serve(root: &Path, addr: &str) -> Result<(), EngineError> {
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
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let store = store.clone();
        std::thread::spawn(move || {
            let _ = answer(&store, stream);
        });
    }
    Ok(())
}
// ANCHOR_END: registry_serve

// ANCHOR: registry_answer
/// Answers one request.
fn answer(store: &Store, stream: TcpStream) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let (method, path) = read_request(&mut BufReader::new(stream))?;
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return error(
            &mut out,
            405,
            "UNSUPPORTED",
            "this registry only serves pulls",
        );
    }
    let path = path.as_str();
    if path == "/v2/" || path == "/v2" {
        return send(&mut out, "application/json", None, b"{}", head_only);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(&mut out, 404, "NAME_UNKNOWN", "not a distribution API path");
    };
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        // By digest: any manifest of the store; by tag: the image NAME:TAG.
        let digest = if reference.starts_with("sha256:") {
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
        return send(&mut out, &media, Some(&digest), &body, head_only);
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        let Ok(path) = store.blob_path(digest) else {
            return error(&mut out, 400, "DIGEST_INVALID", "not a sha256 digest");
        };
        let Ok(mut file) = std::fs::File::open(&path) else {
            return error(&mut out, 404, "BLOB_UNKNOWN", &format!("no blob {digest}"));
        };
        let len = file.metadata()?.len();
        head(&mut out, 200, "application/octet-stream", Some(digest), len)?;
        if !head_only {
            std::io::copy(&mut file, &mut out)?;
        }
        return out.flush();
    }
    error(&mut out, 404, "NAME_UNKNOWN", "not a distribution API path")
}
// ANCHOR_END: registry_answer

/// Reads a request's head: its method and its path (percent-decoded, the
/// query dropped). The headers are read past and ignored: a pull's `GET`
/// and `HEAD` carry no body.
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
    Ok((method.to_string(), percent_decode(path)))
}

/// Whether `body` is a manifest or an index (not a config or a layer that
/// happens to be asked for by digest on the manifests path).
fn is_manifest(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| {
        v["schemaVersion"] == 2 && (v["layers"].is_array() || v["manifests"].is_array())
    })
}

fn head(
    out: &mut TcpStream,
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
        _ => "Error",
    };
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         {digest}Docker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n\r\n"
    )
}

fn send(
    out: &mut TcpStream,
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
fn error(out: &mut TcpStream, status: u16, code: &str, message: &str) -> std::io::Result<()> {
    let body = json!({ "errors": [{ "code": code, "message": message }] }).to_string();
    head(out, status, "application/json", None, body.len() as u64)?;
    out.write_all(body.as_bytes())?;
    out.flush()
}
