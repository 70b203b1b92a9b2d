//! The compiler against the real kernel: each test forks a child, installs
//! a compiled profile there, makes real system calls and reads back what
//! the kernel answered (or how the child died). Runs as root.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{Value, json};

use super::{Action, CompileError, Op, Program, compile, plan};

/// podman 4.3.1's default profile, captured on this machine's kind from the
/// `config.json` podman gave its runtime (`podman --runtime WRAPPER run`, a
/// wrapper that copied `$bundle/config.json` and ran runc).
const PODMAN: &str = include_str!("podman-4.3.1-default.json");

fn profile(value: Value) -> LinuxSeccomp {
    serde_json::from_value(value).unwrap()
}

fn podman() -> LinuxSeccomp {
    serde_json::from_str(PODMAN).unwrap()
}

/// One system call: its number and six raw 64-bit arguments.
#[derive(Clone, Copy)]
struct Call(i64, [u64; 6]);

impl Call {
    fn new(nr: i64, args: &[u64]) -> Call {
        let mut all = [0; 6];
        all[..args.len()].copy_from_slice(args);
        Call(nr, all)
    }
}

/// How the child ended, and what each call returned (`-errno` on failure).
#[derive(Debug, PartialEq)]
enum Seen {
    Returned(Vec<i64>),
    Killed(i32),
    Failed(i32),
}

const MAX_CALLS: usize = 16;

/// Forks a child that runs `install`, then `calls`, and reports. The child
/// only makes raw system calls (no allocation: the test process has
/// threads, and a lock another thread held at fork would never be freed).
fn under(install: impl Fn() -> bool, calls: &[Call]) -> Seen {
    assert!(calls.len() <= MAX_CALLS);
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let [read_end, write_end] = fds;
    // SAFETY: the child makes system calls only, then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        unsafe { libc::close(read_end) };
        if !install() {
            unsafe { libc::_exit(100) };
        }
        let mut results = [0_i64; MAX_CALLS];
        for (result, Call(nr, a)) in results.iter_mut().zip(calls) {
            let rc = unsafe { libc::syscall(*nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
            *result = if rc == -1 {
                -i64::from(nix::errno::Errno::last_raw())
            } else {
                rc
            };
        }
        let bytes = std::mem::size_of_val(&results[..calls.len()]);
        unsafe { libc::write(write_end, results.as_ptr().cast(), bytes) };
        unsafe { libc::_exit(0) };
    }
    unsafe { libc::close(write_end) };
    let mut bytes = Vec::new();
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(read_end) };
    std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    if libc::WIFSIGNALED(status) {
        return Seen::Killed(libc::WTERMSIG(status));
    }
    match libc::WEXITSTATUS(status) {
        0 => Seen::Returned(
            bytes
                .chunks_exact(8)
                .map(|b| i64::from_ne_bytes(b.try_into().unwrap()))
                .collect(),
        ),
        code => Seen::Failed(code),
    }
}

fn run(program: &Program, calls: &[Call]) -> Seen {
    under(|| program.install().is_ok(), calls)
}

fn returned(seen: Seen) -> Vec<i64> {
    match seen {
        Seen::Returned(results) => results,
        other => panic!("the child did not return: {other:?}"),
    }
}

/// A profile that allows everything but `entries`.
fn allow_but(entries: Value) -> Program {
    compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": entries,
    })))
    .unwrap()
}

const EPERM: i64 = -(libc::EPERM as i64);
const ENOSYS: i64 = -(libc::ENOSYS as i64);
const EINVAL: i64 = -(libc::EINVAL as i64);

// ANCHOR: podman_test
#[test]
fn podmans_profile_allows_normal_calls_and_refuses_the_rest() {
    let program = compile(&podman()).unwrap();
    eprintln!(
        "podman 4.3.1's default profile: {} instructions",
        program.insns.len()
    );
    assert!(program.insns.len() < 4096);
    let results = returned(run(
        &program,
        &[
            Call::new(libc::SYS_getpid, &[]),
            Call::new(libc::SYS_kexec_load, &[]),
            Call::new(libc::SYS_add_key, &[]),
            Call::new(libc::SYS_io_uring_setup, &[]),
            // Listed twice, ALLOW (entry 1) before ERRNO 1 (entry 10): the
            // first entry without arguments stays, as in libseccomp, and
            // the kernel answers EBADF for the bad descriptor.
            Call::new(libc::SYS_setns, &[u64::MAX, 0]),
        ],
    ));
    assert!(results[0] > 0, "getpid: {}", results[0]);
    assert_eq!(results[1..], [EPERM, ENOSYS, ENOSYS, -(libc::EBADF as i64)]);
}
// ANCHOR_END: podman_test

#[test]
fn podmans_socket_rules_refuse_only_netlink_audit() {
    let (netlink, audit) = (libc::AF_NETLINK as u64, libc::NETLINK_AUDIT as u64);
    let raw = libc::SOCK_RAW as u64 | libc::SOCK_CLOEXEC as u64;
    let results = returned(run(
        &compile(&podman()).unwrap(),
        &[
            Call::new(libc::SYS_socket, &[netlink, raw, audit]),
            Call::new(libc::SYS_socket, &[netlink, raw, 0]),
            Call::new(
                libc::SYS_socket,
                &[libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0],
            ),
            // The high word differs: 64 bits are not 16, so no rule says
            // EINVAL and `arg0 != 16` allows it. The kernel then reads an
            // int, 16. libseccomp compares 64 bits too; so does caixa.
            Call::new(libc::SYS_socket, &[netlink | 1 << 32, raw, audit]),
        ],
    ));
    assert_eq!(results[0], EINVAL);
    assert!(results[1] >= 0, "netlink route: {}", results[1]);
    assert!(results[2] >= 0, "unix: {}", results[2]);
    assert_ne!(results[3], EINVAL, "audit with a high word");
}

#[test]
fn podmans_personality_rules_match_whole_64_bit_values() {
    let results = returned(run(
        &compile(&podman()).unwrap(),
        &[
            Call::new(libc::SYS_personality, &[0xffff_ffff]),
            Call::new(libc::SYS_personality, &[0]),
            Call::new(libc::SYS_personality, &[0x0004_0000]), // ADDR_NO_RANDOMIZE
            Call::new(libc::SYS_personality, &[1 << 32]),     // low word 0, high 1
            Call::new(libc::SYS_personality, &[0xffff_ffff_ffff_ffff]),
        ],
    ));
    assert!(results[0] >= 0 && results[1] >= 0, "{results:?}");
    assert_eq!(results[2..], [ENOSYS, ENOSYS, ENOSYS]);
}

/// The truth each comparison should compute, in Rust's 64-bit arithmetic.
fn holds(op: Op, arg: u64) -> bool {
    match op {
        Op::Eq(v) => arg == v,
        Op::Ne(v) => arg != v,
        Op::Lt(v) => arg < v,
        Op::Le(v) => arg <= v,
        Op::Gt(v) => arg > v,
        Op::Ge(v) => arg >= v,
        Op::MaskedEq { mask, value } => arg & mask == value,
    }
}

// ANCHOR: edges_test
#[test]
fn every_operator_compares_64_bits_with_the_high_word_first() {
    let v: u64 = 0x1_0000_0005;
    let args: [u64; 9] = [
        v,
        v - 1,
        v + 1,
        0x5,           // same low word, smaller high word
        0x2_0000_0000, // greater high word, smaller low word
        0x0_ffff_ffff, // smaller high word, greater low word
        0x1_ffff_ffff, // same high word, greater low word
        0,
        u64::MAX,
    ];
    let ops = [
        ("SCMP_CMP_EQ", Op::Eq(v)),
        ("SCMP_CMP_NE", Op::Ne(v)),
        ("SCMP_CMP_LT", Op::Lt(v)),
        ("SCMP_CMP_LE", Op::Le(v)),
        ("SCMP_CMP_GT", Op::Gt(v)),
        ("SCMP_CMP_GE", Op::Ge(v)),
    ];
    for (name, op) in ops {
        // getppid ignores its arguments, but the filter sees them all.
        let program = allow_but(json!([{
            "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
            "args": [{"index": 0, "value": v, "op": name}],
        }]));
        let calls: Vec<Call> = args
            .iter()
            .map(|a| Call::new(libc::SYS_getppid, &[*a]))
            .collect();
        let results = returned(run(&program, &calls));
        for (arg, result) in args.iter().zip(results) {
            let expected = holds(op, *arg);
            assert_eq!(
                result == -77,
                expected,
                "{name} {v:#x}: arg {arg:#x} gave {result}"
            );
            assert!(expected || result > 0, "{name}: {result}");
        }
    }
}
// ANCHOR_END: edges_test

#[test]
fn masked_eq_tests_both_words_under_the_mask() {
    let (mask, value) = (0xffff_0000_0000_00ff_u64, 0x1234_0000_0000_0005_u64);
    let program = allow_but(json!([{
        "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
        "args": [{"index": 3, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}],
    }]));
    let args = [
        0x1234_aaaa_bbbb_cc05_u64,
        0x1235_0000_0000_0005,
        0x1234_0000_0000_0006,
        value,
        0,
    ];
    let calls: Vec<Call> = args
        .iter()
        .map(|a| Call::new(libc::SYS_getppid, &[0, 0, 0, *a]))
        .collect();
    let results = returned(run(&program, &calls));
    for (arg, result) in args.iter().zip(results) {
        let expected = holds(Op::MaskedEq { mask, value }, *arg);
        assert_eq!(result == -77, expected, "{arg:#x}: {result}");
    }
}

#[test]
fn the_comparisons_of_one_entry_must_all_hold() {
    let program = allow_but(json!([{
        "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
        "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 5, "value": 1u64 << 40, "op": "SCMP_CMP_GE"},
        ],
    }]));
    let results = returned(run(
        &program,
        &[
            Call::new(libc::SYS_getppid, &[1, 0, 0, 0, 0, 1 << 40]),
            Call::new(libc::SYS_getppid, &[1, 0, 0, 0, 0, (1 << 40) - 1]),
            Call::new(libc::SYS_getppid, &[2, 0, 0, 0, 0, 1 << 41]),
        ],
    ));
    assert_eq!(results[0], -77);
    assert!(results[1] > 0 && results[2] > 0, "{results:?}");
}

#[test]
fn entries_with_arguments_are_tried_in_order_and_one_without_decides() {
    let program = allow_but(json!([
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 11,
         "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_GE"}]},
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 12,
         "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GE"}]},
        {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 14},
        {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 15},
    ]));
    let results = returned(run(
        &program,
        &[
            Call::new(libc::SYS_getppid, &[20]),
            Call::new(libc::SYS_getppid, &[7]),
            Call::new(libc::SYS_getppid, &[1]),
            Call::new(libc::SYS_getpgid, &[1]),
            Call::new(libc::SYS_getpgid, &[0]),
        ],
    ));
    assert_eq!(results[..2], [-11, -12]);
    assert!(results[2] > 0);
    assert_eq!(results[3..], [-14, -14]);
}

#[test]
fn an_entry_with_the_default_action_is_dropped() {
    // Kept, its ERRNO 38 would stay as getppid's only unconditional rule;
    // dropped (libseccomp refuses it, runc skips it), the ALLOW decides.
    let program = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["getppid", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        ],
    })))
    .unwrap();
    let results = returned(run(
        &program,
        &[
            Call::new(libc::SYS_getppid, &[]),
            Call::new(libc::SYS_getpid, &[]),
        ],
    ));
    assert!(results[0] > 0);
    assert_eq!(results[1], ENOSYS);
}

#[test]
fn each_action_does_what_seccomp_2_says() {
    let getppid = [Call::new(libc::SYS_getppid, &[])];
    let with = |action: &str| allow_but(json!([{"names": ["getppid"], "action": action}]));
    let sigsys = Seen::Killed(libc::SIGSYS);
    assert_eq!(
        run(&with("SCMP_ACT_ERRNO"), &getppid),
        Seen::Returned(vec![EPERM])
    );
    // With no tracer attached, a traced call fails with ENOSYS.
    assert_eq!(
        run(&with("SCMP_ACT_TRACE"), &getppid),
        Seen::Returned(vec![ENOSYS])
    );
    assert!(returned(run(&with("SCMP_ACT_LOG"), &getppid))[0] > 0);
    assert!(returned(run(&with("SCMP_ACT_ALLOW"), &getppid))[0] > 0);
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
    ] {
        assert_eq!(run(&with(action), &getppid), sigsys, "{action}");
    }
}

#[test]
fn other_abis_are_killed_whatever_the_default() {
    let program = allow_but(json!([]));
    let getpid = Call::new(libc::SYS_getpid, &[]);
    assert!(returned(run(&program, &[getpid]))[0] > 0);
    #[cfg(target_arch = "x86_64")]
    {
        // x32: the same architecture value, bit 30 set in the number.
        let x32 = Call::new(0x4000_0000 | libc::SYS_getpid, &[]);
        assert_eq!(run(&program, &[x32]), Seen::Killed(libc::SIGSYS));
        // i386 through int 0x80: seccomp_data.arch is AUDIT_ARCH_I386.
        let i386 = under(
            || {
                if program.install().is_err() {
                    return false;
                }
                let mut eax: u32 = 20; // getpid on i386
                // SAFETY: int 0x80 with eax = 20 takes no memory argument.
                unsafe { std::arch::asm!("int 0x80", inout("eax") eax, options(nostack)) };
                eax > 0
            },
            &[],
        );
        assert_eq!(i386, Seen::Killed(libc::SIGSYS));
    }
}

#[test]
fn a_profile_near_the_kernels_limit_keeps_every_jump_in_reach() {
    // 60 calls, each allowed for eleven values of arg 0 only: ~3,400
    // instructions in 14 chunks, under a default that returns errno 99.
    let names: Vec<&str> = syscalls::Sysno::iter()
        .map(|s| s.name())
        .filter(|n| !["write", "exit_group", "getppid"].contains(n))
        .take(60)
        .collect();
    let mut entries = vec![json!({"names": ["write", "exit_group"], "action": "SCMP_ACT_ALLOW"})];
    for value in 0..11 {
        entries.push(json!({
            "names": names.iter().chain(["getppid"].iter()).collect::<Vec<_>>(),
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": value * 1000, "op": "SCMP_CMP_EQ"}],
        }));
    }
    let program = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 99, "syscalls": entries,
    })))
    .unwrap();
    assert!(program.insns.len() > 3000, "{}", program.insns.len());
    let results = returned(run(
        &program,
        &[
            Call::new(libc::SYS_getppid, &[10_000]),
            Call::new(libc::SYS_getppid, &[10_001]),
            Call::new(libc::SYS_getpid, &[1]),
        ],
    ));
    assert!(results[0] > 0);
    assert_eq!(results[1..], [-99, -99]);
}

#[test]
fn caixas_default_filter_answers_as_dockers_profile_says() {
    let kept = &crate::caps::DEFAULT_CAPABILITIES[..];
    let filter = super::super::default_filter(Some(kept)).unwrap();
    let calls = [
        Call::new(libc::SYS_getppid, &[]),
        Call::new(libc::SYS_mount, &[0, 0, 0, 0, 0]),
        Call::new(libc::SYS_unshare, &[libc::CLONE_NEWUSER as u64]),
        Call::new(libc::SYS_clone3, &[0, 0]),
        Call::new(libc::SYS_personality, &[0x0004_0000]),
        Call::new(libc::SYS_personality, &[(1 << 32) | 8]),
        Call::new(
            libc::SYS_socket,
            &[libc::AF_VSOCK as u64, libc::SOCK_STREAM as u64, 0],
        ),
        Call::new(libc::SYS_keyctl, &[0]),
        Call::new(libc::SYS_personality, &[0xffff_ffff]),
        // Family 39 passes the filter (only 38 and 40 are refused); the
        // kernel then answers for itself, never with EPERM.
        Call::new(
            libc::SYS_socket,
            &[(1 << 32) | 39, libc::SOCK_STREAM as u64, 0],
        ),
    ];
    let results = returned(run(&filter, &calls));
    assert!(results[0] > 0, "getppid: {}", results[0]);
    assert_eq!(
        results[1..8],
        [EPERM, EPERM, ENOSYS, EPERM, EPERM, EPERM, EPERM],
        "mount, unshare, clone3, personality x2, socket(AF_VSOCK), keyctl"
    );
    assert!(
        results[8] >= 0,
        "personality(0xffffffff) only asks: {}",
        results[8]
    );
    assert_ne!(results[9], EPERM, "socket(39)");
}

fn refused(value: Value) -> CompileError {
    compile(&profile(value)).unwrap_err()
}

#[test]
fn names_other_architectures_have_are_skipped_and_typos_refused() {
    let plan = plan(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["_llseek", "socketcall", "breakpoint", "read"], "action": "SCMP_ACT_ALLOW"}],
    })))
    .unwrap();
    assert_eq!(plan.calls.len(), 1);
    assert_eq!(plan.calls[0].name, "read");
    assert_eq!(plan.default, Action::Errno(libc::EPERM as u16));
    let error = refused(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "raed"], "action": "SCMP_ACT_ALLOW"}],
    }));
    assert!(matches!(error, CompileError::Invalid { .. }), "{error}");
    assert_eq!(error.field(), "linux.seccomp.syscalls[0].names[1]");
}

#[test]
fn what_caixa_cannot_honour_is_refused_by_field() {
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.syscalls[0].action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}),
            "linux.seccomp.listenerPath",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1}),
            "linux.seccomp.defaultErrnoRet",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_LOG", "errnoRet": 1}]}),
            "linux.seccomp.syscalls[0].errnoRet",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}),
            "linux.seccomp.defaultErrnoRet",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_GE"},
                    {"index": 0, "value": 9, "op": "SCMP_CMP_LE"}]}]}),
            "linux.seccomp.syscalls[0].args[1]",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[0].index",
        ),
    ];
    for (value, field) in cases {
        assert_eq!(refused(value).field(), field);
    }
}

#[test]
fn a_call_with_too_many_rules_or_a_profile_too_long_is_refused() {
    let rules = |names: Vec<&str>, values: u64| -> Vec<Value> {
        (0..values)
            .map(|value| {
                json!({"names": names, "action": "SCMP_ACT_ERRNO",
                       "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]})
            })
            .collect()
    };
    let one_call =
        refused(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules(vec!["read"], 60)}));
    assert!(one_call.field().contains("read"), "{one_call}");
    let names: Vec<&str> = syscalls::Sysno::iter()
        .map(|s| s.name())
        .take(100)
        .collect();
    let too_long =
        refused(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules(names, 10)}));
    assert!(too_long.to_string().contains("4096"), "{too_long}");
}

#[test]
fn flags_pass_to_seccomp_2() {
    let program = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
    })))
    .unwrap();
    assert_eq!(program.flags, 0b111);
    assert!(returned(run(&program, &[Call::new(libc::SYS_getppid, &[])]))[0] > 0);
}

/// Runs `insns` on one `struct seccomp_data` the way the kernel runs a
/// classic BPF filter, for the instructions caixa emits; returns the
/// verdict and how many instructions ran. `data` is the struct as 32-bit
/// words: nr, arch, the instruction pointer, then each argument low word
/// first (a little-endian machine's memory).
fn interpret(insns: &[crate::seccomp::bpf::Insn], data: &[u32; 16]) -> (u32, usize) {
    let (mut pc, mut a, mut ran) = (0_usize, 0_u32, 0);
    loop {
        let insn = insns[pc];
        pc += 1;
        ran += 1;
        match insn.code {
            0x20 => a = data[(insn.k / 4) as usize],
            0x54 => a &= insn.k,
            0x05 => pc += insn.k as usize,
            0x15 | 0x25 | 0x35 => {
                let holds = match insn.code {
                    0x15 => a == insn.k,
                    0x25 => a > insn.k,
                    _ => a >= insn.k,
                };
                pc += usize::from(if holds { insn.jt } else { insn.jf });
            }
            0x06 => return (insn.k, ran),
            other => panic!("an opcode caixa does not emit: {other:#x}"),
        }
    }
}

/// What the plan says `nr` with `args` gets, read straight from the plan.
fn planned(plan: &super::Plan, nr: u32, args: [u64; 6]) -> u32 {
    let Some(call) = plan.calls.iter().find(|c| c.nr == nr) else {
        return plan.default.verdict();
    };
    if let Some(action) = call.always {
        return action.verdict();
    }
    call.rules
        .iter()
        .find(|r| {
            r.all_of
                .iter()
                .all(|c| holds(c.op, args[usize::from(c.arg)]))
        })
        .map_or(plan.default.verdict(), |r| r.action.verdict())
}

#[cfg(all(target_arch = "x86_64", target_endian = "little"))]
#[test]
fn the_search_tree_answers_every_number_as_the_plan_says_in_few_steps() {
    let kept = &crate::caps::DEFAULT_CAPABILITIES[..];
    let argument_sets: [[u64; 6]; 6] = [
        [0; 6],
        [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0],
        [16, 3, 9, 0, 0, 0],
        [(1 << 32) | 8, 0, 0, 0, 0, 0],
        [0x0002_0000, 0, 0, 0, 0, 0],
        [u64::MAX; 6],
    ];
    for (what, profile) in [
        (
            "Docker's, 14 capabilities",
            super::super::oci_profile(Some(kept)),
        ),
        (
            "Docker's, every capability",
            super::super::oci_profile(None),
        ),
        ("podman's", podman()),
    ] {
        let plan = plan(&profile).unwrap();
        let insns = compile(&profile).unwrap().insns;
        let mut longest = 0;
        for nr in 0..1024_u32 {
            for args in argument_sets {
                let mut data = [0_u32; 16];
                data[0] = nr;
                data[1] = 0xc000_003e;
                for (i, arg) in args.iter().enumerate() {
                    data[4 + 2 * i] = *arg as u32;
                    data[5 + 2 * i] = (arg >> 32) as u32;
                }
                let (verdict, ran) = interpret(&insns, &data);
                assert_eq!(
                    verdict,
                    planned(&plan, nr, args),
                    "{what}: nr {nr}, {args:x?}"
                );
                if plan.calls.iter().all(|c| c.nr != nr || c.rules.is_empty()) {
                    longest = longest.max(ran);
                }
            }
        }
        // A linear list of Docker's ~350 calls runs up to ~355 instructions
        // before a verdict; the tree, 4 + 2 per level + one leaf.
        assert!(
            longest <= 50,
            "{what}: {longest} instructions for one number"
        );
        let mut x32 = [0_u32; 16];
        (x32[0], x32[1]) = (0x4000_0000, 0xc000_003e);
        assert_eq!(interpret(&insns, &x32).0, Action::KillProcess.verdict());
        let mut i386 = [0_u32; 16];
        (i386[0], i386[1]) = (20, 0x4000_0003);
        assert_eq!(interpret(&insns, &i386).0, Action::KillProcess.verdict());
    }
}
