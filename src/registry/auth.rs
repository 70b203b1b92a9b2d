//! Registry authentication: Basic credentials and the Bearer token flow.
//!
//! A registry that wants credentials answers `401` with a challenge:
//! `WWW-Authenticate: Basic realm="…"` (send `Authorization: Basic
//! base64(user:password)`) or `Bearer realm="https://auth…/token",
//! service="…",scope="repository:NAME:pull"` (ask the realm for a token,
//! anonymously or with the user's credentials, then send `Authorization:
//! Bearer TOKEN`). Credentials live where Docker keeps them, in a
//! `config.json` with an `auths` map, and are only ever sent to the host they
//! were saved for: a token realm on another host is asked anonymously.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::RegistryError;
use super::client::{host_of, origin_of, plain_http_ok};

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Send Basic credentials.
    Basic,
    /// Get a token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter, if any.
        service: Option<String>,
        /// The `scope` parameter, if any.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut map = BTreeMap::new();
    // key="value" pairs separated by commas (values may hold commas).
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        map.insert(key.trim().to_ascii_lowercase(), value.to_string());
        rest = tail.trim_start_matches([',', ' ']);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: map.get("realm")?.clone(),
            service: map.get("service").cloned(),
            scope: map.get("scope").cloned(),
        }),
        _ => None,
    }
}

/// Standard base64 with padding (RFC 4648), as HTTP Basic and Docker's
/// config.json use it.
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of [`base64_encode`]; `None` for invalid input.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Where credentials are kept: `$CAIXA_CONFIG_DIR/config.json`, else
/// `$HOME/.config/caixa/config.json`.
pub fn config_path() -> PathBuf {
    std::env::var_os("CAIXA_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".config/caixa")
        })
        .join("config.json")
}

/// The key of `host` in `config.json`'s `auths`: the host itself, except
/// for Docker Hub, which Docker files under its old index URL (so a file
/// written by `docker login` works here, and the other way round).
pub fn config_key(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        other => other.to_string(),
    }
}

/// The saved (user, password) for `host`.
pub fn credentials(host: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string(config_path()).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let auth = config["auths"][config_key(host).as_str()]["auth"].as_str()?;
    let decoded = String::from_utf8(base64_decode(auth)?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Saves credentials for `host`, readable by the owner only: written to a
/// new file of mode 0600, then renamed over the old one.
pub fn save_credentials(host: &str, user: &str, password: &str) -> Result<PathBuf, RegistryError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = config_path();
    let err = |why: String| RegistryError::Credentials {
        path: path.display().to_string(),
        why,
    };
    let mut config: serde_json::Value = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| err(format!("not valid JSON ({e}); fix or remove it")))?,
        Err(_) => serde_json::json!({}),
    };
    if !config.is_object() || !(config["auths"].is_object() || config["auths"].is_null()) {
        return Err(err(
            "not a config.json of the expected shape; fix or remove it".into(),
        ));
    }
    config["auths"][config_key(host).as_str()] =
        serde_json::json!({ "auth": base64_encode(format!("{user}:{password}").as_bytes()) });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let text = serde_json::to_string_pretty(&config).map_err(|e| err(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err(e.to_string()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))?;
    Ok(path)
}

// ANCHOR: realm
/// Whether the token server at `realm` may see the credentials saved for
/// `registry`: only when it is the registry's own host **and port**, or
/// Docker Hub's token server for Docker Hub's registry (the documented
/// pair); and only over HTTPS, or plain HTTP where that is allowed
/// (loopback, `--insecure-registry`). Docker sends them to any realm a
/// registry names; caixa does not.
pub fn realm_may_get_credentials(realm: &str, registry: &str, insecure: &[String]) -> bool {
    let https = realm.starts_with("https://");
    let realm_origin = origin_of(realm);
    let scheme = if plain_http_ok(registry, insecure) {
        "http"
    } else {
        "https"
    };
    let registry_origin = origin_of(&format!("{scheme}://{registry}/"));
    let same = !realm_origin.is_empty() && realm_origin == registry_origin
        || (https
            && realm_origin == "auth.docker.io:443"
            && ["registry-1.docker.io", "index.docker.io"].contains(&registry));
    same && (https || plain_http_ok(&host_of(realm), insecure))
}
// ANCHOR_END: realm

/// A token fit for `Authorization: Bearer` (RFC 6750's b64token).
pub fn is_bearer_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn credentials_go_to_the_same_origin_or_docker_hubs_pair() {
        let ok = |realm: &str, registry: &str| realm_may_get_credentials(realm, registry, &[]);
        assert!(ok("https://auth.docker.io/token", "registry-1.docker.io"));
        assert!(ok("https://auth.docker.io:443/token", "index.docker.io"));
        assert!(!ok("https://auth.docker.io/token", "ghcr.io"));
        assert!(ok("http://127.0.0.1:5000/token", "127.0.0.1:5000"));
        assert!(ok("https://reg.example:443/auth", "reg.example"));
        assert!(ok("https://Reg.Example:5000/auth", "reg.example:5000"));
        assert!(!ok("https://reg.example:5001/auth", "reg.example:5000"));
        assert!(!ok("http://127.0.0.1:5001/token", "127.0.0.1:5000"));
        assert!(!ok("https://reg.example/auth", "reg.example:5000"));
        assert!(realm_may_get_credentials(
            "http://reg.example:5000/auth",
            "reg.example:5000",
            &["reg.example:5000".into()]
        ));
        assert!(!is_bearer_token("abc\r\nX-Evil: 1"));
        assert!(is_bearer_token("eyJhbGciOi.J9-_x/y+z=="));
        assert!(!ok("http://auth.docker.io/token", "registry-1.docker.io"));
        assert!(!ok("https://evil.example/token", "registry-1.docker.io"));
        assert!(!ok("https://other.azurecr.io/token", "mine.azurecr.io"));
        assert!(!ok("https://127.0.0.2/token", "127.0.0.1:5000"));
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_encode(b"a"), "YQ==");
        for s in ["", "a", "ab", "abc", "user:pa:ss"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert!(base64_decode("!!").is_none());
    }
}
