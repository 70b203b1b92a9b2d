//! The child's side of a start: pid 1 in its new namespaces, until `execve`.
//!
//! [`run`] is the whole sequence, top to bottom. Each line that must come
//! before another says why. A step switches features on through the
//! [`Spec`]; it never reorders them. Whatever fails here travels to the parent
//! as `Failed(reason)` so the user reads the real cause, not "exit status 1".

use std::convert::Infallible;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Uid, chdir, execve, getpid, setresgid, setresuid};

use crate::command::{self, CommandError};
use crate::exit::codes;
use crate::ns::uts::{self, HostnameError};
use crate::ns::{Namespace, net};
use crate::rootfs::{RootfsError, binds, dev, mask, mounts, pivot, table, tmpfs};
use crate::spec::Spec;
use crate::start_gate::{GateError, StartGate};
use crate::sync::{ChildEnd, Request, SyncError};
use crate::trace::{Side, Trace};
use crate::{caps, seccomp, signals, user};

/// Why the container's set-up or exec failed, inside the child.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Talking to the parent failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// Setting the host name failed.
    #[error(transparent)]
    Hostname(#[from] HostnameError),
    /// Bringing up `lo` failed.
    #[error(transparent)]
    Loopback(#[from] net::LoopbackError),
    /// A mount, `mknod` or `pivot_root` failed.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// The command is missing or not executable.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Dropping capabilities failed.
    #[error(transparent)]
    Caps(#[from] crate::caps::CapsError),
    /// Building or installing the seccomp filter failed.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// The image's user does not exist in the container.
    #[error("{0}")]
    User(String),
    /// A resource limit could not be set (step 12).
    #[error(transparent)]
    Rlimit(#[from] crate::rlimit::RlimitError),
    /// Another system call failed.
    #[error("{call} failed: {errno}")]
    Syscall {
        /// The call, with its key argument.
        call: String,
        /// What the kernel answered.
        errno: Errno,
    },
    /// The start gate failed (step 12).
    #[error(transparent)]
    Gate(#[from] GateError),
    /// A createContainer or startContainer hook failed (step 12).
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    /// `execve` itself failed.
    #[error("cannot execute {program}: {errno}")]
    Exec {
        /// The resolved program.
        program: PathBuf,
        /// What the kernel answered.
        errno: Errno,
    },
}

impl InitError {
    /// The exit code a shell would use for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            InitError::Command(CommandError::NotFound(..)) => codes::NOT_FOUND,
            InitError::Command(CommandError::NotExecutable(_)) => codes::CANNOT_EXECUTE,
            InitError::Exec {
                errno: Errno::ENOENT,
                ..
            } => codes::NOT_FOUND,
            InitError::Exec { .. } => codes::CANNOT_EXECUTE,
            _ => codes::SETUP_FAILED,
        }
    }
}

/// Runs the child's sequence and execs the command; returns only on failure,
/// with the exit code the child should `_exit` with, after telling the parent.
///
/// `parent_mask` is the signal mask to restore before exec (see [`signals`]);
/// `born_in_cgroup`: clone3 put this process in its cgroup, so it does not
/// ask the parent to move it (see `sync::requests_for`).
pub fn run(
    spec: &Spec,
    channel: &ChildEnd,
    parent_mask: &SigSet,
    trace: &Trace,
    launch: &Launch<'_>,
    born_in_cgroup: bool,
) -> i32 {
    // A todo!() in an exercise, or a bug, must still reach the user as a reason.
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        set_up_and_exec(spec, channel, parent_mask, trace, launch, born_in_cgroup)
    }));
    let (code, reason) = match outcome {
        Ok(Ok(never)) => match never {},
        Ok(Err(error)) => (error.exit_code(), error.to_string()),
        Err(panic) => (
            codes::SETUP_FAILED,
            format!(
                "the container's set-up panicked: {}",
                crate::exit::panic_line(&*panic)
            ),
        ),
    };
    trace.step(Side::Child, format_args!("failed: {reason}"));
    channel.report_failure(code as u8, &reason);
    code
}

/// How the command is let go once the container is ready. The step
/// binaries and the engine's shim use the default: the parent stays and
/// sends `Start` on the channel. An OCI runtime's `create` (step 12)
/// leaves instead, and the child waits at a [`StartGate`] for `start`.
#[derive(Debug, Default)]
pub struct Launch<'a> {
    /// Wait here for `start`, not on the channel; no parent-death signal.
    pub gate: Option<&'a StartGate>,
    /// Descriptors 3 to 3+N-1 stay open across exec: the caller passed
    /// them on purpose (`--preserve-fds N`, e.g. sockets for systemd's
    /// socket activation). Every other one is closed.
    pub preserve_fds: u32,
}

// ANCHOR: init_sequence
fn set_up_and_exec(
    spec: &Spec,
    channel: &ChildEnd,
    parent_mask: &SigSet,
    trace: &Trace,
    launch: &Launch<'_>,
    born_in_cgroup: bool,
) -> Result<Infallible, InitError> {
    let step = |what: std::fmt::Arguments<'_>| trace.step(Side::Child, what);
    step(format_args!("I am pid {} in my PID namespace", getpid()));
    // Files we create (device nodes aside) get Docker's default permissions.
    umask(Mode::from_bits_truncate(0o022));
    // Our pid as the host sees it, for the state hooks read (step 12).
    let mut host_pid = 0;

    // ANCHOR: init_cgroup
    // 0. cgroup (step 7): the parent moves us into our cgroup while we wait,
    //    so every page and every process of the container is counted
    //    (unless clone3 had us born there: cgroup v2, `CLONE_INTO_CGROUP`).
    if born_in_cgroup {
        step(format_args!("born in my cgroup: nothing to move"));
    } else if spec.limits.is_some() {
        channel.ask(Request::EnterCgroup)?;
        step(format_args!("in my cgroup now"));
    }
    //    A cgroup namespace (step 12) is made here, not by the clone: its
    //    root is the group its maker is in at that moment, so it must be
    //    our own group, which we are in only now.
    if spec.cgroup_ns {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(syscall("unshare(CLONE_NEWCGROUP)"))?;
        step(format_args!(
            "unshare(CLONE_NEWCGROUP): my cgroup is / to me"
        ));
    }
    // ANCHOR_END: init_cgroup

    // ANCHOR: init_user_ns
    // 1. User namespace (step 6): we hold every capability in it already, but
    //    until the parent writes our maps we have no uid there (we show as
    //    `nobody`): we cannot become root, and files we create would have no
    //    owner the host understands. So this comes before all else.
    if spec.has(Namespace::User) {
        channel.ask(Request::WriteIdMaps)?;
        become_root_of_the_namespace()?;
        step(format_args!(
            "uid/gid maps written by the parent; setresgid(0), setresuid(0)"
        ));
    }
    // ANCHOR_END: init_user_ns

    // ANCHOR: init_uts
    // 2. UTS namespace (step 5): only valid in the container's own UTS
    //    namespace (new, or entered by path), which Spec::validate has checked.
    if let Some(name) = &spec.hostname {
        uts::set_hostname(name)?;
        step(format_args!("sethostname({name:?})"));
    }
    // ANCHOR_END: init_uts

    // ANCHOR: init_net
    // 3. Network namespace (step 2): `lo` starts down in a new namespace.
    //    With a network (step 8) the parent plugs our veth in first; it can
    //    because our namespace exists since the clone.
    if spec.network.is_some() {
        channel.ask(Request::ConfigureNetwork)?;
        step(format_args!("eth0 configured by the parent"));
    }
    if spec.has(Namespace::Net) {
        net::bring_up_loopback()?;
        step(format_args!("ioctl(SIOCSIFFLAGS, lo, IFF_UP)"));
    }
    // ANCHOR_END: init_net

    // ANCHOR: init_mnt
    // 4. Mount namespace (step 4): every mount below is in our copy of the
    //    mount table; the first call makes sure none of them leaks to the host.
    if let Some(root) = &spec.root {
        mounts::stop_propagation_to_host()?;
        step(format_args!("mount(\"/\", MS_SLAVE | MS_REC)"));
        // The overlay of the shared default rootfs, or of a rootless start,
        // is ours to mount (see `image::overlay::Mounter`); it is a mount
        // point already, all that pivot_root asks of the new root.
        if let Some(overlay) = &spec.root_overlay_in_child {
            if let Some(scratch) = &overlay.scratch {
                mounts::make_scratch(scratch, root)?;
                step(format_args!(
                    "mount(\"tmpfs\", {:?}); mkdir upper, work and {root:?} in it",
                    scratch.at
                ));
            }
            mounts::mount_overlay(root, &overlay.options)?;
            step(format_args!(
                "mount(\"overlay\", {root:?}, {:?})",
                overlay.options
            ));
        } else {
            mounts::bind_rootfs_onto_itself(root)?;
            step(format_args!("mount({0:?}, {0:?}, MS_BIND | MS_REC)", root));
        }
        // /proc, /dev, /sys … are mounted before pivot_root, while both the
        // rootfs and the host's /dev/null (for masking, below) are reachable.
        // A bundle of step 12 may list its own instead of the defaults.
        match &spec.mount_table {
            None => {
                mounts::mount_defaults(root)?;
                step(format_args!(
                    "mount proc, /dev (tmpfs), devpts, shm, mqueue, sysfs (ro)"
                ));
            }
            Some(table) => {
                table::mount_all(root, table, spec.cgroup_ns)?;
                step(format_args!(
                    "mounted the bundle's {} mounts",
                    table.mounts.len()
                ));
            }
        }
        dev::create_devices(&root.join("dev"))?;
        for bind in &spec.mounts {
            binds::bind_into(root, bind)?;
            step(format_args!(
                "mount({:?}, {:?} opened in the root, MS_BIND{})",
                bind.source,
                bind.target,
                if bind.read_only {
                    "; MS_REMOUNT | MS_RDONLY"
                } else {
                    ""
                }
            ));
        }
        for tmpfs in &spec.tmpfs {
            tmpfs::mount_into(root, tmpfs)?;
            step(format_args!(
                "mount(\"tmpfs\", {:?} opened in the root, {:?}, {:?})",
                tmpfs.target, tmpfs.flags, tmpfs.data
            ));
        }
        step(format_args!(
            "/dev: null zero full random urandom tty (mknod, or bind mounts in a user namespace); symlinks fd, ptmx …"
        ));
        // 4·. A bundle's hooks (step 12), while host paths still resolve:
        //     createRuntime by the parent, in the runtime's namespaces, then
        //     createContainer here, in ours. Our pid as the host sees it is
        //     read now, from the host's /proc, which we still see.
        if let Some(hooks) = &spec.hooks {
            host_pid = std::fs::read_link("/proc/self")
                .ok()
                .and_then(|p| p.to_str()?.parse().ok())
                .unwrap_or(0);
            if hooks.need_the_runtime_at_create() {
                channel.ask(Request::RunCreateHooks)?;
            }
            let state = hooks.state(&spec.id, "creating", host_pid);
            crate::hooks::run_all("createContainer", &hooks.create_container, &state)?;
            step(format_args!("hooks: createRuntime, createContainer"));
        }
        pivot::pivot_into(root)?;
        step(format_args!(
            "pivot_root(\".\", \".\"); umount2(\".\", MNT_DETACH)"
        ));
        // Kernel parameters of our namespaces (step 12), while /proc/sys
        // is still writable.
        for (key, value) in &spec.sysctl {
            let path = crate::sysctl::path_of(key);
            std::fs::write(&path, value).map_err(|e| InitError::Syscall {
                call: format!("write {} ({key})", path.display()),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
            step(format_args!("sysctl {key} = {value}"));
        }
        // Masking needs the container's /proc and /dev/null: after the pivot.
        match &spec.mount_table {
            None => {
                mask::mask_paths()?;
                mask::make_readonly_paths()?;
            }
            Some(table) => {
                mask::mask(
                    &table
                        .masked
                        .iter()
                        .map(PathBuf::as_path)
                        .collect::<Vec<_>>(),
                )?;
                mask::make_readonly(
                    &table
                        .readonly
                        .iter()
                        .map(PathBuf::as_path)
                        .collect::<Vec<_>>(),
                )?;
            }
        }
        step(format_args!(
            "masked paths hidden; /proc/sys and others read-only"
        ));
    }
    // ANCHOR_END: init_mnt

    // ANCHOR: init_cwd_fds
    // 5. The working directory (made if missing when the container has a
    //    root of its own, as Docker does; never outside that root), then
    //    make sure it is inside our root: a directory fd leaked from the host
    //    would resolve outside (CVE-2024-21626), and getcwd(2) then reports
    //    "(unreachable)".
    if spec.root.is_some() {
        make_missing_dirs(&spec.process.cwd)?;
    }
    //    `--read-only`: the root itself, last, once everything is mounted
    //    in it and the working directory exists.
    if spec.readonly_root {
        mask::make_root_readonly()?;
        step(format_args!(
            "mount(\"/\", MS_BIND | MS_REMOUNT | MS_RDONLY): the root is read-only"
        ));
    }
    chdir(&spec.process.cwd).map_err(syscall(format!("chdir({})", spec.process.cwd.display())))?;
    //    (glibc's getcwd turns that answer into ENOENT, CVE-2018-1000001.)
    match nix::unistd::getcwd() {
        Ok(cwd) if cwd.is_absolute() => {}
        Ok(_) | Err(Errno::ENOENT) => {
            return Err(RootfsError::CwdOutsideRoot(spec.process.cwd.clone()).into());
        }
        Err(errno) => return Err(syscall("getcwd")(errno)),
    }

    // 6. Nothing but stdin, stdout and stderr may cross into the command:
    //    first the caller's chosen stdio (the engine's pipes) become 0, 1 and
    //    2 (dup2 clears close-on-exec on the copy), then every other
    //    inherited file descriptor is marked close-on-exec.
    if spec.terminal {
        take_terminal(channel)?;
        step(format_args!(
            "a pty of my devpts is my 0, 1, 2 and controlling terminal"
        ));
    } else if let Some(stdio) = spec.stdio {
        for (target, fd) in stdio.into_iter().enumerate() {
            // SAFETY: dup2 only changes this process's descriptor table.
            let ret = unsafe { libc::dup2(fd, target as libc::c_int) };
            Errno::result(ret).map_err(syscall("dup2(stdio)"))?;
        }
    }
    mark_fds_close_on_exec(3 + launch.preserve_fds)?;
    // ANCHOR_END: init_cwd_fds

    // 7. Find the command now, in the container's filesystem, so a missing
    //    one is a clear error (exit 127) before we report Ready.
    let program = command::resolve(&spec.process.args[0], &spec.process.env)?;

    // 8. Privilege (step 6): rlimits, the user, capabilities and
    //    no_new_privs, as `take_privileges` orders them; the seccomp filter
    //    comes back to be installed last (or is installed already).
    let filters = take_privileges(spec, &step)?;

    // 8c. If the parent dies from here on, so do we (and with us, pid 1,
    //     the whole namespace): nobody would clean up after us otherwise.
    //     Set after the last credential change, which would clear it.
    //     Behind a start gate the parent (`create`) leaves on purpose: the
    //     caller that ran it (conmon, containerd's shim) is our parent now.
    if launch.gate.is_none() {
        prctl::set_pdeathsig(Signal::SIGKILL).map_err(syscall("prctl(PR_SET_PDEATHSIG)"))?;
    }

    // 9. Tell the parent we are ready and wait until it lets us go: on the
    //    channel, or at the start gate until `start` (step 12).
    match launch.gate {
        None => channel.ready_then_wait_for_start()?,
        Some(gate) => {
            channel.ready()?;
            step(format_args!("ready; waiting at the start gate for `start`"));
            gate.wait()?;
        }
    }

    // 9·. The startContainer hooks of a bundle (step 12): in our
    //     namespaces, as the command will run, just before it.
    if let Some(hooks) = &spec.hooks {
        let state = hooks.state(&spec.id, "created", host_pid);
        crate::hooks::run_all("startContainer", &hooks.start_container, &state)?;
    }

    // 10. Undo what the parent changed in our signal state: the blocked mask
    //    (a mask survives execve) and Rust's SIGPIPE = ignore (so does that).
    signals::restore_in_child(parent_mask).map_err(|e| InitError::Syscall {
        call: e.call.to_string(),
        errno: e.errno,
    })?;
    // SAFETY: restoring the default disposition installs no handler.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map_err(syscall("signal(SIGPIPE)"))?;
    //     And the command's umask: ours (022) made the mounts above.
    if let Some(mask) = spec.process.umask {
        umask(Mode::from_bits_truncate(mask as libc::mode_t));
    }

    // ANCHOR: init_seccomp
    // 11. seccomp, last: from here on only the calls above the filter's
    //     line are made (write to the trace, execve), and all are allowed.
    if let Some(filters) = &filters {
        filters.install()?;
        step(format_args!("seccomp filter installed ({filters})"));
    }
    // ANCHOR_END: init_seccomp

    // 11·. `--init`: we split in two; the parent stays pid 1 and reaps,
    //     the child goes on to become the command (see `crate::reaper`).
    if spec.init {
        step(format_args!(
            "fork(): I stay pid 1 and reap; my child execs"
        ));
        crate::reaper::split().map_err(syscall("fork (--init)"))?;
    }

    // 12. Become the command. On success this never returns and the channel,
    //     close-on-exec, closes: that is how the parent learns exec worked.
    step(format_args!(
        "execve({}, {:?})",
        program.display(),
        spec.process.args
    ));
    let path = command::to_cstrings(&[program.to_string_lossy().into_owned()]);
    let Err(errno) = execve(
        &path[0],
        &command::to_cstrings(&spec.process.args),
        &command::to_cstrings(&spec.process.env),
    );
    Err(InitError::Exec { program, errno })
}
// ANCHOR_END: init_sequence

// ANCHOR: init_privilege
/// Takes the process's privileges, in the one order that works: the init
/// before its command, and `exec` (step 11, step 12) for a process that
/// joins a container. Returns the seccomp filter still to install, last,
/// just before `execve` (without no_new_privs it is installed here, early).
pub(crate) fn take_privileges(
    spec: &Spec,
    step: &dyn Fn(std::fmt::Arguments<'_>),
) -> Result<Option<seccomp::Prepared>, InitError> {
    // 8. Privilege (step 6). Compile the seccomp filter while an error can
    //    still be reported plainly; drop capabilities after the mounts (they
    //    needed CAP_SYS_ADMIN) and before no_new_privs and seccomp.
    // 8·. Resource limits (step 12) first: raising a hard limit needs
    //     CAP_SYS_RESOURCE, which the next lines may drop.
    crate::rlimit::set_all(&spec.process.rlimits)?;
    let mut filters = seccomp::prepare(&spec.seccomp, spec.capabilities.as_deref())?;
    // 8b. Without no_new_privs, seccomp(2) needs CAP_SYS_ADMIN, which the
    //     drop below may take: install the filter now, as runc does (podman
    //     sends a profile without no_new_privs). The calls left before
    //     execve must then pass it.
    if let Some(early) = filters.take_if(|_| !spec.no_new_privs) {
        early.install()?;
        step(format_args!("seccomp filter installed ({early})"));
    }
    // 8a. The image's user (step 9), looked up in the container's own
    //     /etc/passwd, first: changing ids needs CAP_SETUID and CAP_SETGID,
    //     which --cap-drop may take away below. PR_SET_KEEPCAPS keeps the
    //     permitted set across the change, so the bounding set can still be
    //     cut (execve clears the flag again).
    //     A user other than root keeps these sets only until execve: with
    //     inheritable and ambient empty, the kernel gives a program run by a
    //     non-root uid no capability (capabilities(7)), only the bounding set
    //     as a ceiling, as with docker run.
    if let Some(user) = &spec.process.user {
        let uid = become_user(user, &spec.process.additional_gids)?;
        step(format_args!("user {user}: uid {uid}, capabilities kept"));
    } else if !spec.process.additional_gids.is_empty() {
        let groups: Vec<Gid> = spec
            .process
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups).map_err(syscall("setgroups"))?;
    }
    if let Some(keep) = &spec.capabilities {
        caps::raise_effective()?;
        caps::drop_capabilities(keep)?;
        step(format_args!(
            "capabilities: kept {} (mask {:#018x})",
            keep.len(),
            caps::mask(keep)
        ));
    }
    if spec.no_new_privs {
        prctl::set_no_new_privs().map_err(syscall("prctl(PR_SET_NO_NEW_PRIVS)"))?;
        step(format_args!("prctl(PR_SET_NO_NEW_PRIVS, 1)"));
    }
    Ok(filters)
}
// ANCHOR_END: init_privilege

/// Switches to the image's `user` (`NAME`, `UID`, `NAME:GROUP`, `UID:GID`),
/// keeping the permitted capabilities; returns the uid.
pub(crate) fn become_user(user: &str, additional_gids: &[u32]) -> Result<u32, InitError> {
    let (uid, gid) = user::resolve(user).map_err(InitError::User)?;
    prctl::set_keepcaps(true).map_err(syscall("prctl(PR_SET_KEEPCAPS)"))?;
    let groups: Vec<Gid> = std::iter::once(gid)
        .chain(additional_gids.iter().copied())
        .map(Gid::from_raw)
        .collect();
    nix::unistd::setgroups(&groups).map_err(syscall("setgroups"))?;
    setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid))
        .map_err(syscall("setresgid"))?;
    setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid))
        .map_err(syscall("setresuid"))?;
    Ok(uid)
}

/// Creates what is missing of the absolute directory `path`, one component
/// at a time, as `mkdir -p` would, but inside the root: through
/// [`binds::open_inside`], which follows an image's symlinks as the
/// container would see them and never a `/proc/self/fd/N` magic link (a
/// way to a directory leaked from the host). Where it cannot go on, it
/// stops, and `chdir` says what is wrong.
fn make_missing_dirs(path: &std::path::Path) -> Result<(), InitError> {
    use nix::fcntl::{OFlag, open};
    let flags = OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_PATH;
    let root = open("/", flags, Mode::empty()).map_err(syscall("open(/)"))?;
    let _ = binds::open_inside(&root, path, binds::Want::Dir);
    Ok(())
}

/// Takes the uid and gid 0 of our new user namespace (the parent has mapped
/// them to an unprivileged range of the host), and no supplementary groups.
pub(crate) fn become_root_of_the_namespace() -> Result<(), InitError> {
    // setgroups(2) is denied when an unprivileged parent wrote "deny" to
    // /proc/<pid>/setgroups; then we keep the (unmapped) groups we have.
    match nix::unistd::setgroups(&[]) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(errno) => return Err(syscall("setgroups([])")(errno)),
    }
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(syscall("setresgid(0, 0, 0)"))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(syscall("setresuid(0, 0, 0)"))
}

// ANCHOR: take_terminal
/// Makes a pty in the container's own devpts (so `tty` names it, as
/// /dev/pts/0), makes its slave end our controlling terminal and our 0, 1
/// and 2, and hands its master end to the parent, which reads and writes
/// the terminal from then on. runc does the same through its console
/// socket: the pty must come from the container's devpts, which only a
/// process inside can open.
fn take_terminal(channel: &ChildEnd) -> Result<(), InitError> {
    let (master, slave) = new_pty()?;
    use_as_terminal(&slave)?;
    channel.give_terminal(master.as_fd())?;
    Ok(())
}

/// A new pty from the devpts of the mount namespace we are in: its
/// master end and its slave end, both close-on-exec.
pub(crate) fn new_pty() -> Result<(OwnedFd, OwnedFd), InitError> {
    // EXERCISE(11): open a new pty's master (posix_openpt, O_RDWR | O_NOCTTY), grantpt and unlockpt it, open its slave by the name ptsname_r gives (O_RDWR | O_NOCTTY | O_CLOEXEC), mark the master close-on-exec; each failure is syscall("the call")
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let master = posix_openpt(nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY)
        .map_err(syscall("posix_openpt(/dev/ptmx)"))?;
    grantpt(&master).map_err(syscall("grantpt"))?;
    unlockpt(&master).map_err(syscall("unlockpt"))?;
    let name = ptsname_r(&master).map_err(syscall("ptsname"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(syscall("open(the pty's slave)"))?;
    let master = OwnedFd::from(master);
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(syscall("fcntl(FD_CLOEXEC)"))?;
    Ok((master, slave))
    // END EXERCISE
}

/// Makes `slave` this process's controlling terminal, in a new session
/// (which has none), and its 0, 1 and 2.
pub(crate) fn use_as_terminal(slave: &OwnedFd) -> Result<(), InitError> {
    nix::unistd::setsid().map_err(syscall("setsid"))?;
    // SAFETY: ioctl(TIOCSCTTY) on a descriptor we own, with an int argument.
    let ret = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(ret).map_err(syscall("ioctl(TIOCSCTTY)"))?;
    for target in 0..3 {
        // SAFETY: dup2 only changes this process's descriptor table (the
        // copies it makes are not close-on-exec: they are the command's).
        let ret = unsafe { libc::dup2(slave.as_raw_fd(), target) };
        Errno::result(ret).map_err(syscall("dup2(the pty's slave)"))?;
    }
    Ok(())
}
// ANCHOR_END: take_terminal

/// Marks every file descriptor from `first` up close-on-exec, with
/// `close_range(2)` (Linux 5.11) or, on older kernels, one `fcntl` per open
/// descriptor.
pub(crate) fn mark_fds_close_on_exec(first: u32) -> Result<(), InitError> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes flags of our own descriptors.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret == 0 {
        return Ok(());
    }
    let fds = std::fs::read_dir("/proc/self/fd").map_err(|e| InitError::Syscall {
        call: "opendir(/proc/self/fd)".into(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    for fd in fds
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        if fd >= first as i32 {
            // SAFETY: setting FD_CLOEXEC on a descriptor number is harmless
            // even if it was the directory's own and is now closed.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}

fn syscall(call: impl Into<String>) -> impl FnOnce(Errno) -> InitError {
    let call = call.into();
    move |errno| InitError::Syscall { call, errno }
}
