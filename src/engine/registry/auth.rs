//! Who may use the registry: an htpasswd file of bcrypt entries, asked
//! with HTTP Basic auth on every request.
//!
//! This is what Docker's registry calls `htpasswd` auth: `user:$2y$…`
//! lines (`htpasswd -B`), a `401` with `WWW-Authenticate: Basic
//! realm=…` to a request without good credentials, and clients (the
//! Docker CLI, skopeo, step 10) that answer with `Authorization: Basic`.
//! All or nothing: a user may pull and push every repository (the token
//! mode, [`super::token`], is per repository and action). Basic auth
//! sends the password with every request, readable by anyone on the
//! path, so serve it on loopback or behind TLS.
//!
//! bcrypt is slow on purpose (tens of milliseconds a check), and a push
//! is dozens of requests: a password proven once is remembered, as its
//! sha256 with the user's name, for as long as the registry runs.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use sha2::{Digest as _, Sha256};

use super::http::{Head, Reply};

/// The realm clients are told; they show it when they ask for a password.
const REALM: &str = "caixa-registry";
/// The most users a file may hold, and the longest line: the file is
/// read once, whole.
const MAX_USERS: usize = 10_000;

/// The users of an htpasswd file.
#[derive(Debug)]
pub(super) struct Htpasswd {
    hashes: HashMap<String, String>,
    proven: Mutex<HashSet<[u8; 32]>>,
}

/// Why an htpasswd file is refused, with its line.
#[derive(Debug, thiserror::Error)]
pub(super) enum HtpasswdError {
    /// The file cannot be read.
    #[error("cannot read the htpasswd file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A line is not `user:bcrypt-hash`.
    #[error("htpasswd line {line}: not user:$2y$… (bcrypt); make entries with `htpasswd -B`")]
    Line {
        /// The line's number, from 1.
        line: usize,
    },
    /// More users than [`MAX_USERS`].
    #[error("the htpasswd file has more than {MAX_USERS} users")]
    TooMany,
}

impl Htpasswd {
    /// Reads the htpasswd file at `path`: each line `user:hash`, the hash
    /// bcrypt's (`$2y$`, `$2b$`, `$2a$`); blank lines and `#` comments
    /// skipped. Any other line is refused, rather than a user silently
    /// locked out (or let in by a scheme not checked here).
    pub(super) fn read(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut hashes = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .filter(|(user, hash)| {
                    !user.is_empty() && ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p))
                })
                .ok_or(HtpasswdError::Line { line: i + 1 })?;
            hashes.insert(user.to_string(), hash.to_string());
            if hashes.len() > MAX_USERS {
                return Err(HtpasswdError::TooMany);
            }
        }
        Ok(Htpasswd {
            hashes,
            proven: Mutex::new(HashSet::new()),
        })
    }

    // ANCHOR: basic_auth
    /// `Ok` if `head` carries the Basic credentials of a user of the
    /// file; the `401` and its challenge otherwise.
    pub(super) fn check(&self, head: &Head) -> Result<(), Reply> {
        let refused = || {
            Reply::error(
                401,
                "UNAUTHORIZED",
                "authentication required: log in with a user of the registry's htpasswd file",
            )
            .header("www-authenticate", format!("Basic realm=\"{REALM}\""))
        };
        let (user, password) = head
            .header("authorization")
            .and_then(basic_credentials)
            .ok_or_else(refused)?;
        if !self.verify(&user, &password) {
            return Err(refused());
        }
        Ok(())
    }

    /// Whether `password` is `user`'s: a password proven once is
    /// remembered (its sha256 with the name), so bcrypt runs once.
    pub(super) fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.hashes.get(user) else {
            return false;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if self
            .proven
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key)
        {
            return true;
        }
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return false;
        }
        let mut proven = self.proven.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded: a user proves only as many passwords as the file holds.
        if proven.len() < MAX_USERS {
            proven.insert(key);
        }
        true
    }
    // ANCHOR_END: basic_auth

    /// The users' names (the access file may name only these).
    pub(super) fn users(&self) -> HashSet<String> {
        self.hashes.keys().cloned().collect()
    }
}

/// `Basic base64(user:password)` → the user and the password.
pub(super) fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = crate::registry::auth::base64_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_user_colon_password_in_base64() {
        // base64("ana:se:cret")
        assert_eq!(
            basic_credentials("Basic YW5hOnNlOmNyZXQ="),
            Some(("ana".into(), "se:cret".into()))
        );
        assert_eq!(basic_credentials("Bearer YW5hOnNlOmNyZXQ="), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(basic_credentials("Basic"), None);
    }

    #[test]
    fn only_bcrypt_lines_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let hash = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(&file, format!("# users\nana:{hash}\n\n")).unwrap();
        let users = Htpasswd::read(&file).unwrap();
        assert!(users.hashes.contains_key("ana"));
        std::fs::write(&file, "bob:{SHA}abc\n").unwrap();
        assert!(matches!(
            Htpasswd::read(&file),
            Err(HtpasswdError::Line { line: 1 })
        ));
    }
}
