//! Masked and read-only paths: the parts of `/proc` and `/sys` a container
//! must not read or must not write.
//!
//! `/proc` and `/sys` are windows on the kernel, and not every file in them is
//! namespaced: `/proc/kcore` is the host's memory, `/proc/sysrq-trigger` can
//! reboot the host, `/proc/sys` sets kernel-wide knobs. Docker hides the first
//! kind (a bind mount of `/dev/null` over a file, an empty read-only tmpfs over
//! a directory) and freezes the second (a read-only bind mount of itself).

use std::path::Path;

use nix::mount::{MsFlags, mount};

use super::{RootfsError, syscall};

// ANCHOR: masked_paths
/// Paths hidden from the container, as Docker hides them.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container may read but not write, as Docker sets them.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
// ANCHOR_END: masked_paths

// ANCHOR: mask_paths
/// Hides every path of [`MASKED_PATHS`] that exists on this kernel.
pub fn mask_paths() -> Result<(), RootfsError> {
    mask(&MASKED_PATHS.map(Path::new))
}

/// Hides every path of `paths` that exists (a bundle's own list, step 12).
pub fn mask(paths: &[&Path]) -> Result<(), RootfsError> {
    for &path in paths {
        let Ok(meta) = std::fs::metadata(path) else {
            continue; // not on this kernel: nothing to hide
        };
        if meta.is_dir() {
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0"),
            )
            .map_err(syscall("mount(tmpfs, ro) over", path))?;
        } else {
            mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(syscall("mount(/dev/null, MS_BIND) over", path))?;
        }
    }
    Ok(())
}
// ANCHOR_END: mask_paths

/// Makes every path of [`READONLY_PATHS`] that exists read-only.
///
/// A bind mount cannot be made read-only in one call: the first `mount` makes
/// the bind, the second (`MS_REMOUNT`) changes its flags.
pub fn make_readonly_paths() -> Result<(), RootfsError> {
    make_readonly(&READONLY_PATHS.map(Path::new))
}

// ANCHOR: readonly_root
/// `--read-only`: the container's own root becomes read-only, after
/// everything is mounted in it. Only this one mount changes (`MS_BIND |
/// MS_REMOUNT` sets per-mount flags), so what is mounted on top of it
/// (`/proc`, `/dev`, volumes, tmpfs) stays as it was: those are where the
/// program may still write. The flags the kernel locked on the mount are
/// kept, or the remount would be refused in a user namespace.
pub fn make_root_readonly() -> Result<(), RootfsError> {
    let root = Path::new("/");
    let fd = nix::fcntl::open(
        root,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(syscall("open", root))?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(
        None::<&str>,
        root,
        None::<&str>,
        flags | super::binds::locked_flags(&fd),
        None::<&str>,
    )
    .map_err(syscall("mount(MS_REMOUNT|MS_RDONLY)", root))
}
// ANCHOR_END: readonly_root

/// Makes every path of `paths` that exists read-only (a bundle's own
/// list, step 12).
pub fn make_readonly(paths: &[&Path]) -> Result<(), RootfsError> {
    for &path in paths {
        if !path.exists() {
            continue;
        }
        mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(syscall("mount(MS_BIND)", path))?;
        mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(syscall("mount(MS_REMOUNT|MS_RDONLY)", path))?;
    }
    Ok(())
}
