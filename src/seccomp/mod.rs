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
//! Why `seccompiler`: it is the filter compiler of Firecracker (rust-vmm),
//! maintained, pure Rust (no libseccomp C library to link), and small enough
//! to read. We give it rules; it gives a BPF program; one `seccomp(2)` call
//! installs it.
//!
//! `clone3` cannot be filtered by flags (its flags sit in memory the filter
//! cannot read), so without `CAP_SYS_ADMIN` it answers `ENOSYS`: the C
//! library then falls back to `clone`, whose flags the filter can check.
//! Docker does the same.
//!
//! A bundle's `config.json` may bring a profile of its own (podman,
//! containerd and Docker each send one): [`compile`] turns it into a BPF
//! program by hand, [`bpf`] is the little language it is written in, and
//! [`Confinement`] says which filter a [`crate::Spec`] asks for.

pub mod bpf;
pub mod compile;
mod layout;
mod oci;
pub mod profile;

use std::collections::BTreeMap;

use caps::Capability;
use oci_spec::runtime::LinuxSeccomp;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

pub use oci::oci_profile;
use profile::{ArgRule, Test};

/// Building or installing the filter failed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The architecture has no filter here.
    #[error("seccomp: no filter for architecture {0}: use --security-opt seccomp=unconfined")]
    Arch(String),
    /// seccompiler refused a rule.
    #[error("seccomp: cannot build the filter: {0}")]
    Build(String),
    /// seccomp(2) failed.
    #[error("seccomp: cannot install the filter: {0}; the kernel may lack CONFIG_SECCOMP_FILTER")]
    Install(String),
    /// A profile from config.json that caixa cannot honour.
    #[error("seccomp: {0}")]
    Compile(#[from] compile::CompileError),
    /// seccomp(2) refused a compiled profile.
    #[error(
        "seccomp: cannot install the profile: {0}{hint}",
        hint = if *.0 == nix::errno::Errno::EACCES {
            " (without no_new_privs it needs CAP_SYS_ADMIN)"
        } else if *.0 == nix::errno::Errno::EINVAL {
            " (a flag or action this kernel lacks?)"
        } else {
            ""
        }
    )]
    InstallProfile(nix::errno::Errno),
}

// ANCHOR: confinement
/// Which filter a container gets: a field of [`crate::Spec`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Confinement {
    /// None (`--security-opt seccomp=unconfined`, or no `linux.seccomp`).
    #[default]
    Unconfined,
    /// caixa's default: Docker's profile for the capabilities kept, built
    /// by seccompiler ([`default_filters`]). A bundle carrying exactly
    /// [`oci_profile`] reads back as this, so a round trip keeps it.
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
    /// caixa's default filters.
    Builtin(Filters),
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
        Confinement::Builtin => Some(Prepared::Builtin(default_filters(kept)?)),
        Confinement::Oci(profile) => Some(Prepared::Oci(compile::compile(profile)?)),
    })
}

impl Prepared {
    /// Installs the filter on this thread (see [`install`], [`bpf::install`]).
    pub fn install(&self) -> Result<(), SeccompError> {
        match self {
            Prepared::Builtin(filters) => install(filters),
            Prepared::Oci(program) => program.install().map_err(SeccompError::InstallProfile),
        }
    }
}

impl std::fmt::Display for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prepared::Builtin(filters) => {
                write!(f, "{} calls allowed, the rest EPERM", filters.allowed())
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

/// The compiled filters, ready to install: built before `Ready`, so a problem
/// is reported as the real cause; installed as the very last step.
#[derive(Debug)]
pub struct Filters {
    allow: BpfProgram,
    no_clone3: Option<BpfProgram>,
    allowed: usize,
}

impl Filters {
    /// How many calls the allow list names (with or without argument tests).
    pub fn allowed(&self) -> usize {
        self.allowed
    }
}

fn arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| SeccompError::Arch(std::env::consts::ARCH.to_string()))
}

fn build(e: seccompiler::BackendError) -> SeccompError {
    SeccompError::Build(e.to_string())
}

// ANCHOR: arg_rule
/// One argument rule as seccompiler rules: one rule per alternative, since
/// a call matches when any of its rules does (and a rule when all of its
/// conditions do). Arguments are compared as 64-bit values, as libseccomp
/// does for the same profile.
fn seccompiler_rules(rule: &ArgRule) -> Result<Vec<SeccompRule>, SeccompError> {
    rule.any_of
        .iter()
        .map(|test| {
            let (op, value) = match *test {
                Test::Below(v) => (SeccompCmpOp::Lt, v),
                Test::Equal(v) => (SeccompCmpOp::Eq, v),
                Test::Above(v) => (SeccompCmpOp::Gt, v),
                Test::NoneOf(mask) => (SeccompCmpOp::MaskedEq(mask), 0),
            };
            let condition = SeccompCondition::new(rule.arg, SeccompCmpArgLen::Qword, op, value)
                .map_err(build)?;
            SeccompRule::new(vec![condition]).map_err(build)
        })
        .collect()
}
// ANCHOR_END: arg_rule

/// Compiles Docker's default filter for a container keeping `kept`
/// capabilities (`None`: all of root's), for this architecture.
pub fn default_filters(kept: Option<&[Capability]>) -> Result<Filters, SeccompError> {
    let profile = profile::resolve(kept);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = profile
        .allowed
        .iter()
        .map(|call| (call.nr, Vec::new()))
        .collect();
    for rule in &profile.conditional {
        rules.insert(rule.call.nr, seccompiler_rules(rule)?);
    }
    // clone3 passes the allow list so that the second filter's ENOSYS is
    // the only answer (of two ERRNO verdicts the kernel keeps the later
    // filter's, but one verdict needs no rule to explain).
    let no_clone3 = if profile.clone3_enosys {
        rules.insert(libc::SYS_clone3, Vec::new());
        let filter = SeccompFilter::new(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch()?,
        )
        .map_err(build)?;
        let program: BpfProgram = filter.try_into().map_err(build)?;
        Some(program)
    } else {
        None
    };
    let allowed = rules.len();
    let allow = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch()?,
    )
    .map_err(build)?;
    Ok(Filters {
        allow: allow.try_into().map_err(build)?,
        no_clone3,
        allowed,
    })
}

/// Installs the filters on this process; they pass on to every child and
/// survive `execve`. Needs no_new_privs (or CAP_SYS_ADMIN), set just before.
///
/// On x86_64 the x32 ABI reaches the same kernel calls with numbers that have
/// bit 30 set, under the same audit architecture; none of those numbers is
/// on the allow list, so x32 calls answer `EPERM` too.
pub fn install(filters: &Filters) -> Result<(), SeccompError> {
    for program in std::iter::once(&filters.allow).chain(filters.no_clone3.as_ref()) {
        seccompiler::apply_filter(program).map_err(|e| SeccompError::Install(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
