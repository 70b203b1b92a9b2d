//! The parent's side of a start: everything done from the host.
//!
//! [`start`] is the sequence up to the running command, top to bottom, and
//! with [`Running::wait`] the only place that decides the order: it validates
//! the plan, makes the host side (`Host::prepare`), clones the child into
//! its new namespaces, answers the child's requests in the protocol's order,
//! and lets it exec. [`Running::wait`] forwards signals until the container
//! ends; [`Running::finish`] tears the host side down in the one order
//! `Host::teardown` gives, on every path. [`run`] is both, for the step
//! binaries; the engine's shim calls `start` and waits in its own loop.

use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal, kill, signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::cgroup::{Birthplace, Cgroup, CgroupError};
use crate::exit::{Exit, codes};
use crate::idmap::{self, IdMapError};
use crate::init::{self, Launch};
use crate::leftovers::{self, Made, Record};
use crate::ns::clone::{Forked, clone_child, clone_child_into};
use crate::ns::{self, Namespace};
use crate::signals::{self, SignalError};
use crate::spec::{Spec, SpecError};
use crate::sync::{self, FromChild, Request, SyncError};
use crate::trace::{Side, Trace};

/// Why a container did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rootless start cannot do what the spec asks (see [`crate::rootless`]).
    #[error(transparent)]
    Rootless(#[from] crate::rootless::RootlessError),
    /// The plan is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A createRuntime hook failed (step 12).
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    /// A namespace the bundle names by path could not be entered.
    #[error(transparent)]
    Enter(#[from] crate::ns::enter::EnterError),
    /// The kernel has no such namespace at all.
    #[error(
        "this kernel has no {0} namespace (/proc/self/ns/{proc} is missing): use a kernel built with {opt}",
        proc = .0.proc_name(), opt = .0.kernel_option()
    )]
    NoKernelSupport(Namespace),
    /// `clone3` refused.
    #[error("{}", clone_advice(.flags, *.errno))]
    Clone {
        /// The flags, spelled out.
        flags: String,
        /// What the kernel answered.
        errno: Errno,
    },
    /// Blocking or waiting for signals failed.
    #[error(transparent)]
    Signals(#[from] SignalError),
    /// The parent/child channel failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// Creating, joining or removing the cgroup failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// Preparing the image's root failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// Setting up the network failed.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    /// The child asked for something this spec does not provide.
    #[error("the child asked for {0:?}, which this container's spec does not provide")]
    Unexpected(Request),
    /// The child's requests came in another order than the protocol's.
    #[error("the child asked for {got:?} where the protocol expects {expected:?} next")]
    OutOfOrder {
        /// What the protocol expects now.
        expected: Request,
        /// What came.
        got: Request,
    },
    /// The child said it was ready before asking for everything it needs.
    #[error("the child said it was ready before asking for {0:?}")]
    ReadyTooSoon(Request),
    /// Writing the uid/gid maps failed.
    #[error(transparent)]
    IdMap(#[from] IdMapError),
    /// The record of what this start makes could not be written.
    #[error(
        "cannot write {path}: {source}: caixa records there what a container makes, to clean up after a killed start; set CAIXA_STATE_DIR to a writable directory"
    )]
    Record {
        /// The records' directory.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The child failed during set-up or exec; `reason` is its own words.
    #[error("{reason}")]
    Container {
        /// Exit code to use (125, 126 or 127).
        code: u8,
        /// The real cause, from the child.
        reason: String,
    },
}

impl Error {
    /// The exit code the step binary ends with: Docker's 125/126/127.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Container { code, .. } => i32::from(*code),
            _ => codes::SETUP_FAILED,
        }
    }
}

fn clone_advice(flags: &str, errno: Errno) -> String {
    if crate::rootless::active() && matches!(errno, Errno::EPERM | Errno::EACCES | Errno::ENOSPC) {
        if let Some(why) = crate::rootless::userns_refused(errno) {
            return format!("clone({flags}) failed: {why}");
        }
    }
    let advice = match errno {
        Errno::EINVAL => {
            "the kernel does not support one of these namespaces; `ls /proc/self/ns` lists those it has"
        }
        Errno::EPERM => {
            "run as root; inside a container or sandbox, its seccomp profile may forbid new namespaces"
        }
        Errno::ENOSPC => {
            "too many namespaces of one kind exist: see /proc/sys/user/max_*_namespaces"
        }
        Errno::ENOMEM => "out of memory",
        _ => "see clone(2)",
    };
    format!("clone({flags}) failed: {errno}: {advice}")
}

/// The child, killed and reaped if we leave before it ends on its own.
#[derive(Debug)]
struct Child {
    pid: Pid,
    reaped: bool,
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // It is pid 1 of its PID namespace: killing it ends every process
            // in the namespace, so nothing is left behind.
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// How a container ended.
#[derive(Debug)]
pub struct Ended {
    /// Its exit code or the signal that killed it.
    pub exit: Exit,
    /// Whether the kernel's OOM killer killed a process of it (step 7).
    pub oom_killed: bool,
    /// Clean-up that failed after the container ended (reported beside the
    /// exit code, never instead of it).
    pub cleanup_errors: Vec<String>,
    /// Where the container's changes were kept (`--keep`, step 9).
    pub kept: Option<std::path::PathBuf>,
}

// ANCHOR: parent_sequence
/// Starts a container from `spec`, waits for it to end and returns how.
///
/// The calling process must be single-threaded (the child is cloned the way
/// `fork` works, see [`crate::ns::clone`]); the step binaries are.
pub fn run(spec: &Spec) -> Result<Ended, Error> {
    start(spec)?.wait()
}

/// Starts a container from `spec` and returns once its command runs: steps
/// 1 to 7 of the sequence. [`Running::wait`] is the rest. The engine's shim
/// calls this and then waits in its own loop (it also copies the output).
pub fn start(spec: &Spec) -> Result<Running, Error> {
    launch(spec, &Launch::default())
}

/// `create` of an OCI runtime (step 12): the same sequence as [`start`] up
/// to the child's `Ready`, but the child then waits at `launch.gate` for
/// `start`, and this process may leave: [`Running::hand_over`].
pub fn create(spec: &Spec, launch: &Launch<'_>) -> Result<Running, Error> {
    self::launch(spec, launch)
}

/// Steps 1 to 6 ([`launch_until_ready`]), then 7 ([`Ready::start`]),
/// unless a start gate keeps the child waiting there for `start` (step 12).
fn launch(spec: &Spec, launch: &Launch<'_>) -> Result<Running, Error> {
    let ready = launch_until_ready(spec, launch)?;
    if launch.gate.is_some() {
        let trace = &ready.running.trace;
        trace.step(
            Side::Parent,
            format_args!("created: the child waits at the start gate"),
        );
        return Ok(ready.running);
    }
    ready.start()
}

/// Steps 1 to 6: everything but the exec, which the child, `Ready`, waits
/// on the channel for.
fn launch_until_ready(spec: &Spec, launch: &Launch<'_>) -> Result<Ready, Error> {
    let trace = Trace::new(spec.verbose);
    let step = |what: std::fmt::Arguments<'_>| trace.step(Side::Parent, what);

    // 1. Refuse what cannot work before anything exists, one clear line each.
    //    Started by an ordinary user, the container gets a user namespace
    //    first and only what needs no root on the host (`crate::rootless`).
    let adapted;
    let spec = if crate::rootless::active() {
        adapted = crate::rootless::adapt(spec)?;
        &adapted
    } else {
        spec
    };
    spec.validate()?;
    if spec.user_network.is_some() && !crate::rootless::active() {
        return Err(crate::net::NetError::PastaAsRoot.into());
    }
    if let Some(missing) = ns::first_unsupported(&spec.namespaces) {
        return Err(Error::NoKernelSupport(missing));
    }
    let spec = &with_absolute_root(spec);

    // 2. Block the signals we forward, and SIGCHLD, before the child exists:
    //    one that arrives during set-up then waits for us instead of being lost.
    //    SIGCHLD may have been ignored by whoever started us; we need it.
    // SAFETY: restoring the default disposition installs no handler.
    let _ = unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) };
    let signals = signals::block()?;

    // 3. The channel, before the clone, so both processes hold an end.
    let (parent_end, child_end) = sync::channel()?;

    // 4. The host side (record, cgroup, network, image root), made in the
    //    order `Host::prepare` shows. Declared before `child`: on an early
    //    return the child drops first (killed and reaped), then the host
    //    side is torn down, in the one order `Host::teardown` gives.
    let mut host = Host::prepare(spec, &trace)?;

    // What the child needs to know of the host side: files to bind, its root.
    let prepared;
    let spec = if host.network.is_some() || host.user_files.is_some() || host.image_root.is_some() {
        let mut s = spec.clone();
        if let Some(net) = &host.network {
            s.mounts.extend(net.mounts());
        }
        if let Some(dir) = &host.user_files {
            s.mounts.extend(crate::net::files::mounts(dir));
        }
        if let Some(mounted) = &host.image_root {
            s.root = Some(mounted.merged.clone());
            s.root_overlay_in_child = mounted.in_child.clone();
        }
        prepared = s;
        &prepared
    } else {
        spec
    };

    // ANCHOR: parent_clone
    // 5. Clone the child into its new namespaces. Those a bundle names by
    //    path (step 12) the parent enters for the clone only: the child is
    //    born in them, and `entered` takes the parent back when dropped.
    //    The child is born in its cgroup (step 7's harder exercise): on v2
    //    by clone3's CLONE_INTO_CGROUP, on v1 because our thread visits the
    //    group for the clone. Then it never has to be moved, which waits
    //    for the kernel's global cgroup lock.
    let entered = ns::enter::enter(&spec.entered)?;
    let flags = ns::clone_flags(&spec.namespaces);
    let birthplace = match &host.cgroup {
        Some(cg) => cg.birthplace()?,
        None => None,
    };
    let described = ns::describe_flags(&spec.namespaces);
    let (forked, born_in_cgroup) = clone_maybe_into(flags, &described, birthplace, &trace)?;
    let child = match forked {
        Ok(Forked::Child) => {
            drop(parent_end);
            let code = init::run(
                spec,
                &child_end,
                &signals.previous(),
                &trace,
                launch,
                born_in_cgroup,
            );
            // _exit: no destructors or atexit handlers of the parent's copy run.
            // SAFETY: ends this (child) process.
            unsafe { libc::_exit(code) }
        }
        Ok(Forked::Parent(pid)) => {
            drop(entered);
            Child { pid, reaped: false }
        }
        Err(errno) if born_in_cgroup => {
            return Err(Error::Clone {
                flags: format!("{described}|CLONE_INTO_CGROUP"),
                errno,
            });
        }
        Err(errno) => {
            return Err(Error::Clone {
                flags: described,
                errno,
            });
        }
    };
    drop(child_end);
    step(format_args!("child is pid {} on the host", child.pid));
    // ANCHOR_END: parent_clone

    // ANCHOR: parent_requests
    // 6. Answer the child's requests. The protocol has one order, which the
    //    spec decides (see `sync::requests_for`): each message must be the
    //    one expected next, or the start fails; nothing is done twice.
    let mut terminal = None;
    for expected in sync::requests_for(spec, born_in_cgroup) {
        let (message, fd) = parent_end.next_from_child_with_fd()?;
        match message {
            FromChild::Request(request) if request == expected => {}
            FromChild::Request(other) => {
                return Err(Error::OutOfOrder {
                    expected,
                    got: other,
                });
            }
            FromChild::Ready => return Err(Error::ReadyTooSoon(expected)),
            FromChild::Failed { code, reason } => return Err(Error::Container { code, reason }),
        }
        match expected {
            Request::EnterCgroup => {
                if let Some(cg) = &host.cgroup {
                    cg.enter(child.pid)?;
                    step(format_args!(
                        "wrote {} to cgroup.procs (cgroup v{})",
                        child.pid,
                        cg.version()
                    ));
                }
            }
            Request::WriteIdMaps => {
                if crate::rootless::active() {
                    crate::rootless::write_maps(child.pid, &spec.uid_map, &spec.gid_map)?;
                } else {
                    idmap::write_maps(child.pid, &spec.uid_map, &spec.gid_map)?;
                }
                step(format_args!(
                    "wrote /proc/{}/uid_map and gid_map",
                    child.pid
                ));
            }
            Request::ConfigureNetwork => {
                for net in host.network.iter_mut().chain(host.joined.iter_mut()) {
                    net.connect(child.pid, &trace)?;
                    let (interface, address) = (net.interface(), net.address);
                    step(format_args!("container connected: {interface} {address}"));
                }
            }
            Request::TakeTerminal => {
                terminal = Some(fd.ok_or(Error::Unexpected(Request::TakeTerminal))?);
                step(format_args!("took the terminal's master end"));
            }
            Request::RunCreateHooks => {
                if let Some(hooks) = &spec.hooks {
                    let state = hooks.state(&spec.id, "creating", child.pid.as_raw());
                    crate::hooks::run_all("createRuntime", &hooks.create_runtime, &state)?;
                    step(format_args!("ran the createRuntime hooks"));
                }
            }
        }
        parent_end.done()?;
    }
    match parent_end.next_from_child()? {
        FromChild::Ready => {}
        FromChild::Request(other) => return Err(Error::Unexpected(other)),
        FromChild::Failed { code, reason } => return Err(Error::Container { code, reason }),
    }
    // ANCHOR_END: parent_requests

    // ANCHOR: parent_user_network
    // 6b. A user-mode network (`--network pasta`, rootless): pasta joins the
    //     child's user and network namespaces, which exist with their maps
    //     by now, and makes its tap interface; the child waits to exec, so
    //     its command starts with a way out.
    if let Some(net) = &spec.user_network {
        host.user_network = Some(crate::net::usermode::start(net, child.pid, &trace)?);
    }
    // ANCHOR_END: parent_user_network

    Ok(Ready {
        running: Running {
            id: spec.id.clone(),
            child,
            host,
            signals,
            trace,
            terminal,
        },
        channel: parent_end,
    })
}

/// A container made up to its last step: its child waits on the channel
/// for the word to exec. [`prepare`] returns one; [`Ready::start`] gives
/// the word.
#[derive(Debug)]
pub struct Ready {
    running: Running,
    channel: sync::ParentEnd,
}

/// Steps 1 to 6 of [`start`]: everything up to the exec, which waits for
/// [`Ready::start`]. The engine's shim parks a container here between
/// `create` and `start`. Dropped, the child is killed and the host side
/// torn down, as for [`Running`].
pub fn prepare(spec: &Spec) -> Result<Ready, Error> {
    launch_until_ready(spec, &Launch::default())
}

impl Ready {
    /// 7. Lets the child exec, and learns whether the exec worked: its end
    ///    of the channel is close-on-exec, so end-of-file means success.
    pub fn start(self) -> Result<Running, Error> {
        self.channel.start()?;
        if let Some((code, reason)) = self.channel.wait_for_exec()? {
            return Err(Error::Container { code, reason });
        }
        self.running.trace.step(
            Side::Parent,
            format_args!("the command runs; forwarding signals until it ends"),
        );
        Ok(self.running)
    }
}
// ANCHOR_END: parent_sequence

/// A container whose command runs; it ends with [`Running::wait`] (the step
/// binaries) or [`Running::finish`] (a caller that reaps it itself).
///
/// Dropped without either, the container is killed and the host side torn
/// down. The fields drop in their order: the child first, then the host side.
#[derive(Debug)]
pub struct Running {
    id: String,
    child: Child,
    host: Host,
    signals: signals::Blocked,
    trace: Trace,
    terminal: Option<std::os::fd::OwnedFd>,
}

impl Running {
    /// The terminal's master end (the spec asked for one): whoever holds it
    /// reads what the container writes and writes what it reads.
    pub fn take_terminal(&mut self) -> Option<std::os::fd::OwnedFd> {
        self.terminal.take()
    }

    /// The container's pid 1, as the host sees it.
    pub fn pid(&self) -> Pid {
        self.child.pid
    }

    // ANCHOR: rejoin
    /// Brings the networks the container joined later in line with
    /// `wanted` (as its bundle lists them now) while it runs: unplugs each
    /// one no longer listed, then plugs in each new one on the lowest free
    /// `ethN`. What `docker network connect` and `disconnect` come down to
    /// (step 11): the same lease, veth and hosts files as a start's, on a
    /// live network namespace. Returns what changed, one line each.
    pub fn rejoin(&mut self, wanted: &[crate::net::NetworkSpec]) -> Result<Vec<String>, Error> {
        let mut said = Vec::new();
        let (joined, trace) = (&mut self.host.joined, &self.trace);
        // 1. Out: the pair is deleted, the address given back.
        while let Some(i) = joined
            .iter()
            .position(|j| !wanted.iter().any(|w| w.bridge == j.bridge()))
        {
            let mut gone = joined.remove(i);
            gone.release(trace)?;
            said.push(format!("{} left {}", gone.interface(), gone.bridge()));
        }
        // 2. In: a lease, then a pair into the running namespace.
        for net in wanted {
            if joined.iter().any(|j| j.bridge() == net.bridge) {
                continue;
            }
            let taken: Vec<u8> = joined.iter().map(|j| j.spec().interface).collect();
            let interface = (1..=9).find(|i| !taken.contains(i)).ok_or_else(|| {
                crate::net::NetError::Invalid("a container is on 10 networks at most".into())
            })?;
            let net = crate::net::NetworkSpec {
                interface,
                ..net.clone()
            };
            let mut plugged = crate::net::Prepared::new(&net, &self.id, "", trace)?;
            plugged.connect(self.child.pid, trace)?;
            said.push(format!(
                "{} joined {} as {}",
                plugged.interface(),
                net.bridge,
                plugged.address
            ));
            joined.push(plugged);
        }
        Ok(said)
    }
    // ANCHOR_END: rejoin

    /// The signals this start blocked (the forwarded ones and SIGCHLD): a
    /// caller with its own loop reads them from a signalfd of this set.
    pub fn blocked(&self) -> &signals::Blocked {
        &self.signals
    }

    /// Steps 8 and 9: waits for the container to end, passing on the
    /// signals we receive, then tears the host side down.
    pub fn wait(self) -> Result<Ended, Error> {
        // 8. Wait for it to end, passing on the signals we receive.
        let exit = self.signals.wait_for_exit(self.child.pid)?;
        Ok(self.finish(exit))
    }

    /// Reaps the container if it has ended (never blocks).
    pub fn try_reap(&mut self) -> Result<Option<Exit>, SignalError> {
        let exit = signals::try_reap(self.child.pid)?;
        if exit.is_some() {
            // Reaped: its pid may be reused now, never signal it again.
            self.child.reaped = true;
        }
        Ok(exit)
    }

    /// Sends `signal` to the container's pid 1 (ESRCH, already gone, is fine).
    pub fn signal(&self, signal: Signal) {
        if !self.child.reaped {
            let _ = kill(self.child.pid, signal);
        }
    }

    /// `create` is done (step 12): leaves the container to whoever waits
    /// for it (the caller of `create`, a subreaper such as conmon) and the
    /// host side to `delete`. The child is not killed, the cgroup and the
    /// image's root stay, and the record of what was made moves to
    /// `record_to`, out of [`leftovers::sweep`]'s sight: this process's
    /// end is not the container's. Returns the child's pid.
    pub fn hand_over(mut self, record_to: &Path) -> Result<Pid, Error> {
        // On failure nothing was handed over: dropping `self` kills the
        // child and tears the host side down, as on any failed start.
        self.host.hand_over(record_to)?;
        self.child.reaped = true;
        Ok(self.child.pid)
    }

    // ANCHOR: parent_cleanup
    /// Step 9: the container has ended with `exit` (reaped by
    /// [`Running::wait`] or [`Running::try_reap`]): its namespaces went with
    /// its last process; now the host side goes, in `Host::teardown`'s order.
    pub fn finish(mut self, exit: Exit) -> Ended {
        self.child.reaped = true;
        self.trace.step(
            Side::Parent,
            format_args!("container ended: {exit:?}, exit code {}", exit.code()),
        );
        let torn = self.host.teardown(&self.trace);
        Ended {
            exit,
            oom_killed: torn.oom_killed,
            cleanup_errors: torn.errors,
            kept: torn.kept,
        }
    }
    // ANCHOR_END: parent_cleanup

    /// [`Running::finish`], all but the image's root and the cgroup: the
    /// network goes now (its lease is shared); the cgroup (its OOM counter
    /// read first) and the root, still mounted, stay with the record of the
    /// start in the [`Root`] returned, for the caller to remove when it
    /// chooses. Unmounting an overlay takes 1–3 ms on this machine kind
    /// (the kernel tears the filesystem down before `umount2` returns), and
    /// a cgroup in each v1 controller's tree a few `rmdir`s more: the
    /// engine's shim answers a `run --rm` first, and pays for them after.
    pub fn finish_but_root(mut self, exit: Exit) -> (Ended, Option<Root>) {
        let oom_killed = self.host.cgroup.as_ref().is_some_and(Cgroup::oom_killed);
        let mut root = self.host.image_root.take().map(|mounted| {
            let mut host = Host::empty();
            host.image_root = Some(mounted);
            host.cgroup = self.host.cgroup.take();
            // The record goes with the root and is closed after it: a shim
            // killed before the unmount leaves the record for the sweep.
            host.record = self.host.record.take();
            Root { host }
        });
        let mut ended = self.finish(exit);
        ended.oom_killed |= oom_killed;
        if !ended.cleanup_errors.is_empty() {
            // Something else was left: the record stays on disk (dropped,
            // not closed) for the next sweep, whatever the root's end.
            drop(root.as_mut().and_then(|root| root.host.record.take()));
        }
        (ended, root)
    }
}

/// An ended container's root, still mounted, and the record of its start:
/// what [`Running::finish_but_root`] leaves. Removed by [`Root::remove`],
/// or when dropped (its `Host`'s teardown, as on any error path).
#[derive(Debug)]
pub struct Root {
    host: Host,
}

impl Root {
    /// The container's directory was renamed to `dir` (a removal hides it
    /// first): the mount moved with it, and so does where it is looked for.
    pub fn moved_to(&mut self, dir: &Path) {
        if let Some(mounted) = &mut self.host.image_root {
            mounted.moved_to(dir);
        }
    }

    /// Unmounts the root (and deletes it, unless it is kept), then closes
    /// the record; returns what could not be done, one line each.
    pub fn remove(mut self) -> Vec<String> {
        self.host.teardown(&Trace::new(false)).errors
    }
}

/// Everything a start makes on the host, outside the container's own
/// namespaces: what must be undone when it ends, on every path.
#[derive(Debug)]
struct Host {
    /// The record of what is made, so a killed start is swept later.
    record: Option<Record>,
    cgroup: Option<Cgroup>,
    network: Option<crate::net::Prepared>,
    /// The networks it joined later (`eth1`…), beside `network`.
    joined: Vec<crate::net::Prepared>,
    /// The pasta process of a user-mode network, which outlives the
    /// container unless stopped.
    user_network: Option<crate::net::usermode::Pasta>,
    /// The directory of a user-mode network's `/etc` files.
    user_files: Option<std::path::PathBuf>,
    /// The overlay that is the container's `/`: an image's, or one over
    /// the shared default rootfs.
    image_root: Option<crate::image::overlay::Mounted>,
    torn_down: bool,
}

/// What [`Host::teardown`] found and could not undo.
#[derive(Debug, Default)]
struct TornDown {
    oom_killed: bool,
    errors: Vec<String>,
    kept: Option<std::path::PathBuf>,
}

impl Host {
    /// Nothing made yet.
    fn empty() -> Host {
        Host {
            record: None,
            cgroup: None,
            network: None,
            joined: Vec::new(),
            user_network: None,
            user_files: None,
            image_root: None,
            torn_down: false,
        }
    }

    /// Makes the host side of `spec`, each piece written in the record
    /// before it exists. On an error, what was made so far is torn down
    /// (by `Drop`, which runs `teardown`).
    fn prepare(spec: &Spec, trace: &Trace) -> Result<Host, Error> {
        let mut host = Host::empty();
        // ANCHOR: parent_record
        // 4a. What outlives a process (cgroups, the image's mount and upper
        //     directory) is written in a record before it is made, so that a
        //     start killed with SIGKILL leaves nothing for good: the next start
        //     sweeps the records of dead starts (see `crate::leftovers`), or,
        //     for the engine's shims, their daemon does (`sweep_leftovers`).
        //     (The cgroup layout is read once, here, for the record and 4b;
        //     rootless, the root to make groups in is the delegated group.)
        let hierarchy = match &spec.limits {
            Some(limits) if crate::rootless::active() => {
                let delegated = crate::cgroup::delegation::find(&crate::cgroup::detect()?)
                    .map_err(|why| crate::rootless::RootlessError::Limits { why })?;
                let needed = crate::cgroup::v2::needed(limits);
                Some(crate::cgroup::delegation::prepare(
                    &delegated, &needed, trace,
                )?)
            }
            Some(_) => Some(crate::cgroup::detect()?),
            None => None,
        };
        if spec.limits.is_some() || spec.image.is_some() || spec.root_overlay {
            if spec.sweep_leftovers {
                for line in leftovers::sweep() {
                    eprintln!("caixa: {line}");
                }
            }
            let record_err = |source| Error::Record {
                path: leftovers::records_dir(),
                source,
            };
            let mut record = Record::create(&spec.id).map_err(record_err)?;
            let group = spec.limits.as_ref().map(|l| l.group(&spec.id));
            for dir in hierarchy
                .iter()
                .zip(&group)
                .flat_map(|(h, g)| h.planned_dirs(g))
            {
                record.note(&Made::Cgroup(dir)).map_err(record_err)?;
            }
            if let Some(image) = &spec.image {
                let dir = image.container_dir(&spec.id);
                let made = if image.keep {
                    Made::KeptOverlay(dir)
                } else {
                    Made::Overlay(dir)
                };
                record.note(&made).map_err(record_err)?;
            }
            if let (true, Some(root)) = (spec.root_overlay, &spec.root) {
                let dir = crate::image::overlay::shared_root_dir(root, &spec.id);
                record.note(&Made::Overlay(dir)).map_err(record_err)?;
            }
            host.record = Some(record);
        }
        // ANCHOR_END: parent_record

        // ANCHOR: parent_cgroup
        // 4b. The cgroup (step 7), with its limits written, before the child
        //     exists, so it is counted from its first page.
        if let (Some(limits), Some(hierarchy)) = (&spec.limits, hierarchy) {
            host.cgroup = Some(Cgroup::create(hierarchy, &spec.id, limits, trace)?);
        }
        // ANCHOR_END: parent_cgroup

        // ANCHOR: parent_network
        // 4c. The network (step 8): bring the bridge up if this is its first
        //     container, lease an address and write /etc/hosts and friends,
        //     which the child bind-mounts: so this comes before the clone.
        if let Some(net) = &spec.network {
            let hostname = spec.hostname.as_deref().unwrap_or(&spec.id);
            host.network = Some(crate::net::Prepared::new(net, &spec.id, hostname, trace)?);
        }
        for net in &spec.joined_networks {
            let joined = crate::net::Prepared::new(net, &spec.id, "", trace)?;
            host.joined.push(joined);
        }
        //     A user-mode network has its files too; pasta itself starts
        //     once the child's namespaces exist (block 6).
        if let Some(net) = &spec.user_network {
            let hostname = spec.hostname.as_deref().unwrap_or(&spec.id);
            let dir = crate::net::files::dir(&crate::net::state_dir(), &spec.id);
            host.user_files = Some(dir.clone());
            net.write_files(&dir, hostname)?;
        }
        // ANCHOR_END: parent_network

        // ANCHOR: parent_image
        // 4d. The image's root (step 9): unpack its layers on first use and
        //     mount the overlay, before the clone, so the child's copy of the
        //     mount table starts with it.
        if let Some(image) = &spec.image {
            let mounted = crate::image::overlay::prepare(image, &spec.id, &shift_of(spec), trace)?;
            host.image_root = Some(rootless_root(mounted, spec)?);
        }
        // 4e. The default rootfs (steps 6–8) is one tree every container
        //     shares: each gets a copy-on-write overlay of it, like an image
        //     of one layer, so what one writes the next never sees. Same
        //     place, same record and teardown as an image's root.
        if let (true, Some(root)) = (spec.root_overlay, &spec.root) {
            let user_ns = spec.has(crate::ns::Namespace::User);
            let mounted = crate::image::overlay::over_shared_root(root, &spec.id, user_ns, trace)?;
            host.image_root = Some(rootless_root(mounted, spec)?);
        }
        // ANCHOR_END: parent_image
        Ok(host)
    }

    /// See [`Running::hand_over`]. A network is refused before this point
    /// (the runtime leaves networks to its caller, as runc does).
    fn hand_over(&mut self, record_to: &Path) -> Result<(), Error> {
        // The record first: it is the one step that can fail, and until it
        // has moved, a failure leaves everything to the usual teardown.
        if let Some(record) = self.record.take() {
            record
                .hand_over(record_to)
                .map_err(|source| Error::Record {
                    path: record_to.to_path_buf(),
                    source,
                })?;
        }
        self.torn_down = true;
        // Their Drop would remove them: they are `delete`'s now.
        std::mem::forget(self.cgroup.take());
        std::mem::forget(self.image_root.take());
        std::mem::forget(self.network.take());
        std::mem::forget(self.user_network.take());
        std::mem::forget(std::mem::take(&mut self.joined));
        Ok(())
    }

    // ANCHOR: host_teardown
    /// Undoes the host side, in the one order used on every path (success
    /// and every error), collecting failures instead of stopping at the
    /// first. The container's processes are gone already: the caller killed
    /// and reaped its pid 1, and the PID namespace died with it.
    fn teardown(&mut self, trace: &Trace) -> TornDown {
        let mut torn = TornDown::default();
        if std::mem::replace(&mut self.torn_down, true) {
            return torn;
        }
        // 1. Read the OOM counter while the cgroup still exists.
        torn.oom_killed = self.cgroup.as_ref().is_some_and(Cgroup::oom_killed);
        // 2. The network first: its lease, port rules and (for the network's
        //    last container) bridge are shared with other containers, which
        //    must not see a port published to an address nobody holds.
        //    The networks joined later go before the first, which owns the
        //    container's files their release rewrites.
        //    Their veth pairs went with the container's network namespace.
        for mut net in std::mem::take(&mut self.joined).into_iter().rev() {
            net.namespace_gone();
            if let Err(e) = net.release(trace) {
                torn.errors.push(e.to_string());
            }
        }
        if let Some(mut net) = self.network.take() {
            net.namespace_gone();
            if let Err(e) = net.release(trace) {
                torn.errors.push(e.to_string());
            }
        }
        if let Some(pasta) = self.user_network.take() {
            pasta.stop(trace);
        }
        if let Some(dir) = self.user_files.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        // 3. The cgroup: rmdir(2) succeeds only once it has no process, which
        //    is true now that pid 1 (and so its namespace) is gone.
        if let Some(mut cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy() {
                torn.errors.push(e.to_string());
            }
        }
        // 4. The image's root last: it was every process's `/`; unmounted
        //    (MNT_DETACH) and its changes deleted unless kept.
        if let Some(mounted) = self.image_root.take() {
            match mounted.remove() {
                Ok(upper) => torn.kept = upper,
                Err(e) => torn.errors.push(e.to_string()),
            }
        }
        // 5. All gone: the record goes too. Left behind when something could
        //    not be removed, so the next start tries again.
        if let Some(record) = self.record.take() {
            if torn.errors.is_empty() {
                record.close();
            }
        }
        torn
    }
    // ANCHOR_END: host_teardown
}

impl Drop for Host {
    /// An error path: the same teardown; its failures stay in the record
    /// for the next start, beside the error being returned.
    fn drop(&mut self) {
        let _ = self.teardown(&Trace::new(false));
    }
}

/// A root an ordinary user mounted, for a container whose maps go beyond
/// the user's own ids: its files are deleted as root of a namespace with
/// those maps (what the container gave its other users, the user may not
/// delete). fuse-overlayfs, mounted by the user, serves the user's id
/// alone (FUSE shuts out every other id unless the administrator allows
/// `allow_other`), so it cannot be such a container's root: refused in one
/// line, before the clone. A root start's root passes as it is.
fn rootless_root(
    mut mounted: crate::image::overlay::Mounted,
    spec: &Spec,
) -> Result<crate::image::overlay::Mounted, Error> {
    if !crate::rootless::maps_more_than_own(spec) || !crate::rootless::active() {
        return Ok(mounted);
    }
    if mounted.fuse {
        return Err(crate::image::ImageError::Rootless(
            "fuse-overlayfs serves only your own id, and this container maps more: map only your own id (the default), or use a kernel that allows overlayfs in a user namespace (Linux 5.11 on)".to_string(),
        )
        .into());
    }
    mounted.delete_as = Some((spec.uid_map.clone(), spec.gid_map.clone()));
    Ok(mounted)
}

/// How the image's file owners shift: container root is the host id the
/// maps give it (none: the identity). The engine's `cp` owns what it
/// writes into a container the same way. A rootless start unpacks as the
/// user, whose files are all its own (see `Shift::rootless`), unless its
/// maps go beyond the user's ids: then as root of a namespace with them
/// (see `Shift::mapped`).
pub(crate) fn shift_of(spec: &Spec) -> crate::image::unpack::Shift {
    use crate::image::unpack::Shift;
    let rootless = crate::rootless::active();
    if rootless && crate::rootless::maps_more_than_own(spec) {
        return Shift::mapped(&spec.uid_map, &spec.gid_map);
    }
    let base = |maps: &[crate::idmap::IdMap]| {
        maps.iter()
            .find(|m| m.container == 0)
            .map(|m| (m.host, m.count))
    };
    match (base(&spec.uid_map), base(&spec.gid_map)) {
        (Some((uid_base, count)), Some((gid_base, gcount))) => Shift {
            uid_base,
            gid_base,
            count: count.min(gcount),
            rootless,
            mapped: None,
        },
        _ => Shift {
            rootless,
            ..Shift::IDENTITY
        },
    }
}

// ANCHOR: clone_maybe_into
/// Clones the child, born in its cgroup when there is a `birthplace`: on v2
/// by clone3's `CLONE_INTO_CGROUP` (Linux 5.7), on v1 inside the visit our
/// thread is making (left here, in the parent, right after the clone; the
/// child's copy is only closed). Else plainly, to be moved into its cgroup
/// by a request. Returns what the clone returned and whether the child was
/// (or, on an error, was to be, by `CLONE_INTO_CGROUP`) born in its group; `Err` only when the
/// parent could not leave a visit (the child is then killed).
fn clone_maybe_into(
    flags: nix::sched::CloneFlags,
    described: &str,
    birthplace: Option<Birthplace>,
    trace: &Trace,
) -> Result<(Result<Forked, Errno>, bool), Error> {
    use std::os::fd::AsFd;
    match birthplace {
        Some(Birthplace::Directory(group)) => {
            trace.step(
                Side::Parent,
                format_args!("clone3({described}|CLONE_INTO_CGROUP)"),
            );
            // SAFETY: the step binaries are single-threaded (documented above).
            match unsafe { clone_child_into(flags, group.as_fd()) } {
                Err(errno @ (Errno::ENOSYS | Errno::E2BIG)) => trace.step(
                    Side::Parent,
                    format_args!("clone3 cannot start the child in its cgroup here ({errno}): it is moved instead"),
                ),
                forked => return Ok((forked, true)),
            }
        }
        Some(Birthplace::Visit(visit)) => {
            trace.step(
                Side::Parent,
                format_args!("clone3({described}) from inside the cgroup (0 written to its tasks)"),
            );
            // SAFETY: as above.
            let forked = unsafe { clone_child(flags) };
            if forked == Ok(Forked::Child) {
                drop(visit);
                return Ok((forked, true));
            }
            if let Err(e) = visit.leave() {
                if let Ok(Forked::Parent(pid)) = forked {
                    drop(Child { pid, reaped: false });
                }
                return Err(e.into());
            }
            trace.step(Side::Parent, format_args!("back in my own cgroups"));
            if forked != Err(Errno::EAGAIN) {
                // A failed clone was a plain one: its error names no cgroup flag.
                return Ok((forked, forked.is_ok()));
            }
            // EAGAIN: a pids.max above the container's group (a pod's
            // cgroupsPath) had no place for the visitor and the child at
            // once. Moving the child needs no place for the parent.
            trace.step(
                Side::Parent,
                format_args!("no place for the visitor in pids.max above the group: the child is moved instead"),
            );
        }
        None => {}
    }
    trace.step(Side::Parent, format_args!("clone3({described})"));
    // SAFETY: as above.
    Ok((unsafe { clone_child(flags) }, false))
}
// ANCHOR_END: clone_maybe_into

/// The spec with its root made absolute: the child `chdir`s around, and a
/// relative path would then mean something else.
fn with_absolute_root(spec: &Spec) -> Spec {
    let mut spec = spec.clone();
    if let Some(root) = &spec.root {
        if let Ok(absolute) = std::fs::canonicalize(Path::new(root)) {
            spec.root = Some(absolute);
        }
    }
    spec
}
