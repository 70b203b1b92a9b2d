//! A tar from a client, unpacked into a container through descriptors.
//!
//! Two passes over the body, spooled to an unnamed file first: [`check`]
//! refuses a hostile archive with step 9's rules for layers
//! ([`crate::image::unpack::safe_relative`]: no absolute name, no `..`;
//! no device node; a hard link only to a file of the same archive; no
//! entry below a symlink of the same archive) before anything is written;
//! then [`unpack`] writes, each entry made *in its directory's descriptor*
//! (`mkdirat`, `openat(O_CREAT | O_EXCL | O_NOFOLLOW)`, `symlinkat`,
//! `linkat`), owned by the container's root as mapped (host uid 100000…),
//! never by the daemon's.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, unlinkat};

use super::{ContainerRoot, open_in_root};
use crate::engine::EngineError;
use crate::engine::server::{MAX_BODY, RequestBody};
use crate::image::unpack::safe_relative;

/// The most entries an archive may have (step 9's bound for a layer).
const MAX_ENTRIES: u64 = 1_000_000;

/// The query's switches of a `PUT …/archive`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Refuse to replace a directory with a non-directory or the other way
    /// round (`noOverwriteDirNonDir`, which `docker cp` sets).
    pub no_overwrite_dir_non_dir: bool,
    /// Keep the archive's owners (`copyUIDGID`, `docker cp -a`), mapped;
    /// else everything belongs to the container's root.
    pub copy_uid_gid: bool,
}

fn bad(why: String) -> EngineError {
    EngineError::BadRequest(why)
}

/// The body, read whole (at most [`MAX_BODY`]) into an unnamed file
/// (`O_TMPFILE`) under the engine's root: nothing to clean up, whatever
/// happens.
pub(super) fn spool(root: &Path, body: &mut RequestBody) -> Result<File, EngineError> {
    let dir = root.join("engine/tmp");
    super::super::state::create_dirs(&dir, 0o700)?;
    let mut file = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(&dir)
        .map_err(super::super::state::io(&dir))?;
    std::io::copy(&mut body.limit(MAX_BODY), &mut file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::FileTooLarge {
            EngineError::TooLarge(e.to_string())
        } else {
            bad(format!("reading the archive: {e}"))
        }
    })?;
    Ok(file)
}

// ANCHOR: check
/// Reads the whole archive once and refuses it if any entry is hostile or
/// it is no tar at all; writes nothing.
pub(super) fn check(file: &mut File) -> Result<(), EngineError> {
    file.rewind().map_err(EngineError::Connection)?;
    let mut archive = tar::Archive::new(&mut *file);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("the body is not a tar archive: {e}")))?;
    let (mut count, mut files, mut links) = (0u64, HashSet::new(), Vec::<PathBuf>::new());
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("the body is not a tar archive: {e}")))?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(bad(format!(
                "the archive has more than {MAX_ENTRIES} entries"
            )));
        }
        let name = entry
            .path()
            .map_err(|e| bad(format!("bad entry name: {e}")))?;
        let rel = safe_relative(&name).map_err(|why| bad(format!("refused archive: {why}")))?;
        // Step 9's rule: nothing is written through a link.
        if let Some(link) = links.iter().find(|l| rel.starts_with(l) && rel != **l) {
            return Err(bad(format!(
                "refused archive: {} goes through the archive's own symlink {}",
                rel.display(),
                link.display()
            )));
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                files.insert(rel);
            }
            tar::EntryType::Directory | tar::EntryType::Fifo => {}
            tar::EntryType::Symlink => links.push(rel),
            tar::EntryType::Link => {
                let target = entry.link_name().ok().flatten().unwrap_or_default();
                let target_rel = safe_relative(&target)
                    .map_err(|why| bad(format!("refused archive: hard link to {why}")))?;
                if !files.contains(&target_rel) {
                    return Err(bad(format!(
                        "refused archive: hard link {} to {}, not a file of this archive",
                        rel.display(),
                        target.display()
                    )));
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(bad(format!(
                    "refused archive: device node {}: cp may not create devices",
                    rel.display()
                )));
            }
            _ => {}
        }
    }
    if count == 0 {
        return Err(bad("the body is not a tar archive: it has no entry".into()));
    }
    Ok(())
}
// ANCHOR_END: check

/// The directory `rel` below `dest`, made (owned by the container's root)
/// where missing; each lookup resolved inside the root.
fn dir_below(
    root: &ContainerRoot,
    dest: &OwnedFd,
    rel: &Path,
    owner: (u32, u32),
) -> Result<OwnedFd, Errno> {
    let mut at = dest.try_clone().map_err(|_| Errno::EMFILE)?;
    for part in rel.components() {
        let Component::Normal(name) = part else {
            continue;
        };
        let next = match openat(
            &at,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Err(Errno::ENOENT) => {
                mkdirat(&at, name, Mode::from_bits_truncate(0o755))?;
                chown_at(&at, name, owner)?;
                openat(
                    &at,
                    name,
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?
            }
            // A symlink of the container's own: followed, inside the root.
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let link = nix::fcntl::readlinkat(&at, name)?;
                let base = fd_in_root(root, &at)?;
                open_in_root(
                    &root.fd,
                    &base.join(link),
                    OFlag::O_PATH | OFlag::O_DIRECTORY,
                )?
            }
            other => other?,
        };
        at = next;
    }
    Ok(at)
}

/// Where the directory open at `fd` is, as the container sees it: its
/// host path (the kernel's name for the descriptor) less the root's.
fn fd_in_root(root: &ContainerRoot, fd: &OwnedFd) -> Result<PathBuf, Errno> {
    use std::os::fd::AsRawFd;
    let name = |raw: i32| nix::fcntl::readlink(format!("/proc/self/fd/{raw}").as_str());
    let (at, top) = (name(fd.as_raw_fd())?, name(root.fd.as_raw_fd())?);
    Path::new(&at)
        .strip_prefix(&top)
        .map(|p| Path::new("/").join(p))
        .map_err(|_| Errno::EXDEV)
}

fn chown_at(dir: &OwnedFd, name: &std::ffi::OsStr, owner: (u32, u32)) -> Result<(), Errno> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(owner.0)),
        Some(Gid::from_raw(owner.1)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

/// What is at `name` in `dir` now, if anything (not following a link).
fn kind_at(dir: &OwnedFd, name: &std::ffi::OsStr) -> Option<SFlag> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
}

// ANCHOR: unpack
/// Writes the (checked) archive into the directory open at `dest`.
pub(super) fn unpack(
    file: &mut File,
    root: &ContainerRoot,
    dest: &OwnedFd,
    options: &Options,
) -> Result<(), EngineError> {
    file.rewind().map_err(EngineError::Connection)?;
    let mut archive = tar::Archive::new(&mut *file);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("the body is not a tar archive: {e}")))?;
    let container_root = (root.shift.uid_base, root.shift.gid_base);
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("the body is not a tar archive: {e}")))?;
        let name = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let rel = safe_relative(&name).map_err(|why| bad(format!("refused archive: {why}")))?;
        let Some(file_name) = rel.file_name().map(|n| n.to_os_string()) else {
            continue; // the archive's "./"
        };
        let header = entry.header().clone();
        let owner = if options.copy_uid_gid {
            let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
            let shifted = |id: u64, base: u32| {
                base + if id < u64::from(root.shift.count) {
                    id as u32
                } else {
                    65534
                }
            };
            (
                shifted(uid, root.shift.uid_base),
                shifted(gid, root.shift.gid_base),
            )
        } else {
            container_root
        };
        let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o7777);
        let fail = |what: &str, e: Errno| bad(format!("cannot {what} {}: {e}", rel.display()));
        let parent = dir_below(
            root,
            dest,
            rel.parent().unwrap_or(Path::new("")),
            container_root,
        )
        .map_err(|e| fail("reach the directory of", e))?;
        let existing = kind_at(&parent, &file_name);
        let is_dir = header.entry_type() == tar::EntryType::Directory;
        match existing {
            Some(SFlag::S_IFDIR) if !is_dir => {
                return Err(bad(format!(
                    "cannot overwrite directory {} with non-directory",
                    rel.display()
                )));
            }
            Some(k) if is_dir && k != SFlag::S_IFDIR && options.no_overwrite_dir_non_dir => {
                return Err(bad(format!(
                    "cannot overwrite non-directory {} with directory",
                    rel.display()
                )));
            }
            Some(k) if k != SFlag::S_IFDIR => {
                unlinkat(&parent, file_name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| fail("replace", e))?;
            }
            _ => {}
        }
        match header.entry_type() {
            tar::EntryType::Directory => {
                if existing != Some(SFlag::S_IFDIR) {
                    mkdirat(
                        &parent,
                        file_name.as_os_str(),
                        Mode::from_bits_truncate(0o700),
                    )
                    .map_err(|e| fail("mkdir", e))?;
                }
                let dir = openat(
                    &parent,
                    file_name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fail("open", e))?;
                fchown(
                    &dir,
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                )
                .map_err(|e| fail("chown", e))?;
                fchmod(&dir, mode).map_err(|e| fail("chmod", e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let fd = openat(
                    &parent,
                    file_name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| fail("create", e))?;
                let mut out = File::from(fd);
                std::io::copy(&mut (&mut entry).take(header.size().unwrap_or(0)), &mut out)
                    .map_err(|e| bad(format!("cannot write {}: {e}", rel.display())))?;
                // The owner first: chown clears the set-id bits.
                fchown(
                    &out,
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                )
                .map_err(|e| fail("chown", e))?;
                fchmod(&out, mode).map_err(|e| fail("chmod", e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().ok().flatten().unwrap_or_default();
                // Its target is text; it is only ever followed inside the
                // root (by the container, or by a later copy).
                nix::unistd::symlinkat(target.as_ref(), &parent, file_name.as_os_str())
                    .map_err(|e| fail("symlink", e))?;
                chown_at(&parent, &file_name, owner).map_err(|e| fail("chown", e))?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name().ok().flatten().unwrap_or_default();
                let target = safe_relative(&target).map_err(bad)?;
                let from = dir_below(
                    root,
                    dest,
                    target.parent().unwrap_or(Path::new("")),
                    container_root,
                )
                .map_err(|e| fail("reach the target of", e))?;
                let source = target.file_name().unwrap_or_default();
                if kind_at(&from, source) != Some(SFlag::S_IFREG) {
                    return Err(bad(format!(
                        "hard link {} to {}: not a file",
                        rel.display(),
                        target.display()
                    )));
                }
                nix::unistd::linkat(
                    &from,
                    source,
                    &parent,
                    file_name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| fail("link", e))?;
            }
            tar::EntryType::Fifo => {
                nix::sys::stat::mknodat(&parent, file_name.as_os_str(), SFlag::S_IFIFO, mode, 0)
                    .map_err(|e| fail("mkfifo", e))?;
                chown_at(&parent, &file_name, owner).map_err(|e| fail("chown", e))?;
            }
            _ => {} // checked: nothing else is left
        }
    }
    Ok(())
}
// ANCHOR_END: unpack

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A tar of raw entries, names unchecked: (name, kind, link target).
    fn archive(entries: &[(&str, tar::EntryType, &str)]) -> File {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, link) in entries {
            let mut header = tar::Header::new_gnu();
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_entry_type(*kind);
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, std::io::empty()).unwrap();
        }
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&builder.into_inner().unwrap()).unwrap();
        file
    }

    #[test]
    fn hostile_archives_are_refused_before_anything_is_written() {
        use tar::EntryType::{Char, Link, Regular, Symlink};
        let ok = [("a", Regular, ""), ("b", Link, "a"), ("l", Symlink, "/etc")];
        assert!(check(&mut archive(&ok)).is_ok());
        for hostile in [
            &[("../escape", Regular, "")][..],
            &[("/etc/passwd", Regular, "")],
            &[("shadow", Link, "/etc/shadow")],
            &[("b", Link, "missing")],
            &[("l", Symlink, "/"), ("l/escape", Regular, "")],
            &[("null", Char, "")],
        ] {
            assert!(check(&mut archive(hostile)).is_err(), "{hostile:?}");
        }
        let mut not_tar = tempfile::tempfile().unwrap();
        not_tar.write_all(b"hello").unwrap();
        assert!(check(&mut not_tar).is_err());
    }
}
