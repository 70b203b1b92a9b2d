//! Bind mounts: a host directory or file seen inside the container.
//!
//! This is what a volume is to the kernel. `docker run -v /srv/site:/www:ro`
//! and a named volume (`-v site:/www`, a directory the engine keeps under
//! its root) both end as one `mount(2)` with `MS_BIND`: the same directory,
//! reached by a second path. The container's changes to its own root live
//! in its overlay's upper directory and go when it is removed; what it
//! writes through a bind goes to the host directory and stays.
//!
//! The mount point is resolved *inside the container's root*. The root
//! comes from an image, and an image may hold `www -> /etc` or
//! `www -> ../../../../etc`: a runtime that joins `root + "/www"` and hands
//! the string to `mount(2)` lets the kernel follow the link out of the root,
//! and mounts over the host's `/etc`. Worse, a second container sharing a
//! volume can swap a directory for a symlink between the runtime's check
//! and its mount (CVE-2021-30465, runc). So caixa never passes a path it
//! checked: it opens the mount point with `openat2(RESOLVE_IN_ROOT)`, which
//! resolves every symlink and `..` as if the root were `/`, and mounts onto
//! what it opened, named by `/proc/self/fd/N`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat, openat2};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};
use nix::sys::statvfs::{FsFlags, fstatvfs};

use super::{RootfsError, syscall};

/// One bind mount: `source` on the host appears at `target` in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// An absolute host path: a directory or a file.
    pub source: PathBuf,
    /// An absolute path inside the container.
    pub target: PathBuf,
    /// Mounted read-only (`:ro`): the container cannot change it, root or not.
    pub read_only: bool,
}

impl Bind {
    /// A writable bind of `source` at `target` (the engine's `/etc/hosts`…).
    pub fn new(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Bind {
        Bind {
            source: source.into(),
            target: target.into(),
            read_only: false,
        }
    }
}

/// Where a `-v` volume's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// `-v /srv/site:/www`: a host path, as it is.
    Host(PathBuf),
    /// `-v site:/www`: a named volume, kept by the engine (step 11).
    Named(String),
    /// `-v /www`: a new volume of its own, nameless (the engine's).
    Anonymous,
}

/// A `-v`/`--volume` argument: `[SOURCE:]TARGET[:ro|rw]`, Docker's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeArg {
    /// Where the data comes from.
    pub source: VolumeSource,
    /// Where it appears in the container.
    pub target: PathBuf,
    /// `:ro`.
    pub read_only: bool,
}

/// A `-v` argument or a volume name that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VolumeArgError {
    /// Not `[SOURCE:]TARGET[:MODE]`.
    #[error("invalid volume {0:?}: write SOURCE:TARGET[:ro], e.g. /srv/site:/www:ro or data:/data")]
    Syntax(String),
    /// A mode other than `ro` or `rw`.
    #[error("invalid mode {mode:?} in volume {arg:?}: caixa knows ro and rw")]
    Mode {
        /// The argument.
        arg: String,
        /// The mode.
        mode: String,
    },
    /// The target is relative, `/`, or climbs with `..`.
    #[error(
        "invalid mount target {0:?}: give an absolute path inside the container, not / and without .."
    )]
    Target(String),
    /// A volume name outside Docker's grammar.
    #[error(
        "invalid volume name {0:?}: use letters, digits, _ . - (starting with a letter or digit, at least 2), or an absolute host path"
    )]
    Name(String),
}

// ANCHOR: volume_name
/// Checks a named volume's name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, Docker's
/// grammar. The name becomes a directory under the engine's root, so `..`,
/// `/` and the empty name must never get through.
pub fn check_volume_name(name: &str) -> Result<(), VolumeArgError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && name.len() >= 2 && name.len() <= 255 {
        Ok(())
    } else {
        Err(VolumeArgError::Name(name.to_string()))
    }
}
// ANCHOR_END: volume_name

/// Checks a mount target: absolute, not `/` itself, no `..` component.
pub fn check_target(target: &str) -> Result<PathBuf, VolumeArgError> {
    let path = Path::new(target);
    let climbs = path.components().any(|c| c == Component::ParentDir);
    if !path.is_absolute() || climbs || path.components().count() < 2 {
        return Err(VolumeArgError::Target(target.to_string()));
    }
    Ok(path.to_path_buf())
}

impl FromStr for VolumeArg {
    type Err = VolumeArgError;

    /// `TARGET`, `TARGET:MODE`, `SOURCE:TARGET` or `SOURCE:TARGET:MODE`,
    /// read as Docker reads them: two parts are a target and a mode only
    /// when the second is a mode.
    fn from_str(arg: &str) -> Result<VolumeArg, VolumeArgError> {
        let parts: Vec<&str> = arg.split(':').collect();
        let is_mode = |m: &str| m.split(',').all(|o| matches!(o, "ro" | "rw"));
        let (source, target, mode) = match parts.as_slice() {
            [target] => (None, *target, ""),
            [target, mode] if is_mode(mode) && !mode.is_empty() => (None, *target, *mode),
            [source, target] => (Some(*source), *target, ""),
            [source, target, mode] => (Some(*source), *target, *mode),
            _ => return Err(VolumeArgError::Syntax(arg.to_string())),
        };
        if !mode.is_empty()
            && let Some(bad) = mode.split(',').find(|o| !matches!(*o, "ro" | "rw"))
        {
            return Err(VolumeArgError::Mode {
                arg: arg.to_string(),
                mode: bad.to_string(),
            });
        }
        let source = match source {
            None => VolumeSource::Anonymous,
            Some(s) if s.starts_with('/') => VolumeSource::Host(PathBuf::from(s)),
            Some(name) => {
                check_volume_name(name)?;
                VolumeSource::Named(name.to_string())
            }
        };
        Ok(VolumeArg {
            source,
            target: check_target(target)?,
            read_only: mode.split(',').any(|o| o == "ro"),
        })
    }
}

/// What the mount point must be: a directory for a directory, a file for
/// a file (`mount(2)` refuses to bind one over the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A directory, created (with its parents) when missing.
    Dir,
    /// A file, created empty (its parents as directories) when missing.
    File,
}

// ANCHOR: open_inside
/// Opens `path` (absolute, as the container sees it) inside the root open
/// at `root`, creating what is missing as `want` says, and returns an
/// `O_PATH` descriptor of it.
///
/// Every lookup is `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: a
/// symlink is followed as the container would follow it (`/etc` means
/// the root's `etc`, and `..` stops at the root), and a `/proc/self/fd`
/// magic link, which could lead anywhere on the host, is never followed.
pub fn open_inside(root: &OwnedFd, path: &Path, want: Want) -> Result<OwnedFd, RootfsError> {
    open_within(root, path, want, 0)
}

/// `openat2` of `path` below `root` with `how`, a `RESOLVE_IN_ROOT`
/// lookup, tried again on `EAGAIN`: when a rename or a mount anywhere on
/// the host races the walk, the kernel cannot prove the lookup stayed
/// inside the root, and asks the caller to start over (openat2(2)). Every
/// `RESOLVE_IN_ROOT` lookup of caixa goes through here.
pub(crate) fn openat2_in_root(root: &OwnedFd, path: &Path, how: OpenHow) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match openat2(root, path, how) {
            Err(Errno::EAGAIN) if tries < 32 => tries += 1,
            other => return other,
        }
    }
}

/// The links a path may go through, as the kernel's own limit (`ELOOP`).
const MAX_LINKS: usize = 40;

/// [`open_inside`], `depth` dangling links deep.
fn open_within(
    root: &OwnedFd,
    path: &Path,
    want: Want,
    depth: usize,
) -> Result<OwnedFd, RootfsError> {
    if depth > MAX_LINKS {
        return Err(syscall("openat2(RESOLVE_IN_ROOT)", path)(Errno::ELOOP));
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let names: Vec<_> = path
        .components()
        .filter(|c| *c != Component::RootDir)
        .collect();
    let mut parent = root
        .try_clone()
        .map_err(|_| syscall("dup", path)(Errno::EMFILE))?;
    let mut prefix = PathBuf::new();
    for (i, part) in names.iter().enumerate() {
        let Component::Normal(name) = part else {
            return Err(RootfsError::WrongKind(
                path.to_path_buf(),
                "path without . or ..",
            ));
        };
        prefix.push(name);
        let last = i + 1 == names.len();
        let opened = match openat2_in_root(root, &prefix, how) {
            // Everything before `name` resolved inside the root: it is
            // missing in `parent`, so it is made there, and never through a
            // link (a dangling one makes mkdirat/openat fail: we stop).
            Err(Errno::ENOENT) => {
                let kind = if last { want } else { Want::Dir };
                if let Some(link) = dangling_link(&parent, name, &prefix) {
                    // `name` is a link to something missing: make that,
                    // inside the root, as the container would find it.
                    drop(open_within(root, &link, kind, depth + 1)?);
                } else if kind == Want::File {
                    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY;
                    let made = openat(
                        &parent,
                        *name,
                        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    );
                    drop(made.map_err(syscall("openat(O_CREAT)", as_seen(&prefix)))?);
                } else {
                    mkdirat(&parent, *name, Mode::from_bits_truncate(0o755))
                        .map_err(syscall("mkdirat", as_seen(&prefix)))?;
                }
                openat2_in_root(root, &prefix, how)
            }
            other => other,
        };
        let fd = opened.map_err(syscall("openat2(RESOLVE_IN_ROOT)", as_seen(&prefix)))?;
        let is_dir = fstat(&fd)
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
            .map_err(syscall("fstat", as_seen(&prefix)))?;
        match (last, want, is_dir) {
            (false, _, false) | (true, Want::Dir, false) => {
                return Err(RootfsError::WrongKind(as_seen(&prefix), "directory"));
            }
            (true, Want::File, true) => {
                return Err(RootfsError::WrongKind(as_seen(&prefix), "file"));
            }
            _ => parent = fd,
        }
    }
    Ok(parent)
}
// ANCHOR_END: open_inside

/// Where the symlink `name` in `parent` (at `prefix` in the container)
/// points, as a path in the container with its `..` taken lexically and
/// stopped at `/`; `None` when `name` is not a symlink.
fn dangling_link(parent: &OwnedFd, name: &std::ffi::OsStr, prefix: &Path) -> Option<PathBuf> {
    let link = nix::fcntl::readlinkat(parent, name).ok()?;
    let base = Path::new("/").join(prefix.parent().unwrap_or(Path::new("")));
    let mut target = PathBuf::from("/");
    for part in base.join(PathBuf::from(link)).components() {
        match part {
            Component::ParentDir => {
                target.pop();
            }
            Component::Normal(n) => target.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(target)
}

/// How a path inside the root reads in a message: as the container sees it.
fn as_seen(prefix: &Path) -> PathBuf {
    Path::new("/").join(prefix)
}

/// The name of an open descriptor that `mount(2)` accepts as a path: the
/// kernel resolves the magic link to the very file the descriptor holds.
pub(super) fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The flags of the mount `fd` is on that a remount must keep: inside a
/// user namespace, the kernel locks `nosuid`, `nodev`, `noexec` and the
/// atime flags of a mount that came from the host, and refuses a remount
/// that would clear them (EPERM).
pub(super) fn locked_flags(fd: &OwnedFd) -> MsFlags {
    let Ok(st) = fstatvfs(fd.as_fd()) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .iter()
    .filter(|(st, _)| f.contains(*st))
    .fold(MsFlags::empty(), |all, (_, ms)| all | *ms)
}

// ANCHOR: bind_into
/// Bind-mounts `bind.source` (a host path, open before the root changes)
/// onto `bind.target` inside `root`, read-only if asked.
pub fn bind_into(root: &Path, bind: &Bind) -> Result<(), RootfsError> {
    // EXERCISE(4): bind the source onto the target opened inside the root (mount onto /proc/self/fd/N, never onto a path string); for :ro, open the target again (now the new mount) and remount it MS_BIND|MS_REMOUNT|MS_RDONLY, keeping its locked flags
    let want = match std::fs::metadata(&bind.source) {
        Ok(meta) if meta.is_dir() => Want::Dir,
        Ok(_) => Want::File,
        Err(_) => return Err(RootfsError::MissingSource(bind.source.clone())),
    };
    let dir = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root_fd = open(root, dir, Mode::empty()).map_err(syscall("open", root))?;
    let target = open_inside(&root_fd, &bind.target, want)?;
    mount(
        Some(bind.source.as_path()),
        &fd_path(&target),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(syscall("mount(MS_BIND|MS_REC)", &bind.target))?;
    if bind.read_only {
        // `target` still names the directory *under* the new mount; the
        // remount must reach the mount itself, so the path is walked again.
        let mounted = open_inside(&root_fd, &bind.target, want)?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(
            None::<&str>,
            &fd_path(&mounted),
            None::<&str>,
            flags | locked_flags(&mounted),
            None::<&str>,
        )
        .map_err(syscall("mount(MS_REMOUNT|MS_RDONLY)", &bind.target))?;
    }
    Ok(())
    // END EXERCISE
}
// ANCHOR_END: bind_into

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(s: &str) -> VolumeArg {
        s.parse().unwrap()
    }

    #[test]
    fn volume_arguments_read_as_docker_reads_them() {
        assert_eq!(
            arg("/srv:/www:ro"),
            VolumeArg {
                source: VolumeSource::Host("/srv".into()),
                target: "/www".into(),
                read_only: true
            }
        );
        assert_eq!(arg("data:/data").source, VolumeSource::Named("data".into()));
        assert_eq!(arg("/data").source, VolumeSource::Anonymous);
        assert!(arg("/data:ro").read_only);
        assert!(!arg("/srv:/www:rw").read_only);
        for bad in [
            "",
            "a:b:c:d",
            "../x:/data",
            "x:/data",
            "data:relative",
            "data:/",
            "data:/a/../etc",
            "/srv:/www:z",
            "da ta:/x",
        ] {
            assert!(bad.parse::<VolumeArg>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn mount_points_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        // An absolute link and a climbing one, both meant for `outside`.
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", root.join("up")).unwrap();
        let fd = open(&root, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        open_inside(&fd, Path::new("/abs/made"), Want::Dir).unwrap();
        open_inside(&fd, Path::new("/up/file"), Want::File).unwrap();
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing is made outside the root"
        );
        let inside = root.join(outside.strip_prefix("/").unwrap()).join("made");
        assert!(inside.is_dir(), "the absolute link resolved in the root");
        assert!(
            root.join("outside/file").is_file(),
            "`..` stopped at the root"
        );
        assert!(matches!(
            open_inside(&fd, Path::new("/up/file/x"), Want::Dir),
            Err(RootfsError::WrongKind(..))
        ));
    }
}
