//! COPY and ADD: files from the context (or another stage) into the image.
//!
//! The source is resolved inside its own root, the destination inside the
//! image's ([`super::scope`]). Then the tree is copied entry by entry: a
//! symlink inside it is copied as a symlink, never followed; an entry in
//! the way is removed first, never written through; every file gets the
//! owner of `--chown` (root by default), its own mode and time. The cache
//! needs to know whether the sources changed: [`hash_tree`] is a digest of
//! their names, modes and contents.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Host ids to give what is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Host uid.
    pub uid: u32,
    /// Host gid.
    pub gid: u32,
}

/// Creates the directories of `dir` (a host path under `root`, resolved
/// with [`super::scope::resolve_in`]) that are missing, owned by `owner`;
/// refuses a name that is a file or a symlink.
pub fn make_dirs(root: &Path, dir: &Path, owner: Owner) -> Result<(), String> {
    let rel = dir
        .strip_prefix(root)
        .map_err(|_| "outside the root".to_string())?;
    let mut here = root.to_path_buf();
    for name in rel.components() {
        here.push(name);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("/{} is not a directory", rel_of(root, &here))),
            Err(_) => {
                std::fs::create_dir(&here)
                    .map_err(|e| format!("mkdir {}: {e}", rel_of(root, &here)))?;
                let _ = std::os::unix::fs::lchown(&here, Some(owner.uid), Some(owner.gid));
            }
        }
    }
    Ok(())
}

fn rel_of(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Removes what is at `path`, not following a symlink.
fn clear(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

// ANCHOR: copy_entry
/// Copies `src` (file, directory tree or symlink) to `dest`, whose parent
/// is a real directory. A directory onto a directory merges into it.
pub fn copy_entry(src: &Path, dest: &Path, owner: Owner) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    let kind = meta.file_type();
    if kind.is_dir() {
        match std::fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() => {}
            _ => {
                clear(dest)?;
                std::fs::create_dir(dest)?;
            }
        }
        std::os::unix::fs::lchown(dest, Some(owner.uid), Some(owner.gid))?;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        let mut names: Vec<_> = std::fs::read_dir(src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            copy_entry(&src.join(&name), &dest.join(&name), owner)?;
        }
    } else if kind.is_symlink() {
        clear(dest)?;
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dest)?;
        std::os::unix::fs::lchown(dest, Some(owner.uid), Some(owner.gid))?;
        return Ok(());
    } else if kind.is_file() {
        clear(dest)?;
        let mut from = std::fs::File::open(src)?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(dest)?;
        std::io::copy(&mut from, &mut to)?;
        to.flush()?;
        std::os::unix::fs::fchown(&to, Some(owner.uid), Some(owner.gid))?;
        to.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else {
        // Devices, sockets, FIFOs: a build context has no business with them.
        return Ok(());
    }
    let time = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dest,
        &time,
        &time,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
    Ok(())
}
// ANCHOR_END: copy_entry

/// Adds `src`'s tree (names, kinds, modes, contents, link targets) to
/// `hasher`: what the cache compares for COPY and ADD.
pub fn hash_tree(src: &Path, rel: &Path, hasher: &mut Sha256) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    hasher.update(rel.as_os_str().as_encoded_bytes());
    hasher.update(format!("\0{:o}\0", meta.mode()).as_bytes());
    if meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            hash_tree(&src.join(&name), &rel.join(&name), hasher)?;
        }
    } else if meta.file_type().is_symlink() {
        hasher.update(std::fs::read_link(src)?.as_os_str().as_encoded_bytes());
    } else if meta.is_file() {
        let mut file = std::fs::File::open(src)?;
        std::io::copy(&mut file, hasher)?;
    }
    Ok(())
}

/// The relative paths under `root` (files and directories, not following
/// symlinks) in name order: what COPY's wildcards are matched against.
pub fn list(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
            return;
        };
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            let rel = rel.join(name);
            out.push(rel.clone());
            if std::fs::symlink_metadata(root.join(&rel)).is_ok_and(|m| m.is_dir()) {
                walk(root, &rel, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out
}
