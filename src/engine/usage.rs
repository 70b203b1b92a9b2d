//! Disk usage (`docker system df`): what the engine's images, containers
//! and volumes hold on the host's disk, measured by walking their
//! directories, not taken from what manifests declare.
//!
//! - an **image**'s size is the sum of its layers, each layer the size of
//!   its unpacked directory (`ROOT/layers/OWNER/HEX`), or of its blob when
//!   no container has unpacked it yet; a layer two images share counts in
//!   both `Size`s, once in `SharedSize`, once in `LayersSize`;
//! - a **container**'s `SizeRw` is its overlay's upper directory: what it
//!   wrote, copied up or deleted (a whiteout counts 0 bytes);
//!   `SizeRootFs` adds its image's size;
//! - a **volume**'s size is its `_data`.
//!
//! The walk ([`size_of`]) counts the bytes of files and symlinks
//! (`st_size`, as Docker's does), never follows a symlink, stays on the
//! directory's filesystem (a mount inside a volume is not the volume's),
//! counts a file with several hard links once, and stops after
//! [`MAX_ENTRIES`] entries, so that a hostile container with millions of
//! empty files costs the daemon a bounded time (its size is then a lower
//! bound).

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{Value, json};

use super::EngineError;
use super::state::{Containers, Record, State};
use super::volumes::Volumes;
use crate::image::store::Store;

/// The most entries one walk looks at.
pub const MAX_ENTRIES: usize = 1_000_000;

// ANCHOR: size_of
/// The bytes under `dir` (see the module's rules); 0 if it is missing.
pub fn size_of(dir: &Path) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    if !top.is_dir() {
        return top.len();
    }
    let mut seen = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    let (mut total, mut entries) = (0u64, 0usize);
    while let Some(path) = stack.pop() {
        let Ok(listing) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in listing.flatten() {
            entries += 1;
            if entries > MAX_ENTRIES {
                return total;
            }
            // lstat: a symlink is measured, never followed.
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                if meta.dev() == top.dev() {
                    stack.push(entry.path());
                }
            } else if meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    total
}
// ANCHOR_END: size_of

/// One image of the store: its id, names, and its layers' diff_ids with
/// their measured sizes.
struct Image {
    id: String,
    names: Vec<String>,
    created: u64,
    layers: Vec<(String, u64)>,
}

/// The store's images, each with its layers measured (each layer once).
fn images(store: &Store) -> Result<Vec<Image>, EngineError> {
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, digest) in store.images()? {
        by_id.entry(digest).or_default().push(name);
    }
    let owners: Vec<_> = std::fs::read_dir(store.root.join("layers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    let mut measured: BTreeMap<String, u64> = BTreeMap::new();
    let mut all = Vec::new();
    for (id, names) in by_id {
        let Ok((_, manifest, config)) = crate::image::config::read(store, &names[0]) else {
            continue; // a name whose blobs are gone: nothing to measure
        };
        let created = config
            .created()
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let mut layers = Vec::new();
        for (layer, diff_id) in manifest.layers().iter().zip(config.rootfs().diff_ids()) {
            let size = *measured.entry(diff_id.clone()).or_insert_with(|| {
                let hex = diff_id.trim_start_matches("sha256:");
                match owners.iter().map(|o| o.join(hex)).find(|d| d.is_dir()) {
                    Some(unpacked) => size_of(&unpacked),
                    None => store
                        .blob_path(layer.digest().as_ref())
                        .map_or(0, |blob| size_of(&blob)),
                }
            });
            layers.push((diff_id.clone(), size));
        }
        all.push(Image {
            id,
            names,
            created,
            layers,
        });
    }
    Ok(all)
}

impl Image {
    fn size(&self) -> u64 {
        self.layers.iter().map(|(_, s)| s).sum()
    }

    /// Whether container record `c` was made from this image.
    fn made(&self, c: &Record) -> bool {
        self.names
            .iter()
            .any(|n| super::filters::same_image(n, &c.image))
            || super::filters::same_image(&self.id, &c.image)
    }
}

// ANCHOR: system_df
/// `GET /system/df`: every image, container and volume with what it holds.
pub fn system_df(root: &Path) -> Result<Value, EngineError> {
    let store = Store::open(root)?;
    let containers = Containers::open(root)?;
    let listed: Vec<(Record, State)> = containers.list()?;
    let images = images(&store)?;
    // How many images use each layer: a layer used by two is shared.
    let mut users: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for image in &images {
        for (diff_id, size) in &image.layers {
            users.entry(diff_id).or_insert((*size, 0)).1 += 1;
        }
    }
    let layers_size: u64 = users.values().map(|(size, _)| size).sum();
    let image_list: Vec<Value> = images
        .iter()
        .map(|image| {
            let shared: u64 = image
                .layers
                .iter()
                .filter(|(d, _)| users.get(d.as_str()).is_some_and(|(_, n)| *n > 1))
                .map(|(_, s)| s)
                .sum();
            json!({
                "Id": image.id, "ParentId": "",
                "RepoTags": image.names.iter().filter(|n| !crate::image::store::is_unnamed(n, &image.id)).collect::<Vec<_>>(), "RepoDigests": [],
                "Created": image.created, "Size": image.size(), "SharedSize": shared,
                "VirtualSize": image.size(), "Labels": {},
                "Containers": listed.iter().filter(|(c, _)| image.made(c)).count(),
            })
        })
        .collect();
    let networks = super::daemon::NetworkView::now(root);
    let container_list: Vec<Value> = listed
        .iter()
        .map(|(c, s)| {
            let rw = size_of(&containers.dir(&c.id).join("upper"));
            let image = images.iter().find(|i| i.made(c)).map_or(0, Image::size);
            // The line `ps` gives (as Docker's df does), with its sizes.
            let line = super::ps::summary(&containers, &networks, c, s);
            let mut summary = serde_json::to_value(line).unwrap_or_default();
            summary["SizeRw"] = json!(rw);
            summary["SizeRootFs"] = json!(rw + image);
            summary
        })
        .collect();
    let volumes = Volumes::open(root)?;
    let volume_list: Vec<Value> = volumes
        .names()?
        .iter()
        .filter_map(|name| {
            let mut v = volumes.inspect(name).ok()?;
            let refs = listed
                .iter()
                .filter(|(c, _)| c.mounts.iter().any(|m| m.volume.as_deref() == Some(name)))
                .count();
            let size = volumes.data(name).map_or(0, |d| size_of(&d));
            v["UsageData"] = json!({ "Size": size, "RefCount": refs });
            Some(v)
        })
        .collect();
    Ok(json!({
        "LayersSize": layers_size, "Images": image_list, "Containers": container_list,
        "Volumes": volume_list, "BuildCache": [],
    }))
}
// ANCHOR_END: system_df

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_counts_each_file_once_and_follows_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/a"), vec![0u8; 1000]).unwrap();
        std::fs::hard_link(d.join("sub/a"), d.join("b")).unwrap();
        // A link to a large file outside: its own few bytes, not the target's.
        std::os::unix::fs::symlink("/proc/self/exe", d.join("link")).unwrap();
        assert_eq!(size_of(d), 1000 + "/proc/self/exe".len() as u64);
        assert_eq!(size_of(&d.join("missing")), 0);
    }
}
