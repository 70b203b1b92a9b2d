//! seccomp (step 6): a filter on system calls, the last thing set before exec.
//!
//! Capabilities decide what root may do; seccomp decides which system calls
//! may be made at all. A seccomp filter is a small BPF program the kernel runs
//! on every system call's number and arguments; ours answers `EPERM` for the
//! calls a container has no business making (loading kernel modules, kexec,
//! mounting, keyrings, bpf, new user namespaces…) and allows everything else.
//! See seccomp(2). Docker's default profile is an allow list of some 300
//! calls; the ones it leaves out are the ones denied here. A deny list is
//! easier to read and to teach; its weakness is that a call added to a later
//! kernel is allowed until someone lists it.
//!
//! Why `seccompiler`: it is the filter compiler of Firecracker (rust-vmm),
//! maintained, pure Rust (no libseccomp C library to link), and small enough
//! to read. We give it rules; it gives a BPF program; one `seccomp(2)` call
//! installs it.
//!
//! `clone3` cannot be filtered by flags (its flags sit in memory the filter
//! cannot read), so it answers `ENOSYS`: the C library then falls back to
//! `clone`, whose flags the filter can check. Docker does the same.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

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
}

// ANCHOR: denied_syscalls
/// System calls that fail with `EPERM` in a container, and why.
pub const DENIED: &[(&str, libc::c_long)] = &[
    ("keyctl", libc::SYS_keyctl),   // kernel keyrings are not namespaced
    ("add_key", libc::SYS_add_key), // (same)
    ("request_key", libc::SYS_request_key), // (same)
    ("kexec_load", libc::SYS_kexec_load), // boot another kernel
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module), // load code into the host's kernel
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("bpf", libc::SYS_bpf), // programs in the host's kernel
    ("perf_event_open", libc::SYS_perf_event_open), // observes the host; kernel exploits
    ("userfaultfd", libc::SYS_userfaultfd), // a favourite tool of kernel exploits
    ("mount", libc::SYS_mount), // the container's filesystem is set up already
    ("umount2", libc::SYS_umount2), // and must not be undone (masked paths!)
    ("pivot_root", libc::SYS_pivot_root),
    ("open_tree", libc::SYS_open_tree), // the new mount API: same power as mount
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsmount", libc::SYS_fsmount),
    ("fsconfig", libc::SYS_fsconfig),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("swapon", libc::SYS_swapon), // the host's swap
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),             // the host
    ("acct", libc::SYS_acct),                 // process accounting is host-wide
    ("settimeofday", libc::SYS_settimeofday), // the clock is not namespaced
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("open_by_handle_at", libc::SYS_open_by_handle_at), // opens host files by handle ("shocker")
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("quotactl", libc::SYS_quotactl),
    ("setns", libc::SYS_setns), // joining other namespaces
    ("vhangup", libc::SYS_vhangup),
];
// ANCHOR_END: denied_syscalls

/// The flag a new user namespace needs: `unshare` and `clone` asking for it fail.
const CLONE_NEWUSER: u64 = libc::CLONE_NEWUSER as u64;

/// The compiled filters, ready to install: built before `Ready`, so a problem
/// is reported as the real cause; installed as the very last step.
#[derive(Debug)]
pub struct Filters {
    deny: BpfProgram,
    no_clone3: BpfProgram,
    no_x32: Option<BpfProgram>,
}

fn arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| SeccompError::Arch(std::env::consts::ARCH.to_string()))
}

/// Compiles the default filter for this architecture.
pub fn default_filters() -> Result<Filters, SeccompError> {
    let build = |e: seccompiler::BackendError| SeccompError::Build(e.to_string());
    let newuser = || {
        SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(CLONE_NEWUSER),
            CLONE_NEWUSER,
        )
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(build)
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    rules.insert(libc::SYS_unshare, vec![newuser()?]);
    rules.insert(libc::SYS_clone, vec![newuser()?]);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch()?,
    )
    .map_err(build)?;
    let no_clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(build)?;
    let compile = |f: SeccompFilter| -> Result<BpfProgram, SeccompError> {
        f.try_into()
            .map_err(|e: seccompiler::BackendError| SeccompError::Build(e.to_string()))
    };
    Ok(Filters {
        deny: compile(deny)?,
        no_clone3: compile(no_clone3)?,
        no_x32: no_x32(),
    })
}

/// On x86_64, the x32 ABI reaches the same kernel calls with numbers that
/// have bit 30 set, under the same audit architecture: a deny list keyed on
/// the plain numbers would miss them. This small hand-written BPF program
/// refuses every x32 call (containers never need them).
#[cfg(target_arch = "x86_64")]
fn no_x32() -> Option<BpfProgram> {
    use seccompiler::sock_filter;
    const X32_BIT: u32 = 0x4000_0000;
    let stmt = |code: u16, k: u32| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u16, k: u32, jt: u8, jf: u8| sock_filter { code, jt, jf, k };
    let (ld_w_abs, jge_k, ret_k) = (0x20, 0x35, 0x06);
    Some(vec![
        stmt(ld_w_abs, 0),                             // A = seccomp_data.nr
        jump(jge_k, X32_BIT, 0, 1),                    // nr >= 0x40000000 ? next : skip
        stmt(ret_k, 0x0005_0000 | libc::EPERM as u32), // SECCOMP_RET_ERRNO | EPERM
        stmt(ret_k, 0x7fff_0000),                      // SECCOMP_RET_ALLOW
    ])
}

#[cfg(not(target_arch = "x86_64"))]
fn no_x32() -> Option<BpfProgram> {
    None
}

/// Installs the filters on this process; they pass on to every child and
/// survive `execve`. Needs no_new_privs (or CAP_SYS_ADMIN), set just before.
pub fn install(filters: &Filters) -> Result<(), SeccompError> {
    for program in [&filters.deny, &filters.no_clone3]
        .into_iter()
        .chain(filters.no_x32.as_ref())
    {
        seccompiler::apply_filter(program).map_err(|e| SeccompError::Install(e.to_string()))?;
    }
    Ok(())
}

// ANCHOR: oci_profile
/// The default filter as an OCI `linux.seccomp` profile, for a bundle's
/// `config.json` (see [`crate::bundle`]): what [`default_filters`] builds,
/// in the words of libseccomp that runc and crun read.
///
/// - everything is allowed by default;
/// - the calls of [`DENIED`] answer `EPERM`;
/// - `clone` and `unshare` answer `EPERM` when their first argument has
///   `CLONE_NEWUSER` set (`SCMP_CMP_MASKED_EQ`: `arg0 & value == valueTwo`);
/// - `clone3` answers `ENOSYS`, so the C library falls back to `clone`;
/// - only the native architecture is listed: on x86_64 that leaves out the
///   x32 and i386 ABIs, which libseccomp then kills and caixa's own filter
///   refuses (x32 calls with `EPERM`, see `no_x32`; others by the
///   architecture check seccompiler puts first).
pub fn oci_profile() -> oci_spec::runtime::LinuxSeccomp {
    use oci_spec::runtime::{
        Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
        LinuxSeccompOperator, LinuxSyscall,
    };
    let rule = |names: Vec<String>, errno: i32, args: Option<Vec<LinuxSeccompArg>>| {
        let mut syscall = LinuxSyscall::default();
        syscall
            .set_names(names)
            .set_action(LinuxSeccompAction::ScmpActErrno)
            .set_errno_ret(Some(errno as u32))
            .set_args(args);
        syscall
    };
    // The builder fails only on a missing field, and every field is given.
    let newuser = LinuxSeccompArgBuilder::default()
        .index(0_usize)
        .value(CLONE_NEWUSER)
        .value_two(CLONE_NEWUSER)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()
        .expect("every field of the argument rule is set");
    let arch = match std::env::consts::ARCH {
        "x86_64" => Arch::ScmpArchX86_64,
        "aarch64" => Arch::ScmpArchAarch64,
        "riscv64" => Arch::ScmpArchRiscv64,
        _ => Arch::ScmpArchNative,
    };
    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActAllow)
        .set_architectures(Some(vec![arch]))
        .set_syscalls(Some(vec![
            rule(
                DENIED.iter().map(|(name, _)| name.to_string()).collect(),
                libc::EPERM,
                None,
            ),
            rule(
                vec!["clone".into(), "unshare".into()],
                libc::EPERM,
                Some(vec![newuser]),
            ),
            rule(vec!["clone3".into()], libc::ENOSYS, None),
        ]));
    profile
}
// ANCHOR_END: oci_profile

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles_for_this_architecture() {
        let filters = super::default_filters().unwrap();
        assert!(!filters.deny.is_empty());
        assert!(!filters.no_clone3.is_empty());
    }

    #[test]
    fn the_oci_profile_lists_every_denied_call() {
        let profile = super::oci_profile();
        let names: Vec<&str> = profile
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names())
            .map(String::as_str)
            .collect();
        for (name, _) in super::DENIED {
            assert!(names.contains(name), "{name}");
        }
        assert!(names.contains(&"clone3") && names.contains(&"unshare"));
    }
}
