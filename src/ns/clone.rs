//! Creating the container's first process inside new namespaces.
//!
//! `clone3(2)` is `fork(2)` with options: with `CLONE_NEW*` flags the child
//! starts in fresh namespaces, and like `fork` it returns twice, once in each
//! process. We use it the fork way (no separate stack), which is safe only in a
//! single-threaded process: the child gets a copy of this thread alone, and
//! any lock another thread held would stay locked forever in the copy.
//!
//! It is `clone3` and not `unshare(2)` followed by `fork(2)` because
//! `unshare(CLONE_NEWPID)` does not move the caller into the new PID
//! namespace, only its later children.
//!
//! Step 7 adds one more way: [`clone_child_into`] passes `CLONE_INTO_CGROUP`
//! and a cgroup v2 directory, so the child is born in its cgroup instead of
//! being moved there by a write after the clone (the move waits for the
//! kernel's cgroup lock; a birth in place does not). It is step 7's harder
//! exercise; on cgroup v1, or on a kernel older than 5.7, the parent moves
//! the child as before.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// What `clone3` returned, seen from one of the two processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// We are the parent; this is the child's pid as seen from our namespace.
    Parent(Pid),
    /// We are the child, inside the new namespaces.
    Child,
}

/// `struct clone_args` from `<linux/sched.h>`, the first version (64 bytes,
/// Linux 5.3). Later kernels accept longer versions; we send only what we use.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

// ANCHOR: clone_child
/// Creates a child process in new namespaces, as `fork` does.
///
/// `SIGCHLD` as the exit signal makes the child an ordinary child that
/// `waitpid` reaps. On kernels older than 5.3 (no `clone3`) the classic
/// `clone` syscall with a null stack does the same.
///
/// # Safety
///
/// The calling process must be single-threaded: see the module documentation.
pub unsafe fn clone_child(flags: CloneFlags) -> Result<Forked, Errno> {
    // EXERCISE(1): create the child in new namespaces with clone3(2) and tell the two processes apart
    let args = CloneArgs {
        flags: flags.bits() as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 with no stack behaves like fork; the caller guarantees we
    // are single-threaded, and `args` lives across the call.
    let mut ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == -1 && Errno::last() == Errno::ENOSYS {
        // SAFETY: as above; a null stack makes clone copy ours, like fork.
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags.bits() as libc::c_long | libc::SIGCHLD as libc::c_long,
                0,
                0,
                0,
                0,
            )
        };
    }
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
    // END EXERCISE
}
// ANCHOR_END: clone_child

/// `struct clone_args` version 2 (88 bytes, Linux 5.7): version 1 plus
/// `set_tid`, `set_tid_size` and `cgroup`, the field `CLONE_INTO_CGROUP`
/// reads. The kernel takes any version it knows, by the size passed.
#[repr(C)]
#[derive(Default)]
struct CloneArgsV2 {
    first: CloneArgs,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const _: () = assert!(std::mem::size_of::<CloneArgsV2>() == 88);

/// `CLONE_INTO_CGROUP` from `<linux/sched.h>` (not in libc's crate for
/// every target yet): a flag above the 32 bits the old `clone` could take.
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

// ANCHOR: clone_child_into
/// As [`clone_child`], but the child is born in the cgroup v2 directory
/// `group` is open on: no process ever has to move it there.
///
/// `Err(ENOSYS)` or `Err(E2BIG)` mean this kernel cannot (no `clone3`, or a
/// `clone_args` older than version 2): the caller then clones with
/// [`clone_child`] and moves the child. A v1 directory gives `EBADF`.
///
/// # Safety
///
/// As for [`clone_child`]: the calling process must be single-threaded.
pub unsafe fn clone_child_into(flags: CloneFlags, group: BorrowedFd<'_>) -> Result<Forked, Errno> {
    // HARDER(7): be born in the cgroup: clone3 with CLONE_INTO_CGROUP and the group's directory fd in clone_args version 2
    // STAND-IN: Err(Errno::ENOSYS)
    let args = CloneArgsV2 {
        first: CloneArgs {
            flags: flags.bits() as u64 | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as _,
            ..CloneArgs::default()
        },
        cgroup: group.as_raw_fd() as u64,
        ..CloneArgsV2::default()
    };
    // SAFETY: as in `clone_child`; `args` lives across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgsV2,
            std::mem::size_of::<CloneArgsV2>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
    // END HARDER
}
// ANCHOR_END: clone_child_into
