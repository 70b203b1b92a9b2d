//! Push: the blobs the registry lacks, then the manifest.
//!
//! For each blob (the config, then the layers): `HEAD` asks whether the
//! registry has it already. If not, and the image came from another
//! repository of the same registry, a cross-repository mount (`POST
//! …/blobs/uploads/?mount=DIGEST&from=REPO`) links it there without sending
//! a byte (`201 Created`). Otherwise the answer opens an upload session
//! (`202 Accepted` and a `Location`): a small blob goes in one `PUT`, a big
//! one in `PATCH`es of `chunk_size` bytes with their `Content-Range`, closed
//! by a `PUT` naming the digest, which the registry checks. The manifest
//! goes last, when everything it names is there.

use std::io::Read;

use super::RegistryError;
use super::client::{Client, Options};
use super::progress::Progress;
use super::reference::Reference;
use crate::image::store::Store;

// ANCHOR: push
/// Pushes the local image `name` to `reference`; returns the manifest digest.
pub fn push(
    store: &Store,
    name: &str,
    reference: &Reference,
    options: &Options,
    progress: &Progress,
) -> Result<String, RegistryError> {
    let manifest_digest = store.resolve(name)?;
    let body = store.read_blob(&manifest_digest)?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            what: "local manifest".into(),
            why: e.to_string(),
        })?;
    let mut client = Client::new(reference, options);
    // Where the blobs may be mounted from: the repository the image was
    // pulled from, when it is on the same registry.
    let source = Reference::parse(name)
        .ok()
        .filter(|s| s.api_host() == reference.api_host() && s.repository != reference.repository);
    // A token must allow reading the source too, or the registry refuses
    // the mount (and caixa uploads instead).
    if let Some(from) = &source {
        client.add_scope(format!("repository:{}:pull", from.repository));
    }
    let mut blobs = vec![json["config"]["digest"].as_str().unwrap_or("").to_string()];
    blobs.extend(
        json["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(String::from)),
    );
    for digest in &blobs {
        match client.send("HEAD", &format!("/blobs/{digest}"), &[], None, "pull,push") {
            Ok(_) => {
                progress.line(&format!("{digest}: already there"));
                continue;
            }
            Err(RegistryError::Status { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let start = match &source {
            Some(from) => format!("/blobs/uploads/?mount={digest}&from={}", from.repository),
            None => "/blobs/uploads/".to_string(),
        };
        let answer = client.send(
            "POST",
            &start,
            &[("Content-Length", "0")],
            Some(b""),
            "pull,push",
        )?;
        match (answer.status(), &source) {
            (201, Some(from)) => {
                progress.line(&format!("{digest}: mounted from {}", from.repository));
                continue;
            }
            (202, _) => {}
            (status, _) => return Err(unexpected("POST (start an upload)", status, 202)),
        }
        let location = location(&client, &answer)?;
        upload(
            &mut client,
            store,
            digest,
            location,
            options.chunk_size,
            progress,
        )?;
    }
    let media = json["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    client.send(
        "PUT",
        &format!("/manifests/{}", reference.tag_or_digest),
        &[("Content-Type", &media)],
        Some(&body),
        "pull,push",
    )?;
    Ok(manifest_digest)
}
// ANCHOR_END: push

// ANCHOR: upload
/// Sends blob `digest` into the upload session at `location`: in one `PUT`
/// up to `chunk_size` bytes, else in `PATCH`es and a closing `PUT`.
fn upload(
    client: &mut Client,
    store: &Store,
    digest: &str,
    mut location: String,
    chunk_size: u64,
    progress: &Progress,
) -> Result<(), RegistryError> {
    let path = store.blob_path(digest)?;
    let io = |e: std::io::Error| crate::image::ImageError::Io {
        path: path.clone(),
        source: e,
    };
    let size = std::fs::metadata(&path).map_err(io)?.len();
    let bar = progress.blob(&digest[..19.min(digest.len())], size);
    let mut file = std::fs::File::open(&path).map_err(io)?;
    let (mut offset, mut chunks) = (0u64, 0u32);
    let mut chunk = Vec::new();
    let last = loop {
        chunk.clear();
        (&mut file)
            .take(chunk_size.max(1))
            .read_to_end(&mut chunk)
            .map_err(io)?;
        let whole = offset == 0 && chunk.len() as u64 == size;
        if whole || chunk.is_empty() {
            break chunk.len();
        }
        let range = format!("{offset}-{}", offset + chunk.len() as u64 - 1);
        let answer = client.send(
            "PATCH",
            &location,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
            ],
            Some(&chunk),
            "pull,push",
        )?;
        if answer.status() != 202 {
            return Err(unexpected("PATCH (a chunk)", answer.status(), 202));
        }
        location = self::location(client, &answer)?;
        offset += chunk.len() as u64;
        chunks += 1;
        bar.advance(chunk.len() as u64);
    };
    // The closing PUT names the digest; it carries the whole blob when it
    // fits in one chunk, nothing otherwise.
    let sep = if location.contains('?') { '&' } else { '?' };
    let answer = client.send(
        "PUT",
        &format!("{location}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        Some(&chunk[..last]),
        "pull,push",
    )?;
    if answer.status() != 201 {
        return Err(unexpected("PUT (close an upload)", answer.status(), 201));
    }
    // The registry hashed what it got: it must be what we sent.
    if let Some(stored) = answer.header("Docker-Content-Digest") {
        if stored != digest {
            return Err(crate::image::ImageError::DigestMismatch {
                what: format!("blob {digest} as the registry stored it"),
                expected: digest.to_string(),
                actual: stored.to_string(),
            }
            .into());
        }
    }
    bar.advance(last as u64);
    bar.done(&if chunks == 0 {
        format!("{digest}: pushed {size} bytes")
    } else {
        format!("{digest}: pushed {size} bytes in {chunks} chunks")
    });
    Ok(())
}
// ANCHOR_END: upload

/// A success status other than the protocol's (a redirect ureq did not
/// follow, say).
fn unexpected(what: &str, status: u16, wanted: u16) -> RegistryError {
    RegistryError::Protocol {
        what: format!("push: {what}"),
        why: format!("answered {status}, where the distribution spec says {wanted}"),
    }
}

/// The absolute URL of an answer's `Location` (registries often send a path).
fn location(client: &Client, answer: &ureq::Response) -> Result<String, RegistryError> {
    let location = answer
        .header("Location")
        .ok_or_else(|| RegistryError::Protocol {
            what: "upload".into(),
            why: "no Location header".into(),
        })?;
    Ok(if location.starts_with('/') {
        format!("{}{location}", client.origin())
    } else {
        location.to_string()
    })
}
