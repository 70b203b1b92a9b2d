//! uid and gid maps: who a user namespace's ids are on the host (step 6).
//!
//! A new user namespace starts with no ids mapped: every process in it is
//! `nobody` until someone outside writes `/proc/<pid>/uid_map` and `gid_map`,
//! once each. Each line maps a range: `CONTAINER HOST COUNT`. See
//! user_namespaces(7). The child cannot do this for itself with a range wider
//! than its own id, so it asks the parent through the channel
//! ([`crate::sync::Request::WriteIdMaps`]) and waits.

use std::fmt;
use std::str::FromStr;

use nix::unistd::Pid;

/// One range of a uid or gid map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// First id inside the namespace.
    pub container: u32,
    /// The host id it stands for.
    pub host: u32,
    /// How many consecutive ids.
    pub count: u32,
}

/// A map that the kernel would refuse, caught before we try.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    /// Not three numbers separated by colons.
    #[error("id map {0:?} is not CONTAINER:HOST:COUNT (e.g. 0:100000:65536)")]
    Malformed(String),
    /// A range of zero ids, or one that runs past 2^32.
    #[error("id map {0} is empty or runs past the largest id")]
    BadRange(IdMap),
    /// Two ranges cover the same ids inside or outside.
    #[error("id maps {0} and {1} overlap")]
    Overlap(IdMap, IdMap),
    /// Writing `/proc/<pid>/…` failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// What the kernel answered.
        source: std::io::Error,
    },
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.container, self.host, self.count)
    }
}

impl FromStr for IdMap {
    type Err = IdMapError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdMapError::Malformed(s.to_string());
        let mut parts = s.split(':').map(|p| p.parse::<u32>().map_err(|_| bad()));
        let map = IdMap {
            container: parts.next().ok_or_else(bad)??,
            host: parts.next().ok_or_else(bad)??,
            count: parts.next().ok_or_else(bad)??,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(map)
    }
}

/// Checks a whole map the way the kernel will: no empty range, no range past
/// the largest id, no two ranges overlapping inside or outside.
pub fn check(maps: &[IdMap]) -> Result<(), IdMapError> {
    let end = |start: u32, m: &IdMap| u64::from(start) + u64::from(m.count);
    for m in maps {
        if m.count == 0 || end(m.container, m) > 1 << 32 || end(m.host, m) > 1 << 32 {
            return Err(IdMapError::BadRange(*m));
        }
    }
    for (i, a) in maps.iter().enumerate() {
        for b in &maps[i + 1..] {
            let inside = u64::from(a.container) < end(b.container, b)
                && u64::from(b.container) < end(a.container, a);
            let outside = u64::from(a.host) < end(b.host, b) && u64::from(b.host) < end(a.host, a);
            if inside || outside {
                return Err(IdMapError::Overlap(*a, *b));
            }
        }
    }
    Ok(())
}

/// The text the kernel expects in `uid_map`: one `CONTAINER HOST COUNT` per line.
pub fn format_map(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.count))
        .collect()
}

/// Writes the child's gid and uid maps from the parent (host side).
///
/// An unprivileged writer (no CAP_SETGID over the parent namespace) must
/// write `deny` to `setgroups` first: otherwise the child could drop a
/// supplementary group that was there to deny it access (CVE-2014-8989).
// ANCHOR: write_maps
pub fn write_maps(child: Pid, uid: &[IdMap], gid: &[IdMap]) -> Result<(), IdMapError> {
    // EXERCISE(6): write /proc/<child>/gid_map and uid_map (and setgroups "deny" when not root)
    let write = |file: &str, text: &str| {
        let path = format!("/proc/{child}/{file}");
        std::fs::write(&path, text).map_err(|source| IdMapError::Write { path, source })
    };
    if !nix::unistd::geteuid().is_root() {
        write("setgroups", "deny")?;
    }
    write("gid_map", &format_map(gid))?;
    write("uid_map", &format_map(uid))
    // END EXERCISE
}
// ANCHOR_END: write_maps

/// The default id range: container ids 0–65535 are host ids 100000–165535,
/// the range Debian's `useradd` gives the first user in /etc/subuid.
pub const DEFAULT_ID_MAP: IdMap = IdMap {
    container: 0,
    host: 100_000,
    count: 65_536,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_container_host_count() {
        let m: IdMap = "0:100000:65536".parse().unwrap();
        assert_eq!(
            m,
            IdMap {
                container: 0,
                host: 100000,
                count: 65536
            }
        );
        assert_eq!(m.to_string(), "0:100000:65536");
        for bad in ["", "0:1", "0:1:2:3", "a:1:2", "-1:0:1"] {
            assert!(bad.parse::<IdMap>().is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_what_the_kernel_would_refuse() {
        let m = |c, h, n| IdMap {
            container: c,
            host: h,
            count: n,
        };
        assert!(check(&[m(0, 1000, 1)]).is_ok());
        assert!(matches!(check(&[m(0, 1, 0)]), Err(IdMapError::BadRange(_))));
        assert!(matches!(
            check(&[m(0, u32::MAX, 2)]),
            Err(IdMapError::BadRange(_))
        ));
        assert!(matches!(
            check(&[m(0, 1000, 10), m(5, 5000, 10)]),
            Err(IdMapError::Overlap(..))
        ));
        assert!(matches!(
            check(&[m(0, 1000, 10), m(100, 1005, 10)]),
            Err(IdMapError::Overlap(..))
        ));
        assert!(check(&[m(0, 1000, 10), m(10, 1010, 10)]).is_ok());
        assert_eq!(format_map(&[m(0, 1000, 1)]), "0 1000 1\n");
    }
}
