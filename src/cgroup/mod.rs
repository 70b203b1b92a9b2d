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
//! caixa creates its groups only under a parent of its own (`caixa/<id>`) and
//! never writes to a group it did not create.

pub mod v1;
pub mod v2;

use std::path::{Path, PathBuf};

use nix::unistd::Pid;

use crate::trace::{Side, Trace};

/// The limits of one container, named after `docker run`'s options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// `--memory`: bytes of memory.
    pub memory: Option<u64>,
    /// `--memory-swap`: memory plus swap in bytes; `-1` for unlimited swap.
    pub memory_swap: Option<i64>,
    /// `--cpus`: how many CPUs' worth of time per period (0.5 = half a CPU).
    pub cpus: Option<f64>,
    /// `--cpu-shares` (v1 scale, 2–262144, default 1024): relative priority.
    pub cpu_shares: Option<u64>,
    /// `--cpu-weight` (v2 scale, 1–10000, default 100): relative priority.
    pub cpu_weight: Option<u64>,
    /// `--pids-limit`: most processes at once; 0 or less is unlimited.
    pub pids_limit: Option<i64>,
    /// `--blkio-weight` (10–1000): relative disk priority.
    pub blkio_weight: Option<u16>,
    /// `--device-read-bps`: (major, minor, bytes per second).
    pub device_read_bps: Vec<DeviceRate>,
    /// `--device-write-bps`.
    pub device_write_bps: Vec<DeviceRate>,
    /// `--device-read-iops`: operations per second.
    pub device_read_iops: Vec<DeviceRate>,
    /// `--device-write-iops`.
    pub device_write_iops: Vec<DeviceRate>,
    /// `--cpuset-cpus`: which CPUs, as `0-1` or `0,2`.
    pub cpuset_cpus: Option<String>,
}

/// A rate for one block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRate {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// Bytes or operations per second.
    pub rate: u64,
}

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

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io {
        action,
        path,
        source,
    }
}

/// The smallest memory limit accepted, as Docker's: below it a container
/// cannot even start its first process.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// Parses a size as Docker does: `512`, `64k`, `32m`, `1g` (an optional `b`
/// after the unit, any case).
pub fn parse_size(text: &str) -> Result<u64, CgroupError> {
    let bad = || {
        CgroupError::Invalid(format!(
            "invalid size {text:?}: use a number with an optional unit b, k, m or g (e.g. 512m)"
        ))
    };
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, unit) = match lower
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        Some((i, _)) => lower.split_at(i),
        None => (lower, ""),
    };
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    Ok((value * multiplier as f64) as u64)
}

/// Parses `DEVICE:RATE` (`/dev/vda:1mb`, or `8:0:1mb`), finding the device's
/// numbers with stat(2). `iops` rates are plain numbers.
pub fn parse_device_rate(text: &str, iops: bool) -> Result<DeviceRate, CgroupError> {
    let bad = || {
        CgroupError::Invalid(format!(
            "invalid device rate {text:?}: use DEVICE:RATE, e.g. /dev/vda:1mb"
        ))
    };
    let (device, rate) = text.rsplit_once(':').ok_or_else(bad)?;
    let rate = if iops {
        rate.parse().map_err(|_| bad())?
    } else {
        parse_size(rate)?
    };
    let (major, minor) = match device.split_once(':') {
        Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
        None => {
            let meta = nix::sys::stat::stat(device).map_err(|e| {
                CgroupError::Invalid(format!(
                    "device {device}: {e}: give a block device such as /dev/vda"
                ))
            })?;
            if meta.st_mode & libc::S_IFMT != libc::S_IFBLK {
                return Err(CgroupError::Invalid(format!(
                    "{device} is not a block device"
                )));
            }
            (
                nix::sys::stat::major(meta.st_rdev),
                nix::sys::stat::minor(meta.st_rdev),
            )
        }
    };
    Ok(DeviceRate { major, minor, rate })
}

// ANCHOR: shares_to_weight
/// The two scales of CPU priority: v1 `cpu.shares` (2–262144, default 1024)
/// and v2 `cpu.weight` (1–10000, default 100), mapped linearly end to end.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + (shares - 2) * 9_999 / 262_142
}
// ANCHOR_END: shares_to_weight

/// Disk priority: `--blkio-weight` (v1 scale 10–1000, default 500) to
/// v2's `io.weight` (1–10000, default 100), mapped linearly end to end.
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9_999 / 990
}

/// The inverse of [`shares_to_weight`].
pub fn weight_to_shares(weight: u64) -> u64 {
    let weight = weight.clamp(1, 10_000);
    2 + (weight - 1) * 262_142 / 9_999
}

impl Limits {
    /// Whether any limit is set (a cgroup is then worth creating).
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Whether any disk option is set (the I/O controller is then needed).
    pub fn has_io(&self) -> bool {
        self.blkio_weight.is_some()
            || !self.device_read_bps.is_empty()
            || !self.device_write_bps.is_empty()
            || !self.device_read_iops.is_empty()
            || !self.device_write_iops.is_empty()
    }

    /// Refuses values the kernel would refuse, with one clear line each.
    pub fn validate(&self) -> Result<(), CgroupError> {
        if let Some(m) = self.memory {
            if m < MIN_MEMORY {
                return Err(CgroupError::Invalid(format!(
                    "--memory {m} is below the minimum of 6 MiB a container needs to start"
                )));
            }
        }
        if let (Some(swap), Some(m)) = (self.memory_swap, self.memory) {
            if swap != -1 && (swap as u64) < m {
                return Err(CgroupError::Invalid("--memory-swap must be at least --memory (it is memory plus swap), or -1 for unlimited".into()));
            }
        }
        if self.memory_swap.is_some() && self.memory.is_none() {
            return Err(CgroupError::Invalid("--memory-swap needs --memory".into()));
        }
        if let Some(c) = self.cpus {
            if !(0.01..=1024.0).contains(&c) {
                return Err(CgroupError::Invalid(format!(
                    "--cpus {c} is out of range: use e.g. 0.5 for half a CPU"
                )));
            }
        }
        if self.cpu_shares.is_some() && self.cpu_weight.is_some() {
            return Err(CgroupError::Invalid(
                "use --cpu-shares or --cpu-weight, not both".into(),
            ));
        }
        if let Some(s) = self.cpu_shares {
            if !(2..=262_144).contains(&s) {
                return Err(CgroupError::Invalid(format!(
                    "--cpu-shares {s} is out of range 2-262144"
                )));
            }
        }
        if let Some(w) = self.cpu_weight {
            if !(1..=10_000).contains(&w) {
                return Err(CgroupError::Invalid(format!(
                    "--cpu-weight {w} is out of range 1-10000"
                )));
            }
        }
        if let Some(w) = self.blkio_weight {
            if !(10..=1000).contains(&w) {
                return Err(CgroupError::Invalid(format!(
                    "--blkio-weight {w} is out of range 10-1000"
                )));
            }
        }
        Ok(())
    }
}

/// Which cgroup layout this host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One unified tree with controllers, mounted here.
    V2(PathBuf),
    /// One tree per controller: (controller, mount point). On a hybrid host
    /// the empty cgroup2 mount beside them is not used.
    V1(Vec<(String, PathBuf)>),
}

impl Hierarchy {
    /// The directories [`Cgroup::create`] may make for `id` here, known
    /// before it makes them (so a record of leftovers can name them first,
    /// see `crate::leftovers`): one per v1 controller mounted, one on v2.
    pub fn planned_dirs(&self, id: &str) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = match self {
            Hierarchy::V2(root) => vec![root.join(PARENT).join(id)],
            Hierarchy::V1(mounts) => mounts
                .iter()
                .map(|(_, m)| m.join(PARENT).join(id))
                .collect(),
        };
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

/// Reads `/proc/self/mountinfo` to find the cgroup layout.
pub fn detect() -> Result<Hierarchy, CgroupError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io("read", Path::new("/proc/self/mountinfo")))?;
    detect_from(&mountinfo, |p| {
        std::fs::read_to_string(p).unwrap_or_default()
    })
}

// ANCHOR: detect
/// [`detect`] on given mountinfo text; `read` reads a file (for tests).
pub fn detect_from(
    mountinfo: &str,
    read: impl Fn(&Path) -> String,
) -> Result<Hierarchy, CgroupError> {
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in mountinfo.lines() {
        // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mountpoint), Some(fstype), Some(superopts)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 3))
        else {
            continue;
        };
        match *fstype {
            "cgroup2" if v2.is_none() => v2 = Some(PathBuf::from(mountpoint)),
            "cgroup" => {
                for opt in superopts.split(',') {
                    if v1::CONTROLLERS.contains(&opt) {
                        v1.push((opt.to_string(), PathBuf::from(mountpoint)));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(root) = v2 {
        // A cgroup2 mount that offers the memory controller is a v2 host. One
        // without it beside v1 controllers is a hybrid host (its cgroup2 holds
        // little or nothing, e.g. only hugetlb): we use its v1 controllers.
        let controllers = read(&root.join("cgroup.controllers"));
        if controllers.split_whitespace().any(|c| c == "memory") || v1.is_empty() {
            return Ok(Hierarchy::V2(root));
        }
    }
    if v1.is_empty() {
        return Err(CgroupError::Unsupported {
            what: "a cgroup filesystem".into(),
            fix: "mount one: sudo mount -t cgroup2 none /sys/fs/cgroup".into(),
        });
    }
    Ok(Hierarchy::V1(v1))
}
// ANCHOR_END: detect

/// What a container used, read from its cgroup's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Memory in use now, in bytes.
    pub memory_bytes: u64,
    /// CPU time used since the start, in microseconds.
    pub cpu_usec: u64,
    /// Processes now.
    pub pids: u64,
    /// Bytes read from block devices.
    pub io_read_bytes: u64,
    /// Bytes written to block devices.
    pub io_write_bytes: u64,
}

/// One container's cgroup: a directory per v1 controller, or one on v2.
/// Removed when dropped, after killing anything still inside.
#[derive(Debug)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    /// (controller, directory) on v1; ("", directory) on v2.
    dirs: Vec<(String, PathBuf)>,
}

/// The name of caixa's own parent group.
pub const PARENT: &str = "caixa";

impl Cgroup {
    /// Creates `caixa/<id>` in `hierarchy` (see [`detect`]) and writes the
    /// limits. On failure, whatever was created is removed again.
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
        match &hierarchy {
            Hierarchy::V2(root) => v2::create(&mut cgroup.dirs, root, id, limits, trace)?,
            Hierarchy::V1(mounts) => v1::create(&mut cgroup.dirs, mounts, id, limits, trace)?,
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

    /// The directories, for the trace and the tests.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
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

    /// Current usage, from the cgroup's counters (for `stats` later).
    pub fn usage(&self) -> Usage {
        match self.hierarchy {
            Hierarchy::V2(_) => self
                .dirs
                .first()
                .map(|(_, d)| v2::usage(d))
                .unwrap_or_default(),
            Hierarchy::V1(_) => v1::usage(&self.dirs),
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

// ANCHOR: remove_dir
/// Kills every process in `dir` and removes it. A cgroup with processes
/// cannot be removed (EBUSY), and one whose last process just died may take a
/// moment to let go, so this retries briefly.
pub(crate) fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    if !dir.exists() {
        return Ok(());
    }
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() {
        let _ = std::fs::write(&kill_file, "1");
    }
    let mut delay = std::time::Duration::from_micros(100);
    for _ in 0..20 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
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

/// Creates `dir` if it does not exist (caixa's parent, or the container's).
pub(crate) fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("create", dir)(e)),
    }
}

/// Writes each setting into `dir`, tracing `file = value`. A file that does
/// not exist means this kernel lacks the feature: said in one line.
pub(crate) fn write_settings(
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

/// Reads a file of one number (`max` counts as `u64::MAX`).
pub(crate) fn read_number(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let t = text.trim();
    if t == "max" {
        u64::MAX
    } else {
        t.parse().unwrap_or(0)
    }
}

/// The value of `key` in a flat keyed file such as `memory.events`.
pub(crate) fn read_key(path: &Path, key: &str) -> u64 {
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
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("32m").unwrap(), 32 << 20);
        assert_eq!(parse_size("32MB").unwrap(), 32 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        for bad in ["12q", "", "m", "-1m", "1.2.3m"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shares_and_weight_convert_end_to_end() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        assert_eq!(weight_to_shares(100), 2597);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(blkio_to_io_weight(500), 4950);
    }

    #[test]
    fn limits_are_validated() {
        let l = Limits {
            memory: Some(1024),
            ..Limits::default()
        };
        assert!(l.validate().is_err());
        let l = Limits {
            memory: Some(MIN_MEMORY),
            memory_swap: Some(1),
            ..Limits::default()
        };
        assert!(l.validate().is_err());
        let l = Limits {
            cpu_shares: Some(1),
            ..Limits::default()
        };
        assert!(l.validate().is_err());
        let l = Limits {
            cpus: Some(0.5),
            pids_limit: Some(10),
            ..Limits::default()
        };
        assert!(l.validate().is_ok());
    }

    const HYBRID: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
35 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd";

    #[test]
    fn a_hybrid_host_is_v1_and_a_unified_one_is_v2() {
        let h = detect_from(HYBRID, |_| "hugetlb\n".into()).unwrap();
        let Hierarchy::V1(mounts) = h else {
            panic!("{h:?}")
        };
        let names: Vec<&str> = mounts.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["cpu", "cpuacct", "memory"]);
        let v2 = "31 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate";
        let h = detect_from(v2, |_| "cpuset cpu io memory pids\n".into()).unwrap();
        assert_eq!(h, Hierarchy::V2("/sys/fs/cgroup".into()));
        assert!(detect_from("", |_| String::new()).is_err());
    }

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
}
