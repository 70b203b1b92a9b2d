//! A tar of a tree inside a container, read through descriptors only.
//!
//! Each entry is opened *relative to its directory's descriptor* with
//! `O_NOFOLLOW`, and its type is taken from the opened descriptor, not from
//! an earlier look at the name: a container that swaps a file for a
//! symlink between our `readdir` and our `open` gets `ELOOP`, never the
//! host's file. A symlink is archived as a symlink (its target is text),
//! a FIFO as a FIFO; sockets and device nodes are left out.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

use super::ContainerRoot;

/// How deep a tree may go: a container can nest directories until the
/// daemon's stack runs out; `PATH_MAX` (4096) allows about 2000 levels.
const MAX_DEPTH: usize = 256;

type Tar<W> = tar::Builder<W>;

fn other(what: String) -> std::io::Error {
    std::io::Error::other(what)
}

/// A header for `stat`, its owner as the container sees it.
fn header(stat: &FileStat, kind: tar::EntryType, root: &ContainerRoot) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(stat.st_mode & 0o7777);
    let inside = |id: u32, base: u32| {
        id.checked_sub(base)
            .filter(|i| *i < root.shift.count)
            .unwrap_or(65534)
    };
    header.set_uid(u64::from(inside(stat.st_uid, root.shift.uid_base)));
    header.set_gid(u64::from(inside(stat.st_gid, root.shift.gid_base)));
    header.set_mtime(stat.st_mtime.max(0) as u64);
    header.set_size(0);
    header
}

// ANCHOR: pack_entry
/// Appends `name` (in the directory open at `parent`) as `arcname`, and
/// what is below it if it is a directory.
pub(super) fn entry<W: Write>(
    tar: &mut Tar<W>,
    parent: &OwnedFd,
    name: &OsStr,
    arcname: &Path,
    root: &ContainerRoot,
) -> std::io::Result<()> {
    walk(tar, parent, name, arcname, root, 0)
}

fn walk<W: Write>(
    tar: &mut Tar<W>,
    parent: &OwnedFd,
    name: &OsStr,
    arcname: &Path,
    root: &ContainerRoot,
    depth: usize,
) -> std::io::Result<()> {
    let seen = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    match SFlag::from_bits_truncate(seen.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFLNK => {
            let target = readlinkat(parent, name)?;
            let mut h = header(&seen, tar::EntryType::Symlink, root);
            tar.append_link(&mut h, arcname, target)
        }
        SFlag::S_IFDIR => {
            let dir = openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            directory(tar, dir, arcname, root, depth)
        }
        SFlag::S_IFREG => {
            // O_NONBLOCK: if it became a FIFO since, the open must not hang.
            let file = openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let stat = fstat(&file)?;
            if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
                return Err(other(format!(
                    "{} changed while it was copied",
                    arcname.display()
                )));
            }
            let mut h = header(&stat, tar::EntryType::Regular, root);
            h.set_size(stat.st_size as u64);
            // Exactly the size in the header, however the file changes.
            let reader = std::io::Read::take(std::fs::File::from(file), stat.st_size as u64);
            let mut padded = Padded {
                inner: reader,
                left: stat.st_size as u64,
            };
            tar.append_data(&mut h, arcname, &mut padded)
        }
        SFlag::S_IFIFO => {
            let mut h = header(&seen, tar::EntryType::Fifo, root);
            tar.append_data(&mut h, arcname, std::io::empty())
        }
        // Sockets and device nodes: nothing a copy can carry.
        _ => Ok(()),
    }
}
// ANCHOR_END: pack_entry

/// A directory already open for reading (the container's root, or a path
/// ending in `/`), as `arcname`.
pub(super) fn reopened<W: Write>(
    tar: &mut Tar<W>,
    it: &OwnedFd,
    arcname: &Path,
    root: &ContainerRoot,
) -> std::io::Result<()> {
    let dir = openat(
        it,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    directory(tar, dir, arcname, root, 0)
}

/// The directory open at `dir`, then its entries, one by one.
fn directory<W: Write>(
    tar: &mut Tar<W>,
    dir: OwnedFd,
    arcname: &Path,
    root: &ContainerRoot,
    depth: usize,
) -> std::io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(other(format!(
            "{} is more than {MAX_DEPTH} directories deep",
            arcname.display()
        )));
    }
    let stat = fstat(&dir)?;
    let mut h = header(&stat, tar::EntryType::Directory, root);
    tar.append_data(&mut h, arcname, std::io::empty())?;
    let listing = dir.try_clone()?;
    let mut names = Vec::new();
    for entry in nix::dir::Dir::from_fd(listing)?.iter() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    names.sort();
    for name in names {
        let name = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&name);
        walk(tar, &dir, name, &arcname.join(name), root, depth + 1)?;
    }
    Ok(())
}

/// A file's bytes, padded with zeros to the size its header gave if it
/// shrank while being read (a running container may truncate it).
struct Padded<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for Padded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        let n = if n == 0 {
            let fill = buf.len().min(self.left as usize);
            buf[..fill].fill(0);
            fill
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}
