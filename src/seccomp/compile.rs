//! An OCI `linux.seccomp` profile, read with libseccomp's meaning, as caixa's
//! own plan of rules; [`compile`] then lays the plan out as a BPF program
//! (`super::layout`) (step 6).
//!
//! podman, containerd and Docker send a profile in `config.json`; runc and
//! crun hand it to libseccomp, which builds the filter. caixa builds it
//! itself, and means what libseccomp means (runtime-spec `config-linux.md`,
//! "Seccomp"; seccomp_rule_add(3)):
//!
//! - **Names** are looked up for the architecture caixa runs on. A name
//!   that exists only on others (`_llseek`, `socketcall` on x86_64) is
//!   skipped, as libseccomp does; a name no architecture knows is an error.
//! - **An entry** applies its action to each of its calls when *all* of its
//!   argument comparisons hold. Arguments are 64-bit, compared unsigned.
//! - **Several entries of one call**: an entry without arguments decides
//!   for the call whatever the others say, and of two such the first stays
//!   (libseccomp's `db.c` drops the later one, or every conditional rule,
//!   whichever order they came in). Entries with arguments are tried in the
//!   profile's order and the first that holds decides. libseccomp merges them
//!   into one tree of comparisons instead, and refuses two with the same
//!   comparisons but different actions; for rules whose matches do not
//!   overlap (podman's, containerd's and Docker's) both give the same verdict.
//! - **An entry whose action is the default action** is dropped (libseccomp
//!   refuses it with `EACCES`; runc, crun and youki skip it), so it cannot
//!   shadow a later entry.
//! - **`errnoRet`**: `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` carry it (`EPERM`
//!   when absent, for `defaultErrnoRet` too); any other action with one is
//!   refused, as the spec says.
//! - **Architectures**: caixa compiles the native one only. Every other
//!   `seccomp_data.arch` — listed in the profile or not — is killed
//!   (`SECCOMP_RET_KILL_PROCESS`), and so is a call with the x32 bit
//!   (`0x40000000`) in its number on x86_64: a 32-bit program in the container
//!   dies with SIGSYS rather than run under rules caixa did not build. That is
//!   never less confined than asked; libseccomp would build a table per
//!   listed architecture instead.
//!
//! Refused, naming the field: `SCMP_ACT_NOTIFY` and `listenerPath` (a
//! supervisor process caixa does not run), two comparisons of one argument
//! in one entry (libseccomp ANDs them, runc splits them into an OR: the
//! profile means two things), an argument index past 5, a value that does not
//! fit 16 bits where `SECCOMP_RET_DATA` holds it, and a program past 4096
//! instructions.

use std::collections::BTreeMap;
use std::str::FromStr;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use super::bpf::Insn;

/// A profile caixa cannot honour exactly, or one that is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    /// Something caixa does not implement.
    #[error("{field}: {why}")]
    Unsupported {
        /// The JSON path of the field (`linux.seccomp.syscalls[3].action`).
        field: String,
        /// Why, and what to do instead.
        why: String,
    },
    /// Something no runtime could honour (a call no architecture has).
    #[error("{field}: {why}")]
    Invalid {
        /// The JSON path of the field.
        field: String,
        /// What is wrong with it.
        why: String,
    },
}

impl CompileError {
    /// The JSON path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            CompileError::Unsupported { field, .. } | CompileError::Invalid { field, .. } => field,
        }
    }
}

fn unsupported(field: String, why: impl Into<String>) -> CompileError {
    CompileError::Unsupported {
        field,
        why: why.into(),
    }
}

// ANCHOR: action
/// What the kernel does with a call: `seccomp(2)`'s `SECCOMP_RET_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the call.
    Allow,
    /// Do not run it; it returns -1 with this errno.
    Errno(u16),
    /// Kill the calling thread (`SCMP_ACT_KILL`, `SCMP_ACT_KILL_THREAD`).
    KillThread,
    /// Kill the whole process, with SIGSYS.
    KillProcess,
    /// Send the thread SIGSYS; the call is not run.
    Trap,
    /// Stop for a ptrace tracer, which sees this value; with no tracer the
    /// call fails with ENOSYS.
    Trace(u16),
    /// Run the call, and log it to the audit log.
    Log,
}

impl Action {
    /// The 32-bit verdict the filter returns: action in the high 16 bits,
    /// data (an errno, a tracer's message) in the low 16.
    pub fn verdict(self) -> u32 {
        match self {
            Action::Allow => libc::SECCOMP_RET_ALLOW,
            Action::Errno(errno) => libc::SECCOMP_RET_ERRNO | u32::from(errno),
            Action::KillThread => libc::SECCOMP_RET_KILL_THREAD,
            Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
            Action::Trap => libc::SECCOMP_RET_TRAP,
            Action::Trace(message) => libc::SECCOMP_RET_TRACE | u32::from(message),
            Action::Log => libc::SECCOMP_RET_LOG,
        }
    }
}
// ANCHOR_END: action

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Allow => f.write_str("allowed"),
            Action::Errno(errno) => write!(f, "errno {errno}"),
            Action::KillThread => f.write_str("killing the thread"),
            Action::KillProcess => f.write_str("killing the process"),
            Action::Trap => f.write_str("trapped (SIGSYS)"),
            Action::Trace(message) => write!(f, "traced ({message})"),
            Action::Log => f.write_str("logged and allowed"),
        }
    }
}

/// One test of one argument (`SCMP_CMP_*`), on the full 64-bit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `arg == v`.
    Eq(u64),
    /// `arg != v`.
    Ne(u64),
    /// `arg < v`.
    Lt(u64),
    /// `arg <= v`.
    Le(u64),
    /// `arg > v`.
    Gt(u64),
    /// `arg >= v`.
    Ge(u64),
    /// `arg & mask == value`.
    MaskedEq {
        /// `value` in the profile.
        mask: u64,
        /// `valueTwo` in the profile.
        value: u64,
    },
}

/// `args[arg] <op>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comparison {
    /// Which argument, 0 to 5.
    pub arg: u8,
    /// The test.
    pub op: Op,
}

/// An action taken when every comparison holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// All must hold (AND).
    pub all_of: Vec<Comparison>,
    /// The verdict then.
    pub action: Action,
}

/// What the filter does with one call number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallPlan {
    /// The name the profile used first.
    pub name: String,
    /// Its number on this architecture.
    pub nr: u32,
    /// An entry without arguments: decides alone when present.
    pub always: Option<Action>,
    /// Entries with arguments, in the profile's order; the first that holds
    /// decides, and none holding means the default action.
    pub rules: Vec<Rule>,
}

/// A whole profile as caixa will lay it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// For every call not in `calls`, and a call none of whose rules hold.
    pub default: Action,
    /// By call number.
    pub calls: Vec<CallPlan>,
    /// `SECCOMP_FILTER_FLAG_*` for seccomp(2).
    pub flags: u32,
}

/// A compiled filter, ready for [`super::bpf::install`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The instructions.
    pub insns: Vec<Insn>,
    /// `SECCOMP_FILTER_FLAG_*` for seccomp(2).
    pub flags: u32,
    /// How many call numbers have rules of their own.
    pub calls: usize,
    /// The default action's verdict, for the trace line.
    pub default: Action,
}

impl Program {
    /// Installs the filter on the calling thread (see [`super::bpf::install`]).
    pub fn install(&self) -> Result<(), nix::errno::Errno> {
        super::bpf::install(&self.insns, self.flags)
    }
}

/// Compiles `profile` into a filter for this architecture, or says which
/// field caixa cannot honour.
pub fn compile(profile: &LinuxSeccomp) -> Result<Program, CompileError> {
    let plan = plan(profile)?;
    let insns = super::layout::lay_out(&plan)?;
    Ok(Program {
        insns,
        flags: plan.flags,
        calls: plan.calls.len(),
        default: plan.default,
    })
}

// ANCHOR: plan
/// Reads `profile` with libseccomp's meaning (see the module's notes).
pub fn plan(profile: &LinuxSeccomp) -> Result<Plan, CompileError> {
    if profile.listener_path().is_some() || profile.listener_metadata().is_some() {
        return Err(unsupported(
            "linux.seccomp.listenerPath".into(),
            "caixa runs no seccomp agent: remove SCMP_ACT_NOTIFY and listenerPath",
        ));
    }
    let default = action(
        profile.default_action(),
        profile.default_errno_ret(),
        (
            "linux.seccomp.defaultAction",
            "linux.seccomp.defaultErrnoRet",
        ),
    )?;
    let mut calls: BTreeMap<u32, CallPlan> = BTreeMap::new();
    for (i, entry) in profile.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let action = action(
            entry.action(),
            entry.errno_ret(),
            (&format!("{field}.action"), &format!("{field}.errnoRet")),
        )?;
        let all_of = comparisons(entry.args().as_deref().unwrap_or_default(), &field)?;
        let mut numbers = Vec::new();
        for (j, name) in entry.names().iter().enumerate() {
            numbers.extend(number(name, &format!("{field}.names[{j}]"))?.map(|nr| (nr, name)));
        }
        if action == default {
            continue;
        }
        for (nr, name) in numbers {
            let call = calls.entry(nr).or_insert_with(|| CallPlan {
                name: name.clone(),
                nr,
                always: None,
                rules: Vec::new(),
            });
            match (all_of.is_empty(), call.always) {
                (true, None) => {
                    call.always = Some(action);
                    call.rules.clear();
                }
                (false, None) => call.rules.push(Rule {
                    all_of: all_of.clone(),
                    action,
                }),
                (_, Some(_)) => {}
            }
        }
    }
    Ok(Plan {
        default,
        calls: calls.into_values().collect(),
        flags: flags(profile.flags().as_deref().unwrap_or_default()),
    })
}
// ANCHOR_END: plan

/// An OCI action and its `errnoRet` (found at the two JSON paths `fields`)
/// as a verdict.
fn action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    (field, errno_field): (&str, &str),
) -> Result<Action, CompileError> {
    let data = || match errno_ret {
        None => Ok(libc::EPERM as u16),
        Some(n) => u16::try_from(n).map_err(|_| {
            unsupported(
                errno_field.to_string(),
                format!("{n} does not fit the 16 bits of SECCOMP_RET_DATA"),
            )
        }),
    };
    let without_data = |verdict: Action| match errno_ret {
        None => Ok(verdict),
        Some(_) => Err(unsupported(
            errno_field.to_string(),
            format!("{action} takes no errnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do"),
        )),
    };
    match action {
        LinuxSeccompAction::ScmpActAllow => without_data(Action::Allow),
        LinuxSeccompAction::ScmpActErrno => Ok(Action::Errno(data()?)),
        LinuxSeccompAction::ScmpActTrace => Ok(Action::Trace(data()?)),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            without_data(Action::KillThread)
        }
        LinuxSeccompAction::ScmpActKillProcess => without_data(Action::KillProcess),
        LinuxSeccompAction::ScmpActTrap => without_data(Action::Trap),
        LinuxSeccompAction::ScmpActLog => without_data(Action::Log),
        LinuxSeccompAction::ScmpActNotify => Err(unsupported(
            field.to_string(),
            "SCMP_ACT_NOTIFY hands the call to a seccomp agent, and caixa runs none",
        )),
    }
}

/// An entry's `args` as comparisons, each argument at most once.
fn comparisons(args: &[LinuxSeccompArg], field: &str) -> Result<Vec<Comparison>, CompileError> {
    let mut all_of: Vec<Comparison> = Vec::new();
    for (k, arg) in args.iter().enumerate() {
        let field = format!("{field}.args[{k}]");
        let index = u8::try_from(arg.index())
            .ok()
            .filter(|i| *i < 6)
            .ok_or_else(|| CompileError::Invalid {
                field: format!("{field}.index"),
                why: format!("{}: a system call has arguments 0 to 5", arg.index()),
            })?;
        if all_of.iter().any(|c| c.arg == index) {
            return Err(unsupported(
                field,
                format!(
                    "argument {index} is compared twice in one entry: libseccomp requires both, \
                     runc either; write one entry per comparison"
                ),
            ));
        }
        let v = arg.value();
        let op = match arg.op() {
            LinuxSeccompOperator::ScmpCmpEq => Op::Eq(v),
            LinuxSeccompOperator::ScmpCmpNe => Op::Ne(v),
            LinuxSeccompOperator::ScmpCmpLt => Op::Lt(v),
            LinuxSeccompOperator::ScmpCmpLe => Op::Le(v),
            LinuxSeccompOperator::ScmpCmpGt => Op::Gt(v),
            LinuxSeccompOperator::ScmpCmpGe => Op::Ge(v),
            LinuxSeccompOperator::ScmpCmpMaskedEq => Op::MaskedEq {
                mask: v,
                value: arg.value_two().unwrap_or(0),
            },
        };
        all_of.push(Comparison { arg: index, op });
    }
    Ok(all_of)
}

/// The profile's `flags` for seccomp(2). All three the spec names are passed
/// on as they are: `LOG` (log every verdict but ALLOW), `SPEC_ALLOW` (keep
/// speculative store bypass unmitigated, as asked) and `TSYNC` (the init is
/// single-threaded, so it changes nothing but costs nothing either). A kernel
/// that lacks one refuses the filter with EINVAL, which is reported.
fn flags(flags: &[LinuxSeccompFilterFlag]) -> u32 {
    flags
        .iter()
        .map(|flag| match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        })
        .fold(0, |all, flag| all | flag as u32)
}

// ANCHOR: number
/// The number of call `name` on this architecture; `None` when only other
/// architectures have it (skipped, as libseccomp does).
fn number(name: &str, field: &str) -> Result<Option<u32>, CompileError> {
    if let Ok(sysno) = syscalls::Sysno::from_str(name) {
        return Ok(u32::try_from(sysno.id()).ok());
    }
    if OTHER_ARCHITECTURES.iter().any(|knows| knows(name)) || ARM_PRIVATE.contains(&name) {
        return Ok(None);
    }
    Err(CompileError::Invalid {
        field: field.to_string(),
        why: format!(
            "no architecture has a system call {name:?} (a typo, or newer than Linux 6.13?)"
        ),
    })
}

/// The tables of every architecture the `syscalls` crate knows.
const OTHER_ARCHITECTURES: &[fn(&str) -> bool] = &[
    |n| syscalls::aarch64::Sysno::from_str(n).is_ok(),
    |n| syscalls::arm::Sysno::from_str(n).is_ok(),
    |n| syscalls::loongarch64::Sysno::from_str(n).is_ok(),
    |n| syscalls::mips::Sysno::from_str(n).is_ok(),
    |n| syscalls::mips64::Sysno::from_str(n).is_ok(),
    |n| syscalls::powerpc::Sysno::from_str(n).is_ok(),
    |n| syscalls::powerpc64::Sysno::from_str(n).is_ok(),
    |n| syscalls::riscv32::Sysno::from_str(n).is_ok(),
    |n| syscalls::riscv64::Sysno::from_str(n).is_ok(),
    |n| syscalls::s390x::Sysno::from_str(n).is_ok(),
    |n| syscalls::sparc::Sysno::from_str(n).is_ok(),
    |n| syscalls::sparc64::Sysno::from_str(n).is_ok(),
    |n| syscalls::x86::Sysno::from_str(n).is_ok(),
    |n| syscalls::x86_64::Sysno::from_str(n).is_ok(),
];

/// ARM's private calls (`__ARM_NR_*`), which libseccomp names and Docker's
/// profile lists, but the `syscalls` crate's tables leave out.
const ARM_PRIVATE: &[&str] = &["breakpoint", "cacheflush", "set_tls", "usr26", "usr32"];
// ANCHOR_END: number

#[cfg(test)]
mod tests;
