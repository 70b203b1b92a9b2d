//! The shim: one process per running container, its parent for its whole life.
//!
//! The daemon does not run containers itself. For each start it spawns a
//! shim, which first makes a session of its own (`setsid`), then reads the
//! container's bundle, runs the runtime's parent side in-process ([`crate::parent::start`]:
//! the same code as every step binary), and so becomes the container's
//! parent. Then it does what only a parent can, until the end:
//!
//! - holds the container's stdio (pipes, or its terminal's master) and
//!   writes what comes out to the log, in Docker's json-file format
//!   ([`super::log`]); with `-i`, writes what attached clients type into
//!   its stdin ([`super::stdin`]);
//! - reaps the container, tears down the host side (network, cgroup,
//!   overlay; a `--rm` container's overlay only once its removal is
//!   visible, after its waiters have their answer), and records how it
//!   ended: exit code, `OOMKilled`, finish time;
//! - answers the daemon on a unix socket in the container's directory
//!   (`shim.sock`, mode 0600, a path, so file permissions guard it);
//! - holds `shim.lock` for its whole life: the proof it is alive;
//! - has a mount namespace of its own, where the runtime mounts the
//!   container's overlay: the daemon's mount table stays as long with 500
//!   containers as with none, and each new container's copy of it stays
//!   short. The daemon reaches a running container's files by asking for
//!   them (`root`).
//!
//! So the daemon can stop, crash or be upgraded while its containers run on:
//! a new daemon reads their state from disk and talks to their shims. This
//! is containerd's shim and podman's conmon, for the same reasons. If a shim
//! is killed, its container dies with it (`PR_SET_PDEATHSIG`, set by the
//! child's init) and the record of what it made is swept like any other
//! leftover (`crate::leftovers`).
//!
//! ```text
//!   daemon ──spawn──▶ shim (setsid) ──clone──▶ container (pid 1 of its namespaces)
//!     │                        │ ◀── stdout/stderr pipes
//!     └── shim.sock: "kill 15" ┘ ──▶ container.log, state.json
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::EngineError;
use super::events::{self, Event};
use super::log::{self, Stream};
use super::state::{Containers, Record, State, Status, io, now};
use super::stdin::Input;
use crate::exit::Exit;
use crate::parent::Running;

/// Runs container `id` of `root` to its end and records how it ended;
/// returns its exit code. The process is the shim from here on.
pub fn run(root: &Path, id: &str) -> Result<i32, EngineError> {
    // 0. A session of our own, so the daemon's end (or its terminal's)
    //    signals nobody here. It fails only for a process group leader, a
    //    shim typed at a shell: that one stays in the shell's session.
    let _ = nix::unistd::setsid();
    // Its socket and files get the modes given here, whoever started it.
    super::state::set_umask();
    let containers = Containers::open(root)?;
    let record = containers.record(id)?;
    let dir = containers.dir(id);

    // 1. The life lock, first: while we hold it, we are the shim of this
    //    container (a second shim stops here), and the daemon sees us alive.
    let lock_path = dir.join("shim.lock");
    let lock_file = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
    let alive = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        EngineError::Conflict(format!("container {} has a shim already", record.name))
    })?;
    // Once, for every start of its life; a failure is the first start's.
    let mounts = own_mounts();

    // 2. Everything else that can fail before the container exists is
    //    recorded as its end, so `start` can say why. The control socket
    //    is ours for the whole life, across restarts.
    let control = listen(&dir.join("shim.sock"))?;
    // Forked at `create`: the first start waits at the exec for `start`.
    let mut park = parked_for(&dir);
    let mut restarts = 0;
    let mut delay = None;
    // A `--rm` container's root, still mounted once it has ended: it is
    // unmounted after the container is out of sight (step 4).
    let mut mounted_root = None;
    let state = loop {
        let began = std::time::Instant::now();
        let started = match &mounts {
            Ok(()) => start(&containers, &dir, &record, &control, restarts, park.take()),
            Err(why) if park.take().is_some() => Err(unparked(why.clone())),
            Err(why) => Err(StartError {
                code: crate::exit::codes::SETUP_FAILED,
                message: why.clone(),
                unparked: false,
            }),
        };
        let (state, user) = match started {
            Ok(started) => {
                let (state, user, mounted) =
                    started.run_to_end(&containers, id, record.auto_remove);
                mounted_root = mounted;
                (state, user)
            }
            // Sent away while parked, or its start could not be made
            // ready: the container stays `created`, for `start` to start
            // with a shim of its own (which says why, if it fails).
            // The marker goes last, once this shim no longer listens nor
            // holds its lock: whoever then finds it gone finds no shim.
            Err(e) if e.unparked => {
                drop(control);
                drop(alive);
                let _ = std::fs::remove_file(dir.join(PARKED));
                return Ok(0);
            }
            Err(e) => {
                let state = State {
                    status: Status::Exited,
                    exit_code: e.exit_code(),
                    error: e.to_string(),
                    finished: now(),
                    restart_count: restarts,
                    ..State::default()
                };
                containers.set_state(id, &state)?;
                // A first start that fails is the start's error, not a
                // run to restart: `start` reports it to the client.
                if restarts == 0 {
                    break state;
                }
                (state, UserAction::None)
            }
        };
        // 3. `--restart`: start it again, after a pause, unless a `stop`
        //    came, or the policy says no.
        let killed = user == UserAction::Killed;
        if user == UserAction::Stopped
            || !record.restart.restarts(state.exit_code, restarts, killed)
        {
            break state;
        }
        let pause = super::restart::next_delay(delay, began.elapsed());
        delay = Some(pause);
        containers.set_state(
            id,
            &State {
                restarting: true,
                ..state.clone()
            },
        )?;
        if wait_for_restart(&control, pause) {
            containers.set_state(id, &state)?;
            break state;
        }
        restarts += 1;
    };

    // 4. `--rm`: gone once ended (a tombstone keeps the code for waiters).
    //    Under the lifecycle lock, so no stop or rm is half-way through.
    //    Its root is unmounted once its name is free: a `run --rm` has its
    //    answer by then.
    if record.auto_remove {
        let locked = containers.lock(id)?;
        containers.retire_unmounting(&record, |hidden| {
            if let Some(mut mounted) = mounted_root.take() {
                mounted.moved_to(hidden);
                for error in mounted.remove() {
                    eprintln!("caixa shim: after the container ended: {error}");
                }
            }
        })?;
        events::record(root, &Event::container("destroy", &record));
        drop(locked);
        super::volumes::Volumes::open(root)?.remove_anonymous(&containers, &record.mounts);
    }
    Ok(state.exit_code)
}

/// Why a start failed, with the exit code `docker run` would give.
#[derive(Debug)]
struct StartError {
    code: i32,
    message: String,
    /// A parked start that did not go on: nothing to record.
    unparked: bool,
}

impl StartError {
    fn exit_code(&self) -> i32 {
        self.code
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<EngineError> for StartError {
    fn from(e: EngineError) -> StartError {
        StartError {
            code: crate::exit::codes::SETUP_FAILED,
            message: e.to_string(),
            unparked: false,
        }
    }
}

/// One output of the container, as the shim reads it.
struct Output {
    fd: OwnedFd,
    stream: Stream,
    open: bool,
}

/// What a user did to the container through the daemon, which the
/// restart policy heeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserAction {
    /// Nothing: it ended by itself.
    None,
    /// `kill`: a signal (`unless-stopped` then does not restart it).
    Killed,
    /// `stop`: no restart, whatever the policy.
    Stopped,
}

/// A container whose command runs, with the shim's ends of its world.
struct Started<'a> {
    running: Running,
    /// Its stdout and stderr pipes, or its terminal (one stream: a
    /// terminal merges what is written to 1 and 2, as in Docker).
    outputs: Vec<Output>,
    control: &'a UnixListener,
    log: log::Writer,
    /// What a user did to it, as far as restarts are concerned.
    user: UserAction,
    /// Its stdin, with `-i` (else one that takes no client).
    input: Input,
    /// Its terminal's master, with `-t`: for the window's size.
    terminal: Option<OwnedFd>,
    /// Its directory (the bundle) and id: `networks` reads the bundle again.
    dir: std::path::PathBuf,
    id: String,
}

// ANCHOR: shim_start
/// What a start needs before the runtime: the spec from the bundle, the
/// container's log, and its stdio (the child's ends and ours).
struct Plumbing {
    spec: crate::spec::Spec,
    log: log::Writer,
    outputs: Vec<Output>,
    their_ends: Vec<OwnedFd>,
    input: Input,
}

/// Reads the bundle, opens the log and makes the container's stdio.
fn plumb(dir: &Path, record: &Record) -> Result<Plumbing, StartError> {
    let id = record.id.as_str();
    let config = crate::bundle::read(dir).map_err(|e| StartError {
        code: crate::exit::codes::SETUP_FAILED,
        message: e.to_string(),
        unparked: false,
    })?;
    let mut spec = crate::bundle::from_oci(&config, dir, id).map_err(|e| StartError {
        code: crate::exit::codes::SETUP_FAILED,
        message: e.to_string(),
        unparked: false,
    })?;
    // The daemon sweeps for its shims (`daemon::sweep_leftovers`): a sweep
    // here would read every live container's record on each start.
    spec.sweep_leftovers = false;
    let log_path = dir.join("container.log");
    let log = log::Writer::open(&log_path).map_err(io(&log_path))?;
    // The container's stdio: a pipe for each output (our ends
    // close-on-exec; the child's become its 0, 1 and 2, see `init`), and
    // for stdin /dev/null, or with `-i` a pipe too; or with `-t` a
    // terminal the child makes and hands us.
    let pipe = || {
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|source| EngineError::Sys {
            call: "pipe2(the container's stdio)",
            source,
        })
    };
    let mut outputs = Vec::new();
    let mut their_ends = Vec::new();
    let mut input = Input::default();
    if !spec.terminal {
        let stdin = if record.open_stdin {
            let (theirs, ours) = pipe()?;
            input = Input::new(ours, record.stdin_once, false)?;
            theirs
        } else {
            nix::fcntl::open(
                "/dev/null",
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|source| EngineError::Sys {
                call: "open(/dev/null)",
                source,
            })?
        };
        their_ends.push(stdin);
        for stream in [Stream::Stdout, Stream::Stderr] {
            let (ours, theirs) = pipe()?;
            outputs.push(Output {
                fd: ours,
                stream,
                open: true,
            });
            their_ends.push(theirs);
        }
        spec.stdio = Some([
            their_ends[0].as_raw_fd(),
            their_ends[1].as_raw_fd(),
            their_ends[2].as_raw_fd(),
        ]);
    }
    Ok(Plumbing {
        spec,
        log,
        outputs,
        their_ends,
        input,
    })
}

/// Starts the container: its plumbing, then the runtime's parent side,
/// steps 1 to 6 and 7 (between them, forked at `create`, the park).
fn start<'a>(
    containers: &Containers,
    dir: &Path,
    record: &Record,
    control: &'a UnixListener,
    restarts: u32,
    park: Option<Duration>,
) -> Result<Started<'a>, StartError> {
    let id = record.id.as_str();
    let plumbed = match (plumb(dir, record), park) {
        (Ok(plumbed), _) => plumbed,
        // Parked: nothing is recorded; the start made at `start` says why.
        (Err(e), Some(_)) => return Err(unparked(e.message)),
        (Err(e), None) => return Err(e),
    };
    let Plumbing {
        spec,
        log,
        mut outputs,
        their_ends,
        mut input,
    } = plumbed;
    let failed = |e: crate::parent::Error| StartError {
        code: e.exit_code(),
        message: e.to_string(),
        unparked: false,
    };
    // ANCHOR: shim_park
    // Made up to its exec; forked at `create`, it waits there for `start`.
    let ready = crate::parent::prepare(&spec);
    if let Some(limit) = park {
        let went = match &ready {
            Ok(_) => park_until_start(control, dir, limit),
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = went {
            // What it made goes before the marker (the child killed, the
            // host side torn down): see `run`.
            drop(ready);
            return Err(unparked(why));
        }
    }
    let mut running = ready
        .and_then(crate::parent::Ready::start)
        .map_err(failed)?;
    // ANCHOR_END: shim_park
    // Only the container holds its ends now: when it is gone, they end.
    drop(their_ends);
    let mut terminal = None;
    if let Some(master) = running.take_terminal() {
        // One open file, three uses: its output, its input, its size.
        let dup = || {
            master.try_clone().map_err(|e| EngineError::Sys {
                call: "dup(the terminal)",
                source: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            })
        };
        if record.open_stdin {
            input = Input::new(dup()?, record.stdin_once, true)?;
        }
        terminal = Some(dup()?);
        outputs.push(Output {
            fd: master,
            stream: Stream::Stdout,
            open: true,
        });
    }
    containers.set_state(
        id,
        &State {
            status: Status::Running,
            pid: running.pid().as_raw(),
            shim: std::process::id() as i32,
            started: now(),
            restart_count: restarts,
            ..State::default()
        },
    )?;
    // Each start, the first and every one its restart policy makes: only
    // the shim sees the latter, so the shim writes the event.
    events::record(containers.root(), &Event::container("start", record));
    Ok(Started {
        running,
        outputs,
        control,
        log,
        user: UserAction::None,
        input,
        terminal,
        dir: dir.to_path_buf(),
        id: id.to_string(),
    })
}
// ANCHOR_END: shim_start

// ANCHOR: park
/// The file in a container's directory that asks its next shim to park:
/// written by the daemon's `create`, with the seconds to wait; removed by
/// the shim when it stops waiting, whatever the reason.
pub const PARKED: &str = "parked";

/// How long this shim's first start is to wait at the exec (`None`: it
/// starts at once), as the daemon asked in [`PARKED`].
fn parked_for(dir: &Path) -> Option<Duration> {
    let asked = std::fs::read_to_string(dir.join(PARKED)).ok()?;
    let seconds = asked.trim().parse::<u64>().ok().filter(|s| *s > 0)?;
    Some(Duration::from_secs(seconds))
}

/// Waits, the container made up to its exec, until the daemon says `go`
/// (its `start`): `Ok` then. Sent away by `leave` (a `rm`, a rename, a
/// network joined: anything that changes what was made), a stop, a
/// SIGTERM, the child's end, or when `limit` has passed: the reason.
/// Meanwhile `root` is answered (a `cp` into it goes through this
/// overlay, not a second one); anything else gets no answer, as from a
/// container with no shim.
fn park_until_start(control: &UnixListener, dir: &Path, limit: Duration) -> Result<(), String> {
    // The signals a start blocks (`signals::block`), read here: a stop
    // signal sends it away, and so does the waiting child's end; the
    // others are dropped, not passed to a container not started yet.
    const LEAVE: [Signal; 5] = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGCHLD,
    ];
    let mut blocked = nix::sys::signal::SigSet::empty();
    for signal in LEAVE
        .into_iter()
        .chain([Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH])
    {
        blocked.add(signal);
    }
    let signals = SignalFd::with_flags(&blocked, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!("no start within {}s", limit.as_secs()));
        }
        let mut ready = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(control.as_fd(), PollFlags::POLLIN),
        ];
        let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        if let Err(e) = poll(&mut ready, wait) {
            if e != Errno::EINTR {
                return Err(format!("poll on the control socket: {e}"));
            }
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let signal = Signal::try_from(info.ssi_signo as i32);
            if signal.is_ok_and(|s| LEAVE.contains(&s)) {
                return Err(format!("signal {} while parked", info.ssi_signo));
            }
        }
        let Ok((conn, _)) = control.accept() else {
            continue;
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        let mut line = String::new();
        let _ = BufReader::with_capacity(1, (&conn).take(64)).read_line(&mut line);
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut passed = None;
        let (reply, went) = match words.as_slice() {
            ["go"] => ("ok".to_string(), Some(Ok(()))),
            ["leave"] | ["kill" | "stop", _] => (
                "ok".to_string(),
                Some(Err(format!("asked to ({})", words.join(" ")))),
            ),
            ["root"] => match open_root(dir) {
                Ok(fd) => {
                    passed = Some(fd);
                    ("ok".to_string(), None)
                }
                Err(e) => (format!("error: {e}"), None),
            },
            // No answer, as when no shim runs: the container has not
            // started (a `resize`, a `stdin`).
            _ => (String::new(), None),
        };
        // On `go`, the marker goes before the answer: whoever asked finds
        // it gone. Sent away, it goes once what was made is torn down.
        if matches!(went, Some(Ok(()))) {
            let _ = std::fs::remove_file(dir.join(PARKED));
        }
        let line = format!("{reply}\n");
        let _ = crate::sync::send_with_fd(
            conn.as_fd(),
            line.as_bytes(),
            passed.as_ref().map(|f| f.as_fd()),
        );
        if let Some(went) = went {
            return went;
        }
    }
}
// ANCHOR_END: park

/// A parked start that does not go on, and why (said on the shim's log):
/// the container stays `created`.
fn unparked(why: String) -> StartError {
    eprintln!("caixa shim: the start made at create is dropped: {why}");
    StartError {
        code: 0,
        message: why,
        unparked: true,
    }
}

/// The container's mounted root (`merged`), for `root`: a descriptor
/// that names it in this shim's mount namespace.
fn open_root(dir: &Path) -> Result<OwnedFd, String> {
    let merged = dir.join("merged");
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    nix::fcntl::open(&merged, flags, nix::sys::stat::Mode::empty())
        .map_err(|e| format!("open {}: {e}", merged.display()))
}

/// The control socket: a path in the container's directory, mode 0600.
fn listen(path: &Path) -> Result<UnixListener, EngineError> {
    let _ = std::fs::remove_file(path);
    let listener = via_short_path(path, |short| UnixListener::bind(short))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    listener.set_nonblocking(true).map_err(io(path))?;
    Ok(listener)
}

// ANCHOR: own_mounts
/// Moves the shim into a mount namespace of its own, a copy of the
/// daemon's that receives the host's later mounts (`MS_SLAVE`) and sends
/// back none of its own. What the runtime mounts for the container (its
/// overlay) is then in this namespace and in the container's copy of it,
/// never in the daemon's: that table, which every start copies (`clone`
/// with `CLONE_NEWNS`) and reads (`/proc/self/mountinfo`), does not grow
/// with each container up, and the mount goes with the shim however it
/// ends. Where this cannot be done (a rootless daemon may not; the child
/// mounts its overlay itself there), the shim goes on in the daemon's. An
/// error only if it is stuck half-way: a copy it cannot make a slave, and
/// cannot leave.
fn own_mounts() -> Result<(), String> {
    if crate::rootless::active() {
        return Ok(());
    }
    use nix::sched::CloneFlags;
    // Said on the shim's log, once the shim is back in the daemon's
    // namespace; the container then starts as before.
    let goes_on = |e: &dyn std::fmt::Display| {
        eprintln!(
            "caixa shim: a mount namespace of its own: {e}; the container's overlay is mounted in the daemon's"
        );
        Ok(())
    };
    // The daemon's, to go back to if the new one cannot be made a slave:
    // a shared copy would send the overlay back to the daemon's.
    let daemons = match std::fs::File::open("/proc/self/ns/mnt") {
        Ok(ns) => ns,
        Err(e) => return goes_on(&e),
    };
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNS) {
        return goes_on(&e);
    }
    let slave = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE;
    if let Err(e) = nix::mount::mount(None::<&str>, "/", None::<&str>, slave, None::<&str>) {
        nix::sched::setns(&daemons, CloneFlags::CLONE_NEWNS).map_err(|back| {
            format!("the shim's mount namespace: it could not be made a slave ({e}), nor left ({back}): is something else changing mount propagation?")
        })?;
        return goes_on(&e);
    }
    Ok(())
}
// ANCHOR_END: own_mounts

// ANCHOR: short_path
/// Runs `use_path` with a short name for `path`. A unix socket's path must
/// fit in 108 bytes (`sun_path`, unix(7)), and a container's directory
/// under a long `--root` plus a 64-digit id does not. So the directory is
/// opened (`O_PATH`) and the socket named through the descriptor, as
/// `/proc/self/fd/N/shim.sock`: the kernel resolves that to the same file,
/// for bind and connect alike, without touching the working directory.
fn via_short_path<T>(
    path: &Path,
    use_path: impl FnOnce(&Path) -> std::io::Result<T>,
) -> Result<T, EngineError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io(path)(std::io::ErrorKind::InvalidInput.into()));
    };
    let handle = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|errno| io(dir)(errno.into()))?;
    let short = Path::new("/proc/self/fd")
        .join(handle.as_raw_fd().to_string())
        .join(name);
    use_path(&short).map_err(io(path))
}
// ANCHOR_END: short_path

impl Started<'_> {
    /// Pumps output and requests until the container ends; records its
    /// end, and what a user did to it. With `keep_root` (`--rm`), its root
    /// is left mounted and returned, for the removal to unmount.
    fn run_to_end(
        mut self,
        containers: &Containers,
        id: &str,
        keep_root: bool,
    ) -> (State, UserAction, Option<crate::parent::Root>) {
        let exit = match pump(&mut self) {
            Ok(exit) => exit,
            Err(e) => {
                eprintln!("caixa shim: {e}; killing the container");
                self.running.signal(Signal::SIGKILL);
                wait_blocking(&mut self.running)
            }
        };
        drain(&mut self, Duration::from_secs(2));
        if let Err(e) = self.log.flush() {
            eprintln!("caixa shim: writing the log: {e}");
        }
        let (ended, root) = if keep_root {
            self.running.finish_but_root(exit)
        } else {
            (self.running.finish(exit), None)
        };
        // The shim's own diagnostics go to its own log, never the container's.
        for error in &ended.cleanup_errors {
            eprintln!("caixa shim: after the container ended: {error}");
        }
        if ended.oom_killed {
            eprintln!("caixa shim: the kernel's OOM killer killed a process of the container");
        }
        let state = State {
            status: Status::Exited,
            exit_code: ended.exit.code(),
            oom_killed: ended.oom_killed,
            finished: now(),
            ..containers.state(id).unwrap_or_default()
        };
        if let Err(e) = containers.set_state(id, &state) {
            eprintln!("caixa shim: recording the end: {e}");
        }
        // ANCHOR: die_event
        // The end, seen here and only here (the daemon may be gone): the
        // shim writes it to the log the daemon's `/events` reads.
        if let Ok(record) = containers.record(id) {
            let die = Event::container("die", &record).with("exitCode", state.exit_code);
            events::record(containers.root(), &die);
        }
        // ANCHOR_END: die_event
        (state, self.user, root)
    }
}

// ANCHOR: shim_loop
/// The shim's loop: one `poll(2)` on the signals (SIGCHLD among them, read
/// from a signalfd), the control socket and the output pipes, until the
/// container has ended; returns how it ended.
fn pump(shim: &mut Started) -> Result<Exit, EngineError> {
    // EXERCISE(11): make a signalfd of the blocked set (running.blocked().set()), then loop: poll the signalfd, the control socket, the outputs still open and shim.input.wanted(), for at most shed::IDLE since the last thing it did (nothing came: shed::idle_pages_then_wait(&mut fds), then poll without a limit until something comes); on SIGCHLD try_reap (done → return the Exit), another signal → pass it on; a readable output → copy_some (false: closed); the input's answers → shim.input.ready(…); a connection → answer(…)
    let signals = SignalFd::with_flags(
        shim.running.blocked().set(),
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .map_err(|source| EngineError::Sys {
        call: "signalfd",
        source,
    })?;
    let mut shed = false;
    loop {
        let mut fds = vec![
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(shim.control.as_fd(), PollFlags::POLLIN),
        ];
        for output in shim.outputs.iter().filter(|o| o.open) {
            fds.push(PollFd::new(output.fd.as_fd(), PollFlags::POLLIN));
        }
        let outputs_end = fds.len();
        for (fd, flags) in shim.input.wanted() {
            fds.push(PollFd::new(fd, flags));
        }
        // Until the container has run a moment, with a limit: when it
        // passes with nothing to do, the shim gives back its setup's pages.
        let limit = if shed {
            PollTimeout::NONE
        } else {
            PollTimeout::try_from(super::shed::IDLE).unwrap_or(PollTimeout::MAX)
        };
        match poll(&mut fds, limit) {
            Err(Errno::EINTR) => continue,
            Err(source) => {
                return Err(EngineError::Sys {
                    call: "poll",
                    source,
                });
            }
            Ok(0) => {
                super::shed::idle_pages_then_wait(&mut fds);
                shed = true;
                continue;
            }
            // Busy again: once it has been quiet a second, it sheds again.
            Ok(_) => shed = false,
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let open: Vec<usize> = (0..shim.outputs.len())
            .filter(|i| shim.outputs[*i].open)
            .collect();
        for (k, i) in open.into_iter().enumerate() {
            if ready[2 + k] {
                shim.outputs[i].open = copy_some(&mut shim.outputs[i], &mut shim.log)?;
            }
        }
        shim.input.ready(&ready[outputs_end..]);
        if ready[1] {
            while let Ok((conn, _)) = shim.control.accept() {
                answer(shim, conn);
            }
        }
        if ready[0] {
            while let Ok(Some(info)) = signals.read_signal() {
                let signal = Signal::try_from(info.ssi_signo as i32).ok();
                match signal {
                    Some(Signal::SIGCHLD) => {
                        let reaped = shim.running.try_reap().map_err(|e| EngineError::Sys {
                            call: e.call,
                            source: e.errno,
                        })?;
                        if let Some(exit) = reaped {
                            return Ok(exit);
                        }
                    }
                    Some(other) => shim.running.signal(other),
                    None => {}
                }
            }
        }
    }
    // END EXERCISE
}
// ANCHOR_END: shim_loop

/// Reads what one output has and logs it; `false` once it has ended.
fn copy_some(output: &mut Output, log: &mut log::Writer) -> Result<bool, EngineError> {
    let mut buf = [0u8; 64 * 1024];
    match nix::unistd::read(&output.fd, &mut buf) {
        Ok(0) => Ok(false),
        Ok(n) => {
            log.write(output.stream, &buf[..n])
                .map_err(|source| EngineError::File {
                    path: "container.log".into(),
                    source,
                })?;
            Ok(true)
        }
        Err(Errno::EINTR | Errno::EAGAIN) => Ok(true),
        // A terminal's master reads EIO once no process holds its slave.
        Err(Errno::EIO) => Ok(false),
        Err(source) => Err(EngineError::Sys {
            call: "read(the container's output)",
            source,
        }),
    }
}

/// After the end: what is still in the outputs, until they close (every
/// process of the container is gone, so they close soon) or `limit`.
fn drain(shim: &mut Started, limit: Duration) {
    let begin = std::time::Instant::now();
    for output in shim.outputs.iter_mut().filter(|o| o.open) {
        loop {
            let left = limit.saturating_sub(begin.elapsed());
            let mut fds = [PollFd::new(output.fd.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO);
            if !matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
                break;
            }
            if !matches!(copy_some(output, &mut shim.log), Ok(true)) {
                break;
            }
        }
    }
}

// ANCHOR: wait_for_restart
/// The pause before a restart, still answering on the control socket:
/// `true` when a `stop` or `kill` came (the restart is cancelled: there is
/// nothing to signal, and a user who asks for that wants it ended).
fn wait_for_restart(control: &UnixListener, pause: Duration) -> bool {
    let until = std::time::Instant::now() + pause;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(control.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        if !matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
            continue;
        }
        while let Ok((conn, _)) = control.accept() {
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
            let mut line = String::new();
            let _ = BufReader::with_capacity(1, (&conn).take(64)).read_line(&mut line);
            if line.starts_with("stop ") || line.starts_with("kill ") {
                let _ = writeln!(&conn, "ok");
                return true;
            }
            let _ = writeln!(&conn, "error: the container is waiting to be restarted");
        }
    }
}
// ANCHOR_END: wait_for_restart

/// Waits for the container to end, when the loop could not go on.
fn wait_blocking(running: &mut Running) -> Exit {
    loop {
        match running.try_reap() {
            Ok(Some(exit)) => return exit,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return Exit::Code(255),
        }
    }
}

// ANCHOR: shim_protocol
/// Answers one request on the control socket, a line:
///
/// - `kill N` sends signal N to the container's pid 1. The daemon never
///   signals a pid itself: a pid may belong to another process by now;
///   the socket belongs to this container. `stop N` does the same and
///   also cancels any restart (`--restart`): the user wants it stopped.
/// - `resize ROWS COLS` sets the size of its terminal.
/// - `stdin` makes this connection a client of its stdin: after `ok`,
///   what comes on it is written to the container's input.
/// - `networks` reads the bundle again and plugs the running container
///   into the networks it lists, out of those it no longer lists
///   (`docker network connect` and `disconnect`, see [`super::connect`]).
/// - `root` answers with a descriptor (`SCM_RIGHTS`) of the container's
///   overlay, mounted in this shim's mount namespace only ([`own_mounts`]):
///   `docker cp` resolves every path below it. The container cannot have
///   been reaped meanwhile: only this loop reaps it.
fn answer(shim: &mut Started, conn: UnixStream) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    // Byte by byte up to the newline: after `stdin`, what follows is the
    // user's input, and must not be read here by mistake.
    let mut reader = BufReader::with_capacity(1, (&conn).take(64));
    let request = match reader.read_line(&mut line) {
        Ok(_) => line.trim().to_string(),
        Err(e) => {
            let _ = writeln!(&conn, "error: {e}");
            return;
        }
    };
    let words: Vec<&str> = request.split_whitespace().collect();
    let mut passed = None;
    let reply = match words.as_slice() {
        [verb @ ("kill" | "stop"), n] => {
            match n.parse::<i32>().ok().and_then(|n| Signal::try_from(n).ok()) {
                Some(signal) => {
                    shim.user = match (*verb, shim.user) {
                        ("stop", _) | (_, UserAction::Stopped) => UserAction::Stopped,
                        _ => UserAction::Killed,
                    };
                    shim.running.signal(signal);
                    "ok".to_string()
                }
                None => format!("error: no signal {n}"),
            }
        }
        ["resize", rows, cols] => {
            match (rows.parse::<u16>(), cols.parse::<u16>(), &shim.terminal) {
                (Ok(rows), Ok(cols), Some(master)) => {
                    match super::terminal::set_size(master.as_fd(), rows, cols) {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("error: {e}"),
                    }
                }
                (_, _, None) => "error: this container has no terminal: create it with -t".into(),
                _ => format!("error: bad size {rows}x{cols}"),
            }
        }
        ["stdin"] => match shim.input.attach(&conn) {
            // Non-blocking from now on: the shim's loop reads it.
            Ok(()) => match conn.set_nonblocking(true) {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("error: {e}"),
            },
            Err(why) => format!("error: {why}"),
        },
        ["networks"] => match rejoin_bundle(shim) {
            Ok(()) => "ok".to_string(),
            Err(why) => format!("error: {why}"),
        },
        ["root"] => match open_root(&shim.dir) {
            Ok(fd) => {
                passed = Some(fd);
                "ok".to_string()
            }
            Err(e) => format!("error: {e}"),
        },
        _ => format!(
            "error: unknown request {request:?}: use `kill N`, `stop N`, `resize ROWS COLS`, `stdin`, `networks` or `root`"
        ),
    };
    let line = format!("{reply}\n");
    let _ = crate::sync::send_with_fd(
        conn.as_fd(),
        line.as_bytes(),
        passed.as_ref().map(|f| f.as_fd()),
    );
}

/// The networks the bundle lists now, carried out on the running
/// container; each change also goes to the container's log of events.
fn rejoin_bundle(shim: &mut Started) -> Result<(), String> {
    let config = crate::bundle::read(&shim.dir).map_err(|e| e.to_string())?;
    let spec = crate::bundle::from_oci(&config, &shim.dir, &shim.id).map_err(|e| e.to_string())?;
    let said = shim
        .running
        .rejoin(&spec.joined_networks)
        .map_err(|e| e.to_string())?;
    for line in said {
        eprintln!("caixa-shim {}: {line}", &shim.id[..12.min(shim.id.len())]);
    }
    Ok(())
}

/// Connects to the shim in `dir` and sends it `line`: the connection, to
/// read its answer on, or `Ok(None)` when no shim listens.
fn ask(dir: &Path, line: &str) -> Result<Option<UnixStream>, EngineError> {
    let Ok(conn) = via_short_path(&dir.join("shim.sock"), |short| UnixStream::connect(short))
    else {
        return Ok(None);
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    writeln!(&conn, "{line}").map_err(EngineError::Connection)?;
    Ok(Some(conn))
}

/// What an answer line says: `Ok(true)` for `ok`, `Ok(false)` for none
/// (the shim ended meanwhile), its error otherwise.
fn verdict(reply: &str) -> Result<bool, EngineError> {
    match reply.trim() {
        "" => Ok(false),
        "ok" => Ok(true),
        other => Err(EngineError::Shim(
            other.strip_prefix("error: ").unwrap_or(other).to_string(),
        )),
    }
}

/// One request to the shim in `dir`: the connection once it said `ok`
/// (for `stdin`, which stays open). `Ok(None)` when no shim answers.
fn request(dir: &Path, line: &str) -> Result<Option<UnixStream>, EngineError> {
    let Some(conn) = ask(dir, line)? else {
        return Ok(None);
    };
    // Byte by byte: nothing after the reply's newline is ours to read.
    let mut reply = String::new();
    let _ = BufReader::with_capacity(1, (&conn).take(256)).read_line(&mut reply);
    let _ = conn.set_read_timeout(None);
    Ok(verdict(&reply)?.then_some(conn))
}

// ANCHOR: unpark
/// The daemon's side of `start` for a container whose shim was forked at
/// `create` ([`PARKED`]): tells it to go on. `false` when no parked shim
/// takes the word (it left, never parked, or died): the start is then
/// made as if there had been none, once [`unpark`] has seen it gone.
pub fn go(dir: &Path) -> bool {
    asking_parked(dir, |dir| matches!(request(dir, "go"), Ok(Some(_))))
}

/// The root a parked shim holds (`root`), for a copy into a container
/// that has not started; `None` without one.
pub fn parked_root(dir: &Path) -> Option<OwnedFd> {
    let mut fd = None;
    asking_parked(dir, |dir| {
        fd = root(dir).ok().flatten();
        fd.is_some()
    });
    fd
}

/// Asks the parked shim of `dir` with `ask` until it answers (`true`), or
/// until there is no parked shim to ask: its marker gone, or a marker
/// that no living shim has held for [`FORKED_SHIM_LOCKS`] (one that died
/// parked, or was never forked: the marker is removed). A shim forked a
/// moment ago listens once it has taken its lock: asked again then.
fn asking_parked(dir: &Path, mut ask: impl FnMut(&Path) -> bool) -> bool {
    let begin = std::time::Instant::now();
    while dir.join(PARKED).exists() {
        if ask(dir) {
            return true;
        }
        if !super::state::shim_alive(dir) && orphan_marker(dir) {
            break;
        }
        if begin.elapsed() > PARKING_SHIM {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Whether the marker in `dir`, which no shim holds, is older than a
/// forked shim takes to take its lock: nobody will take it any more. It
/// is removed then.
fn orphan_marker(dir: &Path) -> bool {
    let marker = dir.join(PARKED);
    let old = std::fs::metadata(&marker)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > FORKED_SHIM_LOCKS);
    if old {
        let _ = std::fs::remove_file(&marker);
    }
    old
}

/// Sends a parked shim away, and returns once it is gone: before what
/// the parked start was made from changes (a rename, a network joined),
/// or the container goes (`rm`), or a start makes its own. A no-op
/// without one. A shim sent away removes its marker last, once it no
/// longer listens nor holds its lock; a marker nobody holds any more is
/// removed here ([`orphan_marker`]).
pub fn unpark(dir: &Path) {
    if !dir.join(PARKED).exists() {
        return;
    }
    let deadline = std::time::Instant::now() + PARKING_SHIM;
    let mut waiter = super::watch::Waiter::on_life(dir);
    let mut told = false;
    loop {
        let mark = waiter.mark();
        let alive = super::state::shim_alive(dir);
        let parked = dir.join(PARKED).exists();
        if !parked || (!alive && orphan_marker(dir)) {
            return;
        }
        if std::time::Instant::now() >= deadline {
            return;
        }
        // Once: a shim that took the word is busy cleaning up, and would
        // read a second request only at its end.
        if alive && !told {
            told = matches!(request(dir, "leave"), Ok(Some(_)));
        }
        let soon = std::time::Instant::now() + Duration::from_millis(5);
        waiter.pause(mark, Some(deadline.min(soon)));
    }
}
// ANCHOR_END: unpark

/// How long a shim forked at `create` may take to take its lock: a marker
/// older than that, which no shim holds, has none coming.
const FORKED_SHIM_LOCKS: Duration = Duration::from_secs(2);

/// How long the daemon asks a parked shim before it gives up (one stuck
/// in its start), and waits for one sent away to clean up.
const PARKING_SHIM: Duration = Duration::from_secs(5);

/// The daemon's side: asks the shim in `dir` to send `signal` to its
/// container. `Ok(false)` when no shim answers (the container is not running).
pub fn send(dir: &Path, signal: Signal) -> Result<bool, EngineError> {
    Ok(request(dir, &format!("kill {}", signal as i32))?.is_some())
}

/// Asks the shim in `dir` to stop its container with `signal`: the same
/// signal as [`send`]'s, and no restart after it (also when the container
/// has ended and waits to be restarted). `Ok(false)` when no shim answers.
pub fn stop(dir: &Path, signal: Signal) -> Result<bool, EngineError> {
    Ok(request(dir, &format!("stop {}", signal as i32))?.is_some())
}

/// Asks the shim in `dir` to set its container's terminal to `rows` by
/// `cols`. `Ok(false)` when no shim answers.
pub fn resize(dir: &Path, rows: u16, cols: u16) -> Result<bool, EngineError> {
    Ok(request(dir, &format!("resize {rows} {cols}"))?.is_some())
}

/// Asks the shim in `dir` to plug its running container into the
/// networks its bundle lists now, and out of the others. A shim that does
/// not answer has no running container: the next start reads the bundle.
pub fn rejoin(dir: &Path) -> Result<(), EngineError> {
    request(dir, "networks").map(drop)
}

/// A descriptor of the root of the container the shim in `dir` runs (its
/// overlay, `O_PATH`), from the shim's own mount namespace. `Ok(None)`
/// when no shim answers (the container is not running).
pub fn root(dir: &Path) -> Result<Option<OwnedFd>, EngineError> {
    let Some(conn) = ask(dir, "root")? else {
        return Ok(None);
    };
    // The descriptor comes with the reply's first bytes: one `recvmsg`.
    let mut buf = [0u8; 256];
    let (n, fd) =
        crate::sync::recv_with_fd(conn.as_fd(), &mut buf).map_err(|source| EngineError::Sys {
            call: "recvmsg(the shim's answer)",
            source,
        })?;
    match (verdict(&String::from_utf8_lossy(&buf[..n]))?, fd) {
        (false, _) => Ok(None),
        (true, Some(fd)) => Ok(Some(fd)),
        (true, None) => Err(EngineError::Shim(
            "answered `root` without a descriptor".into(),
        )),
    }
}

/// Opens a client of the container's stdin: what is written to the
/// returned connection, the container reads. `Ok(None)` when no shim
/// answers (not started yet, or ended).
pub fn open_stdin(dir: &Path) -> Result<Option<UnixStream>, EngineError> {
    request(dir, "stdin")
}
// ANCHOR_END: shim_protocol
