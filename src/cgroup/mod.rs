//! cgroups (step 7): limits on what a container may use.
//!
//! Namespaces decide what a process can *see*; control groups decide how much
//! it may *use*: memory, CPU time, processes, disk bandwidth. A cgroup is a
//! directory in a special filesystem; its files are the knobs (`memory.max`)
//! and the counters (`memory.events`), and writing a pid into `cgroup.procs`
//! moves that process in. See cgroups(7).
//!
//! Two versions exist and a learner meets both. **v2** (`cgroup2`, one
//! unified tree, every controller in the same directory) is what current
//! distributions use and what this module teaches first. **v1** has one tree
//! per controller (`/sys/fs/cgroup/memory/…`, `/sys/fs/cgroup/cpu/…`) and is
//! still found on older systems, WSL2 and "hybrid" hosts that mount v1
//! controllers beside an empty cgroup2. [`detect`] finds out at run time; each
//! version has one small file per controller that turns [`Limits`] into the
//! files to write.
//!
//! The jobs are split by file: `limits` (what a container may use, checked),
//! `hierarchy` (which layout this host has), `fs` (the cgroup files
//! themselves), `v1`/`v2` (limits into files, per version), `usage` (the
//! counters `docker stats` and `docker top` read back) and, here, the
//! [`Cgroup`] handle that one container's start owns.
//!
//! caixa creates its groups only under a parent of its own (`caixa/<id>`) and
//! never writes to a group it did not create.

pub mod delegation;
pub mod devices;
mod fs;
mod hierarchy;
mod limits;
mod path;
pub mod usage;
pub mod v1;
pub mod v2;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

pub use devices::{Access, DeviceKind, DeviceRule};
pub use fs::Setting;
pub(crate) use fs::remove_dir;
pub use fs::remove_tree;
use fs::{make_dir, make_group_dir, read_key, write_settings};
pub use hierarchy::{Hierarchy, PARENT, Tree, detect, detect_from};
pub use limits::{
    CFS_PERIOD_US, DeviceRate, Limits, MIN_MEMORY, blkio_to_io_weight, parse_device_rate,
    shares_to_weight, weight_to_shares,
};
pub use path::GroupPath;

use crate::trace::Trace;

/// Something about cgroups that went wrong, with the path or value.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup filesystem, or not the controller needed.
    #[error("{what} is not available on this host: {fix}")]
    Unsupported {
        /// What is missing.
        what: String,
        /// What to do.
        fix: String,
    },
    /// A value out of the range the kernel or Docker accepts.
    #[error("{0}")]
    Invalid(String),
    /// A size (`--memory`, a device rate) not in Docker's syntax.
    #[error(transparent)]
    Size(#[from] crate::units::SizeError),
    /// A file could not be read, written, created or removed.
    #[error("cgroup: cannot {action} {path}: {source}")]
    Io {
        /// What we tried.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The error for `action` on `path`, for `map_err`.
fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io {
        action,
        path,
        source,
    }
}

/// Where a container's first process is born in its group (see
/// [`Cgroup::birthplace`]).
#[derive(Debug)]
pub enum Birthplace {
    /// cgroup v2: the group's directory, for clone3's `CLONE_INTO_CGROUP`.
    Directory(std::os::fd::OwnedFd),
    /// cgroup v1: the cloning thread is inside the group until it leaves.
    Visit(v1::visit::Visit),
}

/// One container's cgroup: a directory per v1 controller, or one on v2.
/// Removed when dropped, after killing anything still inside.
#[derive(Debug)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    /// (controller, directory) on v1; ("", directory) on v2.
    dirs: Vec<(String, PathBuf)>,
}

impl Cgroup {
    /// Creates the group of container `id` in `hierarchy` (see [`detect`]):
    /// `caixa/<id>`, or where `limits.group` says; writes the limits and
    /// the device rules. On failure, whatever was created is removed again.
    pub fn create(
        hierarchy: Hierarchy,
        id: &str,
        limits: &Limits,
        trace: &Trace,
    ) -> Result<Cgroup, CgroupError> {
        limits.validate()?;
        let mut cgroup = Cgroup {
            hierarchy: hierarchy.clone(),
            dirs: Vec::new(),
        };
        let group = limits.group(id);
        match &hierarchy {
            Hierarchy::V2(root) => v2::create(&mut cgroup.dirs, root, &group, limits, trace)?,
            Hierarchy::V1(trees) => v1::create(&mut cgroup.dirs, trees, &group, limits, trace)?,
        }
        Ok(cgroup)
    }

    /// Which version this cgroup lives in, for the trace and the tests.
    pub fn version(&self) -> u8 {
        match self.hierarchy {
            Hierarchy::V2(_) => 2,
            Hierarchy::V1(_) => 1,
        }
    }

    /// Where the child can be born in this group, so that nothing has to
    /// move it there after the clone (a move waits for the kernel's global
    /// cgroup lock, see `v1::visit`): on v2 the directory, open, for
    /// clone3's `CLONE_INTO_CGROUP`; on v1 a visit, which has already moved
    /// the calling thread into the group and must be left right after the
    /// clone. `None` when neither can be had: the child is moved by its pid.
    pub fn birthplace(&self) -> Result<Option<Birthplace>, CgroupError> {
        match (&self.hierarchy, self.dirs.as_slice()) {
            (Hierarchy::V2(_), [(_, dir)]) => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY)
                    .open(dir)
                    .map_err(io("open", dir))?;
                Ok(Some(Birthplace::Directory(file.into())))
            }
            (Hierarchy::V1(trees), dirs) => {
                Ok(v1::visit::Visit::enter(dirs, trees)?.map(Birthplace::Visit))
            }
            _ => Ok(None),
        }
    }

    // ANCHOR: enter
    /// Moves `pid` into the cgroup: one write of its number to `cgroup.procs`
    /// in every directory (one per v1 controller, one on v2).
    pub fn enter(&self, pid: Pid) -> Result<(), CgroupError> {
        // EXERCISE(7): move the process into the cgroup by writing its pid to cgroup.procs in every directory
        for (_, dir) in &self.dirs {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string()).map_err(io("write", &procs))?;
        }
        Ok(())
        // END EXERCISE
    }
    // ANCHOR_END: enter

    /// Whether the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        match self.hierarchy {
            Hierarchy::V2(_) => self.dirs.iter().any(|(_, d)| v2::memory::oom_kills(d) > 0),
            Hierarchy::V1(_) => self
                .dirs
                .iter()
                .any(|(c, d)| c == "memory" && v1::memory::oom_kills(d) > 0),
        }
    }

    /// Kills what is left inside, then removes the directories (children
    /// before parents). Errors are collected, not stopped at.
    pub fn destroy(&mut self) -> Result<(), CgroupError> {
        let mut first_error = None;
        while let Some((_, dir)) = self.dirs.pop() {
            if let Err(e) = remove_dir(&dir) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Cgroup {
    /// On an error path the caller is already returning the first error;
    /// a clean-up failure is printed beside it, never instead of it.
    fn drop(&mut self) {
        if let Err(e) = self.destroy() {
            eprintln!("caixa: warning: while cleaning up: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option at once, through both versions: the files each writes.
    #[test]
    fn every_option_maps_to_these_files() {
        let rate = DeviceRate {
            major: 254,
            minor: 0,
            rate: 1 << 20,
        };
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            cpus: Some(0.5),
            cpu_shares: Some(512),
            cpu_weight: None,
            pids_limit: Some(100),
            blkio_weight: Some(500),
            device_read_bps: vec![rate],
            device_write_bps: vec![rate],
            device_read_iops: vec![DeviceRate { rate: 100, ..rate }],
            device_write_iops: vec![DeviceRate { rate: 50, ..rate }],
            cpuset_cpus: Some("0-1".into()),
            devices: None,
            group: None,
        };
        let show = |settings: Vec<Setting>| {
            settings
                .iter()
                .map(|s| format!("{} = {}", s.file, s.value))
                .collect::<Vec<_>>()
                .join("\n")
        };
        insta::assert_snapshot!("v2_files", show(v2::settings(&limits)));
        let parent = tempfile::tempdir().unwrap();
        std::fs::write(parent.path().join("cpuset.mems"), "0\n").unwrap();
        let v1: Vec<Setting> = v1::needed(&limits)
            .into_iter()
            .flat_map(|c| v1::settings(c, &limits, parent.path()))
            .collect();
        insta::assert_snapshot!("v1_files", show(v1));
    }
}
