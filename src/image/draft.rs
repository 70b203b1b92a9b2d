//! An image being made: a config and a list of layers, saved as blobs.
//!
//! `build` and `commit` start from an image of the store (or from nothing,
//! `FROM scratch`), change its config (Env, Cmd, …) and add layers written
//! by [`super::diff`]; [`Draft::save`] writes the config and a manifest as
//! the OCI image spec says (`config.md`, `manifest.md`): the config lists
//! every layer's diff_id in `rootfs.diff_ids` and one `history` entry per
//! instruction, the manifest every layer's digest. The config's digest is
//! the image's id, as Docker shows it. The JSON is kept as JSON: fields
//! caixa does not read pass through unchanged.

use serde_json::{Value, json};

use super::ImageError;
use super::diff::{LAYER_MEDIA_TYPE, Layer};
use super::store::Store;

/// The OCI media type of a manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI media type of an image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// An image being made.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// The whole image config document.
    pub config: Value,
    /// The manifest's layer descriptors, bottom first.
    pub layers: Vec<Value>,
}

/// A saved draft: the names it has in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The manifest's digest (what a tag points at).
    pub manifest: String,
    /// The config's digest: Docker's image id. caixa names an image by
    /// its manifest's digest, everywhere it answers.
    pub config: String,
}

fn malformed(what: &str) -> ImageError {
    ImageError::Malformed(format!("{what}; load or pull the image again"))
}

impl Draft {
    /// Nothing yet (`FROM scratch`): this machine's platform, no layers.
    pub fn scratch() -> Draft {
        let platform = crate::registry::pull::this_platform();
        let arch = platform.trim_start_matches("linux/").to_string();
        Draft {
            config: json!({
                "architecture": arch, "os": "linux",
                "config": {},
                "rootfs": { "type": "layers", "diff_ids": [] },
                "history": [],
            }),
            layers: Vec::new(),
        }
    }

    /// The image whose manifest is `manifest` in `store`.
    pub fn open(store: &Store, manifest: &str) -> Result<Draft, ImageError> {
        let doc: Value = serde_json::from_slice(&store.read_blob(manifest)?)
            .map_err(|_| malformed(&format!("manifest {manifest} is not JSON")))?;
        let config_digest = doc["config"]["digest"]
            .as_str()
            .ok_or_else(|| malformed(&format!("manifest {manifest} names no config")))?;
        let mut config: Value = serde_json::from_slice(&store.read_blob(config_digest)?)
            .map_err(|_| malformed(&format!("config {config_digest} is not JSON")))?;
        if !config["config"].is_object() {
            config["config"] = json!({});
        }
        if !config["history"].is_array() {
            config["history"] = json!([]);
        }
        let layers = doc["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut layer| {
                // The same bytes under the OCI name (a Docker manifest's
                // layers are gzipped tars too).
                if layer["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip" {
                    layer["mediaType"] = json!(LAYER_MEDIA_TYPE);
                }
                layer
            })
            .collect();
        Ok(Draft { config, layers })
    }

    /// The process part of the config (`Env`, `Cmd`, …), to change.
    pub fn process(&mut self) -> &mut serde_json::Map<String, Value> {
        if !self.config["config"].is_object() {
            self.config["config"] = json!({});
        }
        match &mut self.config["config"] {
            Value::Object(map) => map,
            _ => unreachable!("made an object just above"),
        }
    }

    /// The config's `Env`.
    pub fn env(&self) -> Vec<String> {
        self.config["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(String::from))
            .collect()
    }

    /// Adds `layer` on top, with its history entry.
    pub fn add_layer(&mut self, layer: &Layer, created_by: &str) {
        self.layers.push(json!({
            "mediaType": LAYER_MEDIA_TYPE, "digest": layer.digest, "size": layer.size,
        }));
        match &mut self.config["rootfs"]["diff_ids"] {
            Value::Array(ids) => ids.push(json!(layer.diff_id)),
            other => *other = json!([layer.diff_id]),
        }
        self.history(created_by, false);
    }

    /// Adds a history entry (`empty_layer`: the instruction changed only
    /// the config, as ENV or CMD do).
    pub fn history(&mut self, created_by: &str, empty_layer: bool) {
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let mut entry = json!({ "created": created, "created_by": created_by });
        if empty_layer {
            entry["empty_layer"] = json!(true);
        }
        self.config["created"] = json!(created);
        match &mut self.config["history"] {
            Value::Array(h) => h.push(entry),
            other => *other = json!([entry]),
        }
    }

    /// Writes the config and the manifest into `store`.
    pub fn save(&self, store: &Store) -> Result<Saved, ImageError> {
        let config = serde_json::to_vec(&self.config)
            .map_err(|e| ImageError::Malformed(format!("config: {e}")))?;
        let config_digest = put(store, &config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len(),
            },
            "layers": self.layers,
        });
        let manifest = serde_json::to_vec(&manifest)
            .map_err(|e| ImageError::Malformed(format!("manifest: {e}")))?;
        Ok(Saved {
            manifest: put(store, &manifest)?,
            config: config_digest,
        })
    }
}

fn put(store: &Store, bytes: &[u8]) -> Result<String, ImageError> {
    store.put_blob_hashed(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_draft_is_an_oci_image_that_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut draft = Draft::scratch();
        draft.process().insert("Cmd".into(), json!(["sh"]));
        draft.add_layer(
            &Layer {
                digest: format!("sha256:{}", "a".repeat(64)),
                diff_id: format!("sha256:{}", "b".repeat(64)),
                size: 3,
                entries: 1,
            },
            "COPY x /",
        );
        let saved = draft.save(&store).unwrap();
        let manifest = oci_spec::image::ImageManifest::from_reader(
            &store.read_blob(&saved.manifest).unwrap()[..],
        )
        .unwrap();
        assert_eq!(manifest.layers().len(), 1);
        let config = oci_spec::image::ImageConfiguration::from_reader(
            &store.read_blob(&saved.config).unwrap()[..],
        )
        .unwrap();
        assert_eq!(config.rootfs().diff_ids().len(), 1);
        let again = Draft::open(&store, &saved.manifest).unwrap();
        assert_eq!(again.layers, draft.layers);
    }
}
