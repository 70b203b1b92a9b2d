//! The filter as an OCI `linux.seccomp` profile (for [`crate::bundle`]).

use caps::Capability;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::profile::{self, Test};

// ANCHOR: oci_profile
/// The default filter as an OCI `linux.seccomp` profile, for a bundle's
/// `config.json` (see [`crate::bundle`]), and what
/// [`super::default_filter`] compiles for the same capabilities: in the
/// words of libseccomp that runc and crun read, the shape of Docker's own
/// `default.json`:
///
/// - the default action is `SCMP_ACT_ERRNO` with `EPERM`;
/// - one `SCMP_ACT_ALLOW` entry names every call allowed whatever its
///   arguments;
/// - a call allowed with some arguments gets one entry per alternative
///   (the arguments of one entry must all match; the entries are tried in
///   turn), e.g. `personality` five times;
/// - `clone3` answers `ENOSYS` unless `CAP_SYS_ADMIN` is kept;
/// - only the native architecture is listed: on x86_64 that leaves out the
///   x32 and i386 ABIs, whose calls libseccomp and caixa's compiler kill.
pub fn oci_profile(kept: Option<&[Capability]>) -> LinuxSeccomp {
    let resolved = profile::resolve(kept);
    let entry = |names: Vec<String>, action, args: Option<Vec<LinuxSeccompArg>>| {
        let mut syscall = LinuxSyscall::default();
        syscall.set_names(names).set_action(action).set_args(args);
        syscall
    };
    let mut syscalls = vec![entry(
        resolved
            .allowed
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
        LinuxSeccompAction::ScmpActAllow,
        None,
    )];
    for rule in &resolved.conditional {
        for test in rule.any_of {
            let (op, value, value_two) = match *test {
                Test::Below(v) => (LinuxSeccompOperator::ScmpCmpLt, v, None),
                Test::Equal(v) => (LinuxSeccompOperator::ScmpCmpEq, v, None),
                Test::Above(v) => (LinuxSeccompOperator::ScmpCmpGt, v, None),
                Test::NoneOf(m) => (LinuxSeccompOperator::ScmpCmpMaskedEq, m, Some(0_u64)),
            };
            let mut builder = LinuxSeccompArgBuilder::default()
                .index(usize::from(rule.arg))
                .value(value)
                .op(op);
            if let Some(two) = value_two {
                builder = builder.value_two(two);
            }
            // The builder fails only on a missing field, and every one is set.
            let arg = builder
                .build()
                .expect("every field of the argument rule is set");
            syscalls.push(entry(
                vec![rule.call.name().to_string()],
                LinuxSeccompAction::ScmpActAllow,
                Some(vec![arg]),
            ));
        }
    }
    if resolved.clone3_enosys {
        let mut clone3 = entry(
            vec!["clone3".into()],
            LinuxSeccompAction::ScmpActErrno,
            None,
        );
        clone3.set_errno_ret(Some(libc::ENOSYS as u32));
        syscalls.push(clone3);
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => Arch::ScmpArchX86_64,
        "aarch64" => Arch::ScmpArchAarch64,
        "riscv64" => Arch::ScmpArchRiscv64,
        _ => Arch::ScmpArchNative,
    };
    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(libc::EPERM as u32))
        .set_architectures(Some(vec![arch]))
        .set_syscalls(Some(syscalls));
    profile
}
// ANCHOR_END: oci_profile
