//! overlayfs in user space: a rootless root where the kernel refuses one.
//!
//! An ordinary user's overlay is mounted by the container's child, as root
//! of its user namespace (see `crate::rootless`). Linux allows that from
//! 5.11; an older kernel, a security module or an upper filesystem without
//! `user.*` attributes refuses it. Then the same overlay comes from
//! `fuse-overlayfs` (Debian's `fuse-overlayfs`, the program podman uses
//! for the same case): a FUSE filesystem, served by a process of the user's
//! that reads and writes the same lower, upper and work directories. FUSE
//! lets a user mount through `fusermount3`, a setuid-root helper, the way
//! `newuidmap` lets a user map more ids: a small program the administrator
//! installed checks the request, and root does the one privileged call.
//!
//! Which one is used is decided once per start ([`choose`]): the kernel is
//! asked (a probe mount in a throwaway namespace) and what it answers
//! decides, said in one line when it is the fallback. `CAIXA_OVERLAY`
//! (`native` or `fuse`) overrides the choice, as podman's `mount_program`.
//!
//! The mount is made by the parent on the host, like a root start's
//! overlay, and lives in the parent's mount namespace; the FUSE server runs
//! as the user until [`unmount`] (`fusermount3 -u`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ImageError;

/// The variable that overrides the choice (see [`choose`]).
pub const CHOICE_VAR: &str = "CAIXA_OVERLAY";

/// Who mounts a rootless container's overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// The kernel's overlayfs, mounted by the child in its user namespace.
    Native,
    /// fuse-overlayfs, mounted by the parent through `fusermount3`.
    Fuse,
}

// ANCHOR: choose
/// Chooses the driver for a rootless overlay with `options` at `merged`:
/// `CAIXA_OVERLAY` when set, else the kernel's overlayfs if a probe mount
/// succeeds, else fuse-overlayfs, said on stderr in one line (it changes
/// what a user sees in `/proc/mounts` and costs a process per container).
pub fn choose(options: &str, merged: &Path) -> Result<Driver, ImageError> {
    match std::env::var(CHOICE_VAR).as_deref() {
        Ok("native") => return Ok(Driver::Native),
        Ok("fuse") => return Ok(Driver::Fuse),
        Ok("" | "auto") | Err(std::env::VarError::NotPresent) => {}
        Ok(other) => {
            return Err(ImageError::Rootless(format!(
                "{CHOICE_VAR}={} is not a choice: use native (the kernel's overlayfs), fuse (fuse-overlayfs) or auto (the kernel's if it allows a user one)",
                super::validate::printable(other)
            )));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(ImageError::Rootless(format!(
                "{CHOICE_VAR} is not text: use native, fuse or auto"
            )));
        }
    }
    let refused =
        crate::rootless::native_overlay_refused(options, merged).map_err(ImageError::Rootless)?;
    let Some(errno) = refused else {
        return Ok(Driver::Native);
    };
    if program("fuse-overlayfs").is_none() {
        return Err(ImageError::Rootless(format!(
            "the kernel refused overlayfs to a user namespace here ({errno}; Linux allows it from 5.11, on an upper filesystem with user.* attributes) and fuse-overlayfs is not installed: sudo apt-get install fuse-overlayfs, or run as root"
        )));
    }
    eprintln!(
        "caixa: the kernel refused overlayfs to a user namespace ({errno}): mounting the root with fuse-overlayfs"
    );
    Ok(Driver::Fuse)
}
// ANCHOR_END: choose

// ANCHOR: fuse_mount
/// Mounts the overlay of `dirs` (its directories, as
/// `rootless::overlay_dirs` names them) at `merged` with fuse-overlayfs,
/// which daemonizes once the mount is made: its exit says whether it was.
/// The server's files are the user's, so the container's root (the user,
/// through the one-id map) is the one id it serves.
pub fn mount(dirs: &str, merged: &Path) -> Result<(), ImageError> {
    let Some(fuse_overlayfs) = program("fuse-overlayfs") else {
        return Err(ImageError::Rootless(format!(
            "{CHOICE_VAR}=fuse, and fuse-overlayfs is not installed: sudo apt-get install fuse-overlayfs, or unset {CHOICE_VAR}"
        )));
    };
    let out = Command::new(&fuse_overlayfs)
        .args(["-o", dirs])
        .arg(merged)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| ImageError::Rootless(format!("{}: {e}", fuse_overlayfs.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.lines().last().unwrap_or("").trim();
    Err(ImageError::Rootless(format!(
        "fuse-overlayfs could not mount {}: {said}; a user's FUSE mount needs /dev/fuse readable and writable by you (udev makes it 0666) and the setuid fusermount3 (Debian's fuse3)",
        merged.display()
    )))
}

/// Unmounts a fuse-overlayfs root: through `fusermount3`, the only way a
/// user may unmount, lazily (`-z`) as a root's `MNT_DETACH`. The server
/// then ends.
pub fn unmount(merged: &Path) -> Result<(), ImageError> {
    let out = Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(merged)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| ImageError::Rootless(format!("fusermount3: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(ImageError::Rootless(format!(
        "fusermount3 -u {}: {}",
        merged.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
// ANCHOR_END: fuse_mount

/// `name`'s path on `PATH`, if it is there.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
