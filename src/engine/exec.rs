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

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::EngineError;
use super::state::{Containers, Record, Status, create_dirs, io, read_json, write_json};
use crate::init::{InitError, become_root_of_the_namespace, become_user};
use crate::ns::Namespace;
use crate::spec::Spec;

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
}

impl Exec {
    /// `GET /exec/EID/json`, Docker's fields.
    pub fn to_json(&self) -> Value {
        json!({
            "ID": self.id, "ContainerID": self.container, "Running": self.running,
            "ExitCode": self.exit_code, "Pid": self.pid,
            "ProcessConfig": {
                "entrypoint": self.cmd.first(), "arguments": self.cmd.get(1..),
                "user": self.user, "tty": false, "privileged": false,
            },
            "OpenStdin": false, "OpenStdout": true, "OpenStderr": true,
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
    if body["Tty"].as_bool() == Some(true) || body["AttachStdin"].as_bool() == Some(true) {
        return Err(bad(
            "exec -i and -t are not supported by caixa's engine yet: run exec without them",
        ));
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
    let exec = Exec {
        id: crate::ids::random_hex(32),
        container: record.id.clone(),
        cmd,
        env: strings("Env")?,
        workdir: body["WorkingDir"].as_str().unwrap_or_default().to_string(),
        user: body["User"].as_str().unwrap_or_default().to_string(),
        running: false,
        exit_code: None,
        pid: 0,
    };
    let dir = containers.dir(&record.id).join("execs");
    create_dirs(&dir, 0o700)?;
    write_json(&record_path(containers, &record.id, &exec.id), &exec)?;
    create_dirs(&index(root), 0o700)?;
    let link = index(root).join(&exec.id);
    std::fs::write(&link, &record.id).map_err(io(&link))?;
    Ok(exec)
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
/// its output to `out` as Docker's frames, and records its exit code.
pub fn start(
    exe: &Path,
    root: &Path,
    containers: &Containers,
    mut exec: Exec,
    out: &mut (dyn Write + Send),
) -> Result<(), EngineError> {
    if exec.running || exec.exit_code.is_some() {
        return Err(EngineError::Conflict(format!(
            "exec {} has already run: create another",
            exec.id
        )));
    }
    let mut child = Command::new(exe)
        .current_dir("/")
        .arg("--root")
        .arg(root)
        .args(["exec-in", &exec.container, &exec.id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| EngineError::Spawn {
            what: "step11 exec-in",
            source,
        })?;
    exec.running = true;
    exec.pid = child.id() as i32;
    let path = record_path(containers, &exec.container, &exec.id);
    write_json(&path, &exec)?;
    // Two pipes, one writer: stderr on a thread of its own, each chunk a
    // frame (`frame` writes one whole frame per call, under the lock).
    let out = std::sync::Mutex::new(out);
    let copy = |mut from: Box<dyn Read + Send>, stream: u8| {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                    if out
                        .write_all(&super::daemon::frame(stream, &buf[..n]))
                        .and_then(|()| out.flush())
                        .is_err()
                    {
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
    let status = child.wait().map_err(EngineError::Connection)?;
    exec.running = false;
    // The helper exits with its child's code (128 + N for signal N).
    exec.exit_code = Some(
        std::os::unix::process::ExitStatusExt::signal(&status)
            .map_or_else(|| status.code().unwrap_or(125), |sig| 128 + sig),
    );
    write_json(&path, &exec)
}
// ANCHOR_END: exec_start

// ANCHOR: exec_join
/// `step11 exec-in CID EID`: joins container CID and becomes exec EID's
/// command in it; returns only on failure (the exit code to use).
pub fn join(root: &Path, container: &str, id: &str) -> i32 {
    match join_and_fork(root, container, id) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("step11: exec: {e}");
            e.exit_code()
        }
    }
}

fn join_and_fork(root: &Path, container: &str, id: &str) -> Result<i32, InitError> {
    let fail = |why: String| InitError::User(why);
    let containers = Containers::open(root).map_err(|e| fail(e.to_string()))?;
    let exec: Exec = read_json(&record_path(&containers, container, id))
        .map_err(|e| fail(format!("no exec {id}: {e}")))?;
    let dir = containers.dir(container);
    let config = crate::bundle::read(&dir).map_err(|e| fail(e.to_string()))?;
    let spec =
        crate::bundle::from_oci(&config, &dir, container).map_err(|e| fail(e.to_string()))?;
    let state = containers
        .state(container)
        .map_err(|e| fail(e.to_string()))?;
    if state.status != Status::Running || state.pid <= 0 {
        return Err(fail(format!("container {container} is not running")));
    }

    // 1. A handle on pid 1 of the container that cannot come to mean
    //    another process: a pidfd. Then check it is the container's: its
    //    cgroup is named by the container's id, and it is still alive
    //    after that read (so the read was of the same process).
    let pidfd = pidfd_open(state.pid)?;
    let cgroups =
        std::fs::read_to_string(format!("/proc/{}/cgroup", state.pid)).unwrap_or_default();
    if !cgroups.contains(container) || pidfd_signal(&pidfd, 0).is_err() {
        return Err(fail(format!("container {container} has ended")));
    }

    // 2. Its cgroup, while we are still host root: one write per directory.
    if let Ok(hierarchy) = crate::cgroup::detect() {
        for group in hierarchy.planned_dirs(container) {
            let procs = group.join("cgroup.procs");
            if group.is_dir() {
                std::fs::write(&procs, std::process::id().to_string())
                    .map_err(|e| fail(format!("cannot enter {}: {e}", procs.display())))?;
            }
        }
    }

    // 3. Its namespaces, all in one call: setns(2) on a pidfd joins every
    //    namespace named in the flags at once, the user namespace first (so
    //    the others, which it owns, may be joined), and changes our root
    //    and working directory to the container's.
    join_namespaces(&pidfd, &spec.namespaces)?;
    drop(pidfd);

    // 4. A new pid namespace is entered by children only: fork.
    // SAFETY: this process is single-threaded (a fresh exec of step11).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let e = become_the_command(&spec, &exec).unwrap_err();
            eprintln!("step11: exec: {e}");
            std::process::exit(e.exit_code())
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => loop {
            match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => {
                    return Ok(128 + sig as i32);
                }
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(InitError::Syscall {
                        call: "waitpid".into(),
                        errno,
                    });
                }
            }
        },
        Err(errno) => Err(InitError::Syscall {
            call: "fork".into(),
            errno,
        }),
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

/// The child, inside: the container's privileges, in init's order.
fn become_the_command(spec: &Spec, exec: &Exec) -> Result<std::convert::Infallible, InitError> {
    // Until execve, this process is step11: not dumpable, so the container's
    // processes cannot open /proc/N/exe, our host binary (CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).map_err(|errno| InitError::Syscall {
        call: "prctl(PR_SET_DUMPABLE, 0)".into(),
        errno,
    })?;
    if spec.has(Namespace::User) {
        become_root_of_the_namespace()?;
    }
    let mut env = spec.process.env.clone();
    super::request::apply_env(&mut env, &exec.env);
    let cwd = match exec.workdir.as_str() {
        "" => spec.process.cwd.clone(),
        dir => PathBuf::from(dir),
    };
    nix::unistd::chdir(&cwd).map_err(|errno| InitError::Syscall {
        call: format!("chdir({})", cwd.display()),
        errno,
    })?;
    // Nothing of the host crosses: 0, 1, 2 are the daemon's pipes, and
    // every other descriptor closes at execve (CVE-2024-21626).
    crate::init::mark_fds_close_on_exec()?;
    let program = crate::command::resolve(&exec.cmd[0], &env)?;
    let filters = match spec.seccomp {
        true => Some(crate::seccomp::default_filters(
            spec.capabilities.as_deref(),
        )?),
        false => None,
    };
    let user = match exec.user.as_str() {
        "" => spec.process.user.clone(),
        user => Some(user.to_string()),
    };
    if let Some(user) = &user {
        become_user(user)?;
    }
    if let Some(keep) = &spec.capabilities {
        crate::caps::raise_effective()?;
        crate::caps::drop_capabilities(keep)?;
    }
    if spec.no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(|errno| InitError::Syscall {
            call: "prctl(PR_SET_NO_NEW_PRIVS)".into(),
            errno,
        })?;
    }
    if let Some(filters) = &filters {
        crate::seccomp::install(filters)?;
    }
    let errno = nix::unistd::execve(
        &std::ffi::CString::new(program.as_os_str().as_encoded_bytes())
            .map_err(|_| InitError::User("a NUL in the program's path".into()))?,
        &crate::command::to_cstrings(&exec.cmd),
        &crate::command::to_cstrings(&env),
    )
    .unwrap_err();
    Err(InitError::Exec { program, errno })
}
// ANCHOR_END: exec_join

/// pidfd_open(2): a descriptor for process `pid` that never means another.
fn pidfd_open(pid: i32) -> Result<OwnedFd, InitError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(InitError::Syscall {
            call: "pidfd_open(the container's pid 1)".into(),
            errno: Errno::last(),
        });
    }
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// pidfd_send_signal(2); signal 0 checks that the process is alive.
fn pidfd_signal(pidfd: &OwnedFd, signal: i32) -> Result<(), Errno> {
    // SAFETY: a signal through a pidfd we own, with no siginfo.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}
