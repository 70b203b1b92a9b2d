//! Passing signals on to the container, and waiting for it to end.
//!
//! `docker run` forwards the signals it gets to the container, so `Ctrl-C` or
//! `kill -TERM` reach the command. caixa does it without a signal handler: the
//! parent blocks those signals and `SIGCHLD` *before* it clones, then waits for
//! any of them with `sigwait(2)`. A blocked signal stays pending, so none is
//! lost between the clone and the wait, and there is no handler to race with.
//! The child inherits the blocked mask, so it restores the old one just before
//! `execve` (a mask survives exec, see signal(7)).
//!
//! One kernel rule surprises everyone once: pid 1 of a PID namespace receives
//! from its ancestors only the signals it has a handler for (and SIGKILL). A
//! `sleep` as pid 1 ignores a forwarded SIGTERM, in Docker as here.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::exit::Exit;

// ANCHOR: forwarded_signals
/// The signals a step binary passes on to its container.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];
// ANCHOR_END: forwarded_signals

/// A failure while blocking signals or waiting.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed: {errno}")]
pub struct SignalError {
    /// The call.
    pub call: &'static str,
    /// What the kernel answered.
    pub errno: Errno,
}

/// The forwarded signals and `SIGCHLD`, blocked for as long as this lives.
#[derive(Debug)]
pub struct Blocked {
    set: SigSet,
    previous: SigSet,
}

/// Blocks [`FORWARDED`] and `SIGCHLD`, so they wait for [`Blocked::wait_for_exit`].
pub fn block() -> Result<Blocked, SignalError> {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    let mut previous = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut previous)).map_err(|errno| {
        SignalError {
            call: "sigprocmask",
            errno,
        }
    })?;
    Ok(Blocked { set, previous })
}

impl Blocked {
    /// The mask to restore in the child before `execve`.
    pub fn previous(&self) -> SigSet {
        self.previous
    }

    // ANCHOR: wait_for_exit
    /// Waits for `child` to end, passing every forwarded signal on to it.
    pub fn wait_for_exit(&self, child: Pid) -> Result<Exit, SignalError> {
        loop {
            let signal = self.set.wait().map_err(|errno| SignalError {
                call: "sigwait",
                errno,
            })?;
            if signal != Signal::SIGCHLD {
                // ESRCH: it ended meanwhile; SIGCHLD is on its way.
                let _ = kill(child, signal);
                continue;
            }
            // One SIGCHLD may stand for several ended children; ask for ours.
            if let Some(exit) = try_reap(child)? {
                return Ok(exit);
            }
        }
    }
    // ANCHOR_END: wait_for_exit
}

impl Blocked {
    /// The blocked set: a caller with its own event loop reads these
    /// signals from a `signalfd(2)` of this set instead of `sigwait`.
    pub fn set(&self) -> &SigSet {
        &self.set
    }
}

/// Reaps `child` if it has ended, without waiting.
pub fn try_reap(child: Pid) -> Result<Option<Exit>, SignalError> {
    match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some(Exit::Code(code))),
        Ok(WaitStatus::Signaled(_, signal, _)) => Ok(Some(Exit::Signal(signal))),
        Ok(_) => Ok(None),
        Err(errno) => Err(SignalError {
            call: "waitpid",
            errno,
        }),
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.previous), None);
    }
}

/// In the child: puts back the mask the parent had before [`block`].
pub fn restore_in_child(previous: &SigSet) -> Result<(), SignalError> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(previous), None).map_err(|errno| SignalError {
        call: "sigprocmask",
        errno,
    })
}
