//! `docker cp`: files in and out of a container, as tar archives
//! (`GET`/`HEAD`/`PUT /containers/ID/archive?path=P`).
//!
//! The daemon is host root, and the container's files are the container's:
//! any of them may be a symlink to `/etc/shadow` or `../../../etc`, and a
//! running container may swap a directory for such a link at any moment
//! (CVE-2018-15664: `docker cp` checked a path, then used it, and lost the
//! race). So no path of the container is ever handed to the kernel as a
//! string from the host's `/`. The container's root is opened once, as a
//! descriptor, and every path below it is resolved by
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `/` and `..` stop at
//! that descriptor, symlinks are followed as the container would follow
//! them, and the walk that reads or writes goes on from descriptors, never
//! from names (see `pack.rs` and `unpack.rs`).
//!
//! Which root: while the container runs, its overlay is mounted at its
//! `merged` directory in its shim's mount namespace only, and the shim
//! hands the daemon a descriptor of it ([`super::shim::root`]); when it
//! does not run, the daemon mounts the same overlay there for the copy
//! (under the container's lock, so no start overlaps) and unmounts it
//! after. The overlay is the
//! container's `/` as its image and its own changes make it; the volumes
//! and binds mounted inside its mount namespace are not part of it.

mod pack;
mod unpack;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};
use serde_json::json;

use super::EngineError;
use super::server::{Request, RequestBody, Responder};
use super::state::{Containers, Locked, Record, Status};
use crate::image::overlay::Mounted;
use crate::image::unpack::Shift;

pub use unpack::Options;

/// A container's `/`, open: the descriptor every path is resolved under,
/// and what keeps it there (for a container that does not run: the overlay
/// mounted for this copy, and its lock). Fields drop in order: the
/// descriptor, then the mount, then the lock.
#[derive(Debug)]
pub struct ContainerRoot {
    fd: OwnedFd,
    _mounted: Option<Mounted>,
    _locked: Option<Locked>,
    /// How the container's ids map to the host's.
    pub shift: Shift,
}

/// overlayfs's `f_type` (linux/magic.h): what the merged directory must be.
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

// ANCHOR: container_root
impl ContainerRoot {
    /// Opens the root of `record`'s container: its mounted overlay if it
    /// runs or is parked, else the overlay mounted now, held until this is
    /// dropped.
    pub fn open(containers: &Containers, record: &Record) -> Result<ContainerRoot, EngineError> {
        let spec = containers.spec(&record.id)?;
        let shift = crate::parent::shift_of(&spec);
        let dir = containers.dir(&record.id);
        // Parked at its exec (`shim::PARKED`): its shim has the overlay
        // mounted, and passes it; held under the container's lock, so no
        // start mounts another while the copy goes on, should the parked
        // one leave meanwhile.
        if dir.join(super::shim::PARKED).exists() {
            let locked = containers.lock(&record.id)?;
            if let Some(fd) = super::shim::parked_root(&dir).and_then(|fd| is_overlay(fd).ok()) {
                return Ok(ContainerRoot {
                    fd,
                    _mounted: None,
                    _locked: Some(locked),
                    shift,
                });
            }
        }
        if containers.state(&record.id)?.status == Status::Running {
            let passed = match super::shim::root(&dir) {
                Ok(Some(fd)) => is_overlay(fd).ok(),
                _ => None,
            };
            // A shim older than `root` mounted it in the daemon's namespace.
            if let Some(fd) = passed.or_else(|| open_overlay(&dir.join("merged")).ok()) {
                return Ok(ContainerRoot {
                    fd,
                    _mounted: None,
                    _locked: None,
                    shift,
                });
            }
        }
        // Not running (or it ended just now): under its lock no start can
        // mount it too; the same overlay, mounted for this copy.
        let locked = containers.lock(&record.id)?;
        // A shim that lives on after its container ended is still
        // unmounting the overlay (a moment), or will start it again
        // (`--restart`): a second mount of the same upper directory would
        // be undefined behaviour for overlayfs, so wait, then give up.
        let begin = std::time::Instant::now();
        while super::state::shim_alive(&dir) && begin.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if containers.state(&record.id)?.status == Status::Running || super::state::shim_alive(&dir)
        {
            return Err(EngineError::Conflict(format!(
                "container {} is starting or restarting: try the copy again",
                record.name
            )));
        }
        let image = spec.image.as_ref().ok_or_else(|| {
            EngineError::BadRequest(format!("container {} has no image root", record.name))
        })?;
        let trace = crate::trace::Trace::new(false);
        let mounted = crate::image::overlay::prepare(image, &record.id, &shift, &trace)?;
        let fd = open_overlay(&mounted.merged)?;
        Ok(ContainerRoot {
            fd,
            _mounted: Some(mounted),
            _locked: Some(locked),
            shift,
        })
    }
}

/// Opens `merged` and checks an overlay is mounted there (see [`is_overlay`]).
fn open_overlay(merged: &Path) -> Result<OwnedFd, EngineError> {
    let fd = nix::fcntl::open(
        merged,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| EngineError::Sys {
        call: "open(the container's merged directory)",
        source,
    })?;
    is_overlay(fd)
}

/// `fd` if it is the root of an overlay: an empty `merged` directory (a
/// container that just ended) is no container's root.
fn is_overlay(fd: OwnedFd) -> Result<OwnedFd, EngineError> {
    let fs = nix::sys::statfs::fstatfs(&fd).map_err(|source| EngineError::Sys {
        call: "fstatfs(the container's merged directory)",
        source,
    })?;
    if fs.filesystem_type().0 as i64 != OVERLAYFS_SUPER_MAGIC {
        return Err(EngineError::Conflict(
            "the container's root is not mounted".into(),
        ));
    }
    Ok(fd)
}
// ANCHOR_END: container_root

// ANCHOR: resolve_in_root
/// Opens `path` (as the container sees it) below `root` with `flags`:
/// every symlink and `..` is resolved as if `root` were `/`, and no
/// `/proc/…/fd` magic link is followed. The one way any path of the
/// container reaches the kernel.
pub(crate) fn open_in_root(root: &OwnedFd, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // EAGAIN (a rename or a mount raced the walk) is tried again there.
    crate::rootfs::binds::openat2_in_root(root, relative, how)
}
// ANCHOR_END: resolve_in_root

/// A `path` no file can have: too long for the kernel (`ENAMETOOLONG`), or
/// with a NUL byte in it (`EINVAL`, from the conversion to a C string).
/// The client's mistake, a 400, not the daemon's.
fn unusable(path: &str) -> EngineError {
    EngineError::BadRequest(format!(
        "path {:?} cannot name a file: too long, or a NUL byte in it",
        path.chars().take(80).collect::<String>()
    ))
}

/// What a path names inside the container, found without following its
/// last component (Docker's rule: `cp` of a link copies the link) unless
/// the path ends in `/` or `/.`.
struct Found {
    /// The directory it is in, open (`O_PATH`); or the thing itself when
    /// `name` is `None` (the root, or a path ending in `/`).
    parent: OwnedFd,
    /// Its name in `parent`.
    name: Option<OsString>,
    /// Its status, not following a link.
    stat: FileStat,
    /// The name its archive's entries start with: the path's last
    /// component as given (`.` for `dir/.`, `/` for the root).
    base: String,
}

/// Finds `path` in the container, or 404 in Docker's words.
fn find(root: &ContainerRoot, path: &str, container: &str) -> Result<Found, EngineError> {
    let missing = || {
        EngineError::NotFound(format!(
            "Could not find the file {path} in container {container}"
        ))
    };
    let fail = |e: Errno| match e {
        Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::EXDEV => missing(),
        Errno::ENAMETOOLONG | Errno::EINVAL => unusable(path),
        source => EngineError::Sys {
            call: "openat2(RESOLVE_IN_ROOT)",
            source,
        },
    };
    if path.is_empty() {
        return Err(EngineError::BadRequest("path is missing".into()));
    }
    let whole = Path::new(path);
    let last = whole.components().next_back();
    let follow = path.ends_with('/') || path.ends_with("/.");
    match last {
        Some(Component::Normal(name)) if !follow => {
            let parent_path = whole.parent().unwrap_or(Path::new("/"));
            let parent = open_in_root(&root.fd, parent_path, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(fail)?;
            let it = openat(
                &parent,
                name,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(fail)?;
            let stat = fstat(&it).map_err(fail)?;
            Ok(Found {
                parent,
                name: Some(name.to_os_string()),
                stat,
                base: name.to_string_lossy().into_owned(),
            })
        }
        _ => {
            let it = open_in_root(&root.fd, whole, OFlag::O_PATH).map_err(fail)?;
            let stat = fstat(&it).map_err(fail)?;
            let base = if path.ends_with("/.") {
                ".".to_string()
            } else {
                whole
                    .file_name()
                    .map_or("/".to_string(), |n| n.to_string_lossy().into_owned())
            };
            Ok(Found {
                parent: it,
                name: None,
                stat,
                base,
            })
        }
    }
}

// ANCHOR: path_stat
/// Docker's `X-Docker-Container-Path-Stat`: base64 of `{name, size, mode,
/// mtime, linkTarget}`, where `mode` is Go's `os.FileMode` (the type in
/// its high bits: the Docker CLI reads `Mode.IsDir()` from it).
fn path_stat(found: &Found) -> Result<String, EngineError> {
    use base64::Engine as _;
    let kind = SFlag::from_bits_truncate(found.stat.st_mode) & SFlag::S_IFMT;
    let go_type: u32 = match kind {
        SFlag::S_IFDIR => 1 << 31,
        SFlag::S_IFLNK => 1 << 27,
        SFlag::S_IFIFO => 1 << 25,
        SFlag::S_IFSOCK => 1 << 24,
        SFlag::S_IFBLK => 1 << 26,
        SFlag::S_IFCHR => (1 << 26) | (1 << 21),
        _ => 0,
    };
    let mode = found.stat.st_mode;
    let special = [(0o4000, 1 << 23), (0o2000, 1 << 22), (0o1000, 1 << 20)]
        .iter()
        .filter(|(bit, _)| mode & bit != 0)
        .fold(0u32, |acc, (_, go)| acc | go);
    let link = match (&found.name, kind) {
        (Some(name), SFlag::S_IFLNK) => nix::fcntl::readlinkat(&found.parent, name.as_os_str())
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            found.stat.st_mtime.max(0) as u64,
            found.stat.st_mtime_nsec.clamp(0, 999_999_999) as u32,
        );
    let value = json!({
        "name": found.base,
        "size": found.stat.st_size,
        "mode": (mode & 0o777) | special | go_type,
        "mtime": humantime::format_rfc3339_nanos(mtime).to_string(),
        "linkTarget": link,
    });
    Ok(base64::engine::general_purpose::STANDARD.encode(value.to_string()))
}
// ANCHOR_END: path_stat

/// `HEAD` and `GET /containers/ID/archive?path=P`: P's stat in the header,
/// and (for `GET`) a tar of it.
pub fn serve_get(
    containers: &Containers,
    record: &Record,
    req: &Request,
    out: &mut Responder,
) -> Result<(), EngineError> {
    let path = req.param("path").unwrap_or_default();
    let root = ContainerRoot::open(containers, record)?;
    let found = find(&root, path, &record.name)?;
    let stat = path_stat(&found)?;
    let header = [("X-Docker-Container-Path-Stat", stat.as_str())];
    // The root itself (`/`, `/d/..`) would be one entry named `/`, which
    // a tar may not hold: said now, while an answer can still say it,
    // not as an empty archive after a 200.
    if req.method == "GET" && found.base == "/" {
        return Err(EngineError::BadRequest(format!(
            "copying the root of {} whole is not supported: name a directory in it (cp {}:/etc …)",
            record.name, record.name
        )));
    }
    if req.method == "HEAD" {
        return out
            .respond_with(200, "application/json", &header, b"")
            .map_err(EngineError::Connection);
    }
    let writer = out
        .stream_with(200, "application/x-tar", &header)
        .map_err(EngineError::Connection)?;
    // The head is out: a failure from here on cuts the archive short,
    // which the client's tar reader reports.
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(64 << 10, writer));
    let packed = match &found.name {
        Some(name) => pack::entry(&mut tar, &found.parent, name, Path::new(&found.base), &root),
        None => pack::reopened(&mut tar, &found.parent, Path::new(&found.base), &root),
    };
    if let Err(e) = packed.and_then(|()| tar.into_inner().map(drop)) {
        eprintln!(
            "caixa daemon: cp from {}:{path} broke off: {e}",
            record.name
        );
    }
    Ok(())
}

// ANCHOR: serve_put
/// `PUT /containers/ID/archive?path=DIR`: the body, a tar, unpacked into
/// DIR. The whole body is read and checked first (every name relative and
/// without `..`, no device, no hard link or entry through a link of its
/// own), so a hostile archive is refused before anything is written.
pub fn serve_put(
    root_dir: &Path,
    containers: &Containers,
    record: &Record,
    req: &Request,
    body: &mut RequestBody,
    out: &mut Responder,
) -> Result<(), EngineError> {
    let dir = req.param("path").unwrap_or_default();
    if dir.is_empty() {
        return Err(EngineError::BadRequest("path is missing".into()));
    }
    // `--read-only` is the container's promise about its root: a copy
    // would break it behind the program's back (Docker answers 403 too).
    if containers.spec(&record.id)?.readonly_root {
        return Err(EngineError::Forbidden(format!(
            "container {}'s rootfs is marked read-only: copy into a volume it mounts, or run it without --read-only",
            record.name
        )));
    }
    let options = Options {
        no_overwrite_dir_non_dir: req.flag("noOverwriteDirNonDir"),
        copy_uid_gid: req.flag("copyUIDGID"),
    };
    let mut spooled = unpack::spool(root_dir, body)?;
    unpack::check(&mut spooled)?;
    let root = ContainerRoot::open(containers, record)?;
    let dest = open_in_root(&root.fd, Path::new(dir), OFlag::O_PATH).map_err(|e| match e {
        Errno::ENOENT | Errno::ELOOP | Errno::EXDEV => EngineError::NotFound(format!(
            "Could not find the file {dir} in container {}",
            record.name
        )),
        Errno::ENOTDIR => EngineError::BadRequest(format!("{dir} is not a directory")),
        Errno::ENAMETOOLONG | Errno::EINVAL => unusable(dir),
        source => EngineError::Sys {
            call: "openat2(RESOLVE_IN_ROOT)",
            source,
        },
    })?;
    let is_dir = fstat(&dest)
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .unwrap_or(false);
    if !is_dir {
        return Err(EngineError::BadRequest(format!(
            "extraction point {dir} is not a directory"
        )));
    }
    unpack::unpack(&mut spooled, &root, &dest, &options)?;
    out.respond(200, "text/plain", b"")
        .map_err(EngineError::Connection)
}
// ANCHOR_END: serve_put
