//! Changing the root: `pivot_root(2)`.
//!
//! `chroot(2)` only changes where path lookups start; the old root stays
//! mounted and reachable (a root process can `chroot` its way back out).
//! `pivot_root` moves the whole mount namespace onto the new root, and then we
//! unmount the old one, so the host's filesystem is gone from the container's
//! mount table, not just out of sight.

use std::path::Path;

use nix::mount::{MntFlags, umount2};
use nix::unistd::{chdir, pivot_root};

use super::{RootfsError, syscall};

// ANCHOR: pivot_into
/// Makes `root` the container's `/` and detaches the host's root.
///
/// `pivot_root(".", ".")` stacks the old root on top of the new one at `/`;
/// unmounting `.` right after removes the old root from the top of the stack
/// (the trick pivot_root(2) describes, with no temporary directory needed).
/// `MNT_DETACH` lets go even though we still stand on it.
pub fn pivot_into(root: &Path) -> Result<(), RootfsError> {
    // EXERCISE(4): change into the rootfs, pivot_root(".", "."), detach the old root, go to "/"
    chdir(root).map_err(syscall("chdir", root))?;
    pivot_root(".", ".").map_err(syscall("pivot_root", root))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(syscall("umount2(MNT_DETACH) old root", "."))?;
    chdir("/").map_err(syscall("chdir", "/"))
    // END EXERCISE
}
// ANCHOR_END: pivot_into
