//! The shim launcher: each shim a `fork(2)` of a process that is ready for
//! it, not a new program.
//!
//! A shim started as a program (`posix_spawn`, then `execve` of the step
//! binary) pays at every start what every new program pays: the kernel maps
//! the binary, the dynamic loader relocates it (22 563 relocations in
//! `step11`), Rust's runtime starts, clap parses a command line made for
//! forty commands. `perf stat` of `step11` doing nothing but that: 335 page
//! faults and about 1.7 ms of CPU. A process that has paid all of it once
//! can `fork` copies of itself that start at the first line of
//! [`super::shim::run`]: a *fork server*, as Android's zygote starts apps
//! and Python's `forkserver` starts workers.
//!
//! The daemon cannot be that process. It has many threads, and the child of
//! a `fork` has one, the caller's copy: every lock another thread held at
//! that moment (the allocator's, stdio's) stays locked in the child for
//! ever. So the daemon spawns one helper as it starts, `step11 --root ROOT
//! shim-launcher`, a program with a single thread that waits on a socket
//! pair and forks when asked:
//!
//! ```text
//!   daemon ──"ID" + shim.log's fd──▶ launcher ──fork──▶ shim ID ──clone3──▶ container
//!          ◀────"ok PID" + pidfd────────┘ (its parent; reaps it when it ends)
//! ```
//!
//! - The request carries the shim's stderr (`shim.log`, opened by the
//!   daemon) as a descriptor (`SCM_RIGHTS`); the answer, a pidfd of the
//!   new shim. The launcher opens it before it can reap the shim, so it
//!   names that shim and no later process with its pid: the daemon learns
//!   from it that a shim died before its container ran.
//! - The launcher reaps its shims (a `signalfd` of `SIGCHLD`, in the same
//!   `poll` as the socket). A shim outlives both: when the daemon goes,
//!   the socket ends, the launcher exits, and its shims are adopted by
//!   pid 1 (or the nearest subreaper), as before.
//! - `ps` still shows `step11 --root ROOT shim ID`: the shim writes its
//!   command line over the launcher's, which holds room for it
//!   ([`retitle`]).
//! - If the launcher cannot be started, or dies, the daemon starts shims
//!   as programs again ([`Spawned::Exec`]): slower, the same shims.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socketpair, sockopt};
use nix::sys::time::TimeVal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use super::EngineError;

/// The launcher's second argument: room for the command line each shim
/// writes over the launcher's (`shim ID` is longer than `shim-launcher`).
const TITLE_ROOM: &str = "(room for each shim's command line, which names its container)";

/// How long the daemon waits for the launcher's answer before it gives up
/// on it and starts shims as programs.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

// ANCHOR: launcher_daemon
/// The daemon's handle on its launcher: none until [`Launcher::start`],
/// none again once it has failed.
#[derive(Debug, Default)]
pub struct Launcher {
    helper: Mutex<Option<Helper>>,
}

/// The running launcher: the child, and the daemon's end of the pair.
#[derive(Debug)]
struct Helper {
    child: Child,
    socket: OwnedFd,
}

impl Launcher {
    /// Spawns `exe --root ROOT shim-launcher`, its stdin one end of a
    /// socket pair (`SOCK_SEQPACKET`: one message is one request). A
    /// failure is said on the daemon's stderr; shims are then programs.
    pub fn start(&self, exe: &Path, root: &Path) {
        let helper = (|| {
            let (ours, theirs) = socketpair(
                AddressFamily::Unix,
                SockType::SeqPacket,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| format!("socketpair: {e}"))?;
            let timeout = TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0);
            setsockopt(&ours, sockopt::ReceiveTimeout, &timeout)
                .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
            let child = Command::new(exe)
                .current_dir("/")
                .arg("--root")
                .arg(root)
                .args(["shim-launcher", "--title-room", TITLE_ROOM])
                .stdin(Stdio::from(theirs))
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("spawning {}: {e}", exe.display()))?;
            Ok::<_, String>(Helper {
                child,
                socket: ours,
            })
        })();
        match helper {
            Ok(helper) => *self.lock() = Some(helper),
            Err(why) => eprintln!(
                "caixa daemon: no shim launcher ({why}); each shim will be started as a program"
            ),
        }
    }

    /// Asks the launcher for a shim of container `id`, its stderr `log`.
    /// On failure, [`NoFork`] says whether a shim may exist anyway.
    pub fn launch(&self, id: &str, log: BorrowedFd<'_>) -> Result<Forked, NoFork> {
        let mut guard = self.lock();
        let Some(helper) = guard.as_mut() else {
            return Err(NoFork::Absent);
        };
        if let Err(why) = send(&helper.socket, id.as_bytes(), Some(log)) {
            // Not delivered: nothing was forked, and there is no launcher
            // any more (`stop` has said why).
            Self::stop(&mut guard, &why);
            return Err(NoFork::Absent);
        }
        match receive(&helper.socket) {
            Ok(Some((text, Some(pidfd)))) if text.starts_with(b"ok ") => Ok(Forked {
                pid: String::from_utf8_lossy(&text[3..]).parse().unwrap_or(0),
                pidfd,
            }),
            // Its own refusal (a bad id, a failed fork): nothing was
            // forked, and it still serves.
            Ok(Some((text, _))) => Err(NoFork::Refused(String::from_utf8_lossy(&text).into())),
            // Delivered, then no answer: it may have forked before it
            // failed.
            Ok(None) => {
                let why = "the launcher ended before it answered".to_string();
                Self::stop(&mut guard, &why);
                Err(NoFork::Unknown(why))
            }
            Err(why) => {
                Self::stop(&mut guard, &why);
                Err(NoFork::Unknown(why))
            }
        }
    }

    /// Stops a launcher that failed (killed and reaped), with one line.
    fn stop(helper: &mut Option<Helper>, why: &str) {
        if let Some(mut helper) = helper.take() {
            let _ = helper.child.kill();
            let _ = helper.child.wait();
        }
        eprintln!(
            "caixa daemon: the shim launcher failed ({why}); from now on each shim is started as a program"
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Helper>> {
        // A panic while it was held left at worst a helper that may have
        // failed: the next launch finds out.
        self.helper.lock().unwrap_or_else(|e| e.into_inner())
    }
}
// ANCHOR_END: launcher_daemon

/// Why [`Launcher::launch`] forked no shim, as far as it knows.
#[derive(Debug)]
pub enum NoFork {
    /// There is no launcher (it could not start, or has failed, at the
    /// latest on this request before the launcher took it).
    Absent,
    /// No shim was forked, for this reason.
    Refused(String),
    /// The request reached the launcher, which then failed: a shim may
    /// have been forked before it did.
    Unknown(String),
}

/// A shim the launcher forked: its pid, and a pidfd that names it.
#[derive(Debug)]
pub struct Forked {
    /// Its pid (for messages; the pidfd is what is waited on).
    pub pid: i32,
    pidfd: OwnedFd,
}

/// A shim just started, either way.
#[derive(Debug)]
pub enum Spawned {
    /// Forked by the launcher, which reaps it.
    Forked(Forked),
    /// Started as a program by the daemon, whose child it is.
    Exec(Child),
}

impl Spawned {
    /// `Some(how)` once the shim has ended, else `None` (never blocks).
    pub fn ended(&mut self) -> Option<String> {
        match self {
            Spawned::Exec(child) => child.try_wait().ok().flatten().map(|s| s.to_string()),
            Spawned::Forked(forked) => crate::pidfd::wait_gone(&forked.pidfd, Duration::ZERO)
                .then(|| format!("pid {} ended", forked.pid)),
        }
    }

    /// Leaves the shim to end when it ends. A child of ours is reaped on a
    /// thread (a child never waited for stays a zombie), which sweeps what
    /// it left if a signal ended it, as the launcher does for the shims it
    /// forked.
    pub fn reap_later(self) {
        if let Spawned::Exec(mut child) = self {
            std::thread::spawn(move || {
                use std::os::unix::process::ExitStatusExt;
                if child.wait().is_ok_and(|status| status.signal().is_some()) {
                    super::daemon::sweep_leftovers();
                }
            });
        }
    }
}

// ANCHOR: launcher_loop
/// `step11 --root ROOT shim-launcher`: forks a shim for each request on
/// its stdin (the daemon's socket pair) until the daemon closes it.
/// `program` prefixes a shim's last error, as `main` does.
pub fn serve(root: &Path, program: &str) -> Result<(), EngineError> {
    let sys = |call| move |source| EngineError::Sys { call, source };
    // A fork copies only the calling thread (see the module's doc): with
    // another thread alive, a shim could inherit a lock nobody releases.
    if threads() != Some(1) {
        return Err(EngineError::Conflict(
            "the shim launcher must be a process of one thread: start it as a program (step11 shim-launcher)".into(),
        ));
    }
    // The socket is fd 0: moved out of the way, and 0 and 1 become
    // /dev/null, as a shim's are.
    let socket = nix::fcntl::fcntl(std::io::stdin(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(sys("dup(the launcher's socket)"))?;
    // SAFETY: fcntl just made this descriptor; nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(socket) };
    let null =
        std::fs::File::open("/dev/null").map_err(super::state::io(Path::new("/dev/null")))?;
    nix::unistd::dup2_stdin(&null).map_err(sys("dup2(/dev/null)"))?;
    nix::unistd::dup2_stdout(&null).map_err(sys("dup2(/dev/null)"))?;
    drop(null);
    // SIGCHLD: read from a signalfd, blocked meanwhile (each shim gets the
    // mask back). Never ignored, whatever the daemon was started with (an
    // ignored signal stays ignored across `execve`): an ignored SIGCHLD
    // would reap a shim before its pidfd is opened.
    // SAFETY: SIG_DFL installs no handler of ours.
    unsafe { nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigDfl) }
        .map_err(sys("signal(SIGCHLD, SIG_DFL)"))?;
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let mut mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), Some(&mut mask)).map_err(sys("sigprocmask"))?;
    let signals = SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(sys("signalfd"))?;
    // Between starts the launcher only waits: a second after the last
    // one, it gives back the pages that start used, as an idle shim does.
    let mut shed = false;
    loop {
        let mut fds = [
            PollFd::new(socket.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        let limit = if shed {
            PollTimeout::NONE
        } else {
            PollTimeout::try_from(super::shed::IDLE).unwrap_or(PollTimeout::MAX)
        };
        match poll(&mut fds, limit) {
            Err(Errno::EINTR) => continue,
            Err(source) => return Err(sys("poll")(source)),
            Ok(0) => {
                super::shed::idle_pages_then_wait(&mut fds);
                shed = true;
                continue;
            }
            Ok(_) => shed = false,
        }
        let [request, ended] = fds.map(|f| f.revents().is_some_and(|r| !r.is_empty()));
        if ended {
            while let Ok(Some(_)) = signals.read_signal() {}
            if reap_ended() {
                // A shim killed by a signal could not tear down what its
                // container had on the host: swept now, not by each start.
                super::daemon::sweep_leftovers();
            }
        }
        if !request {
            continue;
        }
        let Ok(Some((id, log))) = receive(&socket) else {
            // The daemon has gone (or its end broke): so do we. The shims
            // run on, adopted by pid 1.
            return Ok(());
        };
        let answer = match (std::str::from_utf8(&id), log) {
            (Ok(id), Some(log)) if super::state::is_id(id) => {
                let ours = [socket.as_raw_fd(), signals.as_raw_fd()];
                fork_shim(root, id, program, log, &mask, ours)
            }
            _ => Err("error: a request is a container id with its shim.log".into()),
        };
        let sent = match answer {
            Ok((ok, pidfd)) => send(&socket, ok.as_bytes(), Some(pidfd.as_fd())),
            Err(refusal) => send(&socket, refusal.as_bytes(), None),
        };
        if sent.is_err() {
            return Ok(());
        }
    }
}
// ANCHOR_END: launcher_loop

/// How many threads this process has (`Threads:` in `/proc/self/status`).
fn threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Reaps every shim that has ended (they are ours until then); `true`
/// when a signal ended one.
fn reap_ended() -> bool {
    let mut killed = false;
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        match status {
            WaitStatus::StillAlive => break,
            WaitStatus::Signaled(..) => killed = true,
            _ => {}
        }
    }
    killed
}

// ANCHOR: fork_shim
/// Forks the shim of container `id`: in the child, the launcher's
/// descriptors (`ours`) closed, the signal mask given back, stdin and
/// stdout `/dev/null` (already), stderr `log`, the command line retitled;
/// then [`super::shim::run`], and exit with its code. In the launcher: the
/// answer, `ok PID` with a pidfd of the child.
fn fork_shim(
    root: &Path,
    id: &str,
    program: &str,
    log: OwnedFd,
    mask: &SigSet,
    ours: [RawFd; 2],
) -> Result<(String, OwnedFd), String> {
    // SAFETY: this process has one thread, so the child is a whole copy
    // of it: no lock is held by a thread that is not there.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            for fd in ours {
                let _ = nix::unistd::close(fd);
            }
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None);
            let _ = nix::unistd::dup2_stderr(&log);
            drop(log);
            let exe = std::env::args_os().next().unwrap_or_else(|| program.into());
            retitle(&[exe, "--root".into(), root.into(), "shim".into(), id.into()]);
            // A panic ends here, as in a shim started as a program: never
            // unwinding into the launcher's frames, whose descriptors this
            // child has closed.
            let code = match std::panic::catch_unwind(|| super::shim::run(root, id)) {
                Ok(Ok(code)) => code,
                Ok(Err(e)) => {
                    eprintln!("{program}: {e}");
                    crate::exit::codes::SETUP_FAILED
                }
                Err(_) => crate::exit::codes::SETUP_FAILED,
            };
            std::process::exit(code)
        }
        Ok(ForkResult::Parent { child }) => {
            // The child cannot be reaped before this (only we reap it),
            // so the pidfd names it even if it has ended already.
            match crate::pidfd::open(child.as_raw()) {
                Ok(pidfd) => Ok((format!("ok {child}"), pidfd)),
                Err(e) => {
                    // No handle, no shim: the daemon will start another.
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    Err(format!("error: pidfd_open of the shim: {e}"))
                }
            }
        }
        Err(e) => Err(format!("error: fork: {e}")),
    }
}
// ANCHOR_END: fork_shim

// ANCHOR: retitle
/// Writes `words` as this process's command line, over the one it was
/// started with, if they fit; what does not fit is not written.
///
/// `/proc/PID/cmdline` (what `ps` and `pgrep -f` read) is no copy: it is
/// the memory where the kernel put the arguments, on the first page of
/// the stack, `arg_start` to `arg_end` (fields 48 and 49 of
/// `/proc/self/stat`). A forked shim would show the launcher's; the
/// launcher was started with a spare argument so that `step11 --root ROOT
/// shim ID` fits in that memory, NUL-separated and NUL-padded, as the
/// kernel reads it (the padding reads as empty arguments at the end,
/// which `ps` does not show).
fn retitle(words: &[OsString]) -> bool {
    let Some((start, end)) = argument_area() else {
        return false;
    };
    let mut title = Vec::new();
    for word in words {
        title.extend_from_slice(word.as_bytes());
        title.push(0);
    }
    let room = end.saturating_sub(start);
    if title.len() > room {
        return false;
    }
    title.resize(room, 0);
    // SAFETY: [start, end) is this process's own argument area, mapped
    // and writable (the stack), and `title` is its exact length. std keeps
    // pointers into it and reads them at each `env::args()`: from now on
    // those read the new words (each still NUL-terminated), or empty ones.
    unsafe { std::ptr::copy_nonoverlapping(title.as_ptr(), start as *mut u8, room) };
    true
}

/// `arg_start` and `arg_end` of this process (`/proc/self/stat`).
fn argument_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count after its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Field 3 is fields[0], so field N is fields[N - 3].
    let start = fields.get(45)?.parse().ok()?;
    let end = fields.get(46)?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}
// ANCHOR_END: retitle

/// One message and at most one descriptor (`SCM_RIGHTS`).
fn send(socket: &OwnedFd, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> Result<(), String> {
    crate::sync::send_with_fd(socket.as_fd(), bytes, fd)
        .map_err(|e| format!("sendmsg to the launcher's socket: {e}"))
}

/// A message, and the descriptor that came with it.
type Message = (Vec<u8>, Option<OwnedFd>);

/// The next message; `None` at the end (the other end closed).
fn receive(socket: &OwnedFd) -> Result<Option<Message>, String> {
    let mut buf = [0u8; 512];
    match crate::sync::recv_with_fd(socket.as_fd(), &mut buf) {
        Ok((0, _)) => Ok(None),
        Ok((n, fd)) => Ok(Some((buf[..n].to_vec(), fd))),
        Err(Errno::EAGAIN) => Err("the launcher did not answer within 5 s".into()),
        Err(e) => Err(format!("recvmsg from the launcher's socket: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argument_area_is_found() {
        let (start, end) = argument_area().expect("arg_start and arg_end");
        let written: usize = std::env::args_os().map(|a| a.len() + 1).sum();
        assert_eq!(end - start, written, "the area holds exactly the arguments");
    }
}
