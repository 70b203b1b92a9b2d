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

/// Docker's `--ulimit` names (setrlimit's without `RLIMIT_`, in lower
/// case), and the OCI type each is.
pub const NAMES: [(&str, PosixRlimitType); 16] = [
    ("cpu", PosixRlimitType::RlimitCpu),
    ("fsize", PosixRlimitType::RlimitFsize),
    ("data", PosixRlimitType::RlimitData),
    ("stack", PosixRlimitType::RlimitStack),
    ("core", PosixRlimitType::RlimitCore),
    ("rss", PosixRlimitType::RlimitRss),
    ("nproc", PosixRlimitType::RlimitNproc),
    ("nofile", PosixRlimitType::RlimitNofile),
    ("memlock", PosixRlimitType::RlimitMemlock),
    ("as", PosixRlimitType::RlimitAs),
    ("locks", PosixRlimitType::RlimitLocks),
    ("sigpending", PosixRlimitType::RlimitSigpending),
    ("msgqueue", PosixRlimitType::RlimitMsgqueue),
    ("nice", PosixRlimitType::RlimitNice),
    ("rtprio", PosixRlimitType::RlimitRtprio),
    ("rttime", PosixRlimitType::RlimitRttime),
];

/// The OCI type of a resource (to write a bundle's `process.rlimits`).
pub fn type_of(resource: Resource) -> Option<PosixRlimitType> {
    NAMES
        .iter()
        .map(|(_, t)| *t)
        .find(|t| resource_of(*t) == resource)
}

/// One limit by Docker's name (`nofile`), checked as the kernel would.
pub fn by_name(name: &str, soft: u64, hard: u64) -> Result<Rlimit, String> {
    let Some((_, typ)) = NAMES.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "unknown ulimit {name:?}: use one of {}",
            known.join(", ")
        ));
    };
    if soft > hard {
        return Err(format!(
            "ulimit {name}: the soft limit {soft} is above the hard limit {hard}"
        ));
    }
    Ok(Rlimit {
        resource: resource_of(*typ),
        soft,
        hard,
    })
}

/// `--ulimit NAME=SOFT[:HARD]` (one number sets both; `-1` is unlimited).
pub fn parse_ulimit(text: &str) -> Result<Rlimit, String> {
    let (name, values) = text.split_once('=').ok_or_else(|| {
        format!("invalid --ulimit {text:?}: use NAME=SOFT[:HARD], e.g. nofile=1024:2048")
    })?;
    let number = |v: &str| -> Result<u64, String> {
        match v {
            "-1" | "unlimited" => Ok(u64::MAX),
            _ => v
                .parse()
                .map_err(|_| format!("invalid --ulimit {text:?}: {v:?} is not a number")),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (number(s)?, number(h)?),
        None => (number(values)?, number(values)?),
    };
    by_name(name, soft, hard)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_read_as_docker_writes_them() {
        let l = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!(
            (l.resource, l.soft, l.hard),
            (Resource::RLIMIT_NOFILE, 1024, 2048)
        );
        let l = parse_ulimit("nproc=64").unwrap();
        assert_eq!((l.soft, l.hard), (64, 64));
        assert_eq!(parse_ulimit("core=-1").unwrap().hard, u64::MAX);
        assert!(parse_ulimit("nofile=2048:1024").is_err());
        assert!(parse_ulimit("files=1").unwrap_err().contains("nofile"));
        assert!(parse_ulimit("nofile").is_err());
        assert!(parse_ulimit("nofile=x").is_err());
        for (name, typ) in NAMES {
            assert_eq!(type_of(resource_of(typ)), Some(typ), "{name}");
        }
    }
}
