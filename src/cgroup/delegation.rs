//! Limits without root: a cgroup v2 subtree the system delegated to you.
//!
//! Making a cgroup is making a directory, so it needs write access to the
//! parent directory. root has it everywhere; an ordinary user only where
//! someone with root handed a group over: chowned the directory and its
//! `cgroup.procs`, `cgroup.subtree_control` and `cgroup.threads` to the
//! user. That group is *delegated* (cgroups(7), "Cgroups v2 delegation";
//! systemd does it for a unit with `Delegate=yes`, e.g.
//! `systemd-run --user --scope -p Delegate=yes COMMAND`). Below it the user
//! may make groups, hand down the controllers the group was given, write
//! limits in the groups they made and move their own processes between
//! them, but never raise a limit set above, nor reach outside.
//!
//! Two rules shape what caixa does with one:
//!
//! 1. **Only cgroup v2.** A v1 hierarchy has no safe delegation: to move a
//!    process it checks only write access to the target's `tasks` and the
//!    process's owner, so a process could hop out of the delegated subtree
//!    and leave its limits behind. v2 also wants write access to the
//!    common ancestor's `cgroup.procs` (the kernel's cgroup-v2
//!    documentation, "Delegation Containment"). So on a v1 or hybrid host
//!    limits stay root's.
//! 2. **No internal processes.** A group that hands controllers down holds
//!    no process itself. But the user's own processes sit in the delegated
//!    group: the shell, and caixa. So [`prepare`] first moves them into a
//!    leaf of their own, `caixa-init` (as systemd's user manager keeps
//!    itself in `init.scope` of the group it was delegated), then enables
//!    the controllers, and the containers' groups are made beside that
//!    leaf, `caixa/<id>`, exactly as root makes them below the root.
//!
//! Which group is delegated is read from `/proc/self/cgroup`: the group we
//! run in, or its parent when we already run in the `caixa-init` leaf an
//! earlier start moved us to.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, access, geteuid};

use super::{CgroupError, Hierarchy, io, make_dir};
use crate::trace::{Side, Trace};

/// The leaf [`prepare`] moves the delegated group's own processes into.
pub const INIT_LEAF: &str = "caixa-init";

/// The files of a group that must be the user's for it to be delegated.
const DELEGATED_FILES: [&str; 2] = ["cgroup.procs", "cgroup.subtree_control"];

/// The delegated group this process may make groups in, on the unified
/// hierarchy at `root`: its directory. `Err` says in a few words why there
/// is none; it is the middle of a sentence (see `crate::rootless`).
pub fn find(hierarchy: &Hierarchy) -> Result<PathBuf, String> {
    let Hierarchy::V2(root) = hierarchy else {
        return Err(
            "this host's controllers are cgroup v1 (or hybrid), which cannot be delegated safely"
                .into(),
        );
    };
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup cannot be read ({e})"))?;
    find_in(root, &own)
}

// ANCHOR: containers_root
/// The hierarchy the containers' groups are made in, for whoever looks for
/// a container's group after its start (the engine's `exec` and `stats`):
/// the host's, or, in a rootless start, the delegated group [`find`] names,
/// which is what [`prepare`] returned to the start that made the group.
pub fn containers_root() -> Result<Hierarchy, CgroupError> {
    let hierarchy = super::detect()?;
    if !crate::rootless::active() {
        return Ok(hierarchy);
    }
    find(&hierarchy)
        .map(Hierarchy::V2)
        .map_err(CgroupError::Invalid)
}
// ANCHOR_END: containers_root

// ANCHOR: find_delegated
/// [`find`] with `/proc/self/cgroup`'s text given: the group named on its
/// `0::` line, or that group's parent when it is the `caixa-init` leaf,
/// if the group's directory and files are ours.
fn find_in(root: &Path, proc_self_cgroup: &str) -> Result<PathBuf, String> {
    let path = proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process has no cgroup v2 group (/proc/self/cgroup has no 0:: line)")?;
    let mut dir = root.join(path.trim_start_matches('/'));
    if dir.file_name().is_some_and(|n| n == INIT_LEAF) {
        dir.pop();
    }
    let me = geteuid().as_raw();
    let owner = std::fs::metadata(&dir)
        .map_err(|e| format!("your cgroup {path} cannot be read ({e})"))?
        .uid();
    let writable = DELEGATED_FILES
        .iter()
        .all(|f| access(&dir.join(f), AccessFlags::W_OK).is_ok());
    if owner != me || !writable {
        return Err(format!(
            "your cgroup {} belongs to uid {owner}: nothing was delegated to you",
            dir.strip_prefix(root)
                .map_or(dir.as_path(), |p| p)
                .display()
        ));
    }
    Ok(dir)
}
// ANCHOR_END: find_delegated

// ANCHOR: prepare_delegated
/// Makes the delegated group found by [`find`] ready to hold containers'
/// groups with the `needed` controllers (see `v2::needed`) and returns it
/// as the root to make them in: its own processes moved into the
/// `caixa-init` leaf, then the controllers handed down as root hands them
/// down below `caixa/` (`v2::hand_down`). Done once; a later start finds
/// it ready.
pub fn prepare(delegated: &Path, needed: &[&str], trace: &Trace) -> Result<Hierarchy, CgroupError> {
    let ready = Hierarchy::V2(delegated.to_path_buf());
    let control = delegated.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control).unwrap_or_default();
    if needed
        .iter()
        .all(|c| enabled.split_whitespace().any(|w| w == *c))
    {
        return Ok(ready);
    }
    // No internal processes: ours leave the delegated group for a leaf.
    let leaf = delegated.join(INIT_LEAF);
    make_dir(&leaf)?;
    let procs = delegated.join("cgroup.procs");
    let pids = std::fs::read_to_string(&procs).map_err(io("read", &procs))?;
    let to = leaf.join("cgroup.procs");
    for pid in pids.split_whitespace() {
        let Err(e) = std::fs::write(&to, pid) else {
            continue;
        };
        match e.raw_os_error() {
            // A process that ended meanwhile has nothing left to move.
            Some(libc::ESRCH) => {}
            Some(libc::EACCES | libc::EPERM) => {
                return Err(CgroupError::Invalid(format!(
                    "your delegated cgroup {} holds process {pid}, which is not yours to move, and a group that hands controllers down may hold none: start caixa in a group of its own (systemd-run --user --scope -p Delegate=yes -- COMMAND)",
                    delegated.display()
                )));
            }
            _ => return Err(io("write", &to)(e)),
        }
    }
    trace.step(
        Side::Parent,
        format_args!(
            "cgroup: {} <- the delegated group's processes",
            to.display()
        ),
    );
    let above = delegated.parent().unwrap_or(delegated);
    super::v2::hand_down(delegated, above, needed, trace)?;
    Ok(ready)
}
// ANCHOR_END: prepare_delegated

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_has_no_delegation() {
        let v1 = Hierarchy::V1(vec![crate::cgroup::Tree::whole(
            "memory",
            "/sys/fs/cgroup/memory",
        )]);
        assert!(find(&v1).unwrap_err().contains("cgroup v1"));
    }

    #[test]
    fn the_group_is_read_from_the_v2_line_and_the_leaf_means_its_parent() {
        let root = tempfile::tempdir().unwrap();
        let group = root.path().join("user.slice/run-1.scope");
        std::fs::create_dir_all(group.join(INIT_LEAF)).unwrap();
        for f in DELEGATED_FILES {
            std::fs::write(group.join(f), "").unwrap();
        }
        // Whoever runs the unit tests owns what they made: delegated.
        let text = "12:memory:/x\n0::/user.slice/run-1.scope\n";
        assert_eq!(find_in(root.path(), text).unwrap(), group);
        let text = "0::/user.slice/run-1.scope/caixa-init\n";
        assert_eq!(find_in(root.path(), text).unwrap(), group);
        let err = find_in(root.path(), "12:memory:/x\n").unwrap_err();
        assert!(err.contains("no 0:: line"), "{err}");
        let err = find_in(root.path(), "0::/gone\n").unwrap_err();
        assert!(err.contains("/gone cannot be read"), "{err}");
    }

    #[test]
    fn a_group_of_another_user_is_not_delegated() {
        if !geteuid().is_root() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let group = root.path().join("other");
        std::fs::create_dir(&group).unwrap();
        std::os::unix::fs::chown(&group, Some(1), Some(1)).unwrap();
        let err = find_in(root.path(), "0::/other\n").unwrap_err();
        assert!(err.contains("belongs to uid 1"), "{err}");
    }
}
