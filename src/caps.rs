//! Capabilities (step 6): root's power, cut into pieces, and most pieces dropped.
//!
//! Since Linux 2.2, "root" is not one privilege but about forty capabilities,
//! each allowing one kind of operation (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`, …);
//! see capabilities(7). A process has five sets of them. Docker keeps 14
//! harmless-enough ones and drops the rest, so root in a container can
//! `chown` its files but not load kernel modules or mount filesystems.
//!
//! Which sets and why: the **bounding** set caps everything the process and
//! its children can ever gain, even by exec'ing a setuid program; **permitted**
//! and **effective** are what it has now; **inheritable** and **ambient** pass
//! capabilities across `execve` to non-root programs. We empty the last two:
//! runc and Moby once left inheritable set, so a program with inheritable file
//! capabilities gained them when run by a non-root user (CVE-2022-24769).

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

/// Docker's default capabilities, the 14 kept by `docker run`.
// ANCHOR: default_capabilities
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::CAP_CHOWN,            // chown files inside (package managers)
    Capability::CAP_DAC_OVERRIDE,     // root reads/writes any file it can see
    Capability::CAP_FSETID,           // keep setuid bits when modifying files
    Capability::CAP_FOWNER,           // chmod/utime files it does not own
    Capability::CAP_MKNOD,            // create device nodes (opening them is still limited)
    Capability::CAP_NET_RAW,          // raw sockets: ping
    Capability::CAP_SETGID,           // change group id (su, daemons dropping privilege)
    Capability::CAP_SETUID,           // change user id
    Capability::CAP_SETFCAP,          // set file capabilities (package installs)
    Capability::CAP_SETPCAP,          // drop capabilities from its own bounding set
    Capability::CAP_NET_BIND_SERVICE, // bind ports below 1024: a web server on :80
    Capability::CAP_SYS_CHROOT,       // chroot(2), which some daemons use to sandbox
    Capability::CAP_KILL,             // signal processes of other uids (in its namespace)
    Capability::CAP_AUDIT_WRITE,      // write to the audit log (login, sshd)
];
// ANCHOR_END: default_capabilities

/// A capability name that is not one.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// Not a capability of capabilities(7).
    #[error(
        "unknown capability {0:?}: use a name from capabilities(7), e.g. NET_ADMIN or CAP_NET_ADMIN, or ALL"
    )]
    Unknown(String),
    /// The kernel refused a change.
    #[error("cannot {what}: {source}")]
    Apply {
        /// What we tried.
        what: String,
        /// The error from the caps crate.
        source: caps::errors::CapsError,
    },
}

/// Parses `NET_ADMIN`, `cap_net_admin` or `CAP_NET_ADMIN`; `ALL` is every one.
pub fn parse(name: &str) -> Result<Vec<Capability>, CapsError> {
    let upper = name.to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(caps::runtime::thread_all_supported().into_iter().collect());
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    Capability::from_str(&full)
        .map(|c| vec![c])
        .map_err(|_| CapsError::Unknown(name.to_string()))
}

/// Docker's defaults, plus `add`, minus `drop` (drop wins, as in Docker).
pub fn resolve(add: &[Capability], drop: &[Capability]) -> Vec<Capability> {
    let mut set: Vec<Capability> = DEFAULT_CAPABILITIES.to_vec();
    for cap in add {
        if !set.contains(cap) {
            set.push(*cap);
        }
    }
    set.retain(|c| !drop.contains(c));
    set.sort_by_key(|c| c.index());
    set
}

/// The bit mask `/proc/<pid>/status` shows for a set (`CapEff:` …).
pub fn mask(set: &[Capability]) -> u64 {
    set.iter().fold(0, |m, c| m | c.bitmask())
}

// ANCHOR: drop_capabilities
/// Reduces this process to `keep`: bounding, permitted and effective become
/// `keep`; inheritable and ambient become empty.
///
/// The bounding set goes first: removing from it needs `CAP_SETPCAP` in the
/// effective set, which the last call may take away.
pub fn drop_capabilities(keep: &[Capability]) -> Result<(), CapsError> {
    // EXERCISE(6): drop every capability not in `keep` from the bounding set, empty ambient and inheritable, then set the effective set to `keep` and only then the permitted set (effective must stay within permitted, or EPERM)
    let apply = |what: &str, result: Result<(), caps::errors::CapsError>| {
        result.map_err(|source| CapsError::Apply {
            what: what.to_string(),
            source,
        })
    };
    let keep_set: CapsHashSet = keep.iter().copied().collect();
    // Only the capabilities this kernel knows (CAP_BPF and friends are 5.8+).
    for cap in caps::runtime::thread_all_supported() {
        if !keep_set.contains(&cap) {
            apply(
                &format!("drop {cap} from the bounding set"),
                caps::drop(None, CapSet::Bounding, cap),
            )?;
        }
    }
    apply("clear the ambient set", caps::clear(None, CapSet::Ambient))?;
    apply(
        "clear the inheritable set",
        caps::clear(None, CapSet::Inheritable),
    )?;
    apply(
        "set the effective set",
        caps::set(None, CapSet::Effective, &keep_set),
    )?;
    apply(
        "set the permitted set",
        caps::set(None, CapSet::Permitted, &keep_set),
    )
    // END EXERCISE
}
// ANCHOR_END: drop_capabilities

/// Makes the effective set equal the permitted set: after a change to a
/// non-root uid (with `PR_SET_KEEPCAPS`) the kernel empties the effective
/// set, and cutting the bounding set needs `CAP_SETPCAP` in it.
pub fn raise_effective() -> Result<(), CapsError> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(|source| CapsError::Apply {
        what: "read the permitted set".into(),
        source,
    })?;
    caps::set(None, CapSet::Effective, &permitted).map_err(|source| CapsError::Apply {
        what: "raise the effective set".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_dockers_mask() {
        assert_eq!(mask(&DEFAULT_CAPABILITIES), 0x0000_0000_a804_25fb);
    }

    #[test]
    fn names_parse_with_or_without_the_prefix() {
        assert_eq!(parse("NET_ADMIN").unwrap(), [Capability::CAP_NET_ADMIN]);
        assert_eq!(parse("cap_sys_time").unwrap(), [Capability::CAP_SYS_TIME]);
        assert!(parse("ALL").unwrap().len() > 30);
        assert!(parse("NOPE").is_err());
    }

    #[test]
    fn add_then_drop() {
        let set = resolve(&[Capability::CAP_NET_ADMIN], &[Capability::CAP_CHOWN]);
        assert!(set.contains(&Capability::CAP_NET_ADMIN));
        assert!(!set.contains(&Capability::CAP_CHOWN));
        assert_eq!(set.len(), 14);
    }
}
