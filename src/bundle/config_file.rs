//! `config.json` on disk: written atomically, read with bounds and a typo
//! check.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::{BundleError, CONFIG_FILE, MAX_CONFIG_BYTES, invalid};

/// Writes `config` as `bundle/config.json`, atomically: a reader (the shim,
/// a restarted daemon) sees the old file or the new one, never half of one.
/// Not `fsync`ed: the engine's record and state beside it are not either,
/// so a sync here would promise nothing after a power cut, and it cost
/// each `create` half a millisecond (a journal commit, measured with
/// `strace -T` on this book's machine).
pub fn write(bundle: &Path, config: &oci_spec::runtime::Spec) -> Result<(), BundleError> {
    let path = bundle.join(CONFIG_FILE);
    let tmp = bundle.join(format!(".{CONFIG_FILE}.tmp-{}", std::process::id()));
    let json = serde_json::to_value(config)
        .map(canonical)
        .and_then(|value| serde_json::to_vec_pretty(&value))
        .map_err(|source| BundleError::Json {
            path: path.clone(),
            source,
        })?;
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io {
            action,
            path,
            source,
        }
    };
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &json))
        .map_err(io("write", &tmp))
        .and_then(|()| std::fs::rename(&tmp, &path).map_err(io("rename into", &path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The same document in one order: oci-spec keeps capability sets and
/// annotations in hash sets and maps, whose order changes from run to run;
/// sorted keys and sets make two bundles of one spec byte for byte equal.
fn canonical(mut config: Value) -> Value {
    if let Some(Value::Object(sets)) = config.pointer_mut("/process/capabilities") {
        for set in sets.values_mut() {
            if let Value::Array(caps) = set {
                caps.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    sort_keys(config)
}

/// Every object's keys in order (a no-op unless serde_json's
/// `preserve_order` feature is on somewhere in the build).
fn sort_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut fields: Vec<_> = map.into_iter().collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(fields.into_iter().map(|(k, v)| (k, sort_keys(v))).collect())
        }
        Value::Array(list) => Value::Array(list.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// Reads `bundle/config.json`: at most [`MAX_CONFIG_BYTES`], JSON of the
/// runtime spec's shape, and no key the spec does not define (serde would
/// drop a misspelt `"capabilites"` without a word, and the container would
/// run with more privilege than its author wrote).
pub fn read(bundle: &Path) -> Result<oci_spec::runtime::Spec, BundleError> {
    let path = bundle.join(CONFIG_FILE);
    let io = |action| {
        let path = path.clone();
        move |source| BundleError::Io {
            action,
            path,
            source,
        }
    };
    let file = std::fs::File::open(&path).map_err(io("open"))?;
    let mut text = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(io("read"))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(invalid(
            CONFIG_FILE,
            format!(
                "{} is larger than 1 MiB; a runtime spec is a few KiB",
                path.display()
            ),
        ));
    }
    let json = |source| BundleError::Json {
        path: path.clone(),
        source,
    };
    let raw: Value = serde_json::from_slice(&text).map_err(json)?;
    let config: oci_spec::runtime::Spec = serde_json::from_value(raw.clone()).map_err(json)?;
    let known = serde_json::to_value(&config).map_err(json)?;
    if let Some(field) = first_unknown_key(&raw, &known, "") {
        return Err(invalid(
            &field,
            "not a field of the OCI runtime spec (a typo?): see its config.md and config-linux.md",
        ));
    }
    Ok(config)
}

/// The first key of `raw` that the typed spec dropped when it parsed it:
/// `known` is the typed spec written back, which keeps every field it knows.
fn first_unknown_key(raw: &Value, known: &Value, path: &str) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (raw, known) {
        (Value::Object(raw), Value::Object(known)) => {
            raw.iter().find_map(|(key, value)| match known.get(key) {
                None if value.is_null() => None,
                None => Some(join(key)),
                Some(known) => first_unknown_key(value, known, &join(key)),
            })
        }
        // Lists of objects (mounts, namespaces, syscalls) keep their order.
        (Value::Array(raw), Value::Array(known)) if raw.len() == known.len() => raw
            .iter()
            .zip(known)
            .enumerate()
            .find_map(|(i, (r, k))| first_unknown_key(r, k, &format!("{path}[{i}]"))),
        _ => None,
    }
}
