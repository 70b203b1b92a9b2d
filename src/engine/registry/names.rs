//! What a registry client may name: the distribution spec's grammar for
//! repository names, tags and digests, checked before anything is looked
//! up with them: repositories, tags, digests and upload session ids.
//!
//! A name becomes a path in the store and text in answers; checked first,
//! `../`, an escaped `/`, a NUL, an upper-case letter or a name of a
//! thousand characters never get that far. The errors are the spec's own
//! codes, which clients (the Docker CLI, skopeo, step 10) show as such.

/// The longest repository name the spec's registries accept.
const MAX_NAME: usize = 255;
/// The longest tag (the grammar's `{0,127}` after its first character).
const MAX_TAG: usize = 128;

/// A path of the distribution API, its parts checked.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route<'a> {
    /// `/v2/`: "this server speaks the API" (and, with auth, "you may").
    Base,
    /// `/v2/_catalog`: the repositories.
    Catalog,
    /// `/v2/NAME/tags/list`: a repository's tags.
    Tags {
        /// The repository.
        name: &'a str,
    },
    /// `/v2/NAME/manifests/REFERENCE`: a tag, or a digest (it has a `:`).
    Manifest {
        /// The repository.
        name: &'a str,
        /// The tag or digest.
        reference: &'a str,
    },
    /// `/v2/NAME/blobs/DIGEST`.
    Blob {
        /// The repository.
        name: &'a str,
        /// The digest.
        digest: &'a str,
    },
    /// `/v2/NAME/blobs/uploads/`: where an upload starts.
    UploadStart {
        /// The repository.
        name: &'a str,
    },
    /// `/v2/NAME/blobs/uploads/ID`: an upload under way.
    Upload {
        /// The repository.
        name: &'a str,
        /// The session id: the server's own 32 lower-case hex digits.
        id: &'a str,
    },
}

/// How many hex digits an upload session id has (16 random bytes).
pub(super) const ID_HEX: usize = 32;

/// Why a path is refused: the status, the spec's code and the words.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refused {
    pub(super) status: u16,
    pub(super) code: &'static str,
    pub(super) message: String,
}

fn refused(status: u16, code: &'static str, message: String) -> Refused {
    Refused {
        status,
        code,
        message,
    }
}

impl Route<'_> {
    // ANCHOR: route_parse
    /// The route of `path` (as sent, not percent-decoded), its name and
    /// reference checked against the spec's grammar.
    pub(super) fn parse(path: &str) -> Result<Route<'_>, Refused> {
        let unknown = || refused(404, "NAME_UNKNOWN", "not a distribution API path".into());
        if path == "/v2/" || path == "/v2" {
            return Ok(Route::Base);
        }
        let rest = path.strip_prefix("/v2/").ok_or_else(unknown)?;
        if rest == "_catalog" {
            return Ok(Route::Catalog);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            check_name(name)?;
            return Ok(Route::Tags { name });
        }
        let start = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"));
        if let Some(name) = start {
            check_name(name)?;
            return Ok(Route::UploadStart { name });
        }
        // The reference has no '/'; the word before it says what it is.
        let (prefix, reference) = rest.rsplit_once('/').ok_or_else(unknown)?;
        if let Some(name) = prefix.strip_suffix("/blobs/uploads") {
            check_name(name)?;
            check_id(reference)?;
            return Ok(Route::Upload {
                name,
                id: reference,
            });
        }
        let (name, kind) = prefix.rsplit_once('/').ok_or_else(unknown)?;
        if kind != "manifests" && kind != "blobs" {
            return Err(unknown());
        }
        check_name(name)?;
        match kind {
            "blobs" => {
                check_digest(reference)?;
                Ok(Route::Blob {
                    name,
                    digest: reference,
                })
            }
            _ => {
                if reference.contains(':') {
                    check_digest(reference)?;
                } else {
                    check_tag(reference)?;
                }
                Ok(Route::Manifest { name, reference })
            }
        }
    }
    // ANCHOR_END: route_parse
}

/// What is shown of a refused value: printable, and not all of a long one.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(80).collect();
    let more = if cut.len() < value.len() { "…" } else { "" };
    format!("{cut:?}{more}")
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
/// at most 255 characters.
pub(super) fn check_name(name: &str) -> Result<(), Refused> {
    let ok = name.len() <= MAX_NAME && name.split('/').all(component_ok);
    if ok {
        return Ok(());
    }
    Err(refused(
        400,
        "NAME_INVALID",
        format!(
            "invalid repository name {}: use lower-case letters and digits, separated by '.', '_', '__', '-' or '/', at most {MAX_NAME} characters",
            shown(name)
        ),
    ))
}

/// One component of a name: alphanumeric runs joined by one separator.
fn component_ok(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false; // empty, or a separator first, or two in a row
        }
        if i == bytes.len() {
            return true;
        }
        // A separator: '.', '_', '__', or any number of '-'.
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += if bytes.get(i + 1) == Some(&b'_') {
                    2
                } else {
                    1
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), Refused> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = tag.len() <= MAX_TAG
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        return Ok(());
    }
    Err(refused(
        400,
        "TAG_INVALID",
        format!(
            "invalid tag {}: use letters, digits, '_', '.' and '-' (not first), at most {MAX_TAG}",
            shown(tag)
        ),
    ))
}

/// An upload session id as this server makes them: exactly
/// [`ID_HEX`] lower-case hex digits. Anything else never becomes a path;
/// it is an upload this server does not know.
fn check_id(id: &str) -> Result<(), Refused> {
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if id.len() == ID_HEX && id.bytes().all(hex) {
        return Ok(());
    }
    Err(refused(
        404,
        "BLOB_UPLOAD_UNKNOWN",
        format!("no upload {}: start one with POST", shown(id)),
    ))
}

/// `sha256:` and 64 lower-case hex digits: the one algorithm this
/// registry's store holds (the spec lets a registry refuse the others).
pub(super) fn check_digest(digest: &str) -> Result<(), Refused> {
    if crate::image::digest::hex_of(digest).is_some() {
        return Ok(());
    }
    Err(refused(
        400,
        "DIGEST_INVALID",
        format!(
            "invalid digest {}: use sha256: and 64 lower-case hex digits",
            shown(digest)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(path: &str) -> &'static str {
        Route::parse(path).err().map_or("ok", |r| r.code)
    }

    #[test]
    fn names_follow_the_spec_grammar() {
        for good in ["a", "library/busybox", "a.b_c__d---e/f0", "x/y/z"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_NAME + 1);
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a.",
            "_a",
            "a___b",
            "a._b",
            "a%2Fb",
            "a b",
            "a\0b",
            long.as_str(),
        ] {
            assert_eq!(check_name(bad).unwrap_err().code, "NAME_INVALID", "{bad:?}");
        }
    }

    #[test]
    fn routes_check_names_and_references() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            Route::parse("/v2/team/app/manifests/v1.0_rc-1"),
            Ok(Route::Manifest {
                name: "team/app",
                reference: "v1.0_rc-1"
            })
        );
        assert_eq!(code(&format!("/v2/app/manifests/{digest}")), "ok");
        assert_eq!(code(&format!("/v2/app/blobs/{digest}")), "ok");
        assert_eq!(code("/v2/../../etc/manifests/latest"), "NAME_INVALID");
        assert_eq!(code("/v2/a%2F..%2Fb/manifests/latest"), "NAME_INVALID");
        assert_eq!(code("/v2/App/manifests/latest"), "NAME_INVALID");
        assert_eq!(code("/v2/app/manifests/.hidden"), "TAG_INVALID");
        assert_eq!(code("/v2/app/manifests/..%2F..%2Fx"), "TAG_INVALID");
        let long_tag = "t".repeat(MAX_TAG + 1);
        assert_eq!(
            code(&format!("/v2/app/manifests/{long_tag}")),
            "TAG_INVALID"
        );
        assert_eq!(code("/v2/app/manifests/sha256:abc"), "DIGEST_INVALID");
        assert_eq!(code("/v2/app/blobs/latest"), "DIGEST_INVALID");
        let upper = format!("sha256:{}", "A".repeat(64));
        assert_eq!(code(&format!("/v2/app/blobs/{upper}")), "DIGEST_INVALID");
        assert_eq!(
            Route::parse("/v2/app/tags/list"),
            Ok(Route::Tags { name: "app" })
        );
        assert_eq!(code("/v2/App/tags/list"), "NAME_INVALID");
        assert_eq!(Route::parse("/v2/_catalog"), Ok(Route::Catalog));
        assert_eq!(Route::parse("/v2/"), Ok(Route::Base));
        assert_eq!(
            Route::parse("/v2/a/b/blobs/uploads/"),
            Ok(Route::UploadStart { name: "a/b" })
        );
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            Route::parse(&format!("/v2/a/blobs/uploads/{id}")),
            Ok(Route::Upload { name: "a", id })
        );
        for bad in [
            "..",
            "..%2F..%2Fx",
            "0123",
            &id.to_uppercase(),
            &format!("{id}0"),
        ] {
            assert_eq!(
                code(&format!("/v2/a/blobs/uploads/{bad}")),
                "BLOB_UPLOAD_UNKNOWN",
                "{bad}"
            );
        }
        assert_eq!(code("/v2/../blobs/uploads/"), "NAME_INVALID");
        assert_eq!(code("/v2/tags/list"), "NAME_UNKNOWN");
        assert_eq!(code("/v3/app/manifests/latest"), "NAME_UNKNOWN");
    }
}
