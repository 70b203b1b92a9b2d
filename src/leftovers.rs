//! What a killed caixa leaves behind, and how the next start removes it.
//!
//! A step binary cleans up after its container on every path it controls:
//! errors, signals, the container's end. `SIGKILL` (or a crash, or the OOM
//! killer) is not one of them. The kernel then tears down what belonged to
//! processes (namespaces, the container's processes via `PR_SET_PDEATHSIG`),
//! but not what lives in the host's own trees: a cgroup directory, an
//! overlay mount and its upper directory. Those would stay until reboot.
//!
//! So each start that makes such things keeps a *record* of them,
//! `<state dir>/running/<id>`, one line per thing, written as it makes it,
//! and holds an exclusive `flock(2)` on that file while it lives. The kernel
//! releases the lock when the process dies, however it dies: a record whose
//! lock can be taken belongs to a dead start. The next start [`sweep`]s: it
//! undoes every such record (cgroups first, killing what is left in them,
//! then mounts), and deletes it once nothing is left. (The
//! network has its own recovery: dead leases, see `net::ipam`.)

use std::fs::File;
use std::io::Write;
use std::path::{Component, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// One thing a start made, as it appears in its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    /// A cgroup directory (one per v1 controller, one on v2). Read back
    /// from a record, this is one below caixa's own `caixa/`, where caixa
    /// kills what it finds before removing it.
    Cgroup(PathBuf),
    /// A cgroup directory a `linux.cgroupsPath` put outside `caixa/`
    /// (podman's `libpod_parent/libpod-<id>`): written as `cgroup` too, but
    /// only removed when empty, never killed in: its place alone cannot
    /// prove whose processes are inside.
    CgroupOutsideCaixa(PathBuf),
    /// A container directory of the image store: `merged/` (an overlay
    /// mount), `upper/`, `work/`.
    Overlay(PathBuf),
    /// A container directory whose changes are to be kept (`--keep`): only
    /// its mount is undone.
    KeptOverlay(PathBuf),
}

impl Made {
    fn line(&self) -> String {
        match self {
            Made::Cgroup(p) | Made::CgroupOutsideCaixa(p) => format!("cgroup {}", p.display()),
            Made::Overlay(p) => format!("overlay {}", p.display()),
            Made::KeptOverlay(p) => format!("kept-overlay {}", p.display()),
        }
    }

    /// A line of container `id`'s record, if it names a thing of the shape
    /// caixa makes for that container: a damaged or crafted record must not
    /// become an order to delete something else. A cgroup must lie strictly
    /// below one of `cgroup_roots` (the hierarchy's roots, so never a root
    /// itself), be a group caixa could make (`GroupPath::of_dir`: plain
    /// names, the last one the id or ending in `-<id>`), and is killed in
    /// only below `caixa/`.
    fn parse(line: &str, id: &str, cgroup_roots: &[PathBuf]) -> Option<Made> {
        let (kind, path) = line.split_once(' ')?;
        let path = PathBuf::from(path);
        let plain = path.is_absolute()
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::RootDir));
        // …/<parent>/<id>, exactly.
        let shaped = |parent: &str| {
            plain
                && path.file_name().is_some_and(|n| n == id)
                && path
                    .parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|n| n == parent)
        };
        match kind {
            "cgroup" if plain && path.starts_with("/sys/fs/cgroup") => {
                match crate::cgroup::GroupPath::of_dir(&path, cgroup_roots, id)? {
                    g if g.is_below_caixa() => Some(Made::Cgroup(path)),
                    _ => Some(Made::CgroupOutsideCaixa(path)),
                }
            }
            "overlay" if shaped("containers") => Some(Made::Overlay(path)),
            "kept-overlay" if shaped("containers") => Some(Made::KeptOverlay(path)),
            _ => None,
        }
    }
}

/// The directory of the records.
pub fn records_dir() -> PathBuf {
    crate::net::state_dir().join("running")
}

/// The record of a living start; deleted by [`Record::close`] once
/// everything in it has been cleaned up.
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
    file: Flock<File>,
}

/// An exclusive flock(2) on `file`, waited for; released when the value
/// is dropped or the process dies.
fn lock(file: File) -> std::io::Result<Flock<File>> {
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| errno.into())
}

/// The records directory, held exclusively while a record is born or the
/// records are swept: so a sweeper never meets a record that exists but is
/// not locked yet.
fn lock_dir() -> std::io::Result<Flock<File>> {
    let dir = records_dir();
    std::fs::create_dir_all(&dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))?;
    lock(file)
}

impl Record {
    /// Creates and locks the record of container `id`.
    pub fn create(id: &str) -> std::io::Result<Record> {
        let _dir = lock_dir()?;
        let path = records_dir().join(id);
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        let file = lock(file)?;
        Ok(Record { path, file })
    }

    /// Notes that `made` will exist, before it is made.
    pub fn note(&mut self, made: &Made) -> std::io::Result<()> {
        writeln!(self.file, "{}", made.line())
    }

    /// Moves the record to `to`, out of the records directory, where no
    /// sweep looks: an OCI runtime's `create` (step 12) leaves the
    /// container behind on purpose, and its `delete` undoes the record
    /// ([`undo_record`]). Its lock goes with this process.
    pub fn hand_over(self, to: &std::path::Path) -> std::io::Result<()> {
        std::fs::rename(&self.path, to)
    }

    /// Deletes the record: everything in it is gone.
    pub fn close(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ANCHOR: sweep
/// Undoes the records of dead starts; returns one line per thing removed
/// (or that could not be), for the trace and the warnings.
pub fn sweep() -> Vec<String> {
    let mut said = Vec::new();
    let Ok(entries) = std::fs::read_dir(records_dir()) else {
        return said;
    };
    let Ok(_dir) = lock_dir() else {
        return said;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let id = entry.file_name().to_string_lossy().into_owned();
        if id.starts_with('.') {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        // Locked: its start is alive. Held until this record is done.
        let Ok(_held) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        said.extend(undo_record(&path, &id, "whose caixa was killed"));
    }
    said
}
// ANCHOR_END: sweep

/// The cgroup directories the record at `path` of container `id` names,
/// read as [`undo_record`] reads them (a line of another shape names
/// nothing): the runtime's `kill --all` signals what is inside.
pub fn recorded_cgroups(path: &std::path::Path, id: &str) -> Vec<PathBuf> {
    let cgroup_roots = cgroup_roots();
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| match Made::parse(l, id, &cgroup_roots)? {
            Made::Cgroup(dir) | Made::CgroupOutsideCaixa(dir) => Some(dir),
            Made::Overlay(_) | Made::KeptOverlay(_) => None,
        })
        .collect()
}

/// The roots a recorded cgroup must lie below: the hierarchy's, and
/// first, rootless, the group delegated to the user, below which caixa
/// made its own `caixa/` (see `crate::cgroup::delegation`).
fn cgroup_roots() -> Vec<PathBuf> {
    let Ok(hierarchy) = crate::cgroup::detect() else {
        return Vec::new();
    };
    let mut roots = Vec::new();
    if crate::rootless::active() {
        roots.extend(crate::cgroup::delegation::find(&hierarchy).ok());
    }
    roots.extend(hierarchy.roots());
    roots
}

/// Undoes everything the record at `path` of container `id` names, and
/// deletes the record once nothing is left (else keeps what is left, for
/// the next try); says what it did, each line ending with `why`.
pub fn undo_record(path: &std::path::Path, id: &str, why: &str) -> Vec<String> {
    let mut said = Vec::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return said;
    };
    // Processes first (a cgroup's are killed as it goes), then the
    // mounts they might have been writing through.
    // The roots a recorded cgroup must lie below.
    let cgroup_roots = cgroup_roots();
    let mut made: Vec<Made> = text
        .lines()
        .filter_map(|l| Made::parse(l, id, &cgroup_roots))
        .collect();
    made.sort_by_key(|m| !matches!(m, Made::Cgroup(_) | Made::CgroupOutsideCaixa(_)));
    let mut left = Vec::new();
    for thing in made {
        match undo(&thing) {
            Ok(false) => {}
            Ok(true) => said.push(format!(
                "removed the {} of container {id}, {why}",
                thing.line()
            )),
            Err(e) => {
                said.push(format!(
                    "warning: cannot remove the {} of container {id}: {e}; the next try removes it",
                    thing.line()
                ));
                left.push(thing);
            }
        }
    }
    // Done with it, or keep what is left for the next try.
    if left.is_empty() {
        let _ = std::fs::remove_file(path);
    } else {
        let text: String = left.iter().map(|m| format!("{}\n", m.line())).collect();
        let _ = std::fs::write(path, text);
    }
    said
}

/// Undoes one thing of a dead start; whether there was anything to undo.
fn undo(made: &Made) -> Result<bool, String> {
    match made {
        Made::Cgroup(dir) => {
            let existed = dir.exists();
            crate::cgroup::remove_dir(dir).map_err(|e| e.to_string())?;
            Ok(existed)
        }
        Made::CgroupOutsideCaixa(dir) => match std::fs::remove_dir(dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(format!(
                "{} still holds processes or groups; caixa kills only in its own caixa/ groups: end them yourself",
                dir.display()
            )),
            Err(e) => Err(format!("{}: {e}", dir.display())),
        },
        Made::Overlay(dir) | Made::KeptOverlay(dir) => {
            let merged = dir.join("merged");
            let existed = match nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) => true,
                // EINVAL: not mounted (any more); ENOENT: gone already.
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => false,
                // A rootless start's overlay lived in its child's mount
                // namespace only; the user may not unmount on the host.
                Err(nix::errno::Errno::EPERM) if crate::rootless::active() => false,
                Err(e) => return Err(format!("umount {}: {e}", merged.display())),
            };
            if matches!(made, Made::KeptOverlay(_)) {
                if crate::rootless::active() {
                    crate::image::overlay::open_dirs(&dir.join("work"));
                }
                return Ok(existed);
            }
            match crate::image::overlay::remove_container_dir(dir) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(existed),
                Err(e) => Err(format!("{}: {e}", dir.display())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_name_caixas_own_things() {
        let roots = [
            PathBuf::from("/sys/fs/cgroup/memory"),
            PathBuf::from("/sys/fs/cgroup/pids"),
        ];
        for made in [
            Made::Cgroup("/sys/fs/cgroup/memory/caixa/abc".into()),
            Made::Cgroup("/sys/fs/cgroup/pids/caixa/pods/abc".into()),
            Made::CgroupOutsideCaixa("/sys/fs/cgroup/memory/libpod_parent/libpod-abc".into()),
            Made::CgroupOutsideCaixa("/sys/fs/cgroup/pids/default/abc".into()),
            Made::Overlay("/var/lib/caixa/containers/abc".into()),
            Made::KeptOverlay("/tmp/store/containers/abc".into()),
        ] {
            assert_eq!(Made::parse(&made.line(), "abc", &roots), Some(made));
        }
        for bad in [
            "cgroup /etc",
            "cgroup /etc/caixa/abc",
            "cgroup /sys/fs/cgroup/caixa",
            "cgroup /sys/fs/cgroup/caixa/",
            "cgroup /sys/fs/cgroup/caixa/other",
            "cgroup /sys/fs/cgroup/caixa/../abc",
            "cgroup /sys/fs/cgroup/memory/caixa/../abc",
            "cgroup /sys/fs/cgroup/memory/system.slice/sshd.service",
            "cgroup /sys/fs/cgroup/cpu/caixa/abc",
            "cgroup /sys/fs/cgroup/memory/abcd",
            "overlay /",
            "overlay /var/lib/containers/storage",
            "overlay relative/containers/abc",
            "overlay /a/containers/../../abc",
        ] {
            assert_eq!(Made::parse(bad, "abc", &roots), None, "{bad}");
        }
        // A hierarchy's root is never a group, even when named like the id.
        assert_eq!(
            Made::parse("cgroup /sys/fs/cgroup/memory", "memory", &roots),
            None
        );
    }
}
