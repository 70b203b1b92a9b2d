//! The root filesystem (step 4): what the container sees at `/`.
//!
//! In a new mount namespace the child has a private copy of the host's mount
//! table. It turns that copy into the container's filesystem in four moves,
//! each in its own module, called in order by [`crate::init::run`]:
//!
//! 1. [`mounts`]: stop mount events from flowing back to the host, bind the
//!    rootfs onto itself (so it is a mount point), and mount `/proc`, `/dev`,
//!    `/sys` and friends inside it; then [`binds`]: the volumes and host
//!    files (`-v`, `/etc/hosts`), each onto a mount point opened inside the root;
//! 2. [`dev`]: fill the fresh `/dev` with the few device nodes a program expects;
//! 3. [`pivot`]: make the rootfs `/` and let go of the host's root;
//! 4. [`mask`]: hide or freeze the parts of `/proc` and `/sys` that tell too
//!    much about the host or let a container change it.
//!
//! A bundle of step 12 may bring its own list instead of the defaults of 1
//! and 4: [`table`].
//!
//! [`busybox`] builds the default rootfs the early steps use.

pub mod binds;
pub mod busybox;
pub mod dev;
pub mod mask;
pub mod mounts;
pub mod pivot;
pub mod table;
pub mod tmpfs;

use std::path::PathBuf;

use nix::errno::Errno;

/// A mount-namespace step failed; each variant names the call and the path.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// mount(2), umount2(2), pivot_root(2), mknod(2) … failed.
    #[error("{call} {path} failed: {errno}")]
    Syscall {
        /// The call, with its key arguments.
        call: &'static str,
        /// The path it acted on.
        path: PathBuf,
        /// What the kernel answered.
        errno: Errno,
    },
    /// Permission denied inside the rootfs: with a user namespace, the
    /// container's root is an unprivileged host uid.
    #[error(
        "{call} {path} failed: permission denied; with a user namespace (step 6) the rootfs must belong to the host uid container root maps to, e.g. `chown -R 100000:100000 ROOTFS`"
    )]
    Denied {
        /// The call.
        call: &'static str,
        /// The path it acted on.
        path: PathBuf,
    },
    /// A mount point inside the rootfs is a symlink: following it could mount
    /// over a path outside the rootfs, so we refuse.
    #[error(
        "{0} is a symbolic link; refusing to mount over it (it could point outside the rootfs)"
    )]
    SymlinkMountpoint(PathBuf),
    /// A mount point inside the rootfs exists and is the wrong kind of file.
    #[error("{0} exists but is not a {1}; cannot mount there")]
    WrongKind(PathBuf, &'static str),
    /// A bind mount's host path does not exist.
    #[error("the host path {0} of a bind mount does not exist: create it first, or name a volume")]
    MissingSource(PathBuf),
    /// The working directory is not inside the new root.
    #[error("working directory {0} is outside the container's root")]
    CwdOutsideRoot(PathBuf),
}

/// [`syscall`] for a call made through `std`, which reports an
/// `io::Error`.
pub(crate) fn io_syscall(
    call: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> RootfsError {
    let mapped = syscall(call, path);
    move |e| mapped(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Shorthand for mapping an errno from `call` on `path`.
pub(crate) fn syscall(
    call: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(Errno) -> RootfsError {
    let path = path.into();
    move |errno| match errno {
        Errno::EACCES => RootfsError::Denied { call, path },
        errno => RootfsError::Syscall { call, path, errno },
    }
}
