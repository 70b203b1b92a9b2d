//! `--tmpfs`: a directory of the container that lives in memory only.
//!
//! A tmpfs is a filesystem whose files are pages of memory (charged to the
//! container's memory cgroup): nothing written there reaches a disk, and it
//! is gone when the container ends. Docker's `--tmpfs /run:size=64m` is for
//! scratch space and secrets that must never land in the container's upper
//! directory (which `commit` and `cp` can read back), and, with
//! `--read-only`, for the few paths a program must still write to.
//!
//! Like a bind ([`super::binds`]), the mount point is opened inside the
//! root and the tmpfs is mounted onto that descriptor, never onto a path
//! string an image's symlink could redirect.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::Mode;

use super::binds::{Want, check_target, fd_path, open_inside};
use super::table::read_options_over;
use super::{RootfsError, syscall};

/// Docker's defaults for a `--tmpfs`: no device files, no set-uid
/// programs, nothing executed from it, unless the options say `exec`…
pub const DEFAULT_FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// One tmpfs mount: `--tmpfs TARGET[:OPTIONS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    /// Where, inside the container (absolute).
    pub target: PathBuf,
    /// `MS_NOSUID`, `MS_RDONLY`…: [`DEFAULT_FLAGS`] changed by the options.
    pub flags: MsFlags,
    /// tmpfs's own options (`size=64m`, `mode=1777`), comma-separated.
    pub data: String,
}

impl Tmpfs {
    /// A tmpfs at `target` with mount(8) option words (`rw`, `exec`,
    /// `size=64m`, `mode=1777`…): flags over Docker's defaults, and the
    /// options tmpfs itself takes. Anything else is refused by name.
    pub fn new(target: &str, words: &[String]) -> Result<Tmpfs, String> {
        let target = check_target(target).map_err(|e| e.to_string())?;
        let options = read_options_over(DEFAULT_FLAGS, words, "tmpfs")?;
        if options.bind || !options.propagation.is_empty() {
            return Err(format!(
                "--tmpfs {}: a tmpfs takes flags (ro, exec, …) and size=, mode=, uid=, gid=, nr_inodes= only",
                target.display()
            ));
        }
        Ok(Tmpfs {
            target,
            flags: options.flags,
            data: options.data.join(","),
        })
    }

    /// The mount(8) words that say this tmpfs again (for a bundle's
    /// `mounts[].options`): its flags, then its data.
    pub fn words(&self) -> Vec<String> {
        let mut words: Vec<String> = [
            (MsFlags::MS_RDONLY, "ro", "rw"),
            (MsFlags::MS_NOSUID, "nosuid", "suid"),
            (MsFlags::MS_NODEV, "nodev", "dev"),
            (MsFlags::MS_NOEXEC, "noexec", "exec"),
        ]
        .iter()
        .map(|(flag, set, clear)| {
            if self.flags.contains(*flag) {
                set
            } else {
                clear
            }
            .to_string()
        })
        .collect();
        words.extend(
            self.data
                .split(',')
                .filter(|w| !w.is_empty())
                .map(String::from),
        );
        words
    }
}

/// `TARGET[:OPTIONS]`, as `docker run --tmpfs` takes it.
impl FromStr for Tmpfs {
    type Err = String;

    fn from_str(text: &str) -> Result<Tmpfs, String> {
        let (target, options) = text.split_once(':').unwrap_or((text, ""));
        let words: Vec<String> = options
            .split(',')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect();
        Tmpfs::new(target, &words)
    }
}

// ANCHOR: tmpfs_into
/// Mounts `tmpfs` inside `root`: its mount point opened there (made if
/// missing), the filesystem mounted onto that descriptor.
pub fn mount_into(root: &Path, tmpfs: &Tmpfs) -> Result<(), RootfsError> {
    let dir = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root_fd = open(root, dir, Mode::empty()).map_err(syscall("open", root))?;
    let target = open_inside(&root_fd, &tmpfs.target, Want::Dir)?;
    mount(
        Some("tmpfs"),
        &fd_path(&target),
        Some("tmpfs"),
        tmpfs.flags,
        Some(tmpfs.data.as_str()).filter(|d| !d.is_empty()),
    )
    .map_err(syscall("mount(tmpfs)", &tmpfs.target))
}
// ANCHOR_END: tmpfs_into

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_change_dockers_defaults() {
        let t: Tmpfs = "/run".parse().unwrap();
        assert_eq!(t.flags, DEFAULT_FLAGS);
        assert_eq!(t.data, "");
        let t: Tmpfs = "/run:rw,exec,size=64m,mode=1777".parse().unwrap();
        assert_eq!(t.flags, MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
        assert_eq!(t.data, "size=64m,mode=1777");
        assert_eq!(
            t.words(),
            ["rw", "nosuid", "nodev", "exec", "size=64m", "mode=1777"]
        );
        let again = Tmpfs::new("/run", &t.words()).unwrap();
        assert_eq!(again, t);
        let t: Tmpfs = "/x:ro".parse().unwrap();
        assert!(t.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn bad_tmpfs_arguments_are_refused_by_name() {
        assert!("run".parse::<Tmpfs>().is_err());
        assert!("/run:bind".parse::<Tmpfs>().is_err());
        assert!("/run:shared".parse::<Tmpfs>().is_err());
        let e = "/run:huge=1".parse::<Tmpfs>().unwrap_err();
        assert!(e.contains("huge"), "{e}");
    }
}
