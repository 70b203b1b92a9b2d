//! seccomp (step 6): a filter on system calls, the last thing set before exec.
//!
//! Capabilities decide what root may do; seccomp decides which system calls
//! may be made at all. A seccomp filter is a small BPF program the kernel runs
//! on every system call's number and arguments; see seccomp(2).
//!
//! caixa's filter is Docker's default profile ([`profile`]): an **allow
//! list**. The calls a program needs are named; every other call answers
//! `EPERM`. A deny list is shorter to read, but a call added to a later
//! kernel (`io_uring_setup` in 5.1, a new socket family) is allowed until
//! someone lists it; an allow list refuses it until someone has looked at it.
//! Three calls are allowed only with some arguments (socket families,
//! `personality` values, `clone` without namespace flags), and groups of calls
//! only when the container keeps the capability that guards them.
//!
//! caixa compiles its filter itself ([`compile`]), the same way it compiles
//! a profile a bundle brings: the profile as an OCI `linux.seccomp`
//! ([`oci_profile`]), a plan per call number, a binary search over the
//! numbers in classic BPF ([`bpf`]), one `seccomp(2)` call. It first used
//! the `seccompiler` crate (Firecracker's), whose linear program cost about
//! 0.55 ms to install at every start; the search costs about 0.1 (Appendix
//! C), and one compiler means one set of rules to trust.
//!
//! `clone3` cannot be filtered by flags (its flags sit in memory the filter
//! cannot read), so without `CAP_SYS_ADMIN` it answers `ENOSYS`: the C
//! library then falls back to `clone`, whose flags the filter can check.
//! Docker does the same.
//!
//! A bundle's `config.json` may bring a profile of its own (podman,
//! containerd and Docker each send one): [`compile`] turns it into a BPF
//! program too, and [`Confinement`] says which filter a [`crate::Spec`]
//! asks for.

pub mod bpf;
pub mod compile;
mod layout;
mod oci;
pub mod profile;

use caps::Capability;
use oci_spec::runtime::LinuxSeccomp;

pub use oci::oci_profile;

/// Building or installing the filter failed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A profile caixa cannot honour (its own, on an architecture it has no
    /// filter for; a bundle's, with a field it cannot compile).
    #[error("seccomp: {0}")]
    Compile(#[from] compile::CompileError),
    /// seccomp(2) refused a compiled filter.
    #[error(
        "seccomp: cannot install the filter: {0}{hint}",
        hint = if *.0 == nix::errno::Errno::EACCES {
            " (without no_new_privs it needs CAP_SYS_ADMIN)"
        } else if *.0 == nix::errno::Errno::EINVAL {
            " (a flag or action this kernel lacks, or no CONFIG_SECCOMP_FILTER?)"
        } else {
            ""
        }
    )]
    Install(nix::errno::Errno),
}

// ANCHOR: confinement
/// Which filter a container gets: a field of [`crate::Spec`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Confinement {
    /// None (`--security-opt seccomp=unconfined`, or no `linux.seccomp`).
    #[default]
    Unconfined,
    /// caixa's default: Docker's profile for the capabilities kept
    /// ([`default_filter`]). A bundle carrying exactly [`oci_profile`]
    /// reads back as this, so a round trip keeps it.
    Builtin,
    /// Any other profile from a bundle's config.json, compiled by caixa's
    /// own [`compile::compile`]; checked when the bundle is read.
    Oci(Box<LinuxSeccomp>),
}
// ANCHOR_END: confinement

impl Confinement {
    /// Whether a filter will be installed.
    pub fn is_confined(&self) -> bool {
        *self != Confinement::Unconfined
    }
}

/// A filter built and ready to install: built while an error can still be
/// reported plainly, installed as late as the kernel allows.
#[derive(Debug)]
pub enum Prepared {
    /// caixa's default filter.
    Builtin(compile::Program),
    /// A compiled OCI profile.
    Oci(compile::Program),
}

/// Builds the filter `confinement` asks for, for a container keeping
/// `kept` capabilities; `None` when it asks for none.
pub fn prepare(
    confinement: &Confinement,
    kept: Option<&[Capability]>,
) -> Result<Option<Prepared>, SeccompError> {
    Ok(match confinement {
        Confinement::Unconfined => None,
        Confinement::Builtin => Some(Prepared::Builtin(default_filter(kept)?)),
        Confinement::Oci(profile) => Some(Prepared::Oci(compile::compile(profile)?)),
    })
}

impl Prepared {
    /// Installs the filter on this thread; it passes on to every child and
    /// survives `execve`. Needs no_new_privs (or `CAP_SYS_ADMIN`), set
    /// just before (see [`bpf::install`]).
    pub fn install(&self) -> Result<(), SeccompError> {
        let (Prepared::Builtin(program) | Prepared::Oci(program)) = self;
        program.install().map_err(SeccompError::Install)
    }
}

impl std::fmt::Display for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prepared::Builtin(program) => {
                write!(f, "{} calls allowed, the rest EPERM", program.calls)
            }
            Prepared::Oci(program) => write!(
                f,
                "config.json's profile: {} calls with rules, the rest {}; {} instructions",
                program.calls,
                program.default,
                program.insns.len()
            ),
        }
    }
}

// ANCHOR: default_filter
/// Docker's default filter for a container keeping `kept` capabilities
/// (`None`: all of root's), for this architecture: the profile as an OCI
/// runtime would receive it, compiled as any other. Every call it names is
/// allowed (some only with some arguments) but `clone3`, which answers
/// `ENOSYS`; x32 and other architectures' calls are killed, the rest answer
/// `EPERM`.
pub fn default_filter(kept: Option<&[Capability]>) -> Result<compile::Program, SeccompError> {
    Ok(compile::compile(&oci_profile(kept))?)
}
// ANCHOR_END: default_filter

#[cfg(test)]
mod tests;
