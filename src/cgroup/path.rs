//! Where a container's group sits in each hierarchy: caixa's own
//! `caixa/<id>`, or the place an OCI caller names in `linux.cgroupsPath`
//! (podman's `/libpod_parent/libpod-<id>`, containerd's `/default/<id>`).
//!
//! The path comes from an untrusted `config.json`, and caixa creates
//! directories there, writes `cgroup.subtree_control` on the way down and,
//! at the end, removes the leaf after killing what is inside. So it is
//! checked here once, and every directory of a container's group is
//! computed by one function, [`GroupPath::dir_in`]: the records of
//! `crate::leftovers`, the cgroup writers and `exec` all agree.
//!
//! The meaning follows runc's cgroupfs driver, with one difference said
//! out loud: an **absolute** path is taken from each hierarchy's root, as
//! runc does; a **relative** one is taken below caixa's own parent group
//! (`caixa/`), not below the runtime's own cgroup as runc does. The
//! runtime's own group is somebody else's (a shell's, a service's), and on
//! cgroup v2 a group that holds processes cannot hand controllers down (the
//! "no internal processes" rule): caixa writes only below groups it makes.

use std::path::{Component, Path, PathBuf};

use super::{CgroupError, PARENT};

/// The most components a cgroupsPath may have: deep enough for
/// Kubernetes' `/kubepods/burstable/pod<uid>/<id>`, small enough that a
/// config cannot make caixa walk a thousand levels.
const MAX_DEPTH: usize = 16;

/// A container's group, relative to the root of every hierarchy (one per
/// v1 controller, one on v2). Checked on construction: only plain names,
/// and the last one names the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPath(PathBuf);

impl GroupPath {
    /// caixa's own place for container `id`: `caixa/<id>`, beside the
    /// other containers caixa started.
    pub fn default_for(id: &str) -> GroupPath {
        GroupPath(Path::new(PARENT).join(id))
    }

    // ANCHOR: cgroups_path
    /// The group `linux.cgroupsPath` names for container `id`: absolute
    /// from each hierarchy's root, relative below `caixa/`. Refuses what
    /// could leave the hierarchy or name another container's group.
    pub fn from_cgroups_path(text: &str, id: &str) -> Result<GroupPath, CgroupError> {
        let bad = |why: &str| CgroupError::Invalid(format!("cgroupsPath {text:?}: {why}"));
        if text.contains(':') {
            return Err(bad(
                "slice:prefix:name is the systemd driver's form; caixa drives cgroupfs: give a path such as /machine/<id>",
            ));
        }
        let (base, rest) = match text.strip_prefix('/') {
            Some(rest) => (PathBuf::new(), rest),
            None => (PathBuf::from(PARENT), text),
        };
        let mut path = base;
        // Split by hand: Path::components would quietly drop `.` and the
        // empty names of `a//b` or `a/`, which we refuse instead.
        for name in rest.split('/') {
            check_name(name).map_err(|why| bad(&why))?;
            path.push(name);
        }
        let depth = path.components().count();
        if depth > MAX_DEPTH {
            return Err(bad(&format!("deeper than {MAX_DEPTH} levels")));
        }
        let group = GroupPath(path);
        if !group.names(id) {
            return Err(bad(&format!(
                "the last name must be the container id ({id}) or end in -{id}, as podman's libpod-<id> and containerd's /<namespace>/<id> do: caixa kills what is in that group when the container ends, so it must be this container's"
            )));
        }
        Ok(group)
    }
    // ANCHOR_END: cgroups_path

    /// The group as an absolute `linux.cgroupsPath`, which
    /// [`GroupPath::from_cgroups_path`] reads back as the same group.
    pub fn to_cgroups_path(&self) -> PathBuf {
        Path::new("/").join(&self.0)
    }

    /// The group's directory in the hierarchy (or v1 controller tree)
    /// mounted at `root`: the one place a container's group directory is
    /// computed.
    pub fn dir_in(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }

    /// The directories between `root` and the group, top down (neither
    /// `root` nor the group itself): the parents to make and, on v2, to
    /// hand the controllers down through.
    pub fn parents_in(&self, root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut at = root.to_path_buf();
        let names: Vec<_> = self.0.components().collect();
        for name in &names[..names.len().saturating_sub(1)] {
            at.push(name);
            out.push(at.clone());
        }
        out
    }

    /// Whether this is caixa's own place, below `caixa/`, where caixa may
    /// kill what it finds (see `crate::leftovers`).
    pub fn is_below_caixa(&self) -> bool {
        self.0.components().next() == Some(Component::Normal(PARENT.as_ref()))
            && self.0.components().count() > 1
    }

    /// Whether the last name is `id` or ends in `-<id>`.
    fn names(&self, id: &str) -> bool {
        let Some(leaf) = self.0.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        !id.is_empty()
            && (leaf == id
                || leaf
                    .strip_suffix(id)
                    .is_some_and(|prefix| prefix.ends_with('-')))
    }

    /// The group a record line's `dir` names, when `dir` lies strictly
    /// below one of `roots` and is a group caixa could have made for `id`
    /// (the same checks as [`GroupPath::from_cgroups_path`]).
    pub fn of_dir(dir: &Path, roots: &[PathBuf], id: &str) -> Option<GroupPath> {
        let rest = roots.iter().find_map(|r| dir.strip_prefix(r).ok())?;
        let text = rest.to_str()?;
        if text.is_empty() {
            return None;
        }
        GroupPath::from_cgroups_path(&format!("/{text}"), id).ok()
    }
}

/// One name of a cgroupsPath: a plain directory name the kernel accepts.
fn check_name(name: &str) -> Result<(), String> {
    match name {
        "" => Err("empty names (// or a / at the end) are not allowed".into()),
        "." | ".." => Err(format!(
            "{name:?} is not allowed: the path must stay inside the hierarchy"
        )),
        _ if name.len() > 255 => Err("a name is longer than 255 bytes".into()),
        _ if name.contains(['\0', '\n']) => Err("a name holds a NUL or a newline".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789ab";

    #[test]
    fn absolute_paths_start_at_the_root_and_relative_ones_below_caixa() {
        let g = |t: &str| GroupPath::from_cgroups_path(t, ID).unwrap();
        let podman = g(&format!("/libpod_parent/libpod-{ID}"));
        assert_eq!(
            podman.dir_in(Path::new("/sys/fs/cgroup/memory")),
            PathBuf::from(format!("/sys/fs/cgroup/memory/libpod_parent/libpod-{ID}"))
        );
        assert_eq!(
            podman.parents_in(Path::new("/r")),
            [PathBuf::from("/r/libpod_parent")]
        );
        assert!(!podman.is_below_caixa());
        let relative = g(&format!("pods/{ID}"));
        assert_eq!(
            relative.dir_in(Path::new("/r")),
            PathBuf::from(format!("/r/caixa/pods/{ID}"))
        );
        assert_eq!(
            relative.parents_in(Path::new("/r")),
            [PathBuf::from("/r/caixa"), PathBuf::from("/r/caixa/pods")]
        );
        assert!(relative.is_below_caixa());
        assert_eq!(g(&format!("/caixa/{ID}")), GroupPath::default_for(ID));
        assert_eq!(
            g(&format!("/default/{ID}"))
                .parents_in(Path::new("/r"))
                .len(),
            1
        );
    }

    #[test]
    fn paths_that_leave_the_hierarchy_or_name_another_group_are_refused() {
        for bad in [
            "",
            "/",
            "/../etc",
            "/a/../0123456789ab",
            "/a/./0123456789ab",
            "/a//0123456789ab",
            "/a/0123456789ab/",
            "./0123456789ab",
            "/system.slice/sshd.service",
            "/x0123456789ab",
            "/0123456789ab-x",
            "machine.slice:libpod:0123456789ab",
            "/a\0/0123456789ab",
            "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/0123456789ab",
        ] {
            let err = GroupPath::from_cgroups_path(bad, ID).unwrap_err();
            assert!(err.to_string().starts_with("cgroupsPath "), "{err}");
        }
        assert!(GroupPath::from_cgroups_path("/a", "").is_err());
    }

    #[test]
    fn a_recorded_directory_is_a_group_only_strictly_below_a_root() {
        let roots = [
            PathBuf::from("/sys/fs/cgroup/memory"),
            PathBuf::from("/sys/fs/cgroup/pids"),
        ];
        let of = |d: &str, id: &str| GroupPath::of_dir(Path::new(d), &roots, id);
        assert_eq!(
            of("/sys/fs/cgroup/memory/caixa/abc", "abc"),
            Some(GroupPath::default_for("abc"))
        );
        assert!(of("/sys/fs/cgroup/pids/default/abc", "abc").is_some());
        // A root itself, even one named like the id, is never a group.
        assert_eq!(of("/sys/fs/cgroup/memory", "memory"), None);
        assert_eq!(of("/sys/fs/cgroup/cpu/abc", "abc"), None);
        assert_eq!(of("/sys/fs/cgroup/memory/other", "abc"), None);
        assert_eq!(of("/sys/fs/cgroup/memory/../cpu/abc", "abc"), None);
    }
}
