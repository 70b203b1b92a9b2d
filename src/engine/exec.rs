//! `exec`: a second process in a running container.
//!
//! This is the best answer to "what is a container?": there is no container
//! object in the kernel to run something "in". There is a process, pid 1 of
//! the container, and the namespaces, cgroup and privileges it was given. A
//! process that joins the same namespaces, enters the same cgroup and takes
//! the same privileges *is* in the container, as much as pid 1 is.
//!
//! ```text
//!  daemon ──spawns──▶ step11 exec-in CID EID      (host: root, host namespaces)
//!                      │ pidfd_open(pid 1 of the container), check it is
//!                      │ the container's (its cgroup names the id)
//!                      │ write own pid to the container's cgroup.procs
//!                      │ setns(pidfd, USER|MNT|PID|NET|IPC|UTS)
//!                      └─fork──▶ child: pid N in the container's pid namespace
//!                                 uid 0 of the namespace, cwd, env, user,
//!                                 capabilities, no_new_privs, seccomp, execve
//! ```
//!
//! The exec record lives beside the container (`execs/<eid>.json`), and
//! `ROOT/engine/execs/<eid>` names its container, so `/exec/EID/…` finds it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::EngineError;
use super::state::{Containers, Record, Status, create_dirs, io, read_json, write_json};
use crate::init::{InitError, become_root_of_the_namespace};
use crate::ns::Namespace;
use crate::spec::Spec;
use crate::sync::{ChildEnd, FromChild, ParentEnd, Request};

/// One exec: what to run, and how it went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exec {
    /// 64 hex digits.
    pub id: String,
    /// The container's id.
    pub container: String,
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// More environment, over the container's (`-e`).
    pub env: Vec<String>,
    /// The working directory (`-w`); empty: the container's.
    pub workdir: String,
    /// The user (`-u`); empty: the container's.
    pub user: String,
    /// Running now.
    pub running: bool,
    /// Its exit code, once ended.
    pub exit_code: Option<i32>,
    /// Its host pid while it runs (0: none).
    pub pid: i32,
    /// It gets a terminal of its own (`-t`), from the container's devpts.
    #[serde(default)]
    pub tty: bool,
    /// Its stdin is the client's input (`-i`).
    #[serde(default)]
    pub stdin: bool,
}

impl Exec {
    /// `GET /exec/EID/json`, Docker's fields.
    pub fn to_json(&self) -> Value {
        json!({
            "ID": self.id, "ContainerID": self.container, "Running": self.running,
            "ExitCode": self.exit_code, "Pid": self.pid,
            "ProcessConfig": {
                "entrypoint": self.cmd.first(), "arguments": self.cmd.get(1..),
                "user": self.user, "tty": self.tty, "privileged": false,
            },
            "OpenStdin": self.stdin, "OpenStdout": true, "OpenStderr": true,
        })
    }
}

fn index(root: &Path) -> PathBuf {
    root.join("engine/execs")
}

fn record_path(containers: &Containers, container: &str, id: &str) -> PathBuf {
    containers
        .dir(container)
        .join("execs")
        .join(format!("{id}.json"))
}

/// `POST /containers/ID/exec`: records an exec of a running container.
pub fn create(
    root: &Path,
    containers: &Containers,
    record: &Record,
    body: &Value,
) -> Result<Exec, EngineError> {
    let bad = |why: &str| EngineError::BadRequest(why.to_string());
    if containers.state(&record.id)?.status != Status::Running {
        return Err(EngineError::Conflict(format!(
            "container {} is not running: start it first",
            record.name
        )));
    }
    if body["Privileged"].as_bool() == Some(true) {
        return Err(bad(
            "exec --privileged is not supported: an exec has the container's privileges",
        ));
    }
    let strings = |field: &str| super::request::strings(&body[field], field);
    let cmd = strings("Cmd")?;
    if cmd.is_empty() {
        return Err(bad("no command: exec CONTAINER COMMAND [ARG...]"));
    }
    let env = strings("Env")?;
    let workdir = body["WorkingDir"].as_str().unwrap_or_default().to_string();
    let user = body["User"].as_str().unwrap_or_default().to_string();
    // A NUL cannot reach `execve`: refused here, with the request, as a
    // container's own command is (`Spec::validate`), never found (or lost)
    // in the helper that runs it.
    let nul = |e: crate::spec::SpecError| EngineError::BadRequest(e.to_string());
    for arg in &cmd {
        crate::spec::no_nul("an argument", arg).map_err(nul)?;
    }
    for entry in &env {
        crate::spec::no_nul("an environment entry", entry).map_err(nul)?;
    }
    crate::spec::no_nul("the working directory", &workdir).map_err(nul)?;
    crate::spec::no_nul("the user", &user).map_err(nul)?;
    let exec = Exec {
        id: crate::ids::random_hex(32),
        container: record.id.clone(),
        cmd,
        env,
        workdir,
        user,
        running: false,
        exit_code: None,
        pid: 0,
        tty: body["Tty"].as_bool() == Some(true),
        stdin: body["AttachStdin"].as_bool() == Some(true),
    };
    let dir = containers.dir(&record.id).join("execs");
    create_dirs(&dir, 0o700)?;
    write_json(&record_path(containers, &record.id, &exec.id), &exec)?;
    create_dirs(&index(root), 0o700)?;
    let link = index(root).join(&exec.id);
    std::fs::write(&link, &record.id).map_err(io(&link))?;
    Ok(exec)
}

/// Makes exec `exec` this request's to run, once: its `.started` file is
/// created with `O_EXCL`, so of two starts at once exactly one runs it, and
/// the other hears 409, as from Docker. (Its record says `running` only
/// once the helper is spawned: two starts could both read `false` first.)
/// Called before the answer's head goes out, so the 409 can still be said;
/// [`start`] then runs what was claimed.
pub fn claim(containers: &Containers, exec: &Exec) -> Result<(), EngineError> {
    let again =
        || EngineError::Conflict(format!("exec {} has already run: create another", exec.id));
    if exec.running || exec.exit_code.is_some() {
        return Err(again());
    }
    let mark = started_mark(containers, exec);
    match std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&mark)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(again()),
        Err(e) => Err(io(&mark)(e)),
    }
}

/// Where [`claim`] marks exec `exec` as taken.
fn started_mark(containers: &Containers, exec: &Exec) -> PathBuf {
    containers
        .dir(&exec.container)
        .join("execs")
        .join(format!("{}.started", exec.id))
}

/// Forgets the execs of the container in `dir` (it is being removed):
/// their names in the index go with their records.
pub fn forget(root: &Path, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir.join("execs")) else {
        return;
    };
    for entry in entries.flatten() {
        if let Some(id) = entry.file_name().to_string_lossy().strip_suffix(".json") {
            let _ = std::fs::remove_file(index(root).join(id));
        }
    }
}

/// The exec `id`, wherever its container is.
pub fn find(root: &Path, containers: &Containers, id: &str) -> Result<Exec, EngineError> {
    let missing = || EngineError::NotFound(format!("No such exec instance: {id}"));
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(missing());
    }
    let container = std::fs::read_to_string(index(root).join(id)).map_err(|_| missing())?;
    read_json(&record_path(containers, container.trim(), id)).map_err(|_| missing())
}

// ANCHOR: exec_start
/// `POST /exec/EID/start`: runs the exec through `step11 exec-in`, copies
/// `input` (the client's, with `-i`) to it and its output to `out` (as
/// Docker's frames, or raw from its terminal with `-t`), and records its
/// exit code. The request has [`claim`]ed it first.
pub fn start(
    exe: &Path,
    root: &Path,
    containers: &Containers,
    mut exec: Exec,
    input: Option<UnixStream>,
    out: &mut (dyn Write + Send),
) -> Result<(), EngineError> {
    let input = input.filter(|_| exec.stdin);
    let mut command = Command::new(exe);
    command
        .current_dir("/")
        .arg("--root")
        .arg(root)
        .args(["exec-in", &exec.container, &exec.id])
        .stdin(match (&input, exec.tty) {
            (Some(_), false) => Stdio::piped(),
            _ => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // With -t, the helper makes the terminal inside the container and
    // hands us its master over this channel (its fd 3), as init does.
    let channel = match exec.tty {
        true => Some(pass_channel(&mut command)?),
        false => None,
    };
    let mut child = command.spawn().map_err(|source| {
        // Never run: it may be started again.
        let _ = std::fs::remove_file(started_mark(containers, &exec));
        EngineError::Spawn {
            what: "step11 exec-in",
            source,
        }
    })?;
    exec.running = true;
    exec.pid = child.id() as i32;
    let path = record_path(containers, &exec.container, &exec.id);
    write_json(&path, &exec)?;
    let out = std::sync::Mutex::new(out);
    let status = match channel {
        Some((parent, child_end)) => {
            drop(child_end); // only the helper holds it: its end closes ours
            if let Some(master) = take_terminal(&parent) {
                relay_terminal(&exec.id, master, input, &out);
            }
            copy_output(&mut child, &out, exec.tty);
            child.wait().map_err(EngineError::Connection)?
        }
        None => std::thread::scope(|scope| {
            let stdin = child.stdin.take();
            if let (Some(from), Some(to)) = (&input, stdin) {
                // Its end is passed on: the command sees its input end.
                scope.spawn(move || copy_input(from, to));
            }
            copy_output(&mut child, &out, exec.tty);
            let status = child.wait();
            // The command has ended: stop reading the client's input (our
            // copy of its connection would otherwise keep it open, and the
            // client waiting for the end of the output).
            if let Some(from) = &input {
                let _ = from.shutdown(std::net::Shutdown::Read);
            }
            status.map_err(EngineError::Connection)
        })?,
    };
    exec.running = false;
    // The helper exits with its child's code (128 + N for signal N).
    exec.exit_code = Some(
        std::os::unix::process::ExitStatusExt::signal(&status)
            .map_or_else(|| status.code().unwrap_or(125), |sig| 128 + sig),
    );
    write_json(&path, &exec)
}
// ANCHOR_END: exec_start

/// What the helper prints (its stdout, and its stderr, where its own
/// errors go) until both close: each chunk one frame, or raw with `-t`.
fn copy_output(child: &mut std::process::Child, out: &Mutex<&mut (dyn Write + Send)>, raw: bool) {
    let copy = |mut from: Box<dyn Read + Send>, stream: u8| {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                    let bytes = match raw {
                        true => buf[..n].to_vec(),
                        false => super::daemon::frame(stream, &buf[..n]),
                    };
                    if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let stdout: Option<Box<dyn Read + Send>> = child.stdout.take().map(|s| Box::new(s) as _);
    let stderr: Option<Box<dyn Read + Send>> = child.stderr.take().map(|s| Box::new(s) as _);
    std::thread::scope(|scope| {
        if let Some(err) = stderr {
            scope.spawn(|| copy(err, 2));
        }
        if let Some(outp) = stdout {
            copy(outp, 1);
        }
    });
}

/// Copies the client's input to the exec (its stdin, or its terminal)
/// until either ends.
/// A plain read and write, not `std::io::copy`: that splices in the
/// kernel, and a splice waiting on a socket is not woken when the socket
/// is shut down for reading, which is how the command's end stops this.
fn copy_input(mut from: &UnixStream, mut to: impl Write) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A channel whose child end the helper inherits as its fd 3.
fn pass_channel(command: &mut Command) -> Result<(ParentEnd, ChildEnd), EngineError> {
    let (parent, child) = crate::sync::channel().map_err(|e| EngineError::Shim(e.to_string()))?;
    let fd = child.as_fd().as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // dup2 makes a copy without close-on-exec; a copy onto itself
            // changes nothing, so then the flag is cleared by hand.
            let done = match fd {
                3 => libc::fcntl(3, libc::F_SETFD, 0),
                _ => libc::dup2(fd, 3),
            };
            if done < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok((parent, child))
}

/// The terminal's master, once the helper has made it; `None` if it
/// failed first (its error is on its stderr).
fn take_terminal(parent: &ParentEnd) -> Option<OwnedFd> {
    match parent.next_from_child_with_fd() {
        Ok((FromChild::Request(Request::TakeTerminal), Some(master))) => {
            parent.done().ok()?;
            Some(master)
        }
        _ => None,
    }
}

/// The terminals of the execs running now, by exec id, so that
/// `/exec/EID/resize` (another request, on another thread) finds them; or
/// the size a client asked before the terminal was made.
static TERMINALS: Mutex<BTreeMap<String, Window>> = Mutex::new(BTreeMap::new());

#[derive(Debug)]
enum Window {
    /// Not made yet: the size to give it.
    Asked(u16, u16),
    /// Its master.
    Open(OwnedFd),
}

fn terminals() -> std::sync::MutexGuard<'static, BTreeMap<String, Window>> {
    TERMINALS.lock().unwrap_or_else(|e| e.into_inner())
}

/// `POST /exec/EID/resize`: the size of its terminal, now or once made.
pub fn resize(exec: &Exec, rows: u16, cols: u16) -> Result<(), EngineError> {
    if !exec.tty || exec.exit_code.is_some() {
        return Err(EngineError::Conflict(format!(
            "exec {} has no terminal to resize: it has ended, or was made without -t",
            exec.id
        )));
    }
    let mut terminals = terminals();
    match terminals.get(&exec.id) {
        Some(Window::Open(master)) => super::terminal::set_size(master.as_fd(), rows, cols),
        _ => {
            terminals.insert(exec.id.clone(), Window::Asked(rows, cols));
            Ok(())
        }
    }
}

/// Copies the client's keys to the exec's terminal and what it shows to
/// `out`, raw, until the terminal closes (no process holds it any more).
fn relay_terminal(
    id: &str,
    master: OwnedFd,
    input: Option<UnixStream>,
    out: &Mutex<&mut (dyn Write + Send)>,
) {
    let Ok(for_size) = master.try_clone() else {
        return;
    };
    if let Some(Window::Asked(rows, cols)) =
        terminals().insert(id.to_string(), Window::Open(for_size))
    {
        let _ = super::terminal::set_size(master.as_fd(), rows, cols);
    }
    let mut reader = std::fs::File::from(master);
    let writer = reader.try_clone().ok();
    std::thread::scope(|scope| {
        if let (Some(from), Some(to)) = (input.as_ref(), writer) {
            scope.spawn(move || copy_input(from, to));
        }
        let mut buf = [0u8; 8192];
        // A terminal's master reads EIO once no process holds its slave.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
        // The input side may be waiting for keys: its end wakes it.
        if let Some(from) = &input {
            let _ = from.shutdown(std::net::Shutdown::Read);
        }
    });
    terminals().remove(id);
}

// ANCHOR: exec_join
/// `step11 exec-in CID EID`: joins container CID and becomes exec EID's
/// command in it; returns only on failure (the exit code to use).
pub fn join(root: &Path, container: &str, id: &str) -> i32 {
    match join_engine_exec(root, container, id) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("step11: exec: {e}");
            e.exit_code()
        }
    }
}

/// The engine's side of an exec: finds the container and the exec record,
/// checks pid 1 is still the container's, and joins it.
fn join_engine_exec(root: &Path, container: &str, id: &str) -> Result<i32, InitError> {
    let fail = |why: String| InitError::User(why);
    let containers = Containers::open(root).map_err(|e| fail(e.to_string()))?;
    let exec: Exec = read_json(&record_path(&containers, container, id))
        .map_err(|e| fail(format!("no exec {id}: {e}")))?;
    let dir = containers.dir(container);
    let config = crate::bundle::read(&dir).map_err(|e| fail(e.to_string()))?;
    let mut spec =
        crate::bundle::from_oci(&config, &dir, container).map_err(|e| fail(e.to_string()))?;
    let state = containers
        .state(container)
        .map_err(|e| fail(e.to_string()))?;
    if state.status != Status::Running || state.pid <= 0 {
        return Err(fail(format!("container {container} is not running")));
    }
    // The exec's own command, environment, directory and user, over the
    // container's.
    spec.process.args = exec.cmd.clone();
    super::request::apply_env(&mut spec.process.env, &exec.env);
    if !exec.workdir.is_empty() {
        spec.process.cwd = PathBuf::from(&exec.workdir);
    }
    if !exec.user.is_empty() {
        spec.process.user = Some(exec.user.clone());
    }
    // Its cgroup: one directory per hierarchy (rootless: in the delegated
    // group, where the container's start made it).
    let groups = match (crate::cgroup::delegation::containers_root(), &spec.limits) {
        (Ok(hierarchy), Some(limits)) => hierarchy.planned_dirs(&limits.group(container)),
        _ => Vec::new(),
    };
    // With -t the daemon passes a channel as fd 3: the terminal's master
    // goes back on it, as init hands its own.
    let to_daemon = |master: BorrowedFd<'_>| {
        // SAFETY: with -t the daemon passes the channel as fd 3, and
        // nothing else in this fresh process owns fd 3.
        let channel = ChildEnd::from_fd(unsafe { OwnedFd::from_raw_fd(3) });
        Ok(channel.give_terminal(master)?)
    };
    spec.terminal = exec.tty;
    let joining = Joining {
        pid: state.pid,
        is_the_container: &|pid| {
            if crate::rootless::active() {
                // No cgroup (a rootless container): pid 1 is its shim's child.
                return parent_of(pid) == Some(state.shim)
                    && super::state::shim_alive(&containers.dir(container));
            }
            // pid 1's cgroup is named by the container's id.
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .unwrap_or_default()
                .contains(container)
        },
        spec: &spec,
        groups: &groups,
        give_terminal: exec.tty.then_some(&to_daemon as &GiveTerminal),
        preserve_fds: 0,
    };
    join_and_run(&joining, After::Wait, &mut |_| Ok(()))
}

/// The parent pid of `pid` (`/proc/PID/stat`'s fourth field, after the
/// command name in parentheses, which may itself hold spaces).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after) = stat.rsplit_once(')')?;
    after.split_whitespace().nth(1)?.parse().ok()
}

/// A process to start in a running container: what `exec` needs, whoever
/// asks (the engine's `exec-in`, or `step12 exec` for containerd and podman).
pub struct Joining<'a> {
    /// pid 1 of the container, as the host sees it.
    pub pid: i32,
    /// Says whether the process `pid` (held by a pidfd now) is still the
    /// container's: a pid alone may have been reused.
    pub is_the_container: &'a dyn Fn(i32) -> bool,
    /// The container's spec, with the process to run in `spec.process`
    /// (and its capabilities, no_new_privs and terminal).
    pub spec: &'a Spec,
    /// The container's cgroup directories, one per hierarchy.
    pub groups: &'a [PathBuf],
    /// With a terminal: where its master end goes (the daemon, or the
    /// runtime caller's console socket).
    pub give_terminal: Option<&'a GiveTerminal<'a>>,
    /// Descriptors 3..3+N that the command keeps.
    pub preserve_fds: u32,
}

/// Hands a new terminal's master end to whoever asked for the terminal.
pub type GiveTerminal<'a> = dyn Fn(BorrowedFd<'_>) -> Result<(), InitError> + 'a;

/// What the joining process does once the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Wait for it and return its exit code.
    Wait,
    /// Return at once (`runc exec --detach`): the command is reparented to
    /// the nearest subreaper, conmon or containerd's shim.
    Detach,
}

/// Joins the container `joining` names and runs `joining.spec.process` in
/// it; calls `started` with its host pid once it has execve'd. Returns its
/// exit code (`After::Wait`), or 0 (`After::Detach`); if it could not
/// become the command, the code it ended with (it said why on stderr).
pub fn join_and_run(
    joining: &Joining<'_>,
    after: After,
    started: &mut dyn FnMut(nix::unistd::Pid) -> Result<(), InitError>,
) -> Result<i32, InitError> {
    let fail = |why: String| InitError::User(why);
    let spec = joining.spec;

    // 1. A handle on pid 1 of the container that cannot come to mean
    //    another process: a pidfd. Then check it is the container's, and
    //    still alive after that check (so the check was of this process).
    let pidfd = crate::pidfd::open(joining.pid).map_err(|errno| InitError::Syscall {
        call: "pidfd_open(the container's pid 1)".into(),
        errno,
    })?;
    if !(joining.is_the_container)(joining.pid) || crate::pidfd::signal(&pidfd, 0).is_err() {
        return Err(fail(format!("container {} has ended", spec.id)));
    }

    // 2. Its cgroup, while we are still host root: one write per directory.
    for group in joining.groups {
        let procs = group.join("cgroup.procs");
        if group.is_dir() {
            std::fs::write(&procs, std::process::id().to_string())
                .map_err(|e| fail(format!("cannot enter {}: {e}", procs.display())))?;
        }
    }

    // 3. Its namespaces, all in one call: setns(2) on a pidfd joins every
    //    namespace named in the flags at once, the user namespace first (so
    //    the others, which it owns, may be joined), and changes our root
    //    and working directory to the container's.
    //    Those pid 1 entered by path (step 12) are its namespaces too.
    join_namespaces(&pidfd, &spec.own_namespaces())?;
    drop(pidfd);

    // 4. With a terminal: one from the container's own devpts (we are in
    //    its mount namespace now); its master goes to whoever asked.
    let terminal = match (spec.terminal, joining.give_terminal) {
        (true, Some(give)) => {
            let (master, slave) = crate::init::new_pty()?;
            give(master.as_fd())?;
            Some(slave)
        }
        _ => None,
    };

    // 5. A new pid namespace is entered by children only: fork. A pipe,
    //    close-on-exec, tells us when the child has become the command:
    //    execve closes it (end of file); a failure writes a byte first.
    let (from_child, to_parent) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| InitError::Syscall {
            call: "pipe2".into(),
            errno,
        })?;
    // SAFETY: this process is single-threaded (a fresh exec of step11 or
    // step12).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(from_child);
            let e = match &terminal {
                Some(slave) => crate::init::use_as_terminal(slave)
                    .and_then(|()| become_the_command(spec, joining.preserve_fds)),
                None => become_the_command(spec, joining.preserve_fds),
            }
            .unwrap_err();
            // Said as the binary that runs us names itself (step11, step12).
            let me = std::env::args().next().unwrap_or_default();
            let me = Path::new(&me)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            eprintln!("{me}: exec: {e}");
            let _ = nix::unistd::write(&to_parent, b"!");
            std::process::exit(e.exit_code())
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // The terminal is the command's: whoever holds the master sees
            // it end when the command and its children are gone, not us.
            drop(terminal);
            drop(to_parent);
            let mut byte = [0u8; 1];
            let failed = loop {
                match nix::unistd::read(&from_child, &mut byte) {
                    Ok(n) => break n > 0,
                    Err(Errno::EINTR) => continue,
                    Err(errno) => {
                        return Err(InitError::Syscall {
                            call: "read(the exec's pipe)".into(),
                            errno,
                        });
                    }
                }
            };
            if !failed {
                started(child)?;
                if after == After::Detach {
                    return Ok(0);
                }
            }
            wait_for(child)
        }
        Err(errno) => Err(InitError::Syscall {
            call: "fork".into(),
            errno,
        }),
    }
}

/// Waits for our child `pid`; its exit code, or 128 + the signal.
fn wait_for(pid: nix::unistd::Pid) -> Result<i32, InitError> {
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(errno) => {
                return Err(InitError::Syscall {
                    call: "waitpid".into(),
                    errno,
                });
            }
        }
    }
}

/// Joins every namespace in `namespaces` of the process `pidfd` holds, in
/// one `setns(2)`: given a pidfd, the kernel joins them all at once, the
/// user namespace first.
fn join_namespaces(pidfd: &OwnedFd, namespaces: &[Namespace]) -> Result<(), InitError> {
    // EXERCISE(11): join every namespace of the container in one call: nix::sched::setns on the pidfd, with the flags of namespaces (each ns.clone_flag()) or'ed together; its Errno into InitError::Syscall
    let flags = namespaces
        .iter()
        .fold(CloneFlags::empty(), |all, ns| all | ns.clone_flag());
    nix::sched::setns(pidfd, flags).map_err(|errno| InitError::Syscall {
        call: "setns(pidfd of the container, its namespaces)".into(),
        errno,
    })
    // END EXERCISE
}

/// The child, inside: the process's privileges, in init's order.
fn become_the_command(
    spec: &Spec,
    preserve_fds: u32,
) -> Result<std::convert::Infallible, InitError> {
    let process = &spec.process;
    // Until execve, this process is caixa's: not dumpable, so the
    // container's processes cannot open /proc/N/exe, our host binary
    // (CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).map_err(|errno| InitError::Syscall {
        call: "prctl(PR_SET_DUMPABLE, 0)".into(),
        errno,
    })?;
    if spec.has(Namespace::User) {
        become_root_of_the_namespace()?;
    }
    nix::unistd::chdir(&process.cwd).map_err(|errno| InitError::Syscall {
        call: format!("chdir({})", process.cwd.display()),
        errno,
    })?;
    // Nothing of the host crosses: 0, 1, 2 are the caller's, and every
    // other descriptor closes at execve (CVE-2024-21626).
    crate::init::mark_fds_close_on_exec(3 + preserve_fds)?;
    let program = crate::command::resolve(&process.args[0], &process.env)?;
    // The process's own privileges, in the init's order (seccomp last).
    let filters = crate::init::take_privileges(spec, &|_| {})?;
    if let Some(mask) = process.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            mask as libc::mode_t,
        ));
    }
    if let Some(filters) = &filters {
        filters.install()?;
    }
    let errno = nix::unistd::execve(
        &std::ffi::CString::new(program.as_os_str().as_encoded_bytes())
            .map_err(|_| InitError::User("a NUL in the program's path".into()))?,
        &crate::command::to_cstrings(&process.args),
        &crate::command::to_cstrings(&process.env),
    )
    .unwrap_err();
    Err(InitError::Exec { program, errno })
}
// ANCHOR_END: exec_join

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_is_claimed_by_one_start_only() {
        let root = tempfile::tempdir().unwrap();
        let containers = Containers::open(root.path()).unwrap();
        let container = "bb12".repeat(16);
        create_dirs(&containers.dir(&container).join("execs"), 0o700).unwrap();
        let exec = Exec {
            id: "cc34".repeat(16),
            container,
            cmd: vec!["true".into()],
            env: Vec::new(),
            workdir: String::new(),
            user: String::new(),
            running: false,
            exit_code: None,
            pid: 0,
            tty: false,
            stdin: false,
        };
        // Two starts that both read `running: false`: one runs it.
        assert!(claim(&containers, &exec).is_ok());
        assert!(matches!(
            claim(&containers, &exec),
            Err(EngineError::Conflict(_))
        ));
    }
}
