//! Pull: tag → manifest (choosing this machine's platform from an index) →
//! config and layers, fetched concurrently, each verified by the store.

use std::io::Read;

use super::RegistryError;
use super::client::{Client, MANIFEST_TYPES, Options};
use super::progress::Progress;
use super::reference::Reference;
use crate::image::ImageError;
use crate::image::digest::Hashing;
use crate::image::store::Store;

/// `os/arch` of this machine, as registries name platforms.
pub fn this_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}

/// Fetches a manifest and checks it hashes to `expected` when known.
fn manifest(
    client: &mut Client,
    reference: &str,
    expected: Option<&str>,
) -> Result<(Vec<u8>, String, String), RegistryError> {
    let accept = MANIFEST_TYPES.join(", ");
    let response = client.send(
        "GET",
        &format!("/manifests/{reference}"),
        &[("Accept", &accept)],
        None,
        "pull",
    )?;
    let media = response
        .header("Content-Type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let body = client.read_bounded(response, &format!("manifest {reference}"))?;
    let digest = Hashing::new(&body[..])
        .finish()
        .map_err(|e| RegistryError::Protocol {
            what: "manifest".into(),
            why: e.to_string(),
        })?;
    if let Some(expected) = expected {
        if digest != expected {
            return Err(crate::image::ImageError::DigestMismatch {
                what: format!("manifest {reference}"),
                expected: expected.into(),
                actual: digest,
            }
            .into());
        }
    }
    Ok((body, media, digest))
}

// ANCHOR: pull
/// Pulls `reference` into `store`; returns the local name. `progress`
/// shows each blob's transfer.
pub fn pull(
    store: &Store,
    reference: &Reference,
    platform: &str,
    options: &Options,
    progress: &Progress,
) -> Result<String, RegistryError> {
    let mut client = Client::new(reference, options);
    let by_digest = reference
        .tag_or_digest
        .starts_with("sha256:")
        .then_some(reference.tag_or_digest.as_str());
    let (mut body, media, mut digest) = manifest(&mut client, &reference.tag_or_digest, by_digest)?;
    let bad = |why: String| RegistryError::Protocol {
        what: format!("manifest of {reference}"),
        why,
    };
    let mut json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    // An index (manifest list): take the manifest of the wanted platform.
    if json["manifests"].is_array() || media.contains("index") || media.contains("list") {
        let (os, arch) = platform.split_once('/').unwrap_or(("linux", platform));
        let chosen = json["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["platform"]["os"] == os && m["platform"]["architecture"] == arch)
            .and_then(|m| m["digest"].as_str())
            .ok_or_else(|| bad(format!("the index has no manifest for {platform}")))?
            .to_string();
        progress.line(&format!("index: {platform} is {chosen}"));
        (body, _, digest) = manifest(&mut client, &chosen, Some(&chosen))?;
        json = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    }
    // Config and layers: (digest, size, what).
    let mut blobs = vec![(
        json["config"]["digest"].as_str().unwrap_or("").to_string(),
        json["config"]["size"].as_u64().unwrap_or(0),
        "config".to_string(),
    )];
    for (i, layer) in json["layers"].as_array().into_iter().flatten().enumerate() {
        blobs.push((
            layer["digest"].as_str().unwrap_or("").to_string(),
            layer["size"].as_u64().unwrap_or(0),
            format!("layer {}", i + 1),
        ));
    }
    // The same blob twice (two identical layers) is fetched once.
    let mut seen = std::collections::BTreeSet::new();
    blobs.retain(|(d, ..)| seen.insert(d.clone()));
    if blobs
        .iter()
        .any(|(d, ..)| crate::image::digest::hex_of(d).is_none())
    {
        return Err(bad("a config or layer without a sha256 digest".into()));
    }
    let results: Vec<Result<(), RegistryError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = blobs
            .iter()
            .map(|(blob, size, what)| {
                let mut client = client.clone();
                scope.spawn(move || fetch_blob(&mut client, store, blob, *size, what, progress))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|panic| {
                    Err(bad(format!(
                        "a download thread failed: {}",
                        crate::exit::panic_line(&*panic)
                    )))
                })
            })
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    // The manifest last: an image is there only when all of it is.
    store.put_blob(&digest, Some(body.len() as u64), &body[..])?;
    let name = reference.store_name();
    store.tag(&name, &digest)?;
    Ok(name)
}
// ANCHOR_END: pull

// ANCHOR: fetch_blob
/// Downloads one blob into the store unless it is there already.
fn fetch_blob(
    client: &mut Client,
    store: &Store,
    digest: &str,
    size: u64,
    what: &str,
    progress: &Progress,
) -> Result<(), RegistryError> {
    // EXERCISE(10): skip a blob the store has; else GET /blobs/<digest> and store it, verified, bounded by its size
    if store.blob_path(digest)?.exists() {
        progress.line(&format!("{what} {digest}: already present"));
        return Ok(());
    }
    let path = format!("/blobs/{digest}");
    let response = client.send("GET", &path, &[], None, "pull")?;
    let bar = progress.blob(what, size);
    // put_blob hashes what it reads and refuses a mismatch or a wrong size;
    // `take` stops a server that sends more than it announced.
    let body = Remote(response.into_reader().take(size.saturating_add(1)));
    match store.put_blob(digest, Some(size), bar.reader(body)) {
        Ok(_) => {}
        // The network failed (a stall, a cut connection), not the store.
        Err(ImageError::Io { source, .. })
            if source.get_ref().is_some_and(|e| e.is::<RemoteError>()) =>
        {
            return Err(client.transport_error(&path, source));
        }
        Err(e) => return Err(e.into()),
    }
    bar.done(&format!("{what} {digest}: {size} bytes"));
    Ok(())
    // END EXERCISE
}
// ANCHOR_END: fetch_blob

/// A registry's answer body, whose read errors are marked as the network's.
struct Remote<R>(R);

/// A read error of a [`Remote`] body.
#[derive(Debug)]
struct RemoteError(std::io::Error);

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for RemoteError {}

impl<R: Read> Read for Remote<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| std::io::Error::new(e.kind(), RemoteError(e)))
    }
}
