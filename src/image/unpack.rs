//! Unpacking a layer: hostile input, handled as such.
//!
//! A layer is a tar archive from somewhere else. Nothing in it may create,
//! change or link anything outside the layer's directory: no absolute names,
//! no `..`, no writing *through* a symlink (every parent directory is checked
//! with `lstat`, and an existing entry is removed, never opened), no hard
//! link to a file outside, no device nodes, and sizes are bounded. OCI
//! whiteouts become overlayfs's own: `.wh.NAME` a character device 0/0 named
//! NAME, `.wh..wh..opq` the `trusted.overlay.opaque` attribute on its
//! directory. File owners are shifted into the range the container's root
//! maps to (step 6), so root in the container owns what the image's root owned.
//!
//! Unpacked by an ordinary user (a rootless start, see [`Shift::rootless`]),
//! a layer differs in two ways: every file is the user's (the one owner a
//! user may give), and the opaque mark is `user.overlay.opaque`, the
//! attribute an unprivileged mount (`userxattr`) reads. A directory whose
//! mode would shut the user out gets that mode only once the layer is done.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};

use super::ImageError;

/// Bounds on one layer.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most bytes of file content in all.
    pub max_bytes: u64,
    /// Most entries.
    pub max_entries: u64,
    /// Most decompressed bytes in all: contents, tar headers and padding,
    /// and what follows the archive (see [`super::bounded`]).
    pub max_stream: u64,
}

impl Bounds {
    /// The bounds for a layer of `compressed` bytes: at most 100 times its
    /// size plus 512 MiB (a decompression bomb goes far past that), and a
    /// million entries; the whole stream may add 1 KiB per entry (a header
    /// and the padding of a file's last block) to that.
    pub fn for_compressed(compressed: u64) -> Bounds {
        let max_bytes = compressed.saturating_mul(100).saturating_add(512 << 20);
        let max_entries = 1_000_000;
        Bounds {
            max_bytes,
            max_entries,
            max_stream: max_bytes.saturating_add(max_entries * 1024),
        }
    }
}

/// How container ids become host ids: `host = base + id` for ids below
/// `count`, else the mapped `nobody`.
#[derive(Debug, Clone)]
pub struct Shift {
    /// Host uid of container uid 0.
    pub uid_base: u32,
    /// Host gid of container gid 0.
    pub gid_base: u32,
    /// How many ids are mapped.
    pub count: u32,
    /// Unpacked by an ordinary user for a rootless start: every file is
    /// owned by the base ids (a user may give no other owner; with the
    /// one-id map of a rootless container they are its root), and
    /// overlayfs's marks go in `user.*` attributes, not `trusted.*` ones,
    /// which need root on the host.
    pub rootless: bool,
    /// A rootless start whose maps go beyond the user's own ids (its
    /// `/etc/subuid` range): unpacked as root of a user namespace with those
    /// maps (see [`Shift::mapped`]), where every file gets the owner the
    /// image gives it, as the container will see it, and the kernel writes
    /// the host id the maps make of it. `None`: the user's ids alone.
    pub mapped: Option<std::sync::Arc<MapPair>>,
}

/// A uid map and a gid map.
pub type MapPair = (Vec<crate::idmap::IdMap>, Vec<crate::idmap::IdMap>);

impl Shift {
    /// The ids as they are: what an archive says is what the files get.
    pub const IDENTITY: Shift = Shift {
        uid_base: 0,
        gid_base: 0,
        count: u32::MAX,
        rootless: false,
        mapped: None,
    };

    /// The shift of a rootless container with the maps `uid` and `gid`
    /// (container 0 is the user): `count` is how many ids from 0 on both
    /// maps cover without a gap; an image's owner past them becomes
    /// `nobody`, as a root start's does past its range.
    pub fn mapped(uid: &[crate::idmap::IdMap], gid: &[crate::idmap::IdMap]) -> Shift {
        let root = |maps: &[crate::idmap::IdMap]| {
            maps.iter().find(|m| m.container == 0).map_or(0, |m| m.host)
        };
        Shift {
            uid_base: root(uid),
            gid_base: root(gid),
            count: covered(uid).min(covered(gid)),
            rootless: true,
            mapped: Some(std::sync::Arc::new((uid.to_vec(), gid.to_vec()))),
        }
    }

    fn uid(&self, id: u64) -> u32 {
        self.shifted(id, self.uid_base)
    }
    fn gid(&self, id: u64) -> u32 {
        self.shifted(id, self.gid_base)
    }
    fn shifted(&self, id: u64, base: u32) -> u32 {
        let within = if id < u64::from(self.count) {
            id as u32
        } else {
            65534
        };
        match (self.rootless, &self.mapped) {
            // The namespace's own ids: the kernel maps them.
            (true, Some(_)) => within,
            (true, None) => base,
            (false, _) => base + within,
        }
    }
}

/// How many ids from 0 on `maps` cover without a gap.
fn covered(maps: &[crate::idmap::IdMap]) -> u32 {
    let mut next = 0u32;
    while let Some(m) = maps.iter().find(|m| m.container == next && m.count > 0) {
        next = next.saturating_add(m.count);
    }
    next
}

/// The relative, normal path of an archive name, or why it is refused.
pub fn safe_relative(name: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("absolute path {}", name.display()));
            }
            Component::ParentDir => return Err(format!("path with `..`: {}", name.display())),
        }
    }
    Ok(out)
}

/// Creates (or checks) every directory from `root` down to `rel`, refusing
/// a component that is a symlink or a file: writing through it could land
/// outside the layer.
fn real_dirs(root: &Path, rel: &Path, shift: &Shift) -> Result<PathBuf, String> {
    let mut dir = root.to_path_buf();
    for c in rel.components() {
        dir.push(c);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            // This layer whited the name out, then puts entries under it:
            // a new directory that hides the lower layers' one.
            Ok(m) if is_whiteout(&m) => {
                std::fs::remove_file(&dir).map_err(|e| e.to_string())?;
                std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
                set_opaque(&dir, shift).map_err(|e| e.to_string())?;
                let _ = std::os::unix::fs::lchown(&dir, Some(shift.uid(0)), Some(shift.gid(0)));
            }
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symlink; entries may not go through it",
                    dir.strip_prefix(root).unwrap_or(&dir).display()
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "{} is not a directory",
                    dir.strip_prefix(root).unwrap_or(&dir).display()
                ));
            }
            Err(_) => {
                std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
                let _ = std::os::unix::fs::lchown(&dir, Some(shift.uid(0)), Some(shift.gid(0)));
            }
        }
    }
    Ok(dir)
}

/// Whether `meta` is overlayfs's form of a whiteout: a character device 0/0.
fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Removes whatever is at `path` (file, symlink or directory tree), without
/// following a symlink: an entry replaces what an earlier one made.
fn clear(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

/// mknod(2) of a device-less node (a whiteout's 0/0 character device, a
/// FIFO); `permissions` pass through the umask, as for any file.
fn mknod(path: &Path, kind: SFlag, permissions: u32) -> std::io::Result<()> {
    nix::sys::stat::mknod(path, kind, Mode::from_bits_truncate(permissions), 0)
        .map_err(std::io::Error::from)
}

// ANCHOR: opaque_mark
/// Marks `dir` opaque: overlayfs shows none of the lower layers' entries
/// under it. Root's mounts read `trusted.overlay.opaque`, an unprivileged
/// one (`userxattr`) `user.overlay.opaque`.
fn set_opaque(dir: &Path, shift: &Shift) -> std::io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())?;
    let name = if shift.rootless {
        c"user.overlay.opaque"
    } else {
        c"trusted.overlay.opaque"
    };
    // SAFETY: lsetxattr with valid NUL-terminated strings and a 1-byte value.
    let ret = unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
// ANCHOR_END: opaque_mark

// ANCHOR: whiteouts
/// Applies one OCI whiteout entry in overlayfs's form; `false` when `name`
/// is no whiteout.
pub fn apply_whiteout(dir: &Path, name: &str, shift: &Shift) -> std::io::Result<bool> {
    // EXERCISE(9): turn `.wh..wh..opq` into the opaque xattr on `dir`, and `.wh.NAME` into a 0/0 character device NAME
    if name == ".wh..wh..opq" {
        set_opaque(dir, shift)?;
        return Ok(true);
    }
    let Some(hidden) = name.strip_prefix(".wh.") else {
        return Ok(false);
    };
    // `.wh..` or `.wh...` would hide the directory itself or its parent:
    // only a plain name may be whited out.
    if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("whiteout {name:?} names no entry"),
        ));
    }
    let path = dir.join(hidden);
    match std::fs::symlink_metadata(&path) {
        // A whiteout hides the lower layers' NAME only. If this layer has
        // NAME itself, that already hides theirs; a directory of this layer
        // must also not merge with theirs: it becomes opaque.
        Ok(m) if m.is_dir() => set_opaque(&path, shift)?,
        // Its own file, or the same whiteout twice: nothing more to do.
        Ok(_) => {}
        Err(_) => {
            mknod(&path, SFlag::S_IFCHR, 0o600)?;
            std::os::unix::fs::lchown(&path, Some(shift.uid(0)), Some(shift.gid(0)))?;
        }
    }
    Ok(true)
    // END EXERCISE
}
// ANCHOR_END: whiteouts

/// Unpacks the tar stream `reader` into `dest` (which must be empty).
pub fn unpack(
    reader: impl Read,
    dest: &Path,
    layer: &str,
    shift: &Shift,
    bounds: Bounds,
) -> Result<(), ImageError> {
    let hostile = |why: String| ImageError::Hostile {
        layer: layer.to_string(),
        why,
    };
    let mut archive = tar::Archive::new(reader);
    let (mut bytes, mut count) = (0u64, 0u64);
    // Directories whose own mode shuts their owner out, to be given it last
    // (a rootless unpack: root writes into them anyway, a user may not).
    let mut shut = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| hostile(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| hostile(format!("truncated or corrupt archive: {e}")))?;
        count += 1;
        if count > bounds.max_entries {
            return Err(hostile(format!("more than {} entries", bounds.max_entries)));
        }
        let name = entry
            .path()
            .map_err(|e| hostile(format!("bad entry name: {e}")))?
            .into_owned();
        let rel = safe_relative(&name).map_err(hostile)?;
        let Some(file_name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue; // the archive's root, "./"
        };
        let parent =
            real_dirs(dest, rel.parent().unwrap_or(Path::new("")), shift).map_err(hostile)?;
        if apply_whiteout(&parent, &file_name, shift)
            .map_err(|e| hostile(format!("whiteout {}: {e}", rel.display())))?
        {
            continue;
        }
        let path = parent.join(&file_name);
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = (
            shift.uid(header.uid().unwrap_or(0)),
            shift.gid(header.gid().unwrap_or(0)),
        );
        let fail =
            |what: &str, e: std::io::Error| hostile(format!("{what} {}: {e}", rel.display()));
        match header.entry_type() {
            tar::EntryType::Directory => {
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    existing => {
                        clear(&path).map_err(|e| fail("replace", e))?;
                        std::fs::create_dir(&path).map_err(|e| fail("mkdir", e))?;
                        // After a whiteout of the same name: only this
                        // layer's directory, not merged with the lower ones.
                        if existing.is_ok_and(|m| is_whiteout(&m)) {
                            set_opaque(&path, shift).map_err(|e| fail("opaque", e))?;
                        }
                    }
                }
                let now = if shift.rootless && mode & 0o700 != 0o700 {
                    shut.push((parent_rel(&rel), file_name.clone(), mode));
                    mode | 0o700
                } else {
                    mode
                };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(now))
                    .map_err(|e| fail("chmod", e))?;
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                    .map_err(|e| fail("chown", e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = header.size().unwrap_or(0);
                bytes = bytes.saturating_add(size);
                if bytes > bounds.max_bytes {
                    return Err(hostile(format!(
                        "more than {} MiB of content: a decompression bomb?",
                        bounds.max_bytes >> 20
                    )));
                }
                clear(&path).map_err(|e| fail("replace", e))?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| fail("create", e))?;
                let copied = std::io::copy(&mut (&mut entry).take(size), &mut file)
                    .map_err(|e| fail("write", e))?;
                if copied != size {
                    return Err(hostile(format!(
                        "truncated archive: {} ends early",
                        rel.display()
                    )));
                }
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                    .map_err(|e| fail("chown", e))?;
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| fail("chmod", e))?;
            }
            tar::EntryType::Symlink => {
                let target =
                    entry.link_name().ok().flatten().ok_or_else(|| {
                        hostile(format!("symlink {} has no target", rel.display()))
                    })?;
                clear(&path).map_err(|e| fail("replace", e))?;
                // The target is not followed here; at run time it resolves
                // inside the container's root.
                std::os::unix::fs::symlink(&target, &path).map_err(|e| fail("symlink", e))?;
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                    .map_err(|e| fail("chown", e))?;
            }
            tar::EntryType::Link => {
                let target =
                    entry.link_name().ok().flatten().ok_or_else(|| {
                        hostile(format!("hard link {} has no target", rel.display()))
                    })?;
                let target_rel = safe_relative(&target)
                    .map_err(|why| hostile(format!("hard link {} to {why}", rel.display())))?;
                let target_parent =
                    real_dirs(dest, target_rel.parent().unwrap_or(Path::new("")), shift)
                        .map_err(hostile)?;
                let source = target_parent.join(target_rel.file_name().unwrap_or_default());
                match std::fs::symlink_metadata(&source) {
                    Ok(m) if m.is_file() => {}
                    _ => {
                        return Err(hostile(format!(
                            "hard link {} to {}: not a file of this layer",
                            rel.display(),
                            target.display()
                        )));
                    }
                }
                clear(&path).map_err(|e| fail("replace", e))?;
                std::fs::hard_link(&source, &path).map_err(|e| fail("link", e))?;
            }
            tar::EntryType::Fifo => {
                clear(&path).map_err(|e| fail("replace", e))?;
                mknod(&path, SFlag::S_IFIFO, mode).map_err(|e| fail("mkfifo", e))?;
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                    .map_err(|e| fail("chown", e))?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(hostile(format!(
                    "device node {}: layers may not create devices",
                    rel.display()
                )));
            }
            _ => {} // PAX and GNU extension headers are read by the tar crate
        }
    }
    // Innermost first, so no directory is shut before what is under it.
    // A later entry may have replaced it, or a directory above it, with a
    // symlink: chmod follows symlinks, so only a path of real directories
    // inside the layer gets its mode (a replaced one's mode is moot).
    for (parent, name, mode) in shut.iter().rev() {
        if let Some(dir) = real_dir_inside(dest, &parent.join(name)) {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| hostile(format!("chmod {}: {e}", dir.display())))?;
        }
    }
    Ok(())
}

/// `rel`'s parent, relative (empty for a top-level entry).
fn parent_rel(rel: &Path) -> PathBuf {
    rel.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `root/rel` if every component of it is a directory, none a symlink.
fn real_dir_inside(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut dir = root.to_path_buf();
    for c in rel.components() {
        dir.push(c);
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return None;
        }
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_mapped_shift_keeps_the_ids_its_maps_cover_without_a_gap() {
        use crate::idmap::IdMap;
        let m = |container, host, count| IdMap {
            container,
            host,
            count,
        };
        let maps = [m(0, 1000, 1), m(1, 300_000, 65_535)];
        let shift = Shift::mapped(&maps, &maps);
        assert_eq!((shift.uid_base, shift.count), (1000, 65_536));
        assert_eq!(
            (shift.uid(0), shift.uid(1000), shift.gid(70_000)),
            (0, 1000, 65_534)
        );
        // A gap ends what is covered: id 1 is not mapped, so nor is 2.
        let gapped = [m(0, 1000, 1), m(2, 300_000, 10)];
        assert_eq!(Shift::mapped(&gapped, &maps).count, 1);
    }

    use super::*;

    #[test]
    fn the_same_whiteout_twice_is_one_whiteout() {
        let dir = tempfile::tempdir().unwrap();
        let shift = Shift::IDENTITY;
        assert!(apply_whiteout(dir.path(), ".wh.a", &shift).unwrap());
        assert!(apply_whiteout(dir.path(), ".wh.a", &shift).unwrap());
        let meta = std::fs::symlink_metadata(dir.path().join("a")).unwrap();
        assert!(is_whiteout(&meta));
    }

    #[test]
    fn a_shut_directory_replaced_by_a_symlink_shuts_nothing_outside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_ustar();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o555);
        dir.set_size(0);
        tar.append_data(&mut dir, "ro", std::io::empty()).unwrap();
        let mut link = tar::Header::new_ustar();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        tar.append_link(&mut link, "ro", outside.path()).unwrap();
        let bytes = tar.into_inner().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let shift = Shift {
            uid_base: nix::unistd::geteuid().as_raw(),
            gid_base: nix::unistd::getegid().as_raw(),
            count: 1,
            rootless: true,
            mapped: None,
        };
        let bounds = Bounds::for_compressed(1 << 20);
        unpack(&bytes[..], dest.path(), "sha256:test", &shift, bounds).unwrap();
        let mode = std::fs::metadata(outside.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o700,
            "the deferred chmod of ro followed the symlink that replaced it"
        );
    }

    #[test]
    fn only_normal_relative_names_pass() {
        assert_eq!(
            safe_relative(Path::new("./etc/passwd")).unwrap(),
            PathBuf::from("etc/passwd")
        );
        assert!(safe_relative(Path::new("/etc/passwd")).is_err());
        assert!(safe_relative(Path::new("a/../../b")).is_err());
    }
}
