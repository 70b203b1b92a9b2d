//! A container's standard input, as its shim holds it (`-i`).
//!
//! The container reads from a pipe (or, with `-t`, from its terminal);
//! the shim holds the other end and writes into it what its attached
//! clients send. A client is a connection on the shim's control socket
//! that asked `stdin`: the daemon opens one for each `attach` with
//! `stdin=1` and copies the user's keys into it.
//!
//! Two rules come from Docker. A container made with `-i` keeps its stdin
//! open with nobody attached (`docker run -di … cat` waits for an
//! attach); and with `StdinOnce` (what `docker run -i` sets) the first
//! client to leave closes it, so a program reading to the end (`cat`,
//! `sh` reading a script) sees the end of its input. A terminal is never
//! closed this way: its end would hang up the whole session.
//!
//! Nothing here may block the shim, which also carries the container's
//! output: a container that does not read its input could otherwise stop
//! its own output from being read. So writes are non-blocking, what the
//! container has not taken yet waits in a bounded buffer, and while that
//! buffer is full the clients are not read: the back-pressure reaches the
//! user's client through the sockets.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::PollFlags;

use super::EngineError;

/// Input waiting for the container to read it, at most this much.
const MAX_PENDING: usize = 64 * 1024;

/// The container's stdin as the shim holds it.
#[derive(Debug, Default)]
pub struct Input {
    /// Where the container reads: the write end of its stdin pipe, or its
    /// terminal's master. `None`: no `-i`, or closed.
    fd: Option<OwnedFd>,
    /// Written by a client, not yet read by the container.
    pending: Vec<u8>,
    /// The attached clients (non-blocking).
    clients: Vec<UnixStream>,
    /// Close stdin when the first client leaves (`StdinOnce`).
    once: bool,
    /// `fd` is a terminal: never closed while the container runs.
    terminal: bool,
    /// A client left under `once`: close when `pending` is written.
    closing: bool,
}

impl Input {
    /// Stdin is `fd` (our end of it): a pipe, or with `terminal` the
    /// master of the container's terminal.
    pub fn new(fd: OwnedFd, once: bool, terminal: bool) -> Result<Input, EngineError> {
        set_nonblocking(fd.as_fd())?;
        Ok(Input {
            fd: Some(fd),
            once,
            terminal,
            ..Input::default()
        })
    }

    /// Takes on a client that asked `stdin`; `Err` with the reason when
    /// this container has no stdin to write to.
    pub fn attach(&mut self, client: &UnixStream) -> Result<(), String> {
        if self.fd.is_none() {
            return Err("this container's stdin is not open: create it with -i".into());
        }
        let ours = client
            .try_clone()
            .map_err(|e| format!("cannot take this client: {e}"))?;
        self.clients.push(ours);
        Ok(())
    }

    // ANCHOR: input_poll
    /// What the shim's `poll(2)` must watch for us: each client, while
    /// there is room for what it sends, and stdin, while it has some to
    /// take. [`Input::ready`] gets the answers in this order.
    pub fn wanted(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut wanted = Vec::new();
        if self.pending.len() < MAX_PENDING {
            wanted.extend(self.clients.iter().map(|c| (c.as_fd(), PollFlags::POLLIN)));
        }
        if let Some(fd) = self.fd.as_ref().filter(|_| !self.pending.is_empty()) {
            wanted.push((fd.as_fd(), PollFlags::POLLOUT));
        }
        wanted
    }

    /// Acts on what `poll` found for the fds [`Input::wanted`] gave, in
    /// the same order: reads the ready clients, writes what it can.
    pub fn ready(&mut self, ready: &[bool]) {
        if self.pending.len() < MAX_PENDING {
            let mut index = 0;
            self.clients.retain_mut(|client| {
                let is_ready = ready.get(index).copied().unwrap_or(false);
                index += 1;
                !is_ready || read_some(client, &mut self.pending)
            });
            // Gone clients: under StdinOnce, the first one ends the input.
            if self.clients.len() < index && self.once && !self.terminal {
                self.closing = true;
            }
        }
        self.write_some();
    }
    // ANCHOR_END: input_poll

    /// Writes what the container will take now, without waiting.
    fn write_some(&mut self) {
        let Some(fd) = &self.fd else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match nix::unistd::write(fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                // The container closed its stdin (EPIPE), or its terminal
                // is gone (EIO): nobody will read this any more.
                Err(_) => {
                    self.pending.clear();
                    self.fd = None;
                    return;
                }
            }
        }
        if self.closing && self.pending.is_empty() {
            // Its end: the container's next read returns 0.
            self.fd = None;
            self.clients.clear();
        }
    }
}

/// Reads what `client` sent into `pending` (up to the bound); `false`
/// once it has gone.
fn read_some(client: &mut UnixStream, pending: &mut Vec<u8>) -> bool {
    let room = MAX_PENDING.saturating_sub(pending.len());
    if room == 0 {
        return true;
    }
    let mut buf = vec![0u8; room.min(16 * 1024)];
    match client.read(&mut buf) {
        Ok(0) => false,
        Ok(n) => {
            pending.extend_from_slice(&buf[..n]);
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
        Err(_) => false,
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), EngineError> {
    let sys = |source| EngineError::Sys {
        call: "fcntl(O_NONBLOCK)",
        source,
    };
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).map_err(sys)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(sys)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap()
    }

    fn read_all(fd: &OwnedFd) -> Vec<u8> {
        let mut file = std::fs::File::from(fd.try_clone().unwrap());
        let mut out = Vec::new();
        file.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn what_a_client_sends_reaches_stdin_and_its_leaving_ends_it_under_stdin_once() {
        let (theirs, ours) = pipe();
        let mut input = Input::new(ours, true, false).unwrap();
        let (mut user, shim_side) = UnixStream::pair().unwrap();
        input.attach(&shim_side).unwrap();
        user.write_all(b"hello\n").unwrap();
        drop(user);
        // Two rounds: the bytes, then the end.
        for _ in 0..2 {
            let n = input.wanted().len();
            input.ready(&vec![true; n]);
        }
        assert!(input.fd.is_none(), "closed once the only client left");
        assert_eq!(read_all(&theirs), b"hello\n");
    }

    #[test]
    fn without_stdin_once_stdin_stays_open_for_the_next_client() {
        let (_theirs, ours) = pipe();
        let mut input = Input::new(ours, false, false).unwrap();
        let (user, shim_side) = UnixStream::pair().unwrap();
        input.attach(&shim_side).unwrap();
        drop(user);
        input.ready(&[true]);
        assert!(input.fd.is_some() && input.clients.is_empty());
    }

    #[test]
    fn a_container_that_does_not_read_never_blocks_the_shim() {
        let (_theirs, ours) = pipe();
        let mut input = Input::new(ours, true, false).unwrap();
        let (mut user, shim_side) = UnixStream::pair().unwrap();
        user.set_nonblocking(true).unwrap();
        input.attach(&shim_side).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            let _ = user.write(&chunk);
            let n = input.wanted().len();
            input.ready(&vec![true; n]);
        }
        assert!(input.pending.len() <= MAX_PENDING);
        assert!(
            input.wanted().iter().all(|(_, f)| *f == PollFlags::POLLOUT),
            "a full buffer stops reading the clients"
        );
    }
}
