//! The build cache: which image an instruction made on which parent.
//!
//! Docker's classic builder looks for an image whose parent is the current
//! image and whose instruction is this one (for COPY and ADD, with the same
//! digest of the files read). caixa keeps the same key as a file name:
//! `engine/build-cache/<sha256 of (parent manifest, instruction, extra)>`
//! holds the manifest digest of the image that answer made. The key never
//! names a time or a container, so the same Dockerfile on the same context
//! finds every step again; a changed file changes its COPY's key, and so
//! the parent of every step after it.

use sha2::{Digest as _, Sha256};

use super::BuildError;
use crate::image::store::Store;

// ANCHOR: cache_key
/// The key of an instruction: its parent image, its text after
/// substitution, and what else decides its result (`extra`: the digest of
/// COPY's files, RUN's command and environment).
pub fn key(parent: &str, instruction: &str, extra: &str) -> String {
    let mut hasher = Sha256::new();
    for part in ["caixa-build-cache/1", parent, instruction, extra] {
        hasher.update(part.as_bytes());
        hasher.update(b"\n");
    }
    format!("{:x}", hasher.finalize())
}
// ANCHOR_END: cache_key

fn path(store: &Store, key: &str) -> std::path::PathBuf {
    store.root.join("engine/build-cache").join(key)
}

/// The manifest the key made before, if its blob is still there.
pub fn lookup(store: &Store, key: &str) -> Option<String> {
    let manifest = std::fs::read_to_string(path(store, key)).ok()?;
    let manifest = manifest.trim().to_string();
    store
        .blob_path(&manifest)
        .ok()?
        .exists()
        .then_some(manifest)
}

/// Remembers that `key` made `manifest`.
pub fn store(store: &Store, key: &str, manifest: &str) -> Result<(), BuildError> {
    let file = path(store, key);
    let dir = store.root.join("engine/build-cache");
    std::fs::create_dir_all(&dir).map_err(BuildError::io(&dir))?;
    let tmp = file.with_extension(format!("tmp-{}", crate::ns::uts::short_random_id()));
    std::fs::write(&tmp, manifest).map_err(BuildError::io(&tmp))?;
    std::fs::rename(&tmp, &file).map_err(BuildError::io(&file))
}
