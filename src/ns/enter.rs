//! Namespaces someone else made, entered by path (step 12).
//!
//! An orchestrator may give a container a namespace that already exists:
//! podman's pods and Kubernetes' pods share one network namespace, made
//! once (a bind mount under `/run/netns`, or `/proc/PID/ns/net` of a
//! process in it), and every container of the pod is born in it. The
//! bundle says so with `linux.namespaces[].path`.
//!
//! A child is born in the namespaces of the thread that clones it, except
//! those its clone flags make new. So the parent enters the named
//! namespaces with `setns(2)` just before `clone3`, and goes back to its own
//! right after: only the child stays. Going back needs a handle on its own
//! namespaces, opened first (`/proc/thread-self/ns/KIND`).
//!
//! Only the network, IPC and UTS namespaces may be named: entering a user,
//! mount, PID or cgroup namespace would change what the parent itself does
//! next (its ids, its paths, its children's pids, its cgroup paths), so
//! [`crate::bundle`] refuses those.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sched::setns;
use nix::sys::stat::{Mode, fstat};

use super::Namespace;

/// The kinds a bundle may name by path.
pub const ENTERABLE: [Namespace; 3] = [Namespace::Net, Namespace::Ipc, Namespace::Uts];

/// Why a named namespace could not be entered.
#[derive(Debug, thiserror::Error)]
#[error("cannot enter the {kind} namespace at {path}: {why}")]
pub struct EnterError {
    /// Its kind, as /proc names it.
    pub kind: &'static str,
    /// The path the bundle gave.
    pub path: PathBuf,
    /// What went wrong, and what to do.
    pub why: String,
}

/// The parent's own namespaces, to go back to once the child exists: going
/// back happens when this is dropped.
#[derive(Debug)]
pub struct Entered {
    own: Vec<(OwnedFd, Namespace)>,
}

/// Enters each namespace of `named` (kind, path); returns the way back.
pub fn enter(named: &[(Namespace, PathBuf)]) -> Result<Entered, EnterError> {
    let mut entered = Entered { own: Vec::new() };
    for (kind, path) in named {
        let fail = |why: String| EnterError {
            kind: kind.proc_name(),
            path: path.clone(),
            why,
        };
        let kernel = |errno: Errno| {
            fail(format!(
                "{errno} (is it a namespace of that kind, and does it still exist?)"
            ))
        };
        let own_path = format!("/proc/thread-self/ns/{}", kind.proc_name());
        let own = open_ns(Path::new(&own_path)).map_err(kernel)?;
        let target = open_ns(path).map_err(kernel)?;
        // The runtime's own namespace (the host's, as a rule) is not the
        // container's to change: a bundle's sysctls would be written to
        // it. To share it, a bundle leaves the namespace out.
        let (a, b) = (
            fstat(&own).map_err(kernel)?,
            fstat(&target).map_err(kernel)?,
        );
        if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
            return Err(fail(
                "it is the runtime's own (the host's): leave this namespace out of linux.namespaces to share it"
                    .into(),
            ));
        }
        // The flag makes the kernel check the file is a namespace of this
        // kind (EINVAL otherwise).
        setns(&target, kind.clone_flag()).map_err(kernel)?;
        entered.own.push((own, *kind));
    }
    Ok(entered)
}

fn open_ns(path: &Path) -> Result<OwnedFd, Errno> {
    open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
}

impl Drop for Entered {
    fn drop(&mut self) {
        for (own, kind) in self.own.iter().rev() {
            // Our own namespaces still exist (we hold them open): this
            // cannot fail for a process that could leave them.
            let _ = setns(own, kind.clone_flag());
        }
    }
}
