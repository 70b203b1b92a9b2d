//! An attached session, from the client's side: `run` without `-d`,
//! `run -it`, `attach`.
//!
//! One connection, taken over (`101`), carries the container's output to
//! this terminal and, with `-i`, this terminal's input to the container.
//! With `-t` and a terminal here, the session also puts it in raw mode
//! ([`RawMode`]) and keeps the container's window the size of this one:
//! once at the start and again at each `SIGWINCH`, the signal the kernel
//! sends a process when its terminal's window changes size.
//!
//! The session ends when the output does. Then either the container has
//! ended (the exit code is its), or it runs on because the user typed the
//! detach keys: the daemon closed the connection, and that is all a
//! client sees, so it asks the container's state to know which.

use std::io::{IsTerminal, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

use super::EngineError;
use super::client::{Client, Demuxer};
use super::terminal::{RawMode, size_of};

/// What a session asks for.
#[derive(Debug, Clone, Copy)]
pub struct Wants {
    /// Send this process's stdin to the container (`-i`).
    pub stdin: bool,
    /// The container has a terminal (`-t`): output is raw, not framed.
    pub tty: bool,
}

/// An attach in progress: the output is being printed.
#[derive(Debug)]
pub struct Session {
    /// Where its window's size goes: `/containers/ID/resize` or
    /// `/exec/ID/resize`.
    resize: String,
    /// Where its state is asked (`None`: an exec, which never detaches).
    inspect: Option<String>,
    output: std::thread::JoinHandle<Result<(), EngineError>>,
    connection: UnixStream,
    wants: Wants,
    raw: Option<RawMode>,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The container ended (its exit code is to be asked with `wait`).
    Exited,
    /// The user detached: the container runs on.
    Detached,
}

impl Session {
    // ANCHOR: session_attach
    /// Attaches to container `id` (before its start, so nothing of its
    /// output is missed) and prints its output as it comes.
    pub fn attach(
        client: &Client,
        id: &str,
        wants: Wants,
        detach_keys: Option<&str>,
    ) -> Result<Session, EngineError> {
        let mut target = format!("/containers/{id}/attach?stream=1&stdout=1&stderr=1");
        if wants.stdin {
            target.push_str("&stdin=1");
        }
        if let Some(keys) = detach_keys {
            target.push_str("&detachKeys=");
            target.push_str(&crate::registry::client::percent_encode(keys));
        }
        let mut session = Session::over(client, "POST", &target, wants)?;
        session.resize = format!("/containers/{id}/resize");
        session.inspect = Some(format!("/containers/{id}/json"));
        Ok(session)
    }
    // ANCHOR_END: session_attach

    /// Starts exec `id` attached (`exec -i`, `-t`): its output printed as
    /// it comes, until it ends.
    pub fn exec(client: &Client, id: &str, wants: Wants) -> Result<Session, EngineError> {
        let mut session = Session::over(client, "POST", &format!("/exec/{id}/start"), wants)?;
        session.resize = format!("/exec/{id}/resize");
        Ok(session)
    }

    /// Takes over the connection of `method target` and prints what comes.
    fn over(
        client: &Client,
        method: &str,
        target: &str,
        wants: Wants,
    ) -> Result<Session, EngineError> {
        // Raw mode before anything is printed: what comes is the
        // container's terminal's to format, not ours.
        let stdin = std::io::stdin();
        let raw = match wants.tty && stdin.is_terminal() {
            true => Some(RawMode::enter(stdin.as_fd())?),
            false => None,
        };
        let connection = client.upgrade(method, target)?;
        let mut from = connection.try_clone().map_err(EngineError::Connection)?;
        let tty = wants.tty;
        let output = std::thread::spawn(move || {
            let mut demuxer = Demuxer::default();
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let mut buf = [0u8; 8192];
            loop {
                match from.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    // A terminal's output is raw: no frames to take apart.
                    Ok(n) if tty => {
                        let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
                    }
                    Ok(n) => demuxer.push(&buf[..n], &mut out, &mut err),
                    Err(e) => {
                        return Err(EngineError::Daemon(format!("the output stream broke: {e}")));
                    }
                }
            }
        });
        Ok(Session {
            resize: String::new(),
            inspect: None,
            output,
            connection,
            wants,
            raw,
        })
    }

    // ANCHOR: session_input
    /// Once the container runs: the window's size (with a terminal on
    /// both sides), and this process's stdin copied to it.
    pub fn start_input(&mut self, client: &Client) -> Result<(), EngineError> {
        if self.raw.is_some() {
            follow_window_size(client.clone(), self.resize.clone());
        }
        if !self.wants.stdin {
            return Ok(());
        }
        let mut to = self
            .connection
            .try_clone()
            .map_err(EngineError::Connection)?;
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 8192];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            // The end of our input, passed on: under StdinOnce the
            // container sees its stdin end; its output goes on.
            let _ = to.shutdown(Shutdown::Write);
        });
        Ok(())
    }
    // ANCHOR_END: session_input

    /// Waits for the output to end; says whether the container ended or
    /// the user detached. The terminal is back to normal when this returns.
    pub fn finish(self, client: &Client) -> Result<Ended, EngineError> {
        let printed = self
            .output
            .join()
            .map_err(|_| EngineError::Daemon("the output stream failed".into()))?;
        drop(self.raw);
        printed?;
        let Some(inspect) = &self.inspect else {
            return Ok(Ended::Exited);
        };
        let state = match client.json("GET", inspect, None) {
            Ok(state) => state,
            // Gone already: a `--rm` container that ended, removed by its shim.
            Err(EngineError::NotFound(_)) => return Ok(Ended::Exited),
            Err(e) => return Err(e),
        };
        Ok(if state["State"]["Running"].as_bool() == Some(true) {
            Ended::Detached
        } else {
            Ended::Exited
        })
    }

    /// Puts the terminal back now (before printing an error).
    pub fn restore_terminal(&mut self) {
        self.raw = None;
    }
}

/// The write end of the pipe the `SIGWINCH` handler writes to (-1: none).
static WINDOW_CHANGED: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigwinch(_: libc::c_int) {
    let fd = WINDOW_CHANGED.load(Ordering::Relaxed);
    if fd >= 0 {
        // Async-signal-safe: one write(2) of one byte; a full pipe already
        // says "changed", so a failure loses nothing.
        // SAFETY: the byte outlives the call; `fd` is our pipe's write end.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

// ANCHOR: window_size
/// Sends this terminal's size to `resize` (the container's or the exec's)
/// now, and again each time the window changes. A signal handler may do almost nothing (no locks,
/// no allocation), so it only writes a byte to a pipe (the "self-pipe"
/// trick); a thread reads the pipe and makes the API call.
fn follow_window_size(client: Client, resize: String) {
    let send = move |client: &Client| {
        if let Some((rows, cols)) = size_of(std::io::stdout().as_fd()) {
            let target = format!("{resize}?h={rows}&w={cols}");
            let _ = client.json("POST", &target, None);
        }
    };
    send(&client);
    // Non-blocking: a full pipe already says "changed", and a handler
    // must never wait.
    let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
    let Ok((read_end, write_end)) = nix::unistd::pipe2(flags) else {
        return;
    };
    // The write end lives as long as the process: the handler may run
    // at any time from now on.
    let write_end = std::os::fd::IntoRawFd::into_raw_fd(write_end);
    WINDOW_CHANGED.store(write_end, Ordering::Relaxed);
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_sigwinch),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only loads an atomic and calls write(2), both
    // async-signal-safe.
    if unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGWINCH, &action) }.is_err()
    {
        return;
    }
    std::thread::spawn(move || {
        let mut byte = [0u8; 64];
        loop {
            // The read end is non-blocking too: wait for it with poll.
            let mut fds = [nix::poll::PollFd::new(
                read_end.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).is_err() {
                continue;
            }
            match nix::unistd::read(&read_end, &mut byte) {
                Ok(0) => return,
                Ok(_) => send(&client),
                Err(_) => {}
            }
        }
    });
}
// ANCHOR_END: window_size
