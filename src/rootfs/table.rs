//! A bundle's own mount table (step 12): the mounts, masked paths and
//! read-only paths that podman's or containerd's `config.json` lists,
//! mounted instead of caixa's defaults.
//!
//! The step binaries and the engine mount [`super::mounts::DEFAULT_MOUNTS`]
//! and binds. An orchestrator writes its own list: other sizes, other
//! options, `/etc/hostname` and `/dev/shm` as binds of its own files, a
//! `cgroup` filesystem. The runtime spec says the runtime mounts them in
//! the order listed; the runtime still owes the default devices and
//! `/dev/ptmx` and friends ([`super::dev`]) whatever the list says.
//!
//! Every mount point is opened inside the root, as for a volume
//! ([`super::binds::open_inside`]): the bundle comes from another program
//! and its root from an image. `/proc` and `/sys` must be real directories
//! of the root, not links to one elsewhere in it (runc's CVE-2019-16884 and
//! CVE-2019-19921: a `proc` mounted over a chosen directory defeats the
//! masks written for `/proc`).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::Mode;

use super::binds::{Want, fd_path, locked_flags, open_inside};
use super::{RootfsError, syscall};

/// What is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A filesystem of its own: `proc`, `tmpfs`, `sysfs`, `devpts`, `mqueue`…
    Filesystem {
        /// The type mount(2) gets.
        fstype: String,
        /// The source mount(2) gets (a name for these filesystems).
        source: String,
    },
    /// A host path seen again at the target (`bind`, `rbind`).
    Bind {
        /// The host path, absolute.
        source: PathBuf,
        /// `rbind`: the mounts below the source come too.
        recursive: bool,
    },
    /// The container's own cgroup directories, read-only (see [`mount_cgroup`]).
    Cgroup,
}

/// One mount of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where, inside the container (absolute).
    pub target: PathBuf,
    /// What.
    pub kind: Kind,
    /// `MS_RDONLY`, `MS_NOSUID`…
    pub flags: MsFlags,
    /// The filesystem's own options (`size=65536k,mode=755`).
    pub data: Option<String>,
    /// `MS_PRIVATE`, `MS_SLAVE`… (with `MS_REC` for the `r` forms), set
    /// after the mount.
    pub propagation: MsFlags,
}

/// A bundle's mounts and paths, in its order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// The mounts, parents before what is mounted inside them.
    pub mounts: Vec<Entry>,
    /// Hidden paths (`linux.maskedPaths`), after `pivot_root`.
    pub masked: Vec<PathBuf>,
    /// Read-only paths (`linux.readonlyPaths`), after `pivot_root`.
    pub readonly: Vec<PathBuf>,
}

/// mount(8)'s option words for flags: (word, set, clear).
const FLAGS: [(&str, MsFlags, MsFlags); 22] = [
    ("ro", MsFlags::MS_RDONLY, MsFlags::empty()),
    ("rw", MsFlags::empty(), MsFlags::MS_RDONLY),
    ("nosuid", MsFlags::MS_NOSUID, MsFlags::empty()),
    ("suid", MsFlags::empty(), MsFlags::MS_NOSUID),
    ("nodev", MsFlags::MS_NODEV, MsFlags::empty()),
    ("dev", MsFlags::empty(), MsFlags::MS_NODEV),
    ("noexec", MsFlags::MS_NOEXEC, MsFlags::empty()),
    ("exec", MsFlags::empty(), MsFlags::MS_NOEXEC),
    ("sync", MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
    ("async", MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
    ("dirsync", MsFlags::MS_DIRSYNC, MsFlags::empty()),
    ("mand", MsFlags::MS_MANDLOCK, MsFlags::empty()),
    ("nomand", MsFlags::empty(), MsFlags::MS_MANDLOCK),
    ("atime", MsFlags::empty(), MsFlags::MS_NOATIME),
    ("noatime", MsFlags::MS_NOATIME, MsFlags::empty()),
    ("diratime", MsFlags::empty(), MsFlags::MS_NODIRATIME),
    ("nodiratime", MsFlags::MS_NODIRATIME, MsFlags::empty()),
    ("relatime", MsFlags::MS_RELATIME, MsFlags::empty()),
    ("norelatime", MsFlags::empty(), MsFlags::MS_RELATIME),
    ("strictatime", MsFlags::MS_STRICTATIME, MsFlags::empty()),
    ("nostrictatime", MsFlags::empty(), MsFlags::MS_STRICTATIME),
    ("defaults", MsFlags::empty(), MsFlags::empty()),
];

/// Propagation words: set on the mount after it is made.
const PROPAGATION: [(&str, MsFlags); 8] = [
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// The filesystems a table may mount, besides binds and `cgroup`: those a
/// container's root may hold without reaching the host's devices.
pub const FILESYSTEMS: [&str; 6] = ["proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup2"];

/// Options read: what mount(2) gets.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// Flags to set.
    pub flags: MsFlags,
    /// Propagation to set after.
    pub propagation: MsFlags,
    /// The filesystem's own options, in order.
    pub data: Vec<String>,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `rbind` was given.
    pub recursive: bool,
}

/// Reads mount(8) option words; `Err` names a word that is not one caixa
/// knows and `fstype` does not take as its own (`bind` takes none).
pub fn read_options(words: &[String], fstype: &str) -> Result<Options, String> {
    read_options_over(MsFlags::empty(), words, fstype)
}

/// [`read_options`] over flags already chosen (`--tmpfs` starts from
/// Docker's `nosuid,nodev,noexec`): each word sets or clears its flag.
pub fn read_options_over(
    flags: MsFlags,
    words: &[String],
    fstype: &str,
) -> Result<Options, String> {
    let mut options = Options {
        flags,
        propagation: MsFlags::empty(),
        data: Vec::new(),
        bind: false,
        recursive: false,
    };
    for word in words {
        if let Some((_, set, clear)) = FLAGS.iter().find(|(w, _, _)| w == word) {
            options.flags = (options.flags | *set) - *clear;
        } else if let Some((_, flags)) = PROPAGATION.iter().find(|(w, _)| w == word) {
            options.propagation = *flags;
        } else if word == "bind" || word == "rbind" {
            options.bind = true;
            options.recursive |= word == "rbind";
        } else if fstype_takes(fstype, word) {
            options.data.push(word.clone());
        } else {
            return Err(format!(
                "option {word:?} is not one caixa knows for a {fstype} mount"
            ));
        }
    }
    Ok(options)
}

/// Whether `word` is an option of the filesystem `fstype` itself.
fn fstype_takes(fstype: &str, word: &str) -> bool {
    let key = word.split_once('=').map_or(word, |(k, _)| k);
    match fstype {
        "tmpfs" => ["size", "nr_blocks", "nr_inodes", "mode", "uid", "gid"].contains(&key),
        "devpts" => ["newinstance", "ptmxmode", "mode", "gid", "uid", "max"].contains(&key),
        "proc" => ["hidepid", "subset", "gid"].contains(&key),
        _ => false,
    }
}

// ANCHOR: mount_all
/// Mounts the table's entries under `root`, in order, each onto a mount
/// point opened inside the root.
/// `cgroup_ns`: the child is in a cgroup namespace of its own (see
/// [`mount_cgroup`]).
pub fn mount_all(root: &Path, table: &Table, cgroup_ns: bool) -> Result<(), RootfsError> {
    let dir = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root_fd = open(root, dir, Mode::empty()).map_err(syscall("open", root))?;
    for entry in &table.mounts {
        mount_one(root, &root_fd, entry, cgroup_ns)?;
        if !entry.propagation.is_empty() {
            let mounted = open_inside(&root_fd, &entry.target, want_of(entry))?;
            mount(
                None::<&str>,
                &fd_path(&mounted),
                None::<&str>,
                entry.propagation,
                None::<&str>,
            )
            .map_err(syscall("mount(propagation)", &entry.target))?;
        }
    }
    Ok(())
}
// ANCHOR_END: mount_all

/// A bind of a file needs a file to mount on; everything else a directory.
fn want_of(entry: &Entry) -> Want {
    match &entry.kind {
        Kind::Bind { source, .. } if !source.is_dir() => Want::File,
        _ => Want::Dir,
    }
}

fn mount_one(
    root: &Path,
    root_fd: &OwnedFd,
    entry: &Entry,
    cgroup_ns: bool,
) -> Result<(), RootfsError> {
    let data = entry.data.as_deref();
    match &entry.kind {
        Kind::Filesystem { fstype, source } => {
            if fstype == "proc" || fstype == "sysfs" {
                // An ordinary directory of the root, never through a link.
                let relative = entry.target.strip_prefix("/").unwrap_or(&entry.target);
                super::mounts::dir_inside(root, &relative.to_string_lossy())?;
            }
            let target = open_inside(root_fd, &entry.target, Want::Dir)?;
            mount(
                Some(source.as_str()),
                &fd_path(&target),
                Some(fstype.as_str()),
                entry.flags,
                data,
            )
            .map_err(syscall("mount", &entry.target))
        }
        Kind::Bind { source, recursive } => {
            if !source.exists() {
                return Err(RootfsError::MissingSource(source.clone()));
            }
            let want = want_of(entry);
            let target = open_inside(root_fd, &entry.target, want)?;
            let rec = if *recursive {
                MsFlags::MS_REC
            } else {
                MsFlags::empty()
            };
            mount(
                Some(source.as_path()),
                &fd_path(&target),
                None::<&str>,
                MsFlags::MS_BIND | rec,
                None::<&str>,
            )
            .map_err(syscall("mount(MS_BIND)", &entry.target))?;
            // A bind takes the source's flags; its own come with a remount
            // of the new mount (walked to again: `target` is under it).
            if !entry.flags.is_empty() {
                let mounted = open_inside(root_fd, &entry.target, want)?;
                remount(&mounted, entry.flags, &entry.target)?;
            }
            Ok(())
        }
        Kind::Cgroup => mount_cgroup(root_fd, &entry.target, entry.flags, cgroup_ns),
    }
}

/// Remounts the bind `mounted` with `flags`, keeping the flags the kernel
/// locks in a user namespace.
fn remount(mounted: &OwnedFd, flags: MsFlags, target: &Path) -> Result<(), RootfsError> {
    mount(
        None::<&str>,
        &fd_path(mounted),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked_flags(mounted),
        None::<&str>,
    )
    .map_err(syscall("mount(MS_REMOUNT)", target))
}

// ANCHOR: mount_cgroup
/// A `cgroup` mount: the container's own groups, never the host's tree.
///
/// Without a cgroup namespace, mounting the cgroup filesystem would show
/// every group of the host. So, as runc does, the container's own
/// directories (from `/proc/self/cgroup`: the child is in its cgroup
/// already) are bound from the host's hierarchies: on cgroup v2 the one
/// directory at `target`; on v1 a tmpfs at `target` and one directory per
/// hierarchy in it (`cpu`, `memory`, …), each bound and made read-only.
///
/// In a cgroup namespace of its own (`cgroup_ns`) `/proc/self/cgroup`
/// reads `/`, and binding "the hierarchy's root plus `/`" would bind the
/// host's whole tree. There the kernel does it right by itself: a cgroup
/// filesystem mounted inside a cgroup namespace shows the namespace's root,
/// the container's own group. So the filesystems are mounted fresh.
fn mount_cgroup(
    root_fd: &OwnedFd,
    target: &Path,
    flags: MsFlags,
    cgroup_ns: bool,
) -> Result<(), RootfsError> {
    let fresh = |fstype: &str, at: &Path, data: Option<&str>| {
        let dir = open_inside(root_fd, at, Want::Dir)?;
        mount(
            Some(fstype),
            &fd_path(&dir),
            Some(fstype),
            flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            data,
        )
        .map_err(syscall("mount(cgroup)", at))
    };
    let read = |path: &str| {
        std::fs::read_to_string(path).map_err(|e| {
            syscall("read", path)(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
        })
    };
    let own = read("/proc/self/cgroup")?;
    let mountinfo = read("/proc/self/mountinfo")?;
    let hierarchies = cgroup_mounts(&mountinfo);
    let v2_only = hierarchies.iter().all(|h| h.v2);
    if v2_only && cgroup_ns {
        return fresh("cgroup2", target, None);
    }
    if v2_only {
        let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
            return Err(syscall(
                "find the cgroup v2 group in /proc/self/cgroup",
                target,
            )(nix::errno::Errno::ENOENT));
        };
        let Some(host) = hierarchies.first() else {
            return Err(syscall("find the cgroup2 mount", target)(
                nix::errno::Errno::ENOENT,
            ));
        };
        return bind_group(root_fd, &host.mount_point, path, target, flags);
    }
    // v1: a directory to hold one mount per hierarchy.
    let dir = open_inside(root_fd, target, Want::Dir)?;
    mount(
        Some("tmpfs"),
        &fd_path(&dir),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(syscall("mount(tmpfs)", target))?;
    for line in own.lines() {
        // ID:CONTROLLERS:PATH, e.g. 4:memory:/caixa/ID or 1:name=systemd:/…
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            continue; // the v2 line of a hybrid host: the v1 groups are the container's
        }
        let wanted: Vec<&str> = controllers.split(',').collect();
        let Some(host) = hierarchies
            .iter()
            .find(|h| !h.v2 && wanted.iter().all(|c| h.options.iter().any(|o| o == c)))
        else {
            continue; // a hierarchy not mounted on the host
        };
        let name = host.mount_point.file_name().map_or_else(
            || controllers.to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        if cgroup_ns {
            fresh("cgroup", &target.join(name), Some(controllers))?;
        } else {
            bind_group(root_fd, &host.mount_point, path, &target.join(name), flags)?;
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let dir = open_inside(root_fd, target, Want::Dir)?;
        mount(
            None::<&str>,
            &fd_path(&dir),
            None::<&str>,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(syscall("mount(MS_REMOUNT|MS_RDONLY)", target))?;
    }
    Ok(())
}
// ANCHOR_END: mount_cgroup

/// Binds the host's `mount_point` + `group` at `target`, with `flags`.
fn bind_group(
    root_fd: &OwnedFd,
    mount_point: &Path,
    group: &str,
    target: &Path,
    flags: MsFlags,
) -> Result<(), RootfsError> {
    let source = mount_point.join(group.trim_start_matches('/'));
    let at = open_inside(root_fd, target, Want::Dir)?;
    mount(
        Some(source.as_path()),
        &fd_path(&at),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(syscall("mount(MS_BIND) of the cgroup", target))?;
    let mounted = open_inside(root_fd, target, Want::Dir)?;
    remount(
        &mounted,
        flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        target,
    )
}

/// One cgroup hierarchy mounted on the host.
#[derive(Debug, PartialEq, Eq)]
struct CgroupMount {
    mount_point: PathBuf,
    v2: bool,
    /// The super options: the controllers of a v1 hierarchy.
    options: Vec<String>,
}

/// The cgroup hierarchies of a mountinfo text, whole trees only (root `/`).
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split_whitespace().collect();
            let mut after = after.split_whitespace();
            let fstype = after.next()?;
            let _source = after.next()?;
            let options = after.next().unwrap_or("");
            // A whole tree has root `/`; seen from inside a cgroup namespace,
            // a tree whose root is above the namespace's shows as `/..`.
            let root = fields.get(3)?;
            let whole = *root == "/" || root.starts_with("/..");
            if !matches!(fstype, "cgroup" | "cgroup2") || !whole {
                return None;
            }
            Some(CgroupMount {
                mount_point: PathBuf::from(fields.get(4)?),
                v2: fstype == "cgroup2",
                options: options.split(',').map(String::from).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(',').map(String::from).collect()
    }

    #[test]
    fn options_become_flags_propagation_and_data() {
        let o = read_options(
            &words("nosuid,noexec,strictatime,mode=755,size=65536k"),
            "tmpfs",
        )
        .unwrap();
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_STRICTATIME
        );
        assert_eq!(o.data, words("mode=755,size=65536k"));
        let o = read_options(&words("rbind,rprivate,ro,rw"), "bind").unwrap();
        assert!(o.bind && o.recursive);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(o.flags, MsFlags::empty(), "rw after ro clears it");
        assert!(read_options(&words("size=1m"), "bind").is_err());
        assert!(read_options(&words("idmap"), "tmpfs").is_err());
    }

    #[test]
    fn cgroup_hierarchies_are_read_from_mountinfo() {
        let text = "\
35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
36 25 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
37 25 0:32 /sub /mnt/x rw - cgroup cgroup rw,cpu
38 25 0:33 / /proc rw - proc proc rw";
        let found = cgroup_mounts(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].mount_point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert!(found[0].options.contains(&"memory".to_string()));
        assert!(found[1].v2);
    }
}
