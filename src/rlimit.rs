//! Resource limits (`setrlimit(2)`): per-process ceilings the container's
//! command starts with (step 12, `process.rlimits` of a bundle).
//!
//! They are not cgroups: an rlimit counts for one process (and what it
//! forks inherits a copy), a cgroup counts for the whole group. A bundle
//! asks for them because programs check them: `RLIMIT_NOFILE` is how many
//! files a server may open. Anyone may lower a limit; raising a *hard*
//! limit needs `CAP_SYS_RESOURCE`, so they are set while the init still
//! has every capability, before they are dropped.

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use oci_spec::runtime::PosixRlimitType;

/// One limit to set: soft (what is enforced) and hard (the ceiling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// Which resource.
    pub resource: Resource,
    /// The limit enforced.
    pub soft: u64,
    /// How far the process may raise `soft` itself.
    pub hard: u64,
}

/// A limit that could not be set.
#[derive(Debug, thiserror::Error)]
#[error("{}", explain(.resource, *.soft, *.hard, *.errno))]
pub struct RlimitError {
    resource: Resource,
    soft: u64,
    hard: u64,
    errno: Errno,
}

fn explain(resource: &Resource, soft: u64, hard: u64, errno: Errno) -> String {
    let now = getrlimit(*resource).map(|(_, h)| h).unwrap_or(0);
    let advice = match errno {
        Errno::EPERM => format!(
            "raising a hard limit needs CAP_SYS_RESOURCE, which this caixa does not have: ask for at most {now} (the hard limit now)"
        ),
        Errno::EINVAL => "the soft limit must not exceed the hard limit".to_string(),
        _ => "see setrlimit(2)".to_string(),
    };
    format!("setrlimit({resource:?}, soft {soft}, hard {hard}) failed: {errno}: {advice}")
}

/// The resource an OCI rlimit type names.
pub fn resource_of(typ: PosixRlimitType) -> Resource {
    match typ {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

// ANCHOR: set_all
/// Sets every limit, in order; the first failure is the error.
pub fn set_all(limits: &[Rlimit]) -> Result<(), RlimitError> {
    for limit in limits {
        setrlimit(limit.resource, limit.soft, limit.hard).map_err(|errno| RlimitError {
            resource: limit.resource,
            soft: limit.soft,
            hard: limit.hard,
            errno,
        })?;
    }
    Ok(())
}
// ANCHOR_END: set_all
