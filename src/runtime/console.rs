//! The console socket: how a runtime hands a container's terminal to its
//! caller.
//!
//! With `process.terminal`, the container's init makes a pty in the
//! container's own devpts and gives the master end to `create` (the same
//! hand-over as the engine's, [`crate::init`]'s `take_terminal`). `create`
//! is about to exit, so it cannot hold the master: it sends it, as an
//! `SCM_RIGHTS` message, to the unix socket its caller named with
//! `--console-socket`. conmon and containerd's shim listen there, keep
//! the master, and copy between it and the user.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use super::RuntimeError;

/// Connects to the listener at `socket`; `exec` does this before it
/// leaves the host's mount namespace, where the path means something.
pub fn connect(socket: &Path) -> Result<UnixStream, RuntimeError> {
    UnixStream::connect(socket).map_err(|source| RuntimeError::Io {
        action: "connect to the console socket",
        path: socket.to_path_buf(),
        source,
    })
}

/// Sends `master` to the listener at `socket`, with the name runc sends
/// beside it (callers ignore it, but some expect a non-empty message).
pub fn send(socket: &Path, master: BorrowedFd<'_>) -> Result<(), RuntimeError> {
    send_over(&connect(socket)?, master).map_err(|errno| RuntimeError::Io {
        action: "send the terminal to",
        path: socket.to_path_buf(),
        source: errno.into(),
    })
}

/// Sends `master` over a connected console socket.
pub fn send_over(stream: &UnixStream, master: BorrowedFd<'_>) -> Result<(), nix::errno::Errno> {
    let fds = [master.as_raw_fd()];
    let name = b"/dev/ptmx";
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[std::io::IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}
