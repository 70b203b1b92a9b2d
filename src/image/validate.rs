//! What an image's documents may say: one check of indexes, manifests and
//! their descriptors, shared by `load` (step 9) and `pull` (step 10).
//!
//! Both read JSON that someone else wrote (an archive, a registry), and
//! both must refuse the same things, for the same reasons: a document that
//! is an index and a manifest at once (the ambiguity behind
//! CVE-2021-41190), a `schemaVersion` other than 2, a media type caixa does
//! not know (for the document, its config or its layers), a digest that is
//! not `sha256:` and 64 lower-case hex digits, more layers than an overlay
//! mount can stack. The checks run before any blob is fetched or named.
//!
//! Text from such documents may end up in an error message; [`printable`]
//! makes sure it arrives there as text, not as terminal control sequences.

use serde_json::Value;

use super::ImageError;
use super::digest::hex_of;

/// The media types of an index (Docker: a manifest list).
pub const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The media types of an image manifest.
pub const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The media types of an image config.
pub const CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The layer media types caixa unpacks.
pub const LAYER_TYPES: [&str; 5] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];

/// The most layers an image may have. Docker's overlay2 driver stops at
/// 125; a deeper stack is no real image, only a way to make a client open
/// thousands of downloads.
pub const MAX_LAYERS: usize = 128;

/// The most entries an index may list.
pub const MAX_ENTRIES: usize = 1024;

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A list of manifests, one per platform.
    Index,
    /// A config and layers.
    Manifest,
}

impl Kind {
    /// The kind a media type names, if it names one caixa reads.
    pub fn of(media_type: &str) -> Option<Kind> {
        if INDEX_TYPES.contains(&media_type) {
            Some(Kind::Index)
        } else if MANIFEST_TYPES.contains(&media_type) {
            Some(Kind::Manifest)
        } else {
            None
        }
    }

    fn article(self) -> &'static str {
        match self {
            Kind::Index => "an index",
            Kind::Manifest => "a manifest",
        }
    }
}

/// A checked reference to a blob: its type, digest and size, and, in an
/// index, the platform it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// A media type from the lists above.
    pub media_type: String,
    /// `sha256:` and 64 lower-case hex digits.
    pub digest: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// `os/architecture[/variant]`, for an index entry that says.
    pub platform: Option<String>,
    /// Its name: the `io.containerd.image.name` annotation (a whole name),
    /// else `org.opencontainers.image.ref.name` (often a tag alone), if any.
    pub ref_name: Option<String>,
}

/// A checked index or manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// The manifests it lists.
    Index(Vec<Descriptor>),
    /// A config and its layers, bottom first.
    Manifest {
        /// The image config.
        config: Descriptor,
        /// The layers, at most [`MAX_LAYERS`].
        layers: Vec<Descriptor>,
    },
}

// ANCHOR: document
/// Checks `bytes` as an index or a manifest. `claims` are the media types
/// others gave it (a registry's `Content-Type`, the descriptor that
/// pointed here): each must be one caixa reads, and agree with what the
/// document is.
pub fn document(bytes: &[u8], claims: &[&str]) -> Result<Document, ImageError> {
    let bad = |why: String| ImageError::Malformed(why);
    let json: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let object = json
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    match object.get("schemaVersion") {
        Some(v) if v.as_u64() == Some(2) => {}
        other => {
            return Err(bad(format!(
                "schemaVersion {} is not 2: caixa reads OCI and Docker v2 documents only",
                other.map_or("(missing)".into(), |v| printable(&v.to_string()))
            )));
        }
    }
    let is_index = object.contains_key("manifests");
    let is_manifest = object.contains_key("config") || object.contains_key("layers");
    let kind = match (is_index, is_manifest) {
        (true, true) => {
            return Err(bad(
                "both an index (manifests) and a manifest (config, layers): refusing the ambiguity (CVE-2021-41190)".into(),
            ));
        }
        (true, false) => Kind::Index,
        (false, true) => Kind::Manifest,
        (false, false) => {
            return Err(bad(
                "neither an index (manifests) nor a manifest (config, layers)".into(),
            ));
        }
    };
    let own = match object.get("mediaType") {
        None => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => return Err(bad("mediaType is not a string".into())),
    };
    let labels = |own: bool| {
        if own {
            ("its mediaType", "its mediaType says")
        } else {
            ("the type it was served as", "served as")
        }
    };
    for ((whose, says), claim) in own
        .map(|t| (labels(true), t))
        .into_iter()
        .chain(claims.iter().map(|t| (labels(false), *t)))
    {
        let said = Kind::of(claim).ok_or_else(|| {
            bad(format!(
                "unknown media type \"{}\" ({whose}): caixa reads OCI and Docker v2 indexes and manifests",
                printable(claim)
            ))
        })?;
        if said != kind {
            return Err(bad(format!(
                "{says} {} ({claim}) but it is {}",
                said.article(),
                kind.article()
            )));
        }
    }
    match kind {
        Kind::Index => {
            let entries = list(object.get("manifests"), "manifests", MAX_ENTRIES)?;
            let entries = entries
                .iter()
                .map(|e| descriptor(e, "index entry", &[&INDEX_TYPES[..], &MANIFEST_TYPES[..]]))
                .collect::<Result<_, _>>()?;
            Ok(Document::Index(entries))
        }
        Kind::Manifest => {
            let config = object
                .get("config")
                .ok_or_else(|| bad("a manifest without a config".into()))?;
            let config = descriptor(config, "config", &[&CONFIG_TYPES[..]])?;
            let layers = list(object.get("layers"), "layers", MAX_LAYERS)?
                .iter()
                .map(|l| descriptor(l, "layer", &[&LAYER_TYPES[..]]))
                .collect::<Result<_, _>>()?;
            Ok(Document::Manifest { config, layers })
        }
    }
}
// ANCHOR_END: document

/// The array under `name`, at most `max` long.
fn list<'a>(value: Option<&'a Value>, name: &str, max: usize) -> Result<&'a [Value], ImageError> {
    let items = value
        .and_then(Value::as_array)
        .ok_or_else(|| ImageError::Malformed(format!("{name} is not a list")))?;
    if items.len() > max {
        return Err(ImageError::Malformed(format!(
            "{} {name}, more than the {max} an image may have",
            items.len()
        )));
    }
    Ok(items)
}

/// Checks one descriptor; its media type must be in one of `types`.
fn descriptor(value: &Value, role: &str, types: &[&[&str]]) -> Result<Descriptor, ImageError> {
    let bad = |why: String| ImageError::Malformed(format!("{role}: {why}"));
    let text = |key: &str| value[key].as_str().ok_or_else(|| bad(format!("no {key}")));
    let media_type = text("mediaType")?;
    if !types.iter().any(|list| list.contains(&media_type)) {
        return Err(if role == "layer" {
            ImageError::MediaType(media_type.to_string())
        } else {
            bad(format!(
                "media type \"{}\" is not one caixa reads here",
                printable(media_type)
            ))
        });
    }
    let digest = text("digest")?;
    if hex_of(digest).is_none() {
        return Err(bad(format!(
            "digest \"{}\" is not sha256: and 64 lower-case hex digits",
            printable(digest)
        )));
    }
    let size = value["size"]
        .as_u64()
        .ok_or_else(|| bad("size is not a byte count".into()))?;
    let platform = value.get("platform").map(|p| {
        let part = |k: &str| p[k].as_str().unwrap_or("");
        let mut name = format!("{}/{}", part("os"), part("architecture"));
        if !part("variant").is_empty() {
            name = format!("{name}/{}", part("variant"));
        }
        name
    });
    // Docker (25 and later) and containerd write the whole name in their
    // own annotation, and the tag alone in the OCI one.
    let annotations = &value["annotations"];
    let ref_name = annotations["io.containerd.image.name"]
        .as_str()
        .or_else(|| annotations["org.opencontainers.image.ref.name"].as_str())
        .map(String::from);
    Ok(Descriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size,
        platform,
        ref_name,
    })
}

/// `linux/<arch>` of this machine, as images name platforms (Rust's
/// `x86_64` is `amd64`, `aarch64` is `arm64`).
pub fn this_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}

/// The index entry for `platform` (`os/arch`, or `os/arch/variant` to
/// insist on a variant), else one that names no platform. The error lists
/// the platforms the index offers.
pub fn choose<'a>(entries: &'a [Descriptor], platform: &str) -> Result<&'a Descriptor, ImageError> {
    let fits = |offered: &str| {
        offered == platform
            || (platform.matches('/').count() == 1
                && offered.rsplit_once('/').is_some_and(|(p, _)| p == platform)
                && offered.matches('/').count() == 2)
    };
    let matching = entries
        .iter()
        .find(|d| d.platform.as_deref().is_some_and(fits));
    let unlabelled = entries.iter().find(|d| d.platform.is_none());
    matching.or(unlabelled).ok_or_else(|| {
        let mut offered: Vec<String> = Vec::new();
        for p in entries.iter().filter_map(|d| d.platform.as_deref()) {
            let p = printable(p);
            if !offered.contains(&p) {
                offered.push(p);
            }
        }
        let more = offered.len().saturating_sub(16);
        offered.truncate(16);
        let mut list = offered.join(", ");
        if more > 0 {
            list.push_str(&format!(" and {more} more"));
        }
        ImageError::Platform {
            wanted: platform.to_string(),
            offered: list,
        }
    })
}

// ANCHOR: printable
/// `text` with every control character (and every Unicode direction
/// override) written as an escape: what a registry or an archive says can
/// then be quoted in a message without moving the cursor, clearing the
/// screen, setting the window title or forging a line of output.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.extend(c.escape_unicode())
            }
            c => out.push(c),
        }
    }
    out
}
// ANCHOR_END: printable

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(media: &str, digest: &str) -> Value {
        serde_json::json!({"mediaType": media, "digest": digest, "size": 5})
    }

    fn manifest(layers: Vec<Value>) -> Value {
        let d = format!("sha256:{}", "a".repeat(64));
        serde_json::json!({"schemaVersion": 2, "mediaType": MANIFEST_TYPES[0],
            "config": {"mediaType": CONFIG_TYPES[0], "digest": d, "size": 2}, "layers": layers})
    }

    fn check(v: &Value, claims: &[&str]) -> Result<Document, String> {
        document(v.to_string().as_bytes(), claims).map_err(|e| e.to_string())
    }

    #[test]
    fn a_plain_manifest_passes_and_lies_do_not() {
        let d = format!("sha256:{}", "b".repeat(64));
        let good = manifest(vec![layer(LAYER_TYPES[1], &d)]);
        assert!(
            matches!(check(&good, &[MANIFEST_TYPES[0]]), Ok(Document::Manifest { layers, .. }) if layers.len() == 1)
        );
        let err = check(&good, &[INDEX_TYPES[0]]).unwrap_err();
        assert!(err.contains("served as an index"), "{err}");
        assert!(
            check(&good, &["text/html"])
                .unwrap_err()
                .contains("text/html")
        );
        let mut both = good.clone();
        both["manifests"] = serde_json::json!([]);
        assert!(check(&both, &[]).unwrap_err().contains("CVE-2021-41190"));
        let mut v1 = good.clone();
        v1["schemaVersion"] = 1.into();
        assert!(check(&v1, &[]).unwrap_err().contains("schemaVersion 1"));
        let odd = manifest(vec![layer("application/x-evil", &d)]);
        assert!(check(&odd, &[]).unwrap_err().contains("application/x-evil"));
        let escape = manifest(vec![layer(LAYER_TYPES[0], "sha256:\u{1b}[2J\nline")]);
        let err = check(&escape, &[]).unwrap_err();
        assert!(!err.contains('\u{1b}') && !err.contains('\n'), "{err}");
        let deep = manifest(vec![layer(LAYER_TYPES[0], &d); MAX_LAYERS + 1]);
        assert!(check(&deep, &[]).unwrap_err().contains("129 layers"));
    }

    #[test]
    fn platforms_are_chosen_or_listed() {
        let entry = |p: Option<&str>| Descriptor {
            media_type: MANIFEST_TYPES[0].into(),
            digest: format!("sha256:{}", "c".repeat(64)),
            size: 1,
            platform: p.map(String::from),
            ref_name: None,
        };
        let entries = [entry(Some("linux/arm64")), entry(Some("linux/arm/v7"))];
        assert!(choose(&entries, "linux/arm").is_ok());
        assert!(choose(&entries, "linux/arm/v7").is_ok());
        let err = choose(&entries, "linux/s390x").unwrap_err().to_string();
        assert!(err.contains("linux/arm64, linux/arm/v7"), "{err}");
        assert_eq!(
            printable("a\u{1b}[31mb\r\u{202e}"),
            "a\\u{1b}[31mb\\r\\u{202e}"
        );
    }
}
