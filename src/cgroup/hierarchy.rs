//! Which cgroup layout this host has, read once per start from
//! `/proc/self/mountinfo`: one unified v2 tree, or one v1 tree per controller
//! (hybrid hosts mount both; caixa then uses v1). See cgroups(7).

use std::path::{Path, PathBuf};

use super::{CgroupError, GroupPath, io, v1};

/// The name of caixa's own parent group: every container's group is made
/// below it, never beside a group caixa did not create.
pub const PARENT: &str = "caixa";

/// Which cgroup layout this host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One unified tree with controllers, mounted here.
    V2(PathBuf),
    /// One tree per controller. On a hybrid host the empty cgroup2 mount
    /// beside them is not used.
    V1(Vec<Tree>),
}

/// One v1 controller's tree, as `/proc/self/mountinfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// The controller: `memory`, `pids`, … (a mount that joins several
    /// gives one `Tree` each).
    pub controller: String,
    /// Where the tree is mounted.
    pub mount: PathBuf,
    /// Which group the mount shows at `mount`, named as
    /// `/proc/self/cgroup` names groups: from the root of this process's
    /// cgroup namespace. `/` on a host; a group of its own where only that
    /// group was mounted (a container's view of the host's tree).
    pub root: PathBuf,
}

impl Tree {
    /// A tree that shows its whole hierarchy at `mount` (the usual case).
    pub fn whole(controller: &str, mount: impl Into<PathBuf>) -> Tree {
        Tree {
            controller: controller.to_string(),
            mount: mount.into(),
            root: PathBuf::from("/"),
        }
    }

    /// The directory of the group `/proc/self/cgroup` names `path` in this
    /// tree; `None` when the mount does not show it (outside its root).
    pub fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let below = Path::new(path).strip_prefix(&self.root).ok()?;
        Some(self.mount.join(below))
    }
}

impl Hierarchy {
    /// The directories of `group` here, which [`Cgroup::create`](super::Cgroup::create)
    /// may make, known before it makes them (so a record of leftovers can
    /// name them first, see `crate::leftovers`; `exec` joins them): one per
    /// v1 controller mounted, one on v2.
    pub fn planned_dirs(&self, group: &GroupPath) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.roots().iter().map(|r| group.dir_in(r)).collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// The root of every tree: the v2 mount, or each v1 controller's.
    pub fn roots(&self) -> Vec<PathBuf> {
        match self {
            Hierarchy::V2(root) => vec![root.clone()],
            Hierarchy::V1(trees) => trees.iter().map(|t| t.mount.clone()).collect(),
        }
    }
}

/// Reads `/proc/self/mountinfo` to find the cgroup layout.
pub fn detect() -> Result<Hierarchy, CgroupError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io("read", Path::new("/proc/self/mountinfo")))?;
    detect_from(&mountinfo, |p| {
        std::fs::read_to_string(p).unwrap_or_default()
    })
}

// ANCHOR: detect
/// [`detect`] on given mountinfo text; `read` reads a file (for tests).
pub fn detect_from(
    mountinfo: &str,
    read: impl Fn(&Path) -> String,
) -> Result<Hierarchy, CgroupError> {
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in mountinfo.lines() {
        // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(root), Some(mountpoint), Some(fstype), Some(superopts)) = (
            fields.get(3),
            fields.get(4),
            fields.get(dash + 1),
            fields.get(dash + 3),
        ) else {
            continue;
        };
        match *fstype {
            "cgroup2" if v2.is_none() => v2 = Some(PathBuf::from(mountpoint)),
            "cgroup" => {
                for opt in superopts.split(',') {
                    if v1::CONTROLLERS.contains(&opt) {
                        v1.push(Tree {
                            controller: opt.to_string(),
                            mount: PathBuf::from(mountpoint),
                            root: PathBuf::from(root),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(root) = v2 {
        // A cgroup2 mount that offers the memory controller is a v2 host. One
        // without it beside v1 controllers is a hybrid host (its cgroup2 holds
        // little or nothing, e.g. only hugetlb): we use its v1 controllers.
        let controllers = read(&root.join("cgroup.controllers"));
        if controllers.split_whitespace().any(|c| c == "memory") || v1.is_empty() {
            return Ok(Hierarchy::V2(root));
        }
    }
    if v1.is_empty() {
        return Err(CgroupError::Unsupported {
            what: "a cgroup filesystem".into(),
            fix: "mount one: sudo mount -t cgroup2 none /sys/fs/cgroup".into(),
        });
    }
    Ok(Hierarchy::V1(v1))
}
// ANCHOR_END: detect

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
35 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd";

    #[test]
    fn a_hybrid_host_is_v1_and_a_unified_one_is_v2() {
        let h = detect_from(HYBRID, |_| "hugetlb\n".into()).unwrap();
        let Hierarchy::V1(trees) = h else {
            panic!("{h:?}")
        };
        let names: Vec<&str> = trees.iter().map(|t| t.controller.as_str()).collect();
        assert_eq!(names, ["cpu", "cpuacct", "memory"]);
        let v2 = "31 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate";
        let h = detect_from(v2, |_| "cpuset cpu io memory pids\n".into()).unwrap();
        assert_eq!(h, Hierarchy::V2("/sys/fs/cgroup".into()));
        assert!(detect_from("", |_| String::new()).is_err());
    }

    #[test]
    fn planned_dirs_are_one_per_mount_below_caixa() {
        let h = Hierarchy::V1(vec![
            Tree::whole("cpu", "/c/cpu"),
            Tree::whole("cpuacct", "/c/cpu"),
            Tree::whole("memory", "/c/memory"),
        ]);
        let dirs = h.planned_dirs(&GroupPath::default_for("abc"));
        assert_eq!(
            dirs,
            [
                PathBuf::from("/c/cpu/caixa/abc"),
                PathBuf::from("/c/memory/caixa/abc")
            ]
        );
    }
}
