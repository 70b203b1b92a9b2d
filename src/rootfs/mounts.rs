//! The mounts every container gets, and how they are made safely.
//!
//! The table below is the reference: the same mounts Docker and runc give a
//! container by default, each with the flags that keep it from being a way
//! out (`nosuid`, `noexec`, `nodev` where nothing needs them).

use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MsFlags, mount};

use super::{RootfsError, io_syscall, syscall};

/// One filesystem mounted inside the rootfs before `pivot_root`.
#[derive(Debug, Clone, Copy)]
pub struct Mount {
    /// Where, relative to the rootfs.
    pub target: &'static str,
    /// The filesystem type (`proc`, `tmpfs`, …).
    pub fstype: &'static str,
    /// Mount flags.
    pub flags: MsFlags,
    /// Filesystem-specific options.
    pub data: Option<&'static str>,
}

const NOSUID_NOEXEC_NODEV: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NODEV);

// ANCHOR: default_mounts
/// The default mounts, in order: a parent before what is mounted inside it.
pub const DEFAULT_MOUNTS: [Mount; 6] = [
    // The container's own processes: needs the new PID namespace to mean that.
    Mount {
        target: "proc",
        fstype: "proc",
        flags: NOSUID_NOEXEC_NODEV,
        data: None,
    },
    // A fresh, small /dev in memory: only the nodes `dev` creates will be there.
    Mount {
        target: "dev",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_STRICTATIME),
        data: Some("mode=755,size=65536k"),
    },
    // Terminals of our own: `newinstance` keeps the host's ptys out of sight.
    Mount {
        target: "dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    },
    // POSIX shared memory (shm_open) lives here.
    Mount {
        target: "dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NOEXEC_NODEV,
        data: Some("mode=1777,size=65536k"),
    },
    // POSIX message queues of the container's IPC namespace (step 3).
    Mount {
        target: "dev/mqueue",
        fstype: "mqueue",
        flags: NOSUID_NOEXEC_NODEV,
        data: None,
    },
    // Read-only: a container may look at its devices and network, not change them.
    Mount {
        target: "sys",
        fstype: "sysfs",
        flags: NOSUID_NOEXEC_NODEV.union(MsFlags::MS_RDONLY),
        data: None,
    },
];
// ANCHOR_END: default_mounts

// ANCHOR: make_mounts_private
/// Makes every mount in our new namespace a slave of the host's: mount events
/// still flow from the host in, but none of ours flows out. Without this, on a
/// host whose `/` is shared (systemd's default) the mounts below would appear
/// on the host too.
pub fn stop_propagation_to_host() -> Result<(), RootfsError> {
    // EXERCISE(4): make "/" a recursive slave so no mount of ours reaches the host
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(syscall("mount(MS_SLAVE|MS_REC)", "/"))
    // END EXERCISE
}
// ANCHOR_END: make_mounts_private

/// Mounts the tmpfs of `scratch` (in this mount namespace only) and makes
/// in it the overlay's upper and work directories and the mount point
/// `root`. Made by root of the container's user namespace, they are its.
pub fn make_scratch(
    scratch: &crate::image::overlay::Scratch,
    root: &Path,
) -> Result<(), RootfsError> {
    use std::os::unix::fs::PermissionsExt;
    mount(
        Some("tmpfs"),
        &scratch.at,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(syscall("mount(tmpfs)", &scratch.at))?;
    std::fs::create_dir_all(root).map_err(io_syscall("mkdir", root))?;
    let work = &scratch.work;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(work)
        .map_err(io_syscall("mkdir", work))?;
    let upper = &scratch.upper;
    std::fs::create_dir(upper).map_err(io_syscall("mkdir", upper))?;
    // Exactly the shared root's mode, whatever the umask took from mkdir's.
    let mode = std::fs::Permissions::from_mode(scratch.upper_mode);
    std::fs::set_permissions(upper, mode).map_err(io_syscall("chmod", upper))
}

/// Mounts the overlay the child mounts as its root on `root` (its options
/// name the shared rootfs or layers below and the container's own upper
/// directory): a rootless start's, whose parent made the directories but
/// may not mount on the host, or the shared root's (see
/// `image::overlay::Mounter`), as root of the user namespace when there is
/// one, in the child's own mount namespace.
pub fn mount_overlay(root: &Path, options: &str) -> Result<(), RootfsError> {
    mount(
        Some("overlay"),
        root,
        Some("overlay"),
        MsFlags::empty(),
        Some(options),
    )
    .map_err(syscall("mount(overlay)", root))
}

// ANCHOR: bind_rootfs
/// Bind-mounts the rootfs onto itself. `pivot_root(2)` needs the new root to
/// be a mount point, and a plain directory is not one.
pub fn bind_rootfs_onto_itself(root: &Path) -> Result<(), RootfsError> {
    // EXERCISE(4): bind-mount the rootfs onto itself (recursively) so it is a mount point
    mount(
        Some(root),
        root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(syscall("mount(MS_BIND|MS_REC)", root))
    // END EXERCISE
}
// ANCHOR_END: bind_rootfs

// ANCHOR: mount_defaults
/// Mounts every entry of [`DEFAULT_MOUNTS`] under `root`.
pub fn mount_defaults(root: &Path) -> Result<(), RootfsError> {
    for m in &DEFAULT_MOUNTS {
        let target = dir_inside(root, m.target)?;
        match mount(Some(m.fstype), &target, Some(m.fstype), m.flags, m.data) {
            // A rootless container maps only its user's own gid: the tty
            // group (gid 5) has no id in it, and devpts refuses `gid=5`.
            // Without it the terminals belong to the opener's group.
            Err(nix::errno::Errno::EINVAL) if m.fstype == "devpts" => {
                let data = m.data.map(|d| d.replace(",gid=5", ""));
                mount(
                    Some(m.fstype),
                    &target,
                    Some(m.fstype),
                    m.flags,
                    data.as_deref(),
                )
                .map_err(syscall("mount", &target))?
            }
            result => result.map_err(syscall("mount", &target))?,
        }
    }
    Ok(())
}
// ANCHOR_END: mount_defaults

// ANCHOR: dir_inside
/// `root/relative` as a directory we may mount on, created when missing.
///
/// The rootfs comes from the user (later: from an image), so it may hold a
/// symlink such as `proc -> /etc`. Mounting "through" it would mount over a
/// path outside the rootfs; every component is checked with `lstat` instead.
pub fn dir_inside(root: &Path, relative: &str) -> Result<PathBuf, RootfsError> {
    let mut path = root.to_path_buf();
    for component in Path::new(relative).components() {
        let Component::Normal(name) = component else {
            return Err(RootfsError::WrongKind(path.join(relative), "relative path"));
        };
        path.push(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(RootfsError::SymlinkMountpoint(path));
            }
            Ok(meta) if !meta.is_dir() => return Err(RootfsError::WrongKind(path, "directory")),
            Ok(_) => {}
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_syscall("lstat", &path)(e));
            }
            Err(_) => std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&path)
                .map_err(io_syscall("mkdir", &path))?,
        }
    }
    Ok(path)
}
// ANCHOR_END: dir_inside

/// Whether `path` is a character device (used to check `/dev` from tests and
/// `doctor`).
pub fn is_char_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_created_and_symlinks_refused() {
        let root = tempfile::tempdir().unwrap();
        let made = dir_inside(root.path(), "dev/pts").unwrap();
        assert!(made.is_dir());
        std::os::unix::fs::symlink("/etc", root.path().join("proc")).unwrap();
        assert!(matches!(
            dir_inside(root.path(), "proc"),
            Err(RootfsError::SymlinkMountpoint(_))
        ));
        std::fs::write(root.path().join("sys"), "").unwrap();
        assert!(matches!(
            dir_inside(root.path(), "sys"),
            Err(RootfsError::WrongKind(..))
        ));
        assert!(dir_inside(root.path(), "../escape").is_err());
    }

    #[test]
    fn parents_come_before_children() {
        for (i, m) in DEFAULT_MOUNTS.iter().enumerate() {
            if let Some((parent, _)) = m.target.rsplit_once('/') {
                let p = DEFAULT_MOUNTS.iter().position(|x| x.target == parent);
                assert!(p.is_some_and(|p| p < i), "{} before {}", parent, m.target);
            }
        }
    }
}
