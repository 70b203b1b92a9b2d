//! The UTS namespace (step 5): a host name of the container's own.
//!
//! UTS stands for "UNIX Time-sharing System", after the `struct utsname` that
//! uname(2) fills. In a new UTS namespace `sethostname(2)` changes the name the
//! container sees and leaves the host's alone; see uts_namespaces(7).

use nix::errno::Errno;

/// The longest host name the kernel accepts (`HOST_NAME_MAX`).
pub const MAX_HOSTNAME_LEN: usize = 64;

/// Why the host name could not be set.
#[derive(Debug, thiserror::Error)]
#[error("cannot set the host name to {name:?}: sethostname failed: {errno}")]
pub struct HostnameError {
    /// The name asked for.
    pub name: String,
    /// What the kernel answered.
    pub errno: Errno,
}

/// Whether `name` is a host name Docker would accept: 1–64 characters of
/// letters, digits, `-` and `.`, not starting with `-` or `.`.
pub fn is_valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOSTNAME_LEN
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A short random id, as Docker uses for a container's default host name:
/// 12 hexadecimal digits from the kernel's random pool.
pub fn short_random_id() -> String {
    crate::ids::random_hex(6)
}

// ANCHOR: set_hostname
/// Gives the container its host name. Runs in the child, inside its new UTS
/// namespace: the same call outside one would rename the host.
pub fn set_hostname(name: &str) -> Result<(), HostnameError> {
    // EXERCISE(5): set the container's host name with sethostname(2)
    nix::unistd::sethostname(name).map_err(|errno| HostnameError {
        name: name.to_string(),
        errno,
    })
    // END EXERCISE
}
// ANCHOR_END: set_hostname

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_the_rules() {
        assert!(is_valid_hostname("caixa"));
        assert!(is_valid_hostname("web-1.local"));
        assert!(!is_valid_hostname(""));
        assert!(!is_valid_hostname("-x"));
        assert!(!is_valid_hostname("a b"));
        assert!(!is_valid_hostname(&"a".repeat(65)));
    }

    #[test]
    fn random_ids_are_twelve_hex_digits() {
        let id = short_random_id();
        assert_eq!(id.len(), 12);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, short_random_id());
    }
}
