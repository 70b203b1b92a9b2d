//! Namespaces: what a process can see.
//!
//! A namespace wraps one kind of global resource (the process ids, the network
//! stack, the System V and POSIX IPC objects, the mount table, the host name,
//! the user and group ids) so that the processes inside get their own copy.
//! The kernel creates new ones when `clone(2)` is given `CLONE_NEW*` flags; see
//! namespaces(7). Each step binary switches one more of them on.

pub mod clone;
pub mod enter;
pub mod net;
pub mod uts;

use std::fmt;
use std::path::Path;

use nix::sched::CloneFlags;

/// One kind of namespace, in the order the source document lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// Process ids: the container's first process is pid 1 (step 1).
    Pid,
    /// The network stack: interfaces, routes, firewall rules, ports (step 2).
    Net,
    /// System V IPC objects and POSIX message queues (step 3).
    Ipc,
    /// The mount table: the container gets its own root filesystem (step 4).
    Mount,
    /// The host name and NIS domain name (step 5).
    Uts,
    /// User and group ids, and with them privilege (step 6).
    User,
}

impl Namespace {
    /// Every kind, in the order of the steps.
    pub const ALL: [Namespace; 6] = [
        Namespace::Pid,
        Namespace::Net,
        Namespace::Ipc,
        Namespace::Mount,
        Namespace::Uts,
        Namespace::User,
    ];

    // ANCHOR: clone_flag
    /// The `clone(2)` flag that asks the kernel for a new namespace of this kind.
    pub fn clone_flag(self) -> CloneFlags {
        match self {
            Namespace::Pid => CloneFlags::CLONE_NEWPID,
            Namespace::Net => CloneFlags::CLONE_NEWNET,
            Namespace::Ipc => {
                // EXERCISE(3): the clone(2) flag that asks for a new IPC namespace
                CloneFlags::CLONE_NEWIPC
                // END EXERCISE
            }
            Namespace::Mount => CloneFlags::CLONE_NEWNS,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::User => CloneFlags::CLONE_NEWUSER,
        }
    }
    // ANCHOR_END: clone_flag

    /// The name of this namespace's file in `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            Namespace::Pid => "pid",
            Namespace::Net => "net",
            Namespace::Ipc => "ipc",
            Namespace::Mount => "mnt",
            Namespace::Uts => "uts",
            Namespace::User => "user",
        }
    }

    /// The kernel option that builds this namespace in, for error messages.
    pub fn kernel_option(self) -> &'static str {
        match self {
            Namespace::Pid => "CONFIG_PID_NS",
            Namespace::Net => "CONFIG_NET_NS",
            Namespace::Ipc => "CONFIG_IPC_NS",
            Namespace::Mount => "CONFIG_NAMESPACES",
            Namespace::Uts => "CONFIG_UTS_NS",
            Namespace::User => "CONFIG_USER_NS",
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Namespace::Pid => "PID",
            Namespace::Net => "network",
            Namespace::Ipc => "IPC",
            Namespace::Mount => "mount",
            Namespace::Uts => "UTS",
            Namespace::User => "user",
        };
        f.write_str(name)
    }
}

// ANCHOR: all_namespaces
/// Every namespace caixa makes, in creation order: the user namespace
/// first, so that it owns the others (see the step 6 chapter). Step 6's
/// binaries and the engine's containers use all of them.
pub const ALL: [Namespace; 6] = [
    Namespace::User, // first: the others are then owned by it
    Namespace::Pid,
    Namespace::Net,
    Namespace::Ipc,
    Namespace::Mount,
    Namespace::Uts,
];
// ANCHOR_END: all_namespaces

/// The union of the clone flags of `namespaces`.
pub fn clone_flags(namespaces: &[Namespace]) -> CloneFlags {
    namespaces
        .iter()
        .fold(CloneFlags::empty(), |flags, ns| flags | ns.clone_flag())
}

/// Spells flags the way the man page does: `CLONE_NEWPID | CLONE_NEWNET`.
pub fn describe_flags(namespaces: &[Namespace]) -> String {
    let names: Vec<String> = namespaces
        .iter()
        .map(|ns| match ns {
            Namespace::Mount => "CLONE_NEWNS".to_string(),
            other => format!("CLONE_NEW{}", other.proc_name().to_uppercase()),
        })
        .collect();
    if names.is_empty() {
        "no new namespaces".to_string()
    } else {
        names.join(" | ")
    }
}

/// The first namespace in `namespaces` this kernel does not offer.
///
/// Every namespace the kernel supports has a file in `/proc/self/ns/`; a
/// missing file means the kernel was built without it. When `/proc` itself is
/// not mounted this cannot tell, and `clone` will say so instead.
pub fn first_unsupported(namespaces: &[Namespace]) -> Option<Namespace> {
    let dir = Path::new("/proc/self/ns");
    if !dir.is_dir() {
        return None;
    }
    namespaces
        .iter()
        .copied()
        // The link itself: following it would look the namespace up.
        .find(|ns| std::fs::symlink_metadata(dir.join(ns.proc_name())).is_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_spelled_like_the_man_page() {
        assert_eq!(
            describe_flags(&[Namespace::Pid, Namespace::Mount]),
            "CLONE_NEWPID | CLONE_NEWNS"
        );
        assert_eq!(describe_flags(&[]), "no new namespaces");
    }

    #[test]
    fn flags_combine() {
        let flags = clone_flags(&[Namespace::Pid, Namespace::Net]);
        assert!(flags.contains(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNET));
        assert!(!flags.contains(CloneFlags::CLONE_NEWNS));
    }
}
