//! Docker's `filters` query parameter, shared by `GET /containers/json`
//! and `GET /events`.
//!
//! It is JSON, in one of two shapes: the one clients send since API 1.22,
//! `{"status":{"exited":true}}` (a set of values per key), and the older
//! `{"status":["exited"]}`, which Docker's daemon still reads. Values of one
//! key are alternatives (any may match); keys must all match. A key the
//! endpoint does not know is refused (400), as Docker does, rather than
//! ignored: a list that ignored a filter would look filtered and be
//! trusted.

use std::collections::BTreeMap;

use serde_json::Value;

use super::EngineError;

/// The filters of one request: each key's values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

// ANCHOR: parse_filters
/// Parses `text` (absent or empty: no filters), accepting only `known` keys.
pub fn parse(text: Option<&str>, known: &[&str]) -> Result<Filters, EngineError> {
    let text = text.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Ok(Filters::default());
    }
    let bad = |why: String| EngineError::BadRequest(why);
    let json: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("invalid filters {text:?}: {e}")))?;
    let object = json
        .as_object()
        .ok_or_else(|| bad(format!("invalid filters {text:?}: not a JSON object")))?;
    let mut filters = BTreeMap::new();
    for (key, values) in object {
        if !known.contains(&key.as_str()) {
            return Err(bad(format!("invalid filter '{key}'")));
        }
        let values: Vec<String> = match values {
            // {"status":{"exited":true}}: the keys whose value is true.
            Value::Object(set) => set
                .iter()
                .filter(|(_, on)| on.as_bool() == Some(true))
                .map(|(v, _)| v.clone())
                .collect(),
            // {"status":["exited"]}
            Value::Array(list) => list
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("invalid filter '{key}': values must be strings")))?,
            _ => return Err(bad(format!("invalid filter '{key}': not a list of values"))),
        };
        if !values.is_empty() {
            filters.insert(key.clone(), values);
        }
    }
    Ok(Filters(filters))
}
// ANCHOR_END: parse_filters

impl Filters {
    /// The values given for `key`, if it was given.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// Whether `key` was not given, or one of its values passes `check`.
    pub fn matches(&self, key: &str, check: impl Fn(&str) -> bool) -> bool {
        self.get(key)
            .is_none_or(|values| values.iter().any(|v| check(v)))
    }
}

/// The name Docker compares images by: `demo` is `demo:latest`, and
/// `docker.io/library/demo` is `demo`.
fn normal_name(name: &str) -> String {
    let name = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// Whether image reference `have` is what `want` names: the same name
/// (`demo` = `demo:latest`), or an id and (a prefix of) it.
pub fn same_image(have: &str, want: &str) -> bool {
    if have.is_empty() || want.is_empty() {
        return false;
    }
    let hex = |s: &str| s.trim_start_matches("sha256:").to_string();
    let is_id = have.starts_with("sha256:") || want.starts_with("sha256:");
    if is_id {
        let (have, want) = (hex(have), hex(want));
        return want.len() >= 4 && have.starts_with(&want);
    }
    normal_name(have) == normal_name(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_parse_and_unknown_keys_are_refused() {
        let keys = ["status", "name"];
        let new = parse(Some(r#"{"status":{"exited":true,"running":false}}"#), &keys).unwrap();
        let old = parse(Some(r#"{"status":["exited"]}"#), &keys).unwrap();
        assert_eq!(new, old);
        assert_eq!(new.get("status"), Some(&["exited".to_string()][..]));
        assert!(new.matches("name", |_| false), "an absent key passes");
        assert!(!new.matches("status", |v| v == "running"));
        let e = parse(Some(r#"{"colour":["red"]}"#), &keys).unwrap_err();
        assert_eq!(e.to_string(), "invalid filter 'colour'");
        assert_eq!(e.status(), 400);
        assert!(parse(Some("[1]"), &keys).is_err());
        assert_eq!(parse(None, &keys).unwrap(), Filters::default());
    }

    #[test]
    fn image_names_compare_as_docker_does() {
        assert!(same_image("demo:latest", "demo"));
        assert!(same_image("docker.io/library/demo", "demo:latest"));
        assert!(!same_image("demo:1", "demo"));
        assert!(same_image(
            "sha256:abcdef01",
            "abcd".replace("abcd", "sha256:abcd").as_str()
        ));
        assert!(!same_image("", "demo"));
    }
}
