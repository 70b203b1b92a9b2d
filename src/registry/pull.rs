//! Pull: tag → manifest (choosing this machine's platform from an index) →
//! config and layers, fetched a few at a time, each verified by the store.
//!
//! Everything the registry says is checked before it is used: documents
//! by the same validation `load` uses, sizes against `--max-pull-size` and
//! the free space, and every answer against its clocks.

use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::RegistryError;
use super::client::{Client, MANIFEST_TYPES, MAX_MANIFEST, Options};
use super::disk::{NoRoom, Room};
use super::progress::Progress;
use super::reference::Reference;
use crate::image::ImageError;
use crate::image::digest::Hashing;
use crate::image::store::Store;
use crate::image::validate::{self, Descriptor, Document, Kind};

pub use crate::image::validate::this_platform;

/// How many blobs download at once: Docker's default
/// (`max-concurrent-downloads`), and plenty to fill a line.
pub const PARALLEL_DOWNLOADS: usize = 3;

/// A manifest or index as fetched: its bytes, digest and checked content.
struct Fetched {
    body: Vec<u8>,
    digest: String,
    document: Document,
}

// ANCHOR: manifest
/// Fetches a manifest or an index by tag or digest. It must hash to the
/// descriptor that pointed here (when one did), agree with the registry's
/// `Docker-Content-Digest`, and pass the checks `load` makes too.
fn manifest(
    client: &mut Client,
    reference: &str,
    expected: Option<&Descriptor>,
) -> Result<Fetched, RegistryError> {
    let accept = MANIFEST_TYPES.join(", ");
    let bound = expected.map_or(MAX_MANIFEST, |d| d.size.min(MAX_MANIFEST));
    let answer = client.get(
        &format!("/manifests/{reference}"),
        &[("Accept", &accept)],
        bound,
    )?;
    let url = answer.url();
    let served_as = answer
        .response
        .header("Content-Type")
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let claimed = answer.claimed_digest();
    let body = client.read_bounded(answer, bound)?;
    let bad = |why: String| RegistryError::Protocol {
        what: url.clone(),
        why,
    };
    let digest = Hashing::new(&body[..])
        .finish()
        .map_err(|e| bad(e.to_string()))?;
    claimed.check(&digest)?;
    if let Some(expected) = expected {
        if digest != expected.digest {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest {url}"),
                expected: expected.digest.clone(),
                actual: digest,
            }
            .into());
        }
    }
    let mut claims: Vec<&str> = served_as.iter().map(String::as_str).collect();
    claims.extend(expected.map(|d| d.media_type.as_str()));
    let document = validate::document(&body, &claims).map_err(|e| bad(e.to_string()))?;
    Ok(Fetched {
        body,
        digest,
        document,
    })
}
// ANCHOR_END: manifest

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
    let mut fetched = manifest(&mut client, &reference.tag_or_digest, None)?;
    if reference.tag_or_digest.starts_with("sha256:") && fetched.digest != reference.tag_or_digest {
        return Err(ImageError::DigestMismatch {
            what: format!("manifest {reference}"),
            expected: reference.tag_or_digest.clone(),
            actual: fetched.digest,
        }
        .into());
    }
    // An index (manifest list): take the manifest of the wanted platform,
    // by its digest. One level only: a registry has no reason to nest.
    if let Document::Index(entries) = &fetched.document {
        let bad = |why: String| RegistryError::Protocol {
            what: format!("the index of {reference}"),
            why,
        };
        let chosen = validate::choose(entries, platform)
            .map_err(|e| bad(e.to_string()))?
            .clone();
        if Kind::of(&chosen.media_type) == Some(Kind::Index) {
            return Err(bad(format!(
                "its entry for {platform} is another index: caixa does not follow nested indexes from a registry"
            )));
        }
        progress.line(&format!("index: {platform} is {}", chosen.digest));
        fetched = manifest(&mut client, &chosen.digest, Some(&chosen))?;
    }
    let Document::Manifest { config, layers } = &fetched.document else {
        return Err(RegistryError::Protocol {
            what: format!("the index of {reference}"),
            why: format!(
                "its entry for {platform} is another index: caixa does not follow nested indexes from a registry"
            ),
        });
    };
    // Config and layers: (descriptor, what). The same blob twice (two
    // identical layers) is fetched once.
    let mut blobs = vec![(config.clone(), "config".to_string())];
    blobs.extend(
        layers
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), format!("layer {}", i + 1))),
    );
    let mut seen = std::collections::BTreeSet::new();
    blobs.retain(|(d, _)| seen.insert(d.digest.clone()));
    // Before the first byte: is what is missing within bounds and room?
    let mut needs = 0u64;
    for (blob, _) in &blobs {
        if !store.blob_path(&blob.digest)?.exists() {
            needs = needs.saturating_add(blob.size);
        }
    }
    let room = Room::claim(&store.root, needs, options.max_pull_size)?;
    download(&client, store, &blobs, &room, progress)?;
    // The manifest last: an image is there only when all of it is.
    store.put_blob(
        &fetched.digest,
        Some(fetched.body.len() as u64),
        &fetched.body[..],
    )?;
    let name = reference.store_name();
    store.tag(&name, &fetched.digest)?;
    Ok(name)
}
// ANCHOR_END: pull

// ANCHOR: download
/// Fetches `blobs` with [`PARALLEL_DOWNLOADS`] threads, each taking the
/// next blob when it is done with one. After a failure no new blob is
/// started; the first failure (in the manifest's order) is returned.
fn download(
    client: &Client,
    store: &Store,
    blobs: &[(Descriptor, String)],
    room: &Room,
    progress: &Progress,
) -> Result<(), RegistryError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<(), RegistryError>>>> =
        Mutex::new((0..blobs.len()).map(|_| None).collect());
    let worker = || {
        let mut client = client.clone();
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= blobs.len() || failed.load(Ordering::SeqCst) {
                return;
            }
            let (blob, what) = &blobs[i];
            let result = fetch_blob(&mut client, store, blob, what, room, progress);
            failed.fetch_or(result.is_err(), Ordering::SeqCst);
            if let Ok(mut results) = results.lock() {
                results[i] = Some(result);
            }
        }
    };
    let thread_error = |why: String| RegistryError::Protocol {
        what: "the blobs".into(),
        why: format!("a download thread failed: {why}"),
    };
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for _ in 0..PARALLEL_DOWNLOADS.min(blobs.len()) {
            match std::thread::Builder::new().spawn_scoped(scope, worker) {
                Ok(handle) => handles.push(handle),
                // Fewer threads are fine, as long as there is one.
                Err(e) if handles.is_empty() => return Err(thread_error(e.to_string())),
                Err(_) => break,
            }
        }
        for handle in handles {
            handle
                .join()
                .map_err(|panic| thread_error(crate::exit::panic_line(&*panic)))?;
        }
        Ok(())
    })?;
    let results = results
        .into_inner()
        .map_err(|_| thread_error("a download thread panicked".into()))?;
    results.into_iter().flatten().collect()
}
// ANCHOR_END: download

// ANCHOR: fetch_blob
/// Downloads one blob into the store unless it is there already.
fn fetch_blob(
    client: &mut Client,
    store: &Store,
    blob: &Descriptor,
    what: &str,
    room: &Room,
    progress: &Progress,
) -> Result<(), RegistryError> {
    // EXERCISE(10): skip a blob the store has; else GET /blobs/<digest> and store it, verified, bounded by its size
    let (digest, size) = (&blob.digest, blob.size);
    if store.blob_path(digest)?.exists() {
        progress.line(&format!("{what} {digest}: already present"));
        return Ok(());
    }
    let answer = client.get(&format!("/blobs/{digest}"), &[], size)?;
    let url = answer.url();
    answer.claimed_digest().check(digest)?;
    let bar = progress.blob(what, size);
    // put_blob hashes what it reads and refuses a mismatch or a wrong size;
    // `take` stops a server that sends more than it announced; `room`
    // stops when the disk fills up.
    let body = room.guard(Remote(answer.body()?.take(size.saturating_add(1))));
    match store.put_blob(digest, Some(size), bar.reader(body)) {
        Ok(_) => {}
        Err(ImageError::Io { path, source }) => {
            let inner = source.get_ref();
            // The network failed (a stall, a cut connection), not the store.
            if inner.is_some_and(|e| e.is::<RemoteError>()) {
                return Err(client.transport_error(&url, &source));
            }
            if let Some(full) = inner.and_then(|e| e.downcast_ref::<NoRoom>()) {
                return Err(RegistryError::Disk {
                    dir: store.root.display().to_string(),
                    why: full.to_string(),
                });
            }
            return Err(ImageError::Io { path, source }.into());
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

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl<R: Read> Read for Remote<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| std::io::Error::new(e.kind(), RemoteError(e)))
    }
}
