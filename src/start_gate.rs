//! The start gate: how a created container waits for `start` (step 12).
//!
//! An OCI runtime splits a container's birth in two commands. `create` does
//! everything (namespaces, mounts, cgroup, capabilities) and leaves the
//! container's pid 1 stopped just before `execve`; then `create` *exits*.
//! Later, maybe from another program, `start` lets it run the user's command.
//! Between the two no caixa process is left to talk to, so the child cannot
//! wait on its channel to the parent as the step binaries' children do.
//!
//! It waits on a FIFO in the container's state directory instead, as runc
//! does with its `exec.fifo`:
//!
//! 1. `create` makes the FIFO and opens it with `O_PATH` before the clone:
//!    the child inherits that descriptor, which grants nothing by itself.
//! 2. The child, ready (mounts done, pivoted, privileges dropped), opens
//!    `/proc/self/fd/N` for writing. Opening a FIFO for writing blocks until
//!    someone opens it for reading: here the container sits, pid 1 of its
//!    namespaces, for as long as it takes.
//! 3. `start` opens the FIFO for reading, which wakes the child; the child
//!    writes one byte and goes on to `execve`. `start` reads that byte (so
//!    it knows the child really went on) and removes the FIFO, which is how
//!    `state` tells "created" (FIFO there) from "running" (FIFO gone).
//!
//! `/proc/self/fd/N` is a magic link: it reaches the FIFO through the
//! descriptor, even after `pivot_root` has taken the state directory out of
//! the container's sight.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;

/// The FIFO's name in a container's state directory.
pub const FIFO: &str = "exec.fifo";

/// Why the gate could not be made, passed or opened.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A system call on the FIFO failed.
    #[error("{call} {path}: {errno}")]
    Syscall {
        /// The call.
        call: &'static str,
        /// The FIFO.
        path: PathBuf,
        /// What the kernel answered.
        errno: Errno,
    },
    /// `start` found no FIFO: the container was started already.
    #[error("the container is not waiting to start (it was started already)")]
    AlreadyStarted,
    /// The container died before `start` came.
    #[error("the container's process ended before it was started")]
    Died,
}

/// The FIFO, held by `create` and inherited by the child as an `O_PATH`
/// descriptor.
#[derive(Debug)]
pub struct StartGate {
    fd: OwnedFd,
}

impl StartGate {
    /// Makes the FIFO `path` (mode 0622, so the container's process can open
    /// it for writing whatever its user; the state directory around it is
    /// root's alone) and opens it `O_PATH`, not close-on-exec: the child
    /// must inherit it through the clone. The init marks it close-on-exec
    /// with every other descriptor, so the command never gets it.
    pub fn make(path: &Path) -> Result<StartGate, GateError> {
        let err = |call| {
            let path = path.to_path_buf();
            move |errno| GateError::Syscall { call, path, errno }
        };
        nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o622)).map_err(err("mkfifo"))?;
        // mkfifo's mode passed through the umask: set it exactly.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o622))
            .map_err(|e| err("chmod")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        let fd = nix::fcntl::open(path, OFlag::O_PATH, Mode::empty()).map_err(err("open"))?;
        Ok(StartGate { fd })
    }

    // ANCHOR: wait
    /// In the child, ready to exec: blocks until `start` opens the FIFO for
    /// reading, then writes the one byte that tells `start` we went on.
    pub fn wait(&self) -> Result<(), GateError> {
        // EXERCISE(12): open the FIFO through /proc/self/fd/N for writing (this blocks until `start` opens it for reading), then write one byte
        let path = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        let err = |call| {
            let path = path.clone();
            move |errno| GateError::Syscall { call, path, errno }
        };
        // Blocks here, in open(2), until a reader comes.
        let fifo = nix::fcntl::open(&path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(err("open"))?;
        nix::unistd::write(&fifo, b"0").map_err(err("write"))?;
        Ok(())
        // END EXERCISE
    }
    // ANCHOR_END: wait
}

// ANCHOR: release
/// `start`: opens the FIFO `path` for reading, which wakes the child
/// blocked in [`StartGate::wait`], reads its byte and removes the FIFO.
/// `alive` tells whether the container's process still exists: a FIFO
/// whose writer died would otherwise be waited on for ever.
pub fn release(path: &Path, alive: impl Fn() -> bool) -> Result<(), GateError> {
    let err = |call| {
        let path = path.to_path_buf();
        move |errno| GateError::Syscall { call, path, errno }
    };
    // O_NONBLOCK: a reader's open does not wait for a writer; the child's
    // open, which was waiting for a reader, returns now.
    let mut fifo = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(GateError::AlreadyStarted);
        }
        Err(e) => return Err(err("open")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))),
    };
    let mut byte = [0u8; 1];
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => match fifo.read(&mut byte) {
                Ok(1) => break,
                // Readable and empty: the writer opened and closed, or
                // has not opened yet (no writer ever: POLLHUP is not set
                // until one has come and gone).
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(err("read")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))),
            },
            Err(errno) => return Err(err("poll")(errno)),
        }
        if !alive() {
            return Err(GateError::Died);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::fs::remove_file(path)
        .map_err(|e| err("unlink")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    Ok(())
}
// ANCHOR_END: release
