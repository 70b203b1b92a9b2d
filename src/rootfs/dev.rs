//! The device nodes of a container's `/dev`.
//!
//! `/dev` is a fresh tmpfs (see [`super::mounts::DEFAULT_MOUNTS`]), so the
//! container sees only the devices created here: the harmless ones every
//! program expects. A device node is a name for a (major, minor) pair; the
//! kernel's list is in Documentation/admin-guide/devices.txt.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::{RootfsError, syscall};

/// A character device to create in `/dev`.
#[derive(Debug, Clone, Copy)]
pub struct Device {
    /// File name under `/dev`.
    pub name: &'static str,
    /// Major number: which driver.
    pub major: u64,
    /// Minor number: which device of that driver.
    pub minor: u64,
}

// ANCHOR: default_devices
/// The devices Docker gives every container.
pub const DEFAULT_DEVICES: [Device; 6] = [
    Device {
        name: "null",
        major: 1,
        minor: 3,
    },
    Device {
        name: "zero",
        major: 1,
        minor: 5,
    },
    Device {
        name: "full",
        major: 1,
        minor: 7,
    },
    Device {
        name: "random",
        major: 1,
        minor: 8,
    },
    Device {
        name: "urandom",
        major: 1,
        minor: 9,
    },
    Device {
        name: "tty",
        major: 5,
        minor: 0,
    },
];

/// Symlinks programs expect in `/dev`, as (link, target).
pub const DEFAULT_SYMLINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    // The container's own pty multiplexer, from its devpts instance.
    ("ptmx", "pts/ptmx"),
];
// ANCHOR_END: default_devices

// ANCHOR: create_devices
/// Creates [`DEFAULT_DEVICES`] (mode 0666) and [`DEFAULT_SYMLINKS`] in `dev`.
///
/// In a user namespace (step 6) `mknod` of a device is not allowed, even to
/// its root: a device node would be a door to the host's hardware. There we
/// bind-mount the host's own node onto an empty file instead, as runc does;
/// the host's `/dev` is still reachable because this runs before `pivot_root`.
pub fn create_devices(dev: &Path) -> Result<(), RootfsError> {
    for device in &DEFAULT_DEVICES {
        let path = dev.join(device.name);
        match mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(device.major, device.minor),
        ) {
            Ok(()) => {
                // mknod's mode passes through the umask; set it exactly.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
                    .map_err(|e| io_error("chmod", &path, e))?;
            }
            Err(nix::errno::Errno::EPERM) => bind_host_device(device.name, &path)?,
            Err(errno) => return Err(syscall("mknod", &path)(errno)),
        }
    }
    for (link, target) in DEFAULT_SYMLINKS {
        let path = dev.join(link);
        std::os::unix::fs::symlink(target, &path).map_err(|e| io_error("symlink", &path, e))?;
    }
    Ok(())
}
// ANCHOR_END: create_devices

/// Bind-mounts `/dev/<name>` of the host onto a new empty file at `path`.
fn bind_host_device(name: &str, path: &Path) -> Result<(), RootfsError> {
    std::fs::File::create(path).map_err(|e| io_error("create", path, e))?;
    let host = Path::new("/dev").join(name);
    nix::mount::mount(
        Some(&host),
        path,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(syscall("mount(MS_BIND) host device onto", path))
}

// ANCHOR: host_device_owners
/// The host's device nodes under `dev` that caixa binds into containers
/// (step 6 on) and that are not owned by root, as (path, uid, gid).
///
/// A bound node is the host's own inode: if its owner is the uid a
/// container's root maps to, every later container's root can chmod or
/// chown the host's `/dev/null`. Some runtimes chown a container's stdio
/// to its root (crun 1.8.1 does, given `/dev/null`), so this is checked
/// by `cargo xtask doctor` and warned about rather than assumed.
pub fn host_nodes_not_owned_by_root(dev: &Path) -> Vec<(std::path::PathBuf, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    DEFAULT_DEVICES
        .iter()
        .map(|device| dev.join(device.name))
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            (meta.uid() != 0 || meta.gid() != 0).then_some((path, meta.uid(), meta.gid()))
        })
        .collect()
}
// ANCHOR_END: host_device_owners

fn io_error(call: &'static str, path: &Path, e: std::io::Error) -> RootfsError {
    RootfsError::Syscall {
        call,
        path: path.to_path_buf(),
        errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_node_owned_by_a_container_uid_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        for device in &super::DEFAULT_DEVICES {
            std::fs::write(dir.path().join(device.name), "").unwrap();
        }
        let null = dir.path().join("null");
        std::os::unix::fs::chown(&null, Some(100000), Some(100000)).unwrap();
        let found = super::host_nodes_not_owned_by_root(dir.path());
        // Run as a user other than root, every file is "not root's".
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(found, [(null, 100000, 100000)]);
        } else {
            assert!(found.contains(&(null, 100000, 100000)));
        }
    }
}
