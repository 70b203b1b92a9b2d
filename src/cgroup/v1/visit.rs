//! Born in its group on cgroup v1: the parent's thread visits the group for
//! the clone.
//!
//! Moving a process by writing its pid to `cgroup.procs` takes the kernel's
//! global `cgroup_threadgroup_rwsem` for writing, which first waits for an
//! RCU grace period (step 7: 10 to 20 ms on a quiet machine). On cgroup v2,
//! clone3's `CLONE_INTO_CGROUP` has the child born in its group, so nothing
//! moves. v1 has no such flag, but it has the rule every `fork` follows: a
//! child starts in the groups of the *thread* that forked it. And the kernel
//! skips the global lock in one case: a thread that moves only itself, by
//! writing `0` to a group's `tasks` file (it cannot exit or `exec` in the
//! middle of its own write, so there is nothing to lock out).
//!
//! So the parent's thread moves itself into each of the container's
//! directories, clones (the child is born inside), and moves itself back:
//! about 0.2 ms for the whole visit, where one move of the child waits for a
//! grace period (measured on Linux 6.18; a kernel that takes the lock for
//! this write too makes the visit cost what a move costs, no more). The
//! parent never stays: what it does inside is the clone alone, whose page
//! tables are all it lends the container's groups (and, with
//! `--cpuset-cpus`, its CPU affinity is the group's while it is there).
//!
//! ```text
//!   parent thread: 0 > caixa/ID/tasks (each controller) ─ clone ─ 0 > its own tasks again
//!                                                            └─▶ child, born in caixa/ID
//! ```

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cgroup::{CgroupError, Tree, io};

/// Where this thread's groups are listed, one line per hierarchy:
/// `ID:CONTROLLERS:PATH`, the path from the hierarchy's root.
const OWN_GROUPS: &str = "/proc/thread-self/cgroup";

/// A visit in progress: the cloning thread is in the container's groups
/// until [`Visit::leave`]. Dropping it without leaving (what the child
/// does with its copy) only closes files: the child stays where it was born.
#[derive(Debug)]
pub struct Visit {
    /// The `tasks` file of each group the thread came from, open, in the
    /// order it left them; and the `tasks` file of that tree's root group,
    /// the last way out if the way back fails.
    back: Vec<(PathBuf, File, PathBuf)>,
    /// `/proc/thread-self/cgroup` before the visit: the thread must read
    /// the same after it.
    before: String,
    /// `pids.max` and its value, lifted to `max` for the visit: the visitor
    /// counts as one of the group's processes, and a limit of 1 would
    /// refuse the child its birth.
    lifted: Option<(PathBuf, String)>,
}

impl Visit {
    // ANCHOR: visit_enter
    /// Moves the calling thread into every directory of `dirs` (the
    /// container's group, one per v1 controller; `trees` gives each
    /// controller's tree). `Ok(None)` when this thread's own group is not
    /// in a tree's mount (mounted from a group below it): the parent then
    /// moves the child by its pid, as before.
    pub fn enter(dirs: &[(String, PathBuf)], trees: &[Tree]) -> Result<Option<Visit>, CgroupError> {
        // HARDER(7): on cgroup v1, be born in the cgroup: open the tasks file of this thread's own group in each tree, write 0 to the container's tasks files, and keep the way back
        // STAND-IN: Ok(None)
        let before =
            std::fs::read_to_string(OWN_GROUPS).map_err(io("read", Path::new(OWN_GROUPS)))?;
        // 1. The way back, opened before leaving: each tree's own group.
        //    The path read above and the mount's root are both named from
        //    the root of our cgroup namespace, so the group is found below
        //    the mount without listing who is in it.
        let mut back = Vec::new();
        for (controller, _) in dirs {
            let (Some(own), Some(tree)) = (
                own_group(&before, controller, trees),
                trees.iter().find(|t| t.controller == *controller),
            ) else {
                return Ok(None);
            };
            let tasks = own.join("tasks");
            let file = File::options()
                .write(true)
                .open(&tasks)
                .map_err(io("open", &tasks))?;
            back.push((tasks, file, tree.mount.join("tasks")));
        }
        let mut visit = Visit {
            back,
            before,
            lifted: None,
        };
        // 2. The visitor takes one place of pids.max while it is there.
        if let Some((_, dir)) = dirs.iter().find(|(c, _)| c == "pids") {
            visit.lift_pids_limit(dir)?;
        }
        // 3. In: `0` means "the thread writing this", which alone skips the
        //    global lock. A failure half-way takes the thread back first.
        for (_, dir) in dirs {
            let tasks = dir.join("tasks");
            if let Err(e) = std::fs::write(&tasks, "0") {
                let _ = visit.leave();
                return Err(io("write", &tasks)(e));
            }
        }
        Ok(Some(visit))
        // END HARDER
    }
    // ANCHOR_END: visit_enter

    /// Takes the calling thread back to the groups it came from and puts
    /// `pids.max` back, trying every step whatever fails (the first error is
    /// returned). A tree whose way back fails gets the thread at its root
    /// group instead: out of the container's group in any case, so the
    /// group can be removed and nothing in it kills the parent. Then
    /// `/proc/thread-self/cgroup` must read as before, or it is an error.
    pub fn leave(mut self) -> Result<(), CgroupError> {
        let mut first = None;
        for (tasks, file, root) in &mut self.back {
            if let Err(e) = file.write_all(b"0") {
                first.get_or_insert(io("write", tasks)(e));
                let _ = std::fs::write(root, "0");
            }
        }
        if let Some((file, value)) = self.lifted.take()
            && let Err(e) = std::fs::write(&file, value)
        {
            first.get_or_insert(io("write", &file)(e));
        }
        if let Some(e) = first {
            return Err(e);
        }
        let now = std::fs::read_to_string(OWN_GROUPS).map_err(io("read", Path::new(OWN_GROUPS)))?;
        if now != self.before {
            return Err(CgroupError::Invalid(format!(
                "the parent did not get back to its own cgroups after the clone (before: {:?}, now: {:?})",
                self.before.trim(),
                now.trim()
            )));
        }
        Ok(())
    }

    /// Sets `dir`'s `pids.max` to `max` for the visit, remembering its value.
    fn lift_pids_limit(&mut self, dir: &Path) -> Result<(), CgroupError> {
        let file = dir.join("pids.max");
        let value = std::fs::read_to_string(&file).map_err(io("read", &file))?;
        let value = value.trim().to_string();
        if value != "max" {
            std::fs::write(&file, "max").map_err(io("write", &file))?;
            self.lifted = Some((file, value));
        }
        Ok(())
    }
}

/// The directory of this thread's own group in `controller`'s tree, from
/// `/proc/thread-self/cgroup` (`groups`) and the tree's mount. `None` when
/// no line names the controller, or the mount does not show the group.
fn own_group(groups: &str, controller: &str, trees: &[Tree]) -> Option<PathBuf> {
    let tree = trees.iter().find(|t| t.controller == controller)?;
    groups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        if controllers.split(',').any(|c| c == controller) {
            tree.dir_of(path)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_group_is_found_by_controller_in_joint_lines_too() {
        let groups = "12:pids:/user.slice\n4:cpu,cpuacct:/a/b\n0::/init.scope\n";
        let trees = vec![
            Tree::whole("pids", "/sys/fs/cgroup/pids"),
            Tree::whole("cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
            Tree::whole("memory", "/sys/fs/cgroup/memory"),
        ];
        assert_eq!(
            own_group(groups, "pids", &trees),
            Some(PathBuf::from("/sys/fs/cgroup/pids/user.slice"))
        );
        assert_eq!(
            own_group(groups, "cpuacct", &trees),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/a/b"))
        );
        assert_eq!(own_group(groups, "memory", &trees), None, "no memory line");
        assert_eq!(own_group(groups, "cpu", &trees), None, "no cpu mount");
    }

    #[test]
    fn the_root_group_is_the_mount_itself() {
        let trees = vec![Tree::whole("memory", "/sys/fs/cgroup/memory")];
        assert_eq!(
            own_group("9:memory:/\n", "memory", &trees),
            Some(PathBuf::from("/sys/fs/cgroup/memory/"))
        );
    }

    /// A container's view of the host's tree: only its own group is
    /// mounted, and `/proc/self/cgroup` still names it from the host's root.
    #[test]
    fn a_mount_of_one_group_shows_what_lies_below_it_only() {
        let trees = vec![Tree {
            controller: "memory".into(),
            mount: "/sys/fs/cgroup/memory".into(),
            root: "/docker/abc".into(),
        }];
        assert_eq!(
            own_group("9:memory:/docker/abc/inner\n", "memory", &trees),
            Some(PathBuf::from("/sys/fs/cgroup/memory/inner"))
        );
        assert_eq!(
            own_group("9:memory:/docker/other\n", "memory", &trees),
            None,
            "a group outside the mount cannot be reached through it"
        );
    }
}
