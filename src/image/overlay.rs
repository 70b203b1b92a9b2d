//! The container's root: an overlay of the image's layers.
//!
//! ```text
//!   merged/   what the container sees: the union, top layer first
//!   upper/    the container's own changes (created, changed, deleted files)
//!   work/     overlayfs's scratch space, on the same filesystem as upper/
//!   lower:    layer N … layer 1, read-only, shared with every container
//! ```
//!
//! The layers are unpacked on first use, once per diff_id (and per owner,
//! see [`super::unpack::Shift`]). The mount options must fit in one page
//! (4096 bytes), so the layers are named through short links (`l/<12 hex>`)
//! relative to the layers directory, which is the working directory while
//! mounting. When the container is removed, its upper directory goes with
//! it, unless it is kept to show what changed.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::bounded::{self, Bounded};
use super::digest::{Hashing, hex_of};
use super::store::Store;
use super::unpack::{Bounds, Shift, unpack};
use super::{ImageError, io_err};
use crate::trace::{Side, Trace};

/// Where an image's container root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRoot {
    /// The store.
    pub store: PathBuf,
    /// The image's manifest digest.
    pub manifest: String,
    /// Keep the container's upper directory after it ends (`--keep`).
    pub keep: bool,
}

impl ImageRoot {
    /// The directory of container `id`'s upper, work and merged
    /// directories (what a record of leftovers names, see `crate::leftovers`).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        let dir = self.store.join("containers").join(id);
        std::path::absolute(&dir).unwrap_or(dir)
    }
}

/// A mounted container root; [`Mounted::remove`] unmounts it and deletes
/// its changes unless they are kept.
#[derive(Debug)]
pub struct Mounted {
    /// The merged directory: the container's `/`.
    pub merged: PathBuf,
    /// What the child mounts, when it is the child (a rootless start, or
    /// the shared default rootfs, see [`Mounter::Child`]): the mount then
    /// lives only in the child's mount namespace.
    pub in_child: Option<ChildOverlay>,
    /// The maps of a rootless container whose ids go beyond the user's
    /// own: its files are deleted as root of a user namespace with them
    /// (see `crate::rootless::remove_as_mapped_root`).
    pub delete_as: Option<(Vec<crate::idmap::IdMap>, Vec<crate::idmap::IdMap>)>,
    /// Mounted by fuse-overlayfs (a rootless start the kernel refused its
    /// own overlay, see `super::fuse_overlay`): unmounted through
    /// `fusermount3`.
    pub fuse: bool,
    dir: PathBuf,
    keep: bool,
    removed: bool,
}

/// The name of the layers directory for `shift`'s owner; a rootless
/// unpack's layers carry other overlay marks (`user.*`), so they are kept
/// apart even for the same ids. Layers unpacked through a user's wider maps (see `Shift::mapped`) have
/// owners only those maps give: the directory's name ends in a digest of
/// them (a map's text holds `:`, which an overlay's options cannot carry).
fn owner(shift: &Shift) -> String {
    let marks = match (&shift.mapped, shift.rootless) {
        (Some(maps), true) => {
            use sha2::Digest;
            let text = format!("{:?}", maps.as_ref());
            let digest = format!("{:x}", sha2::Sha256::digest(text.as_bytes()));
            format!("-user-{}", &digest[..12])
        }
        (None, true) => "-user".to_string(),
        (_, false) => String::new(),
    };
    format!("{}-{}{marks}", shift.uid_base, shift.gid_base)
}

/// Unpacks the layer `blob` (diff_id `diff_id`) for `shift`'s owner unless
/// it is there already; returns its directory.
pub fn ensure_layer(
    store: &Store,
    media_type: &str,
    blob: &str,
    diff_id: &str,
    shift: &Shift,
    trace: &Trace,
) -> Result<PathBuf, ImageError> {
    let hex = hex_of(diff_id).ok_or_else(|| ImageError::BadDigest {
        digest: diff_id.to_string(),
    })?;
    let layers = store.layers_dir(&owner(shift));
    let dir = layers.join(hex);
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&layers).map_err(io_err(&layers))?;
    let blob_path = store.blob_path(blob)?;
    let file = std::fs::File::open(&blob_path).map_err(io_err(&blob_path))?;
    let compressed = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bounds = Bounds::for_compressed(compressed);
    // Every decompressed byte, tar headers and what follows the archive's
    // end included, passes the bound on bytes and time.
    let stream = Bounded::new(
        super::compression::tar_stream(media_type, file)?,
        bounds.max_stream,
        bounded::MAX_TIME,
    );
    let hit = stream.hit();
    let mut hashing = Hashing::new(stream);
    // The scratch directory last, once nothing but the unpacking can fail
    // (whose errors remove it below).
    // Its own name: the daemon unpacks from many threads, maybe this very
    // layer twice at once (the rename below then keeps one).
    let tmp = layers.join(format!(
        ".{}",
        super::store::unique_suffix(&format!("tmp-{hex}"))
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let unpack_checked = || {
        unpack(&mut hashing, &tmp, blob, shift, bounds)
            .and_then(|()| {
                let hostile = |e: std::io::Error| ImageError::Hostile {
                    layer: blob.to_string(),
                    why: format!("truncated or corrupt stream: {e}"),
                };
                bounded::drain_after_end(&mut hashing, &hit).map_err(hostile)?;
                let actual = hashing.finish().map_err(hostile)?;
                if actual != diff_id {
                    return Err(ImageError::DigestMismatch {
                        what: format!("layer {blob} (its diff_id)"),
                        expected: diff_id.to_string(),
                        actual,
                    });
                }
                Ok(())
            })
            // A bound hit inside the tar reader comes back wrapped in its
            // error: say plainly which bound it was.
            .map_err(|e| match hit.get() {
                Some(hit) => ImageError::LayerBound {
                    layer: blob.to_string(),
                    hit,
                },
                None => e,
            })
    };
    let result = match &shift.mapped {
        None => unpack_checked(),
        Some(maps) => in_mapped_root(maps, blob, unpack_checked),
    };
    if let Err(e) = result {
        remove_unpacked(&tmp, shift);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        // Another start unpacked the same layer meanwhile: theirs will do.
        remove_unpacked(&tmp, shift);
        if dir.is_dir() {
            return Ok(dir);
        }
        return Err(io_err(&dir)(e));
    }
    trace.step(
        Side::Parent,
        format_args!("image: unpacked layer {diff_id} into {}", dir.display()),
    );
    Ok(dir)
}

// ANCHOR: in_mapped_root
/// Runs `unpack` as root of a user namespace with `maps` (a rootless
/// container's, wider than the user's own ids): there it may give a file
/// any owner the maps cover, which the user on the host may not. The child
/// says its error in one line, which comes back as this start's error.
fn in_mapped_root(
    maps: &super::unpack::MapPair,
    blob: &str,
    unpack: impl FnOnce() -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let what = format!("unpack layer {blob}");
    let job = |said: &mut dyn std::io::Write| match unpack() {
        Ok(()) => 0,
        Err(e) => {
            let _ = write!(said, "{e}");
            1
        }
    };
    let (code, said) = crate::rootless::as_mapped_root(
        nix::sched::CloneFlags::empty(),
        &maps.0,
        &maps.1,
        &what,
        job,
    )
    .map_err(ImageError::Rootless)?;
    match code {
        0 => Ok(()),
        _ if said.is_empty() => Err(ImageError::Rootless(format!("{what}: it failed ({code})"))),
        _ => Err(ImageError::Rootless(said)),
    }
}
// ANCHOR_END: in_mapped_root

/// Deletes a layer's scratch directory that will not be kept, as whoever
/// could write in it (see [`in_mapped_root`]). Best effort: a scratch name
/// is never used again.
fn remove_unpacked(tmp: &Path, shift: &Shift) {
    match &shift.mapped {
        Some(maps) if std::fs::remove_dir_all(tmp).is_err() => {
            let _ = crate::rootless::remove_as_mapped_root(tmp, &maps.0, &maps.1);
        }
        Some(_) => {}
        None => {
            let _ = std::fs::remove_dir_all(tmp);
        }
    }
}

// ANCHOR: mount_overlay
/// Unpacks what is missing, creates the container's upper and work
/// directories, and mounts the overlay at its merged directory.
pub fn prepare(
    root: &ImageRoot,
    id: &str,
    shift: &Shift,
    trace: &Trace,
) -> Result<Mounted, ImageError> {
    let store = Store::open(&root.store)?;
    let manifest =
        oci_spec::image::ImageManifest::from_reader(&store.read_blob(&root.manifest)?[..])
            .map_err(|source| ImageError::Json {
                what: format!("manifest {}", root.manifest),
                source,
            })?;
    let config = oci_spec::image::ImageConfiguration::from_reader(
        &store.read_blob(manifest.config().digest().as_ref())?[..],
    )
    .map_err(|source| ImageError::Json {
        what: format!("config of manifest {}", root.manifest),
        source,
    })?;
    let layers_dir = store.layers_dir(&owner(shift));
    std::fs::create_dir_all(layers_dir.join("l")).map_err(io_err(layers_dir.join("l")))?;
    let mut lower = Vec::new();
    for (layer, diff_id) in manifest.layers().iter().zip(config.rootfs().diff_ids()) {
        let dir = ensure_layer(
            &store,
            layer.media_type().as_ref(),
            layer.digest().as_ref(),
            diff_id,
            shift,
            trace,
        )?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let short = format!("l/{}", &name[..12.min(name.len())]);
        let link = layers_dir.join(&short);
        let target = format!("../{name}");
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => {}
            // There already (or made by a concurrent start): it must point
            // at this very layer, or a crafted diff_id sharing the prefix
            // could stand in for it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if std::fs::read_link(&link).ok().as_deref() != Some(Path::new(&target)) {
                    return Err(ImageError::Hostile {
                        layer: diff_id.to_string(),
                        why: format!(
                            "{short} already names another layer (a diff_id prefix collision)"
                        ),
                    });
                }
            }
            Err(e) => return Err(io_err(&link)(e)),
        }
        lower.push(short);
    }
    if lower.is_empty() {
        return Err(ImageError::NoLayers);
    }
    // overlayfs lists the top layer first.
    lower.reverse();
    let dir = store.container_dir(id);
    let root_ids = (shift.uid_base, shift.gid_base);
    mount_with_upper(
        &layers_dir,
        &lower.join(":"),
        &dir,
        root_ids,
        None,
        Mounter::Parent { keep: root.keep },
        trace,
    )
}
// ANCHOR_END: mount_overlay

/// Creates `dir`'s upper, work and merged directories (the first two owned
/// by `owner`, the container's root; the upper with `upper_mode` if given)
/// and mounts the overlay of `lower` (overlayfs's `lowerdir`, relative to
/// `lower_dir`) at `merged`, or leaves its options to the child (see
/// [`Mounter`]). The guard exists before the first directory,
/// so a failure on the way removes what was made (unless it is kept).
fn mount_with_upper(
    lower_dir: &Path,
    lower: &str,
    dir: &Path,
    owner: (u32, u32),
    upper_mode: Option<std::fs::Permissions>,
    mounter: Mounter,
    trace: &Trace,
) -> Result<Mounted, ImageError> {
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
    let mut mounted = Mounted {
        merged: merged.clone(),
        in_child: None,
        delete_as: None,
        fuse: false,
        dir: dir.to_path_buf(),
        keep: matches!(mounter, Mounter::Parent { keep: true }),
        removed: false,
    };
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
    }
    for d in [&upper, &work] {
        std::os::unix::fs::lchown(d, Some(owner.0), Some(owner.1)).map_err(io_err(d))?;
    }
    if let Some(mode) = upper_mode {
        std::fs::set_permissions(&upper, mode).map_err(io_err(&upper))?;
    }
    // Rootless: the parent may not mount on the host; the child mounts the
    // same overlay in its own mount namespace, as root of its user namespace.
    // Its working directory is not `lower_dir`: each layer by its full path.
    if crate::rootless::active() {
        let lower = absolute_lowers(lower_dir, lower).map_err(io_err(lower_dir))?;
        let options = crate::rootless::overlay_options(&lower, &upper, &work)
            .map_err(|e| ImageError::Rootless(e.to_string()))?;
        match super::fuse_overlay::choose(&options, &merged)? {
            super::fuse_overlay::Driver::Native => {
                mounted.in_child = Some(ChildOverlay {
                    options,
                    scratch: None,
                })
            }
            super::fuse_overlay::Driver::Fuse => {
                let dirs = crate::rootless::overlay_dirs(&lower, &upper, &work)
                    .map_err(|e| ImageError::Rootless(e.to_string()))?;
                super::fuse_overlay::mount(&dirs, &merged)?;
                mounted.fuse = true;
                trace.step(
                    Side::Parent,
                    format_args!("fuse-overlayfs -o {dirs} {}", merged.display()),
                );
            }
        }
        return Ok(mounted);
    }
    if let Mounter::Child { user_namespace } = mounter
        && kernel_allows_child(user_namespace, false)
        && let Ok(lower) = absolute_lowers(lower_dir, lower)
        && let Some(options) = child_options(&lower, &upper, &work, user_namespace, true)
    {
        mounted.in_child = Some(ChildOverlay {
            options,
            scratch: None,
        });
        return Ok(mounted);
    }
    let options = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    let result = mount_from(lower_dir, &merged, &options);
    result.map_err(|source| ImageError::Mount {
        target: merged.clone(),
        options: options.clone(),
        source,
    })?;
    trace.step(
        Side::Parent,
        format_args!("mount -t overlay overlay -o {options} {}", merged.display()),
    );
    Ok(mounted)
}

/// An overlay the child mounts as its root, in its own mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildOverlay {
    /// overlayfs's options: its directories by their absolute paths.
    pub options: String,
    /// Where the child makes the upper and work directories first, when
    /// they are not on the host's disk (see [`Scratch`]).
    pub scratch: Option<Scratch>,
}

/// The upper and work directories of an overlay whose changes are deleted
/// at the end, in a tmpfs the child mounts in its own mount namespace: the
/// parent makes and deletes nothing on the disk, and the tmpfs goes with
/// the namespace. What the container writes is in memory, counted in its
/// memory cgroup like the rest of its pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scratch {
    /// Where the tmpfs is mounted: `containers/`, the directory every
    /// container's directory is in on the host, which the tmpfs hides in
    /// the child's namespace alone.
    pub at: PathBuf,
    /// The upper directory, in the tmpfs.
    pub upper: PathBuf,
    /// Its mode: that of the shared tree's root, which overlayfs shows as
    /// the merged `/`.
    pub upper_mode: u32,
    /// overlayfs's work directory, in the tmpfs.
    pub work: PathBuf,
}

/// Who mounts a container's overlay.
#[derive(Debug, Clone, Copy)]
enum Mounter {
    /// This process, on the host, before the clone: the mount is in the
    /// host's table, where others can reach it while the container runs
    /// (an image's root: `docker cp`, a build's commit, an OCI bundle), and
    /// it must be unmounted at the end. `keep`: its changes stay after the
    /// end (`--keep`).
    Parent { keep: bool },
    /// The child, in its own mount namespace, after the clone: the host's
    /// table never holds it, and the namespace takes it along when the
    /// container's last process ends, so nothing is unmounted at the end.
    /// For a root whose changes are deleted at the end, with its upper
    /// directory on the disk: it is mounted `volatile` (Linux 5.10), so
    /// overlayfs does not sync the upper directory's filesystem when it
    /// goes, which waits for the disk. In a user namespace (Linux 5.11)
    /// overlayfs keeps its marks in `user.*` attributes (`userxattr`):
    /// root of a user namespace may not write `trusted.*` ones.
    Child { user_namespace: bool },
}

/// Each layer of `lower` (overlayfs's `lowerdir`, relative to `lower_dir`)
/// by its absolute path: for a mount whose working directory is not
/// `lower_dir` (the child's).
fn absolute_lowers(lower_dir: &Path, lower: &str) -> std::io::Result<Vec<PathBuf>> {
    lower
        .split(':')
        .map(|l| std::path::absolute(lower_dir.join(l)))
        .collect()
}

/// The options of an overlay the child mounts (see [`Mounter::Child`]),
/// `volatile` when its upper directory is on the disk. `None` when a path
/// holds a `,` or `:`, which the options cannot carry: the parent then
/// mounts it, with the layers relative to their directory.
fn child_options(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    user_namespace: bool,
    volatile: bool,
) -> Option<String> {
    let mut options = crate::rootless::overlay_dirs(lower, upper, work).ok()?;
    if volatile {
        options.push_str(",volatile");
    }
    if user_namespace {
        options.push_str(",userxattr");
    }
    Some(options)
}

/// Whether this kernel lets the child mount the overlay: overlayfs in a
/// user namespace from Linux 5.11, `volatile` from 5.10, and with the
/// upper directory in a tmpfs (`in_tmpfs`) and a user namespace, tmpfs
/// keeps the `user.*` attributes overlayfs then writes from 6.6.
fn kernel_allows_child(user_namespace: bool, in_tmpfs: bool) -> bool {
    kernel_at_least(match (user_namespace, in_tmpfs) {
        (true, true) => (6, 6),
        (true, false) => (5, 11),
        (false, _) => (5, 10),
    })
}

/// Whether the running kernel's release (`uname -r`: `6.1.0-18-amd64`) is
/// at least `major.minor`; `false` when it cannot be read.
fn kernel_at_least(version: (u32, u32)) -> bool {
    nix::sys::utsname::uname()
        .is_ok_and(|uts| release_at_least(&uts.release().to_string_lossy(), version))
}

/// [`kernel_at_least`] on a given release text.
fn release_at_least(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

// ANCHOR: shared_root
/// Where container `id`'s overlay over the shared tree `lower` lives:
/// `containers/<id>` beside `lower` (in the rootfs cache), the shape a
/// record of leftovers names (see `crate::leftovers`).
pub fn shared_root_dir(lower: &Path, id: &str) -> PathBuf {
    let dir = lower
        .parent()
        .unwrap_or(Path::new("/"))
        .join("containers")
        .join(id);
    std::path::absolute(&dir).unwrap_or(dir)
}

/// A root of its own over `lower`, a tree every container shares (the
/// default rootfs of steps 6–8): what the container writes goes to an upper
/// directory deleted at its end, so the next container sees `lower` as it
/// was. The upper directory takes the owner and mode of `lower`'s root,
/// which overlayfs shows as the merged `/`. Nobody outside the container
/// needs this root while it runs, so the child mounts it in its own mount
/// namespace (`user_namespace`: the child has one), and it goes with that
/// namespace: there is nothing to unmount on the host at the end. Where
/// the kernel allows it, the upper directory is not on the disk either,
/// but in a tmpfs of the child's ([`Scratch`]): nothing to make or delete.
pub fn over_shared_root(
    lower: &Path,
    id: &str,
    user_namespace: bool,
    trace: &Trace,
) -> Result<Mounted, ImageError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(lower).map_err(io_err(lower))?;
    let mode = meta.mode() & 0o7777;
    let dir = shared_root_dir(lower, id);
    if let Some(mounted) = in_scratch(lower, &dir, mode, user_namespace)? {
        return Ok(mounted);
    }
    mount_with_upper(
        lower,
        ".",
        &dir,
        (meta.uid(), meta.gid()),
        Some(std::fs::Permissions::from_mode(mode)),
        Mounter::Child { user_namespace },
        trace,
    )
}
// ANCHOR_END: shared_root

/// The shared root's overlay with its upper and work directories in a
/// tmpfs of the child's (see [`Scratch`]), when the kernel allows it (see
/// [`kernel_allows_child`]). `None` (the directories go on the disk) on an
/// older kernel, for a rootless start, or for a path the options cannot
/// carry.
fn in_scratch(
    lower: &Path,
    dir: &Path,
    upper_mode: u32,
    user_namespace: bool,
) -> Result<Option<Mounted>, ImageError> {
    let Some(at) = dir.parent() else {
        return Ok(None);
    };
    if crate::rootless::active() || !kernel_allows_child(user_namespace, true) {
        return Ok(None);
    }
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
    let lower = std::path::absolute(lower).map_err(io_err(lower))?;
    let Some(options) = child_options(&[lower], &upper, &work, user_namespace, false) else {
        return Ok(None);
    };
    // The one directory on the host: the tmpfs's mount point, shared.
    std::fs::create_dir_all(at).map_err(io_err(at))?;
    Ok(Some(Mounted {
        merged,
        in_child: Some(ChildOverlay {
            options,
            scratch: Some(Scratch {
                at: at.to_path_buf(),
                upper,
                upper_mode,
                work,
            }),
        }),
        delete_as: None,
        fuse: false,
        dir: dir.to_path_buf(),
        keep: false,
        removed: false,
    }))
}

// ANCHOR: mount_from
/// Mounts the overlay with `options`, whose relative lower paths (the short
/// links) resolve against `layers_dir`, as the working directory at mount
/// time. The working directory belongs to the whole process, and changing
/// it under other threads would be a race; so the mount runs in a thread of
/// its own that first gives itself a private copy of the filesystem context
/// (`unshare(CLONE_FS)`): its `chdir` is invisible to the rest of the
/// process. (Docker forks a helper for the same reason; Linux 6.8's
/// `fsconfig(…, "lowerdir+", …)` would take each layer as its own absolute
/// string.)
fn mount_from(layers_dir: &Path, merged: &Path, options: &str) -> Result<(), nix::errno::Errno> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
                nix::unistd::chdir(layers_dir)?;
                mount(
                    Some("overlay"),
                    merged,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(options),
                )
            })
            .join()
            // A panic there is a bug: let it be one here too.
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
// ANCHOR_END: mount_from

/// Whether something is mounted at `path` (read from this process's mount
/// table, `/proc/self/mountinfo`, whose fifth field is the mount point).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| Path::new(&point.replace("\\040", " ")) == wanted)
}

impl Mounted {
    /// Unmounts the container's root and deletes its changes, or keeps
    /// them (`--keep`) and says where: `Ok(Some(upper))`.
    pub fn remove(mut self) -> Result<Option<PathBuf>, ImageError> {
        self.removed = true;
        if self.in_scratch() {
            return Ok(None);
        }
        if self.fuse {
            super::fuse_overlay::unmount(&self.merged)?;
        } else if self.in_child.is_none() {
            umount2(&self.merged, MntFlags::MNT_DETACH).map_err(|source| ImageError::Unmount {
                target: self.merged.clone(),
                source,
            })?;
        }
        if self.keep {
            return Ok(Some(self.dir.join("upper")));
        }
        if self.rootless() {
            return self.remove_rootless().map(|()| None);
        }
        std::fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        Ok(None)
    }

    /// Its container's directory was renamed to `dir`: the mount moved
    /// with it, and so do the paths this value unmounts and deletes.
    pub fn moved_to(&mut self, dir: &Path) {
        if let Ok(inside) = self.merged.strip_prefix(&self.dir) {
            self.merged = dir.join(inside);
        }
        self.dir = dir.to_path_buf();
    }

    /// Whether all of it was in the child's tmpfs (see [`Scratch`]): gone
    /// with the child's mount namespace, nothing on the host to remove.
    fn in_scratch(&self) -> bool {
        self.in_child.as_ref().is_some_and(|c| c.scratch.is_some())
    }

    /// Whether an ordinary user mounted this root (in the child, or
    /// through fuse-overlayfs): its files are the user's to delete.
    fn rootless(&self) -> bool {
        crate::rootless::active() || self.fuse
    }

    /// A rootless container's directory: deleted as the user when it can
    /// be, else as root of a user namespace with the container's maps
    /// (what it gave its other users, or a directory it left without
    /// write permission, the user may not delete on the host).
    fn remove_rootless(&self) -> Result<(), ImageError> {
        if remove_container_dir(&self.dir).is_ok() || !self.dir.exists() {
            return Ok(());
        }
        let (uid, gid) = self
            .delete_as
            .clone()
            .unwrap_or_else(crate::rootless::default_maps);
        crate::rootless::remove_as_mapped_root(&self.dir, &uid, &gid).map_err(ImageError::Rootless)
    }
}

/// Deletes a container's directory (upper, work, merged, and for the
/// engine its bundle and log) as whoever owns it. Root deletes anything.
/// An ordinary user (a rootless start) must first give the directories in
/// it back their owner's access: overlayfs makes `work/work` with mode 0,
/// and a container may shut a directory of its own (`chmod 0`), which root
/// in the container writes anyway, and the user on the host cannot even list.
pub fn remove_container_dir(dir: &Path) -> std::io::Result<()> {
    if crate::rootless::active() {
        open_dirs(dir);
    }
    std::fs::remove_dir_all(dir)
}

/// Gives every directory under `dir` its owner's access (mode 0700),
/// without following a symlink. Best effort: what it cannot open, the
/// deletion that follows reports.
pub(crate) fn open_dirs(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
            open_dirs(&path);
        }
    }
}

impl Drop for Mounted {
    /// On an error path: the same, best effort (the caller is returning
    /// the first error already; a record of the container remains for the
    /// next start to sweep, see `crate::leftovers`).
    fn drop(&mut self) {
        if !self.removed && !self.in_scratch() {
            if self.fuse {
                let _ = super::fuse_overlay::unmount(&self.merged);
            } else {
                let _ = umount2(&self.merged, MntFlags::MNT_DETACH);
            }
            if !self.keep && self.rootless() {
                let _ = self.remove_rootless();
            } else if !self.keep {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_is_compared_by_its_first_two_numbers() {
        assert!(release_at_least("6.1.0-18-amd64", (5, 11)));
        assert!(release_at_least("5.11.0", (5, 11)));
        assert!(!release_at_least("5.10.209-generic", (5, 11)));
        assert!(!release_at_least("4.19.0", (5, 10)));
        assert!(!release_at_least("", (5, 10)), "unreadable: not at least");
    }
}
