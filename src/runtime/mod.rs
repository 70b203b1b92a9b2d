//! caixa as an OCI runtime (step 12): the command-line contract through
//! which containerd, CRI-O and podman run containers with runc.
//!
//! Docker does not start containers itself: dockerd asks containerd,
//! containerd starts a shim per container, and the shim runs
//! `runc create`, `runc start`, `runc state`, `runc kill` and `runc delete`
//! on a *bundle* (a directory with `config.json` and a root filesystem).
//! podman does the same through conmon. The commands and what they print
//! are the OCI runtime command line (runtime-tools,
//! `docs/command-line-interface.md`), and the lifecycle is the runtime
//! spec's (`runtime.md`):
//!
//! ```text
//!  create ──▶ created ──start──▶ running ──(the process ends)──▶ stopped ──delete──▶ gone
//!    │  everything but execve      │ execve                         │
//!    │  then create exits          kill                             delete: the cgroup,
//!    └─ the child waits at the start gate (crate::start_gate)        the record, the dir
//! ```
//!
//! Each command is its own process, so the container lives in between
//! with no caixa process beside it: its parent is whoever ran `create`
//! (conmon and containerd's shim make themselves subreapers for this). What
//! the commands share is a directory per container ([`state`]).
//!
//! The container itself is made by the same code as every step's:
//! [`crate::bundle`] turns `config.json` into a [`Spec`], refusing what
//! caixa does not implement, and [`crate::parent::create`] runs the
//! sequence of [`crate::parent::start`] up to the last moment before
//! `execve`.

pub mod console;
pub mod features;
pub mod state;

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

use crate::engine::exec::{After, Joining};
use crate::init::Launch;
use crate::spec::Spec;
use crate::start_gate::{self, GateError, StartGate};
use state::{MADE_FILE, STATE_FILE, Saved, Status};

/// runc's default root, for caixa: one directory per container below it.
pub const DEFAULT_ROOT: &str = "/run/caixa-runtime";

/// Why a runtime command failed: one line, and the command exits 1.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The id cannot name a directory, or is taken.
    #[error(
        "container id {0:?} is not valid: use letters, digits, '_', '+', '-' and '.', not starting with '.'"
    )]
    BadId(String),
    /// `create` of an id that exists.
    #[error("container {0} exists already: delete it first, or choose another id")]
    Exists(String),
    /// Any command on an id that does not exist.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// A command that needs another status.
    #[error("container {id} is {status}: {what}")]
    Status {
        /// The container.
        id: String,
        /// Its status now.
        status: &'static str,
        /// What the command needed.
        what: &'static str,
    },
    /// The bundle's `config.json` is refused.
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    /// The container could not be made.
    #[error(transparent)]
    Start(#[from] crate::parent::Error),
    /// The start gate failed.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// A file of the runtime's state.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we tried.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A flag or request caixa does not implement: refused, never ignored.
    #[error("{0} is not supported by caixa's runtime")]
    Unsupported(String),
    /// A flag or argument that is wrong.
    #[error("{0}")]
    Usage(String),
    /// Waiting for the container (`run`) failed.
    #[error(transparent)]
    Signals(#[from] crate::signals::SignalError),
    /// `exec` could not join the container or start its process.
    #[error("exec: {0}")]
    Exec(#[from] crate::init::InitError),
    /// A signal could not be sent.
    #[error("cannot signal container {id}: {errno}")]
    Signal {
        /// The container.
        id: String,
        /// What the kernel answered.
        errno: nix::errno::Errno,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.to_path_buf();
    move |source| RuntimeError::Io {
        action,
        path,
        source,
    }
}

/// What `create` (and `run`) take besides the id.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// The bundle's directory (default: the current directory).
    pub bundle: PathBuf,
    /// Where to write the container's pid, as its caller reads it.
    pub pid_file: Option<PathBuf>,
    /// A unix socket to send the terminal's master end to, when
    /// `process.terminal` is true.
    pub console_socket: Option<PathBuf>,
    /// Descriptors 3..3+N the container keeps.
    pub preserve_fds: u32,
}

/// What `exec` takes besides the id: a process, as `--process FILE` (what
/// containerd and conmon pass) or as a command line over the container's.
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// A JSON file with the process (the `process` object of config.json).
    pub process: Option<PathBuf>,
    /// Or the command and its arguments, run as the container's process
    /// with `env`, `cwd`, `user` and `tty` over it.
    pub args: Vec<String>,
    /// `KEY=VALUE` added to the container's environment.
    pub env: Vec<String>,
    /// The working directory, inside the container.
    pub cwd: Option<PathBuf>,
    /// `UID[:GID]`.
    pub user: Option<String>,
    /// Give the process a terminal (needs `console_socket`).
    pub tty: bool,
    /// A unix socket to send the terminal's master end to.
    pub console_socket: Option<PathBuf>,
    /// Where to write the process's pid, as the host sees it.
    pub pid_file: Option<PathBuf>,
    /// Return once the process runs instead of waiting for it.
    pub detach: bool,
    /// Descriptors 3..3+N the process keeps.
    pub preserve_fds: u32,
}

/// One runtime: its root directory of containers.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
}

/// An id names a directory, a cgroup and an overlay: runc's alphabet.
fn check_id(id: &str) -> Result<(), RuntimeError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::BadId(id.to_string()))
    }
}

impl Runtime {
    /// The runtime whose containers live under `root`.
    pub fn new(root: &Path) -> Runtime {
        Runtime {
            root: root.to_path_buf(),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// What `create` saved of container `id`.
    pub fn load(&self, id: &str) -> Result<Saved, RuntimeError> {
        check_id(id)?;
        let path = self.dir(id).join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotFound(id.to_string()));
            }
            Err(e) => return Err(io("read", &path)(e)),
        };
        serde_json::from_str(&text).map_err(|e| {
            io("parse", &path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })
    }

    /// The status of container `id` now.
    pub fn status(&self, id: &str) -> Result<Status, RuntimeError> {
        Ok(self.load(id)?.status(&self.dir(id)))
    }

    // ANCHOR: create
    /// `create ID`: reads the bundle, makes the container, and leaves it
    /// waiting at the start gate; returns its pid. The calling process may
    /// exit then: the container does not depend on it.
    pub fn create(&self, id: &str, options: &CreateOptions) -> Result<i32, RuntimeError> {
        check_id(id)?;
        let bundle =
            std::path::absolute(&options.bundle).map_err(io("resolve", &options.bundle))?;
        let config = crate::bundle::read(&bundle)?;
        let spec = crate::bundle::from_oci(&config, &bundle, id)?;
        check_runtime_spec(&spec, options)?;

        // The container's directory, made new: a second create of the same
        // id fails here, before anything else is made.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io("create", &self.root))?;
        let dir = self.dir(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::Exists(id.to_string()));
            }
            Err(e) => return Err(io("create", &dir)(e)),
        }
        let made = self.create_in(&dir, id, &spec, &bundle, &config, options);
        if made.is_err() {
            // Nothing was handed over: the parent's own clean-up removed
            // what it made; the directory goes too.
            let _ = std::fs::remove_dir_all(&dir);
        }
        made
    }

    fn create_in(
        &self,
        dir: &Path,
        id: &str,
        spec: &Spec,
        bundle: &Path,
        config: &oci_spec::runtime::Spec,
        options: &CreateOptions,
    ) -> Result<i32, RuntimeError> {
        let gate = StartGate::make(&dir.join(start_gate::FIFO))?;
        let launch = Launch {
            gate: Some(&gate),
            preserve_fds: options.preserve_fds,
        };
        let mut running = crate::parent::create(spec, &launch)?;
        if let Some(socket) = &options.console_socket {
            let master = running.take_terminal().ok_or_else(|| {
                RuntimeError::Usage("the container made no terminal to send".into())
            })?;
            console::send(socket, master.as_fd())?;
        }
        let made = dir.join(MADE_FILE);
        let pid = running.hand_over(&made)?.as_raw();
        let saved = Saved {
            id: id.to_string(),
            pid,
            start_time: state::start_time(pid).unwrap_or(0),
            bundle: bundle.to_path_buf(),
            rootfs: spec.root.clone().unwrap_or_default(),
            created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            annotations: config.annotations().clone().unwrap_or_default(),
            hooks: spec.hooks.clone(),
        };
        let written = write_atomically(
            &dir.join(STATE_FILE),
            &serde_json::to_vec(&saved).unwrap_or_default(),
        )
        .and_then(|()| match &options.pid_file {
            Some(pid_file) => write_atomically(pid_file, pid.to_string().as_bytes()),
            None => Ok(()),
        });
        if written.is_err() {
            // Handed over, but nobody could find it: undo it here. It is
            // still this process's child, so it is reaped before its groups
            // go (a group outside caixa's is removed only when empty).
            let child = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            crate::leftovers::undo_record(&made, id, "not created");
        }
        written.map(|()| pid)
    }
    // ANCHOR_END: create

    // ANCHOR: start
    /// `start ID`: opens the start gate; the container runs its command.
    /// Then the poststart hooks run; what failed among them is returned, to
    /// be reported (the container runs on, as the runtime spec says).
    pub fn start(&self, id: &str) -> Result<Vec<String>, RuntimeError> {
        let saved = self.load(id)?;
        let dir = self.dir(id);
        match saved.status(&dir) {
            Status::Created => {}
            status => {
                return Err(RuntimeError::Status {
                    id: id.to_string(),
                    status: status.as_str(),
                    what: "only a created container can be started",
                });
            }
        }
        start_gate::release(&dir.join(start_gate::FIFO), || saved.alive())?;
        let mut said = Vec::new();
        if let Some(hooks) = &saved.hooks {
            let state = hooks.state(id, "running", saved.pid);
            for e in crate::hooks::run_each("poststart", &hooks.poststart, &state) {
                said.push(format!("warning: {e}"));
            }
        }
        Ok(said)
    }
    // ANCHOR_END: start

    // ANCHOR: kill
    /// `kill ID SIGNAL`: sends `signal` to the container's pid 1, through a
    /// pidfd, so never to a process that took its number; with `all`, to
    /// every process of its cgroup.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), RuntimeError> {
        let saved = self.load(id)?;
        let dir = self.dir(id);
        if all {
            for pid in cgroup_pids(&dir.join(MADE_FILE), id) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
            }
        }
        if saved.status(&dir) == Status::Stopped {
            if all {
                return Ok(());
            }
            return Err(RuntimeError::Status {
                id: id.to_string(),
                status: "stopped",
                what: "there is no process to signal",
            });
        }
        let fail = |errno| RuntimeError::Signal {
            id: id.to_string(),
            errno,
        };
        let pidfd = crate::pidfd::open(saved.pid).map_err(fail)?;
        // The pidfd was opened after the start-time check: check again, so
        // it is this container's process and not a newcomer with its pid.
        if !saved.alive() {
            return Ok(());
        }
        crate::pidfd::signal(&pidfd, signal as i32).map_err(fail)
    }
    // ANCHOR_END: kill

    // ANCHOR: delete
    /// `delete ID`: removes a stopped (or created) container: what `create`
    /// made on the host, then its directory. A running one needs `force`,
    /// which kills it first.
    pub fn delete(&self, id: &str, force: bool) -> Result<Vec<String>, RuntimeError> {
        let saved = match self.load(id) {
            Ok(saved) => saved,
            // runc: `delete --force` of what does not exist is not an error.
            Err(RuntimeError::NotFound(_)) if force => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let dir = self.dir(id);
        match saved.status(&dir) {
            Status::Running if !force => {
                return Err(RuntimeError::Status {
                    id: id.to_string(),
                    status: "running",
                    what: "stop it first, or delete --force",
                });
            }
            Status::Stopped => {}
            Status::Created | Status::Running => {
                if let Ok(pidfd) = crate::pidfd::open(saved.pid) {
                    if saved.alive() {
                        let _ = crate::pidfd::signal(&pidfd, libc::SIGKILL);
                        crate::pidfd::wait_gone(&pidfd, Duration::from_secs(10));
                    }
                }
            }
        }
        // The cgroup (killing anything left in it) and the image's root.
        let mut said = crate::leftovers::undo_record(&dir.join(MADE_FILE), id, "deleted");
        std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
        // Then the poststop hooks; a failure is reported, the container is
        // gone all the same.
        if let Some(hooks) = &saved.hooks {
            let state = hooks.state(id, "stopped", 0);
            for e in crate::hooks::run_each("poststop", &hooks.poststop, &state) {
                said.push(format!("warning: {e}"));
            }
        }
        Ok(said)
    }
    // ANCHOR_END: delete

    // ANCHOR: exec
    /// `exec ID`: starts one more process in a created or running
    /// container, through the engine's exec (the same join: a pidfd on pid
    /// 1, its cgroup, setns of every namespace, then the process's own
    /// privileges). Returns the process's exit code, or 0 with `detach`.
    pub fn exec(&self, id: &str, options: &ExecOptions) -> Result<i32, RuntimeError> {
        let saved = self.load(id)?;
        let dir = self.dir(id);
        if saved.status(&dir) == Status::Stopped {
            return Err(RuntimeError::Status {
                id: id.to_string(),
                status: "stopped",
                what: "exec needs a created or running container",
            });
        }
        // The container's config with the exec's process in it: one
        // conversion ([`crate::bundle::from_oci`]) checks both.
        let mut config = crate::bundle::read(&saved.bundle)?;
        let process = exec_process(&config, options)?;
        config.set_process(Some(process));
        let spec = crate::bundle::from_oci(&config, &saved.bundle, id)?;
        check_terminal(spec.terminal, &options.console_socket)?;
        let groups = crate::leftovers::recorded_cgroups(&dir.join(MADE_FILE), id);
        // The host's paths mean nothing once we have joined the
        // container's mount namespace: the console socket is connected and
        // the pid file's directory opened now.
        let console = options
            .console_socket
            .as_deref()
            .map(console::connect)
            .transpose()?;
        let pid_file = options
            .pid_file
            .as_deref()
            .map(AtomicFile::open)
            .transpose()?;
        let to_socket = |master: BorrowedFd<'_>| match &console {
            Some(stream) => console::send_over(stream, master).map_err(|errno| {
                crate::init::InitError::Syscall {
                    call: "sendmsg(the terminal, to the console socket)".into(),
                    errno,
                }
            }),
            None => Ok(()),
        };
        let joining = Joining {
            pid: saved.pid,
            is_the_container: &|_| saved.alive(),
            spec: &spec,
            groups: &groups,
            give_terminal: Some(&to_socket),
            preserve_fds: options.preserve_fds,
        };
        let after = match options.detach {
            true => After::Detach,
            false => After::Wait,
        };
        let mut started = |pid: nix::unistd::Pid| match &pid_file {
            Some(file) => file.write(pid.to_string().as_bytes()).map_err(|e| {
                crate::init::InitError::User(format!("cannot write the pid file: {e}"))
            }),
            None => Ok(()),
        };
        Ok(crate::engine::exec::join_and_run(
            &joining,
            after,
            &mut started,
        )?)
    }
    // ANCHOR_END: exec

    /// `run ID`: `create`, then `start`; unless `detach`, waits for the
    /// container as its parent (it is: this process cloned it), passing
    /// signals on, then deletes it. Returns the exit code to end with.
    pub fn run(
        &self,
        id: &str,
        options: &CreateOptions,
        detach: bool,
    ) -> Result<i32, RuntimeError> {
        let pid = self.create(id, options)?;
        match self.start(id) {
            Ok(said) => said.iter().for_each(|line| eprintln!("step12: {line}")),
            Err(e) => {
                let _ = self.delete(id, true);
                return Err(e);
            }
        }
        if detach {
            return Ok(0);
        }
        // SIGCHLD is blocked only now, after `start` (the steps block it
        // before the clone): a command that has ended already sent a signal
        // nobody kept, so look first, then wait for the next one.
        let child = nix::unistd::Pid::from_raw(pid);
        let signals = crate::signals::block()?;
        let exit = match crate::signals::try_reap(child)? {
            Some(exit) => exit,
            None => signals.wait_for_exit(child)?,
        };
        for line in self.delete(id, true)? {
            eprintln!("step12: {line}");
        }
        Ok(exit.code())
    }

    /// `list`: every container of this root, in id order.
    pub fn list(&self) -> Result<Vec<state::Reported>, RuntimeError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &self.root)(e)),
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .collect();
        ids.sort();
        Ok(ids
            .iter()
            .filter_map(|id| self.load(id).ok())
            .map(|saved| saved.report(&self.dir(&saved.id)))
            .collect())
    }
}

/// What `create` refuses in a spec the engine would accept: the runtime
/// leaves networks to its caller, and a terminal needs a console socket.
fn check_runtime_spec(spec: &Spec, options: &CreateOptions) -> Result<(), RuntimeError> {
    if spec.network.is_some() || spec.user_network.is_some() {
        return Err(RuntimeError::Unsupported(
            "a caixa network (org.caixa.network.* annotations) under the OCI runtime: the runtime leaves networks to its caller (CNI, netavark), as runc does; use the engine (step 11)"
                .into(),
        ));
    }
    check_terminal(spec.terminal, &options.console_socket)
}

/// A terminal needs a console socket to send it to, and a socket needs a
/// terminal to receive.
fn check_terminal(terminal: bool, console_socket: &Option<PathBuf>) -> Result<(), RuntimeError> {
    match (terminal, console_socket) {
        (true, None) => Err(RuntimeError::Usage(
            "process.terminal is true: pass --console-socket, where the terminal's master end is sent".into(),
        )),
        (false, Some(_)) => Err(RuntimeError::Usage(
            "--console-socket was given but process.terminal is false".into(),
        )),
        _ => Ok(()),
    }
}

/// The process `exec` runs: the file `--process` names, or the
/// container's own process with the command line's words over it.
fn exec_process(
    config: &oci_spec::runtime::Spec,
    options: &ExecOptions,
) -> Result<oci_spec::runtime::Process, RuntimeError> {
    if let Some(path) = &options.process {
        if !options.args.is_empty() {
            return Err(RuntimeError::Usage(
                "give either --process FILE or a command, not both".into(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(io("read", path))?;
        return serde_json::from_str(&text).map_err(|e| {
            RuntimeError::Usage(format!(
                "{} is not a process (config.json's \"process\" object): {e}",
                path.display()
            ))
        });
    }
    if options.args.is_empty() {
        return Err(RuntimeError::Usage(
            "no command: exec ID COMMAND [ARG...], or exec --process FILE ID".into(),
        ));
    }
    let mut process = config.process().clone().unwrap_or_default();
    process.set_args(Some(options.args.clone()));
    let mut env = process.env().clone().unwrap_or_default();
    crate::engine::request::apply_env(&mut env, &options.env);
    process.set_env(Some(env));
    if let Some(cwd) = &options.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some(user) = &options.user {
        let bad = || RuntimeError::Usage(format!("--user {user:?}: give UID or UID:GID"));
        let (uid, gid) = match user.split_once(':') {
            Some((uid, gid)) => (uid, gid),
            None => (user.as_str(), "0"),
        };
        let mut who = process.user().clone();
        who.set_uid(uid.parse().map_err(|_| bad())?);
        who.set_gid(gid.parse().map_err(|_| bad())?);
        process.set_user(who);
    }
    process.set_terminal(Some(options.tty));
    Ok(process)
}

/// The pids in the cgroup directories container `id`'s `made` record
/// names.
fn cgroup_pids(made: &Path, id: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = crate::leftovers::recorded_cgroups(made, id)
        .iter()
        .map(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default())
        .collect::<Vec<String>>()
        .iter()
        .flat_map(|procs| procs.lines().filter_map(|l| l.trim().parse().ok()))
        .collect();
    // On v1 the same pid is in every controller's directory.
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Writes `bytes` to a new file beside `path`, then renames it over
/// `path`: a reader (conmon polling the pid file) sees all or nothing.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    AtomicFile::open(path)?
        .write(bytes)
        .map_err(io("write", path))
}

/// A file written all or nothing, whose directory is opened first: `exec`
/// opens its pid file's before it leaves the host's mount namespace, and
/// writes it after, with `openat` and `renameat` relative to it.
struct AtomicFile {
    dir: OwnedFd,
    name: std::ffi::OsString,
}

impl AtomicFile {
    fn open(path: &Path) -> Result<AtomicFile, RuntimeError> {
        let path = std::path::absolute(path).map_err(io("resolve", path))?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(RuntimeError::Usage(format!(
                "{}: give a file's path",
                path.display()
            )));
        };
        let dir_fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| io("open", dir)(errno.into()))?;
        Ok(AtomicFile {
            dir: dir_fd,
            name: name.to_os_string(),
        })
    }

    /// Writes `bytes` to `.NAME.PID` beside it, then renames that over it.
    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut tmp = std::ffi::OsString::from(".");
        tmp.push(&self.name);
        tmp.push(format!(".{}", std::process::id()));
        let file = nix::fcntl::openat(
            &self.dir,
            Path::new(&tmp),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )?;
        std::fs::File::from(file).write_all(bytes)?;
        nix::fcntl::renameat(&self.dir, Path::new(&tmp), &self.dir, Path::new(&self.name))?;
        Ok(())
    }
}

/// A signal as `kill` takes it: `9`, `KILL` or `SIGKILL`.
pub fn parse_signal(text: &str) -> Result<Signal, RuntimeError> {
    let bad = || {
        RuntimeError::Usage(format!(
            "{text:?} is not a signal: give a number or a name such as TERM or SIGKILL"
        ))
    };
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_runcs_alphabet() {
        for good in ["abc", "a-b_c.d+e", "0123456789abcdef"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "a\0b", "é"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signals_by_number_or_name() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
