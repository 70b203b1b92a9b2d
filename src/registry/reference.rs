//! Image references, parsed as Docker does.
//!
//! `busybox` is `docker.io/library/busybox:latest`; `team/app:1` is on Docker
//! Hub too; the first component is a registry host only when it has a `.` or
//! a `:` or is `localhost` (`127.0.0.1:5000/app`, `ghcr.io/x/y`).

use std::fmt;

use super::RegistryError;

/// Docker Hub's registry, the default.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry host, with its port.
    pub registry: String,
    /// The repository: `library/busybox`, `team/app`.
    pub repository: String,
    /// A tag, or a digest (`sha256:…`).
    pub tag_or_digest: String,
}

impl Reference {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Reference, RegistryError> {
        let bad = || RegistryError::Reference(text.to_string());
        if text.is_empty() || text.len() > 255 || text.contains(char::is_whitespace) {
            return Err(bad());
        }
        let (name, tag_or_digest) = if let Some((n, d)) = text.split_once('@') {
            if crate::image::digest::hex_of(d).is_none() {
                return Err(bad());
            }
            (n, d.to_string())
        } else {
            // A tag is after the last ':' that follows the last '/'.
            let slash = text.rfind('/').map_or(0, |i| i + 1);
            match text[slash..].rfind(':') {
                Some(i) => (&text[..slash + i], text[slash + i + 1..].to_string()),
                None => (text, "latest".to_string()),
            }
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        // The distribution spec's grammar: a component starts and ends with
        // a letter or a digit (so `.` and `..` are never one), a tag starts
        // with a word character.
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let component_ok = |c: &str| {
            c.as_bytes().first().is_some_and(alnum)
                && c.as_bytes().last().is_some_and(alnum)
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        };
        let tag_ok = tag_or_digest.starts_with("sha256:")
            || (tag_or_digest
                .as_bytes()
                .first()
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                && tag_or_digest.len() <= 128
                && tag_or_digest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        // A host: labels of letters, digits and `-`, a port after `:`.
        let host_ok = |h: &str| {
            if let Some((v6, rest)) = h.strip_prefix('[').and_then(|r| r.split_once(']')) {
                return !v6.is_empty()
                    && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
                    && (rest.is_empty()
                        || rest.strip_prefix(':').is_some_and(|p| {
                            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
                        }));
            }
            let (host, port) = h.split_once(':').unwrap_or((h, "1"));
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && host.split('.').all(|label| {
                    label
                        .as_bytes()
                        .first()
                        .is_some_and(u8::is_ascii_alphanumeric)
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if !host_ok(&registry) || !repository.split('/').all(component_ok) || !tag_ok {
            return Err(bad());
        }
        Ok(Reference {
            registry,
            repository,
            tag_or_digest,
        })
    }

    /// The host requests go to (Docker Hub's API lives elsewhere).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// The name the image gets in the local store.
    pub fn store_name(&self) -> String {
        let sep = if self.tag_or_digest.starts_with("sha256:") {
            "@"
        } else {
            ":"
        };
        if self.registry == DOCKER_HUB {
            let short = self
                .repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository);
            format!("{short}{sep}{}", self.tag_or_digest)
        } else {
            format!(
                "{}/{}{sep}{}",
                self.registry, self.repository, self.tag_or_digest
            )
        }
    }
}

/// The store's name for `name`, with Docker's `:latest` when no tag or
/// digest is given: `demo` → `demo:latest`, `localhost:5000/app` →
/// `localhost:5000/app:latest` (the `:5000` is a port, not a tag: only the
/// reference parser knows that). One place decides it for load, run and rmi.
pub fn store_name_of(name: &str) -> String {
    match Reference::parse(name) {
        Ok(reference) => reference.store_name(),
        // Not a registry reference (a local name with odd characters):
        // a tag is after the last ':' that follows the last '/'.
        Err(_) => {
            let last = name.rsplit('/').next().unwrap_or(name);
            if last.contains(':') || name.contains('@') {
                name.to_string()
            } else {
                format!("{name}:latest")
            }
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.tag_or_digest.starts_with("sha256:") {
            "@"
        } else {
            ":"
        };
        write!(
            f,
            "{}/{}{sep}{}",
            self.registry, self.repository, self.tag_or_digest
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_port_is_not_a_tag() {
        assert_eq!(
            store_name_of("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            store_name_of("localhost:5000/app:1"),
            "localhost:5000/app:1"
        );
        assert_eq!(store_name_of("demo"), "demo:latest");
        assert_eq!(store_name_of("demo:1"), "demo:1");
        assert_eq!(store_name_of("team/app"), "team/app:latest");
    }

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn names_outside_the_grammar_are_refused() {
        for bad in [
            "../x",
            "./x",
            "a/../b",
            "x/..",
            ".hidden",
            "a-/b",
            "-a",
            "a:.tag",
            "a:-t",
            "..:5000/x",
            "h:po/x",
            "[zz]:5000/x",
            "a b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(r("[::1]:5000/x:1").registry, "[::1]:5000");
        assert_eq!(r("a.b-c.d/x__y/z.w-v:_t.1").repository, "x__y/z.w-v");
    }

    #[test]
    fn parses_like_docker() {
        assert_eq!(r("busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(
            r("library/busybox:1.36").to_string(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(r("team/app:v2").repository, "team/app");
        let local = r("127.0.0.1:5000/team/app:1");
        assert_eq!(
            (
                local.registry.as_str(),
                local.repository.as_str(),
                local.tag_or_digest.as_str()
            ),
            ("127.0.0.1:5000", "team/app", "1")
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            r(&format!("localhost:5000/app@{digest}")).tag_or_digest,
            digest
        );
        assert_eq!(r("busybox").store_name(), "busybox:latest");
        for bad in [
            "",
            "Busybox",
            "a b",
            "app@sha256:xyz",
            "app:",
            "/app",
            "app//x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
