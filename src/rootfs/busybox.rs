//! The default root filesystem: a static busybox and its applets.
//!
//! The early steps need some rootfs, and downloading an image is step 10. A
//! statically linked busybox is one file that is a shell and some 300 tools,
//! with no shared libraries to copy, and Debian and Ubuntu ship it as the
//! package `busybox-static`. It is built once into a cache directory
//! (`$CAIXA_CACHE_DIR`, or `/var/cache/caixa`) and reused.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a static busybox is usually installed.
pub const BUSYBOX_CANDIDATES: [&str; 3] = ["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox"];

/// The default rootfs cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BusyboxError {
    /// No busybox on the host.
    #[error(
        "no busybox found to build the default rootfs: install it with `sudo apt-get install busybox-static`, or pass --rootfs DIR"
    )]
    Missing,
    /// A busybox that needs shared libraries would not run inside the rootfs.
    #[error(
        "{0} is dynamically linked and would not run in the rootfs: install `busybox-static` (sudo apt-get install busybox-static), or pass --rootfs DIR"
    )]
    NotStatic(PathBuf),
    /// Writing the cache failed.
    #[error(
        "cannot build the default rootfs in {path}: {source}; set CAIXA_CACHE_DIR to a writable directory, or pass --rootfs DIR"
    )]
    Io {
        /// What we were writing.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The cache directory: `$CAIXA_CACHE_DIR`, else `/var/cache/caixa` for
/// root and the user's cache directory for a rootless start.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CAIXA_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if crate::rootless::active() {
                crate::rootless::user_dir("cache")
            } else {
                PathBuf::from("/var/cache/caixa")
            }
        })
}

/// The default rootfs, built on first use and owned by whoever runs us
/// (root, or the user of a rootless start, whom its root maps to). Prints
/// one line when it builds.
pub fn default_rootfs() -> Result<PathBuf, BusyboxError> {
    default_rootfs_owned_by(
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// The default rootfs with every file owned by host `uid`:`gid`: the ids
/// that root of a user namespace maps to (step 6). Root in the container then
/// owns its files, as Docker's `userns-remap` gives each remapped root an
/// image store of its own. Built once per owner.
pub fn default_rootfs_owned_by(uid: u32, gid: u32) -> Result<PathBuf, BusyboxError> {
    let name = if (uid, gid) == (0, 0) {
        "busybox-rootfs".to_string()
    } else {
        format!("busybox-rootfs-{uid}-{gid}")
    };
    let root = cache_dir().join(name);
    if root.join("bin/busybox").is_file() {
        return Ok(root);
    }
    let busybox = find_static_busybox()?;
    eprintln!(
        "caixa: building the default root filesystem from {} into {} (first use only)",
        busybox.display(),
        root.display()
    );
    build(&busybox, &root, uid, gid)?;
    Ok(root)
}

/// The first busybox of [`BUSYBOX_CANDIDATES`], if it is statically linked.
pub fn find_static_busybox() -> Result<PathBuf, BusyboxError> {
    let path = BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(BusyboxError::Missing)?;
    let bytes = std::fs::read(&path).map_err(|source| BusyboxError::Io {
        path: path.clone(),
        source,
    })?;
    if has_interpreter(&bytes) {
        return Err(BusyboxError::NotStatic(path));
    }
    Ok(path)
}

/// Whether an ELF file names a dynamic loader (a `PT_INTERP` program header),
/// i.e. needs shared libraries at run time. Non-ELF input counts as "no".
pub fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // Only 64-bit little-endian ELF (x86_64, aarch64) is handled.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        usize::try_from(phoff)
            .ok()
            .and_then(|off| off.checked_add(i * usize::from(phentsize)))
            .and_then(u32_at)
            == Some(PT_INTERP)
    })
}

/// Builds the rootfs in a temporary directory beside `root`, then renames it
/// into place, so a concurrent start never sees half a rootfs.
fn build(busybox: &Path, root: &Path, uid: u32, gid: u32) -> Result<(), BusyboxError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BusyboxError::Io { path, source }
    };
    let parent = root.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(".busybox-rootfs.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);

    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "sys", "dev", "home",
        "var", "run",
    ] {
        std::fs::create_dir_all(tmp.join(dir)).map_err(io(&tmp.join(dir)))?;
    }
    std::fs::set_permissions(tmp.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .map_err(io(&tmp.join("tmp")))?;
    std::fs::copy(busybox, tmp.join("bin/busybox")).map_err(io(busybox))?;

    // `busybox --list-full` names every applet with its usual directory.
    let list = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(io(busybox))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = tmp.join(applet);
        if applet.is_empty() || applet.contains("..") || link.exists() {
            continue;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link).map_err(io(&link))?;
    }

    for (file, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
    ] {
        std::fs::write(tmp.join(file), text).map_err(io(&tmp.join(file)))?;
    }

    if (uid, gid) != (0, 0) {
        chown_tree(&tmp, uid, gid).map_err(io(&tmp))?;
    }

    match std::fs::rename(&tmp, root) {
        Ok(()) => Ok(()),
        // Someone else finished first: theirs is as good as ours.
        Err(_) if root.join("bin/busybox").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(io(root)(e))
        }
    }
}

/// `lchown -R`: symlinks themselves, never what they point to.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_executables_have_an_interpreter() {
        // The test binary itself is dynamically linked against glibc.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&me));
        assert!(!has_interpreter(b"#!/bin/sh\n"));
        assert!(!has_interpreter(b"\x7fELF\x02\x01"));
    }
}
