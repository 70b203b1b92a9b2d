//! The cgroup filesystem's files: making and removing a group's directory,
//! writing its settings (with a one-line hint when this kernel lacks a file),
//! and reading its counters. The only module of `cgroup` that does file I/O
//! on the knobs; `v1` and `v2` decide *what* to write.

use std::path::Path;

use nix::unistd::Pid;

use super::{CgroupError, GroupPath, io};
use crate::trace::{Side, Trace};

/// One file to write in a cgroup directory, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The file name, e.g. `memory.max`.
    pub file: &'static str,
    /// What to write.
    pub value: String,
}

impl Setting {
    /// A setting of `file` to `value`.
    pub fn new(file: &'static str, value: impl ToString) -> Setting {
        Setting {
            file,
            value: value.to_string(),
        }
    }
}

// ANCHOR: remove_dir
/// Kills every process in `dir` and removes it. A cgroup with processes
/// cannot be removed (EBUSY), and one whose last process just died may take a
/// moment to let go, so this retries for up to 5 s: a process killed while
/// its exit drops the last mount of an overlay stays in its group until
/// the kernel has synced the upper directory's filesystem to disk.
pub(crate) fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    // Most often its last process is gone already: then one rmdir is all.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
        Err(e) => return Err(io("remove", dir)(e)),
    }
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() {
        let _ = std::fs::write(&kill_file, "1");
    }
    let mut delay = std::time::Duration::from_micros(100);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        // Never ourselves: a parent left in the group by a failed way back
        // (see `v1::visit`) gets an error from the rmdir below, not a kill.
        let me = std::process::id() as i32;
        for pid in procs
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .filter(|pid| *pid != me)
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(50));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("remove", dir)(e)),
        }
    }
    Err(io("remove", dir)(std::io::Error::from_raw_os_error(
        libc::EBUSY,
    )))
}
// ANCHOR_END: remove_dir

/// [`remove_dir`] of `dir` and of every group below it, children first:
/// for whoever made a tree of groups and must leave none behind (a test
/// or a bench whose orchestrator put its own groups below caixa's).
pub fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path())?;
            }
        }
    }
    remove_dir(dir)
}

/// Creates `dir` if it does not exist (caixa's parent, or the container's).
pub(super) fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("create", dir)(e)),
    }
}

/// Creates the container's own directory `dir` of `group`. Below
/// `caixa/` one left by a killed start of the same id is taken over, as
/// before; anywhere else the directory must be new: an existing one is
/// somebody else's group, whose processes caixa would kill at the end.
pub(super) fn make_group_dir(dir: &Path, group: &GroupPath) -> Result<(), CgroupError> {
    if group.is_below_caixa() {
        return make_dir(dir);
    }
    std::fs::create_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => CgroupError::Invalid(format!(
            "cgroup {} exists already: another container uses it; give each container its own cgroupsPath",
            dir.display()
        )),
        _ => io("create", dir)(e),
    })
}

/// Writes each setting into `dir`, tracing `file = value`. A file that does
/// not exist means this kernel lacks the feature: said in one line.
pub(super) fn write_settings(
    dir: &Path,
    settings: &[Setting],
    trace: &Trace,
) -> Result<(), CgroupError> {
    for s in settings {
        let path = dir.join(s.file);
        if !path.exists() {
            return Err(CgroupError::Unsupported {
                what: format!("{} (no {})", s.file, path.display()),
                fix: hint_for(s.file).into(),
            });
        }
        std::fs::write(&path, &s.value).map_err(|e| match e.raw_os_error() {
            Some(libc::ENODEV) => CgroupError::Invalid(format!(
                "the kernel refused {} = {:?}: no such block device; throttles apply to whole disks (e.g. /dev/vda), not partitions",
                s.file, s.value
            )),
            Some(libc::EINVAL | libc::EBUSY | libc::ERANGE) => CgroupError::Invalid(format!(
                "the kernel refused {} = {:?} in {}: {e}",
                s.file,
                s.value,
                dir.display()
            )),
            _ => io("write", &path)(e),
        })?;
        trace.step(
            Side::Parent,
            format_args!("cgroup: {} = {}", path.display(), s.value.trim()),
        );
    }
    Ok(())
}

fn hint_for(file: &str) -> &'static str {
    if file.contains("weight") && (file.starts_with("blkio") || file.starts_with("io")) {
        "disk weights need the BFQ I/O scheduler (echo bfq > /sys/block/DEV/queue/scheduler); leave out --blkio-weight"
    } else if file.contains("memsw") || file.contains("swap") {
        "swap accounting is off in this kernel (boot with swapaccount=1); leave out --memory-swap"
    } else {
        "this kernel lacks that cgroup feature; leave the option out"
    }
}

/// The value of `key` in a flat keyed file such as `memory.events`.
pub(super) fn read_key(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_written_and_missing_files_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        let t = Trace::new(false);
        write_settings(dir.path(), &[Setting::new("memory.max", 1024)], &t).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("memory.max")).unwrap(),
            "1024"
        );
        let err = write_settings(dir.path(), &[Setting::new("io.bfq.weight", 10)], &t).unwrap_err();
        assert!(err.to_string().contains("BFQ"), "{err}");
    }

    #[test]
    fn keyed_files_give_one_value() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "low 0\noom 3\noom_kill 1\n").unwrap();
        assert_eq!(read_key(&events, "oom"), 3);
        assert_eq!(read_key(&events, "absent"), 0);
    }
}
