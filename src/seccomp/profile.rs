//! Docker's default seccomp profile, written as Rust tables (step 6).
//!
//! Followed: the profile of `github.com/moby/profiles/seccomp` **v0.2.3**
//! (`default.json`, the version moby vendors in August 2026), read and
//! re-typed here, not generated from it. It is an **allow list**: every call
//! not named below answers `EPERM`. Three calls are allowed only with certain
//! arguments ([`SOCKET`], [`PERSONALITY`], [`CLONE_WITHOUT_NAMESPACES`]), and
//! groups of calls are allowed only when the container keeps the capability
//! that already guards them in the kernel ([`BY_CAPABILITY`]).
//!
//! Names that exist only on 32-bit architectures (`chown32`, `_llseek`,
//! `socketcall`, the `*_time64` calls…) are left out: caixa builds filters
//! for 64-bit architectures only, where those numbers do not exist.

use caps::Capability;

/// One system call: its name as the profile spells it, and its number on
/// the architecture caixa was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    sys: &'static str,
    /// The number the filter compares with `seccomp_data.nr`.
    pub nr: libc::c_long,
}

impl Call {
    /// The name without libc's `SYS_` prefix, as in an OCI profile.
    pub fn name(&self) -> &'static str {
        self.sys.strip_prefix("SYS_").unwrap_or(self.sys)
    }
}

/// `calls!(module: SYS_a SYS_b)`: the calls with their numbers from `module`.
macro_rules! calls {
    ($module:ident: $($sys:ident)*) => {
        &[$(Call { sys: stringify!($sys), nr: $module::$sys }),*]
    };
}

/// Calls newer than libc 0.2 names. From number 424 on (`pidfd_send_signal`),
/// every architecture uses the same numbers (asm-generic/unistd.h).
#[allow(non_upper_case_globals)]
mod unified {
    pub(super) const SYS_cachestat: libc::c_long = 451;
    pub(super) const SYS_fchmodat2: libc::c_long = 452;
    pub(super) const SYS_map_shadow_stack: libc::c_long = 453;
    pub(super) const SYS_futex_wake: libc::c_long = 454;
    pub(super) const SYS_futex_wait: libc::c_long = 455;
    pub(super) const SYS_futex_requeue: libc::c_long = 456;
    pub(super) const SYS_statmount: libc::c_long = 457;
    pub(super) const SYS_listmount: libc::c_long = 458;
    pub(super) const SYS_lsm_get_self_attr: libc::c_long = 459;
    pub(super) const SYS_lsm_set_self_attr: libc::c_long = 460;
    pub(super) const SYS_lsm_list_modules: libc::c_long = 461;
    pub(super) const SYS_setxattrat: libc::c_long = 463;
    pub(super) const SYS_getxattrat: libc::c_long = 464;
    pub(super) const SYS_listxattrat: libc::c_long = 465;
    pub(super) const SYS_removexattrat: libc::c_long = 466;
}

/// Calls libc 0.2 does not name whose numbers differ per architecture.
#[allow(non_upper_case_globals)]
mod native {
    #[cfg(target_arch = "x86_64")]
    pub(super) const SYS_io_pgetevents: libc::c_long = 333;
    #[cfg(target_arch = "x86_64")]
    pub(super) const SYS_uretprobe: libc::c_long = 335;
    #[cfg(not(target_arch = "x86_64"))]
    pub(super) const SYS_io_pgetevents: libc::c_long = 292;
}

// ANCHOR: allowed_syscalls
/// Allowed whatever the arguments: files, memory, processes, signals,
/// sockets, time, the ordinary life of a program. `ptrace` and
/// `process_vm_*` are here because the profile allows them from kernel 4.8
/// on, which closed the hole that let ptrace bypass seccomp.
pub const ALLOWED: &[Call] = calls! { libc:
    SYS_accept SYS_accept4 SYS_adjtimex SYS_bind SYS_brk SYS_capget SYS_capset SYS_chdir
    SYS_clock_adjtime SYS_clock_getres SYS_clock_gettime SYS_clock_nanosleep SYS_close
    SYS_close_range SYS_connect SYS_copy_file_range SYS_dup SYS_dup3 SYS_epoll_create1
    SYS_epoll_ctl SYS_epoll_pwait SYS_epoll_pwait2 SYS_eventfd2 SYS_execve SYS_execveat SYS_exit
    SYS_exit_group SYS_faccessat SYS_faccessat2 SYS_fadvise64 SYS_fallocate SYS_fanotify_mark
    SYS_fchdir SYS_fchmod SYS_fchmodat SYS_fchown SYS_fchownat SYS_fcntl SYS_fdatasync
    SYS_fgetxattr SYS_flistxattr SYS_flock SYS_fremovexattr SYS_fsetxattr SYS_fstat SYS_fstatfs
    SYS_fsync SYS_ftruncate SYS_futex SYS_futex_waitv SYS_getcpu SYS_getcwd SYS_getdents64
    SYS_getegid SYS_geteuid SYS_getgid SYS_getgroups SYS_getitimer SYS_getpeername SYS_getpgid
    SYS_getpid SYS_getppid SYS_getpriority SYS_getrandom SYS_getresgid SYS_getresuid SYS_getrlimit
    SYS_get_robust_list SYS_getrusage SYS_getsid SYS_getsockname SYS_getsockopt SYS_gettid
    SYS_gettimeofday SYS_getuid SYS_getxattr SYS_inotify_add_watch SYS_inotify_init1
    SYS_inotify_rm_watch SYS_io_cancel SYS_ioctl SYS_io_destroy SYS_io_getevents SYS_ioprio_get
    SYS_ioprio_set SYS_io_setup SYS_io_submit SYS_kill SYS_landlock_add_rule
    SYS_landlock_create_ruleset SYS_landlock_restrict_self SYS_lgetxattr SYS_linkat SYS_listen
    SYS_listxattr SYS_llistxattr SYS_lremovexattr SYS_lseek SYS_lsetxattr SYS_madvise
    SYS_membarrier SYS_memfd_create SYS_memfd_secret SYS_mincore SYS_mkdirat SYS_mknodat SYS_mlock
    SYS_mlock2 SYS_mlockall SYS_mmap SYS_mprotect SYS_mq_getsetattr SYS_mq_notify SYS_mq_open
    SYS_mq_timedreceive SYS_mq_timedsend SYS_mq_unlink SYS_mremap SYS_mseal SYS_msgctl SYS_msgget
    SYS_msgrcv SYS_msgsnd SYS_msync SYS_munlock SYS_munlockall SYS_munmap SYS_name_to_handle_at
    SYS_nanosleep SYS_newfstatat SYS_openat SYS_openat2 SYS_pidfd_open SYS_pidfd_send_signal
    SYS_pipe2 SYS_pkey_alloc SYS_pkey_free SYS_pkey_mprotect SYS_ppoll SYS_prctl SYS_pread64
    SYS_preadv SYS_preadv2 SYS_prlimit64 SYS_process_mrelease SYS_pselect6 SYS_pwrite64
    SYS_pwritev SYS_pwritev2 SYS_read SYS_readahead SYS_readlinkat SYS_readv SYS_recvfrom
    SYS_recvmmsg SYS_recvmsg SYS_remap_file_pages SYS_removexattr SYS_renameat SYS_renameat2
    SYS_restart_syscall SYS_rseq SYS_rt_sigaction SYS_rt_sigpending SYS_rt_sigprocmask
    SYS_rt_sigqueueinfo SYS_rt_sigreturn SYS_rt_sigsuspend SYS_rt_sigtimedwait
    SYS_rt_tgsigqueueinfo SYS_sched_getaffinity SYS_sched_getattr SYS_sched_getparam
    SYS_sched_get_priority_max SYS_sched_get_priority_min SYS_sched_getscheduler
    SYS_sched_rr_get_interval SYS_sched_setaffinity SYS_sched_setattr SYS_sched_setparam
    SYS_sched_setscheduler SYS_sched_yield SYS_seccomp SYS_semctl SYS_semget SYS_semop
    SYS_semtimedop SYS_sendfile SYS_sendmmsg SYS_sendmsg SYS_sendto SYS_setfsgid SYS_setfsuid
    SYS_setgid SYS_setgroups SYS_setitimer SYS_setpgid SYS_setpriority SYS_setregid SYS_setresgid
    SYS_setresuid SYS_setreuid SYS_setrlimit SYS_set_robust_list SYS_setsid SYS_setsockopt
    SYS_set_tid_address SYS_setuid SYS_setxattr SYS_shmat SYS_shmctl SYS_shmdt SYS_shmget
    SYS_shutdown SYS_sigaltstack SYS_signalfd4 SYS_socketpair SYS_splice SYS_statfs SYS_statx
    SYS_symlinkat SYS_sync SYS_sync_file_range SYS_syncfs SYS_sysinfo SYS_tee SYS_tgkill
    SYS_timer_create SYS_timer_delete SYS_timer_getoverrun SYS_timer_gettime SYS_timer_settime
    SYS_timerfd_create SYS_timerfd_gettime SYS_timerfd_settime SYS_times SYS_tkill SYS_truncate
    SYS_umask SYS_uname SYS_unlinkat SYS_utimensat SYS_vmsplice SYS_wait4 SYS_waitid SYS_write
    SYS_writev    SYS_ptrace SYS_process_vm_readv SYS_process_vm_writev
};

/// Allowed calls newer than libc's names (same numbers everywhere).
pub const ALLOWED_NEW: &[Call] = calls! { unified:
    SYS_cachestat SYS_fchmodat2 SYS_map_shadow_stack SYS_futex_wake SYS_futex_wait
    SYS_futex_requeue SYS_statmount SYS_listmount SYS_setxattrat SYS_getxattrat
    SYS_listxattrat SYS_removexattrat
};

/// Allowed calls that exist on x86_64 only: the old forms that later
/// architectures replaced with `*at` calls, and x86's own.
#[cfg(target_arch = "x86_64")]
pub const ALLOWED_ARCH: &[Call] = calls! { libc:
    SYS_access SYS_alarm SYS_chmod SYS_chown SYS_creat SYS_dup2 SYS_epoll_create SYS_epoll_ctl_old
    SYS_epoll_wait SYS_epoll_wait_old SYS_eventfd SYS_fork SYS_futimesat SYS_getdents SYS_getpgrp
    SYS_get_thread_area SYS_inotify_init SYS_lchown SYS_link SYS_lstat SYS_mkdir SYS_mknod
    SYS_open SYS_pause SYS_pipe SYS_poll SYS_readlink SYS_rename SYS_rmdir SYS_select
    SYS_set_thread_area SYS_signalfd SYS_stat SYS_symlink SYS_time SYS_unlink SYS_utime SYS_utimes
    SYS_vfork    SYS_arch_prctl SYS_modify_ldt
};
/// Allowed calls that exist on x86_64 only (none elsewhere).
#[cfg(not(target_arch = "x86_64"))]
pub const ALLOWED_ARCH: &[Call] = &[];

/// Allowed calls whose numbers differ per architecture and libc lacks.
#[cfg(target_arch = "x86_64")]
pub const ALLOWED_NATIVE: &[Call] = calls! { native: SYS_io_pgetevents SYS_uretprobe };
/// Allowed calls whose numbers differ per architecture and libc lacks.
#[cfg(not(target_arch = "x86_64"))]
pub const ALLOWED_NATIVE: &[Call] = calls! { native: SYS_io_pgetevents };
// ANCHOR_END: allowed_syscalls

// ANCHOR: argument_filters
/// One comparison of an argument, as libseccomp names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// `arg < value` (`SCMP_CMP_LT`).
    Below(u64),
    /// `arg == value` (`SCMP_CMP_EQ`).
    Equal(u64),
    /// `arg > value` (`SCMP_CMP_GT`).
    Above(u64),
    /// `arg & mask == 0` (`SCMP_CMP_MASKED_EQ` with value two 0).
    NoneOf(u64),
}

/// A call allowed when its argument `arg` passes any one of `any_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgRule {
    /// The call.
    pub call: Call,
    /// Which argument (0 is the first).
    pub arg: u8,
    /// The alternatives; one passing is enough.
    pub any_of: &'static [Test],
}

/// `socket(domain, …)`: every address family but `AF_ALG` (38, the
/// kernel's crypto API, a steady source of bugs) and `AF_VSOCK` (40, the
/// channel between a virtual machine and its host).
pub const SOCKET: ArgRule = ArgRule {
    call: Call {
        sys: "SYS_socket",
        nr: libc::SYS_socket,
    },
    arg: 0,
    any_of: &[Test::Below(38), Test::Equal(39), Test::Above(40)],
};

/// `personality(persona)`: only `PER_LINUX` (0), `PER_LINUX32` (8),
/// `UNAME26` (0x20000), both (0x20008), and the query 0xffffffff. Other
/// flags change how the kernel treats the process (`READ_IMPLIES_EXEC`
/// makes every readable page executable; `ADDR_NO_RANDOMIZE` turns ASLR
/// off), which helps an exploit more than a program.
pub const PERSONALITY: ArgRule = ArgRule {
    call: Call {
        sys: "SYS_personality",
        nr: libc::SYS_personality,
    },
    arg: 0,
    any_of: &[
        Test::Equal(0x0),
        Test::Equal(0x8),
        Test::Equal(0x20000),
        Test::Equal(0x20008),
        Test::Equal(0xffff_ffff),
    ],
};

/// The `clone` flags that create namespaces: `CLONE_NEWNS`, `NEWCGROUP`,
/// `NEWUTS`, `NEWIPC`, `NEWUSER`, `NEWPID`, `NEWNET` (0x7e020000).
pub const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// `clone(flags, …)` without `CAP_SYS_ADMIN`: threads and processes, but no
/// new namespace (a new user namespace would give back every capability,
/// inside it, and with them the kernel's less-trodden paths).
pub const CLONE_WITHOUT_NAMESPACES: ArgRule = ArgRule {
    call: Call {
        sys: "SYS_clone",
        nr: libc::SYS_clone,
    },
    arg: 0,
    any_of: &[Test::NoneOf(NAMESPACE_FLAGS)],
};
// ANCHOR_END: argument_filters

// ANCHOR: by_capability
/// Calls allowed only to a container that keeps the capability: the
/// kernel checks that capability too, so the filter only removes a path
/// for calls the container could not use anyway — unless it was given the
/// capability, and then the filter must not stand in the way.
pub const BY_CAPABILITY: &[(Capability, &[Call])] = &[
    (
        Capability::CAP_DAC_READ_SEARCH,
        calls! { libc: SYS_open_by_handle_at },
    ),
    (
        Capability::CAP_SYS_ADMIN,
        calls! { libc:
            SYS_bpf SYS_clone SYS_clone3 SYS_fanotify_init SYS_fsconfig SYS_fsmount SYS_fsopen
            SYS_fspick SYS_lookup_dcookie SYS_mount SYS_mount_setattr SYS_move_mount SYS_open_tree
            SYS_perf_event_open SYS_quotactl SYS_quotactl_fd SYS_setdomainname SYS_sethostname
            SYS_setns SYS_syslog SYS_umount2 SYS_unshare
        },
    ),
    (
        Capability::CAP_SYS_ADMIN,
        calls! { unified:
            SYS_lsm_get_self_attr SYS_lsm_set_self_attr SYS_lsm_list_modules
        },
    ),
    (Capability::CAP_SYS_BOOT, calls! { libc: SYS_reboot }),
    (Capability::CAP_SYS_CHROOT, calls! { libc: SYS_chroot }),
    (
        Capability::CAP_SYS_MODULE,
        calls! { libc:
            SYS_delete_module SYS_init_module SYS_finit_module
        },
    ),
    (Capability::CAP_SYS_PACCT, calls! { libc: SYS_acct }),
    (
        Capability::CAP_SYS_PTRACE,
        calls! { libc:
            SYS_kcmp SYS_pidfd_getfd SYS_process_madvise SYS_process_vm_readv
            SYS_process_vm_writev SYS_ptrace
        },
    ),
    #[cfg(target_arch = "x86_64")]
    (
        Capability::CAP_SYS_RAWIO,
        calls! { libc: SYS_iopl SYS_ioperm },
    ),
    (
        Capability::CAP_SYS_TIME,
        calls! { libc: SYS_settimeofday SYS_clock_settime },
    ),
    (Capability::CAP_SYS_TTY_CONFIG, calls! { libc: SYS_vhangup }),
    (
        Capability::CAP_SYS_NICE,
        calls! { libc:
            SYS_get_mempolicy SYS_mbind SYS_set_mempolicy SYS_set_mempolicy_home_node
        },
    ),
    (Capability::CAP_SYSLOG, calls! { libc: SYS_syslog }),
    (Capability::CAP_BPF, calls! { libc: SYS_bpf }),
    (
        Capability::CAP_PERFMON,
        calls! { libc: SYS_perf_event_open },
    ),
];
// ANCHOR_END: by_capability

// ANCHOR: resolve
/// Docker's profile for one container, given the capabilities it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Calls allowed whatever their arguments.
    pub allowed: Vec<Call>,
    /// Calls allowed with some arguments only (none of them in `allowed`).
    pub conditional: Vec<ArgRule>,
    /// Without `CAP_SYS_ADMIN`, `clone3` answers `ENOSYS`: its flags sit in
    /// memory the filter cannot read, and `ENOSYS` makes the C library fall
    /// back to `clone`, whose flags it can.
    pub clone3_enosys: bool,
}

/// The profile for a container keeping `kept` (`None`: all of root's).
pub fn resolve(kept: Option<&[Capability]>) -> Resolved {
    let keeps = |cap: &Capability| kept.is_none_or(|kept| kept.contains(cap));
    let mut allowed: Vec<Call> = [ALLOWED, ALLOWED_NEW, ALLOWED_ARCH, ALLOWED_NATIVE].concat();
    for (_, calls) in BY_CAPABILITY.iter().filter(|(cap, _)| keeps(cap)) {
        for call in *calls {
            if !allowed.contains(call) {
                allowed.push(*call);
            }
        }
    }
    let conditional = [SOCKET, PERSONALITY, CLONE_WITHOUT_NAMESPACES]
        .into_iter()
        .filter(|rule| !allowed.contains(&rule.call))
        .collect();
    Resolved {
        allowed,
        conditional,
        clone3_enosys: !keeps(&Capability::CAP_SYS_ADMIN),
    }
}
// ANCHOR_END: resolve
