//! Importing images without a network: an OCI image layout directory, an
//! OCI archive (the same, as a tar), or a `docker save` tarball.
//!
//! Every blob is copied into the store and verified against its digest on
//! the way. A `docker save` archive names its layers by path, not digest:
//! they are hashed while stored, and caixa writes the OCI manifest itself.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use oci_spec::image::ImageConfiguration;
use serde_json::{Value, json};

use super::store::Store;
use super::validate::{self, Document};
use super::{ImageError, io_err};

use super::validate::LAYER_TYPES;

/// The biggest JSON file read into memory.
const MAX_JSON: u64 = 16 << 20;

/// Loads `input` into the store; returns the names it was tagged with.
pub fn load(store: &Store, input: &Path, name: Option<&str>) -> Result<Vec<String>, ImageError> {
    if input.is_dir() {
        if !input.join("oci-layout").exists() {
            return Err(ImageError::Malformed(format!(
                "{} is a directory but no OCI image layout (no oci-layout file)",
                input.display()
            )));
        }
        let index =
            std::fs::read(input.join("index.json")).map_err(io_err(input.join("index.json")))?;
        let fetch = |digest: &str, size: u64| -> Result<(), ImageError> {
            let hex = super::digest::hex_of(digest)
                .ok_or_else(|| ImageError::Malformed(format!("bad digest {digest}")))?;
            let path = input.join("blobs/sha256").join(hex);
            let file = std::fs::File::open(&path).map_err(io_err(&path))?;
            store.put_blob(digest, Some(size), file).map(drop)
        };
        let default_name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        return load_oci(store, &index, &fetch, name, &default_name);
    }
    let file = std::fs::File::open(input).map_err(io_err(input))?;
    let mut head = [0u8; 2];
    let gzipped = std::fs::File::open(input)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == [0x1f, 0x8b];
    let reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    let mut json: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut paths: BTreeMap<String, (String, u64)> = BTreeMap::new(); // archive path -> (digest, size)
    let bad = |e: std::io::Error| {
        // One line: the tar crate may quote the bytes it choked on.
        let why: String = e
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect();
        ImageError::Malformed(format!(
            "{}: not an image archive (tar): {why}",
            input.display()
        ))
    };
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry
            .path()
            .map_err(bad)?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let size = entry.header().size().unwrap_or(0);
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let digest = format!("sha256:{hex}");
            store.put_blob(&digest, Some(size), &mut entry)?;
            paths.insert(path, (digest, size));
        } else if path.ends_with(".json") || path == "oci-layout" || path == "repositories" {
            if size > MAX_JSON {
                return Err(ImageError::Malformed(format!(
                    "{path} is too large ({size} bytes)"
                )));
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(bad)?;
            json.insert(path, bytes);
        } else if path.ends_with(".tar") {
            // docker save names layers `<id>/layer.tar` (older) or `<hex>.tar`.
            let digest = store.put_blob_hashed(&mut entry)?;
            paths.insert(path, (digest, size));
        }
    }
    let default_name = input
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    if let Some(index) = json
        .get("index.json")
        .filter(|_| json.contains_key("oci-layout") || !json.contains_key("manifest.json"))
    {
        let present = |digest: &str, _size: u64| -> Result<(), ImageError> {
            let path = store.blob_path(digest)?;
            if path.exists() {
                Ok(())
            } else {
                Err(ImageError::Malformed(format!(
                    "blob {digest} is missing from the archive"
                )))
            }
        };
        return load_oci(store, index, &present, name, &default_name);
    }
    let manifest = json.get("manifest.json").ok_or_else(|| {
        ImageError::Malformed(format!(
            "{}: neither an OCI archive (index.json) nor a docker save archive (manifest.json)",
            input.display()
        ))
    })?;
    load_docker(store, manifest, &json, &paths, name)
}

fn parse_err(what: &str) -> impl FnOnce(oci_spec::OciSpecError) -> ImageError + '_ {
    move |e| ImageError::Malformed(format!("{what}: {e}"))
}

fn load_oci(
    store: &Store,
    index: &[u8],
    fetch: &dyn Fn(&str, u64) -> Result<(), ImageError>,
    name: Option<&str>,
    default_name: &str,
) -> Result<Vec<String>, ImageError> {
    let in_file = |what: &'static str| {
        move |e: ImageError| match e {
            ImageError::Malformed(why) => ImageError::Malformed(format!("{what}: {why}")),
            other => other,
        }
    };
    let mut candidates = match validate::document(index, &[]).map_err(in_file("index.json"))? {
        Document::Index(entries) => entries,
        Document::Manifest { .. } => {
            return Err(ImageError::Malformed(
                "index.json is a manifest, not an index".into(),
            ));
        }
    };
    let mut chosen = None;
    // Nested indexes (multi-platform images) are followed a few levels down.
    let mut depth = 0;
    while chosen.is_none() && depth < 4 {
        depth += 1;
        // This machine's platform; a manifest without platform information
        // is taken as is; another architecture is refused, not run.
        let pick = validate::choose(&candidates, &validate::this_platform())?.clone();
        fetch(&pick.digest, pick.size)?;
        // The descriptor's media type is a claim the document must match.
        let bytes = store.read_blob(&pick.digest)?;
        match validate::document(&bytes, &[&pick.media_type]).map_err(in_file("manifest"))? {
            Document::Index(entries) => candidates = entries,
            Document::Manifest { config, layers } => {
                chosen = Some((pick.digest, pick.ref_name, config, layers))
            }
        }
    }
    let (manifest_digest, tag, config, layers) =
        chosen.ok_or_else(|| ImageError::Malformed("indexes nest too deep".into()))?;
    fetch(&config.digest, config.size)?;
    for layer in &layers {
        fetch(&layer.digest, layer.size)?;
    }
    check_config(&store.read_blob(&config.digest)?, layers.len())?;
    // The ref.name annotation is often a tag alone (umoci, skopeo): then
    // the image is named after the layout, with that tag.
    let tag = tag.map(|t| {
        if t.contains(':') || t.contains('/') {
            t
        } else {
            format!("{default_name}:{t}")
        }
    });
    let name = name
        .map(String::from)
        .or(tag)
        .unwrap_or_else(|| default_name.to_string());
    let name = crate::registry::reference::store_name_of(&name);
    store.tag(&name, &manifest_digest)?;
    Ok(vec![name])
}

/// The config must parse and list one diff_id per layer.
fn check_config(config: &[u8], layers: usize) -> Result<ImageConfiguration, ImageError> {
    let config = ImageConfiguration::from_reader(config).map_err(parse_err("image config"))?;
    if config.rootfs().diff_ids().len() != layers {
        return Err(ImageError::Malformed(format!(
            "the config lists {} diff_ids for {layers} layers",
            config.rootfs().diff_ids().len(),
        )));
    }
    Ok(config)
}

fn load_docker(
    store: &Store,
    manifest: &[u8],
    json: &BTreeMap<String, Vec<u8>>,
    paths: &BTreeMap<String, (String, u64)>,
    name: Option<&str>,
) -> Result<Vec<String>, ImageError> {
    let entries: Value = serde_json::from_slice(manifest)
        .map_err(|e| ImageError::Malformed(format!("manifest.json: {e}")))?;
    let first = entries
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| ImageError::Malformed("manifest.json lists no image".into()))?;
    let config_path = first["Config"]
        .as_str()
        .ok_or_else(|| ImageError::Malformed("manifest.json: no Config".into()))?;
    // The config: stored already when the archive had it as a blob (and
    // checked against its name then); else stored now, named by its hash.
    let (config_digest, config_bytes) = match json.get(config_path) {
        Some(bytes) => (store.put_blob_hashed(&bytes[..])?, bytes.clone()),
        None => {
            let (digest, _) = paths
                .get(config_path)
                .ok_or_else(|| ImageError::Malformed(format!("config {config_path} is missing")))?;
            (digest.clone(), store.read_blob(digest)?)
        }
    };
    let mut layers = Vec::new();
    for layer in first["Layers"].as_array().into_iter().flatten() {
        let path = layer.as_str().unwrap_or_default();
        let (digest, size) = paths.get(path).ok_or_else(|| {
            ImageError::Malformed(format!("layer {path} is missing from the archive"))
        })?;
        layers.push(json!({ "mediaType": LAYER_TYPES[0], "digest": digest, "size": size }));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len() },
        "layers": layers,
    });
    check_config(&config_bytes, layers.len())?;
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| ImageError::Malformed(e.to_string()))?;
    let manifest_digest = store.put_blob_hashed(&manifest_bytes[..])?;
    let mut names: Vec<String> = match name {
        Some(n) => vec![n.to_string()],
        None => first["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
    };
    if names.is_empty() {
        names.push("image:latest".into());
    }
    for n in &mut names {
        // Docker Hub's full names are shown short, as `docker images` does.
        for prefix in ["docker.io/library/", "docker.io/"] {
            if let Some(short) = n.strip_prefix(prefix) {
                *n = short.to_string();
                break;
            }
        }
        *n = crate::registry::reference::store_name_of(n);
        store.tag(n, &manifest_digest)?;
    }
    Ok(names)
}
