//! `--init`: a tiny pid 1 that reaps orphans and passes signals on.
//!
//! Step 1 shows why pid 1 of a PID namespace is special. When a process
//! dies, its children are given to pid 1, which must `wait` for them, or
//! they stay zombies (an entry in the process table each, until the
//! namespace ends). And the kernel shields pid 1 from signals it has no
//! handler for: `docker stop` sends SIGTERM to a `sleep` that is pid 1, the
//! signal is dropped, and the stop waits its grace period out and kills.
//!
//! Most programs were not written to be pid 1. Docker's `--init` therefore
//! runs a small init (tini) as pid 1 with the command as its only child.
//! caixa needs no second program: its own init, already pid 1 in the
//! container's namespaces, forks just before `execve`. The child becomes the
//! command; the parent stays, and does three things only:
//!
//! 1. waits for every child, so no zombie is left;
//! 2. passes each signal sent to it (`kill(2)`, from the shim or inside) on
//!    to the command; signals the kernel sends a whole terminal's process
//!    group (Ctrl-C, a window resize) reached the command already;
//! 3. exits with the command's status when the command ends (128 + N when
//!    signal N ended it), which ends the namespace and every process left.
//!
//! It runs under the container's seccomp filter, capabilities and user, as
//! the command does, and holds no descriptor but 0, 1 and 2.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, pthread_sigmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

// ANCHOR: split
/// Forks the init in two. Returns in the child, which goes on to become the
/// command; the parent becomes the reaper and never returns.
///
/// Every signal is blocked across the fork, so none sent in between is
/// lost: the reaper takes them with `sigwaitinfo`, the child unblocks them
/// again before it goes on.
pub fn split() -> Result<(), Errno> {
    let mut before = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut before),
    )?;
    // SAFETY: the init is single-threaded here; the child only returns to
    // the init's sequence, which goes straight on to execve.
    match unsafe { fork() }? {
        ForkResult::Child => {
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None)?;
            Ok(())
        }
        ForkResult::Parent { child } => reap(child),
    }
}
// ANCHOR_END: split

// ANCHOR: reap
/// pid 1's loop: signals in, one at a time; children out, all of them.
fn reap(command: Pid) -> ! {
    close_inherited();
    // Name it, so `ps` inside shows what it is; and not dumpable, so no
    // process of the container may open its memory or `/proc/1/exe`.
    let _ = nix::sys::prctl::set_name(c"caixa-init");
    let _ = nix::sys::prctl::set_dumpable(false);
    let all = SigSet::all();
    loop {
        // SAFETY: a zeroed siginfo_t is a valid buffer for the kernel to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `all` and `info` are valid for the call.
        let signo = unsafe { libc::sigwaitinfo(all.as_ref(), &mut info) };
        if signo < 0 {
            continue; // EINTR: nothing came.
        }
        if signo == libc::SIGCHLD {
            if let Some(code) = reap_all(command) {
                // SAFETY: _exit ends the process at once; nothing to unwind.
                unsafe { libc::_exit(code) };
            }
        } else if info.si_code <= 0 {
            // Sent by a process (SI_USER, SI_QUEUE, SI_TKILL: codes ≤ 0),
            // not by the kernel for the terminal's group: pass it on.
            if let Ok(signal) = Signal::try_from(signo) {
                let _ = kill(command, signal);
            }
        }
    }
}

/// Waits for every child that has ended; the command's exit code, once it
/// is one of them.
fn reap_all(command: Pid) -> Option<i32> {
    // EXERCISE(11): wait for every child that has ended (waitpid of any child, WNOHANG) until none is left; return the command's exit code once it is among them (128 + N when signal N ended it), else None
    let mut ended = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => ended = Some(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => {
                ended = Some(128 + signal as i32);
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return ended,
            Ok(_) => {} // an orphan, reaped
        }
    }
    // END EXERCISE
}
// ANCHOR_END: reap

/// Closes every descriptor but 0, 1 and 2: the init's channel to its
/// parent must close when the command execs (that is how the parent learns
/// it did), and the reaper needs nothing else.
fn close_inherited() {
    // SAFETY: close_range(2) only closes this process's descriptors.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if ret != 0 {
        // Before Linux 5.9, or refused by a filter: one by one.
        for fd in 3..1024 {
            // SAFETY: closing a descriptor this process may hold.
            unsafe { libc::close(fd) };
        }
    }
}
