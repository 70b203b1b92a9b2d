//! What a container may use, in `docker run`'s terms: the [`Limits`], their
//! validation, the `DEVICE:RATE` syntax, and the conversions between v1's and
//! v2's priority scales.
//!
//! Nothing here touches the cgroup filesystem; `v1` and `v2` turn these
//! limits into the files each version writes.

use super::CgroupError;
use super::devices::{DeviceRule, policy};
use super::path::GroupPath;
use crate::units::parse_size;

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
    /// OCI `linux.resources.devices`: which devices the container may
    /// open or create, in order. `None` sets no device cgroup (see the
    /// step 7 chapter for why that is safe for caixa's own containers).
    pub devices: Option<Vec<DeviceRule>>,
    /// Not a limit but where the group is: OCI `linux.cgroupsPath`.
    /// `None` is caixa's own `caixa/<id>`; see [`Limits::group`].
    pub group: Option<GroupPath>,
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

/// The smallest memory limit accepted, as Docker's: below it a container
/// cannot even start its first process.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

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

/// The CFS period, in µs: quota is counted per 100 ms, as Docker does.
pub const CFS_PERIOD_US: u64 = 100_000;

impl Limits {
    /// `--cpus` as CFS quota per [`CFS_PERIOD_US`] (0.5 → 50 000 µs); the
    /// one rounding the cgroup writers and the bundle share.
    pub fn cpu_quota_us(&self) -> Option<u64> {
        self.cpus
            .map(|cpus| (cpus * CFS_PERIOD_US as f64).round() as u64)
    }

    /// The place of container `id`'s group: the one chosen, or caixa's.
    pub fn group(&self, id: &str) -> GroupPath {
        self.group
            .clone()
            .unwrap_or_else(|| GroupPath::default_for(id))
    }

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
        if let Some(n) = self.pids_limit {
            if n > MAX_PIDS {
                return Err(CgroupError::Invalid(format!(
                    "--pids-limit {n} is above the kernel's most, {MAX_PIDS}: use -1 for no limit"
                )));
            }
        }
        if let Some(list) = &self.cpuset_cpus {
            cpu_list(list).ok_or_else(|| not_a_cpu_list(list))?;
        }
        if let Some(rules) = &self.devices {
            policy(rules).map_err(|e| CgroupError::Invalid(format!("device {e}")))?;
        }
        Ok(())
    }
}

impl Limits {
    /// Refuses what this machine cannot give, where [`Limits::validate`]
    /// refuses what no machine could: a `--cpuset-cpus` naming a CPU that
    /// is not online here (`cpuset.cpus` would refuse it at the start).
    /// The engine checks it when a container is created (a 400, as
    /// Docker's), not each time its bundle is read again: a CPU taken
    /// offline later must not lock its containers out of `exec`, `stats`
    /// or a restart, whose own write then says what is wrong. The step
    /// binaries leave it to the kernel: step 7 shows the refused write,
    /// and the group it leaves nothing of.
    pub fn check_here(&self) -> Result<(), CgroupError> {
        match &self.cpuset_cpus {
            Some(list) => check_cpus(
                list,
                &std::fs::read_to_string(ONLINE_CPUS).unwrap_or_default(),
            ),
            None => Ok(()),
        }
    }
}

/// The most `pids.max` takes: the kernel's `PID_MAX_LIMIT` (2^22 where a
/// `long` has 64 bits, 2^15 where it has 32); it answers `EINVAL` to more.
#[cfg(target_pointer_width = "64")]
const MAX_PIDS: i64 = 1 << 22;
#[cfg(not(target_pointer_width = "64"))]
const MAX_PIDS: i64 = 1 << 15;

/// The CPUs this machine has online, in the kernel's list syntax.
const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";

/// The most CPUs a list may name (the kernel's own most, `NR_CPUS`, is
/// 8192 on the largest configurations): a bound on what a list costs.
const MAX_CPUS: usize = 8192;

/// The CPUs of a list such as `0-2,5` (one flag per CPU), or `None` if it
/// is not one. Its work is bounded whatever comes in: a list may be 1 KiB
/// at most, and each CPU below [`MAX_CPUS`].
fn cpu_list(list: &str) -> Option<Vec<bool>> {
    if list.len() > 1024 {
        return None;
    }
    let mut cpus = vec![false; MAX_CPUS];
    for part in list.trim().split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last): (usize, usize) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
        if first > last || last >= MAX_CPUS {
            return None;
        }
        cpus[first..=last].fill(true);
    }
    Some(cpus)
}

/// The one line for a `--cpuset-cpus` that is no list of CPUs.
fn not_a_cpu_list(list: &str) -> CgroupError {
    CgroupError::Invalid(format!(
        "--cpuset-cpus {list:?} is not a list of CPUs: use e.g. 0-1 or 0,2"
    ))
}

/// Refuses a `--cpuset-cpus` that is not a list of CPUs, or names one that
/// is not in `online` (the kernel's list of online CPUs; when it cannot be
/// read, only the syntax is checked).
fn check_cpus(list: &str, online: &str) -> Result<(), CgroupError> {
    let cpus = cpu_list(list).ok_or_else(|| not_a_cpu_list(list))?;
    let Some(here) = cpu_list(online) else {
        return Ok(());
    };
    match (0..MAX_CPUS).find(|&cpu| cpus[cpu] && !here[cpu]) {
        Some(cpu) => Err(CgroupError::Invalid(format!(
            "--cpuset-cpus {list}: CPU {cpu} is not available here (online: {})",
            online.trim()
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn cpu_lists_are_checked_against_the_online_cpus() {
        let named = |list| {
            cpu_list(list).map(|cpus| (0..MAX_CPUS).filter(|&c| cpus[c]).collect::<Vec<_>>())
        };
        assert_eq!(named("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(named("3\n"), Some(vec![3]));
        assert_eq!(named("0-8191").map(|c| c.len()), Some(8192));
        let long = "0-4095,".repeat(200) + "0";
        for bad in ["", "a", "2-1", "0-", "-1", "0,,1", "0-8192", "99999", &long] {
            assert_eq!(named(bad), None, "{bad:?}");
        }
        assert!(check_cpus("0-1", "0-1\n").is_ok());
        assert!(check_cpus("1", "0-3\n").is_ok());
        let far = check_cpus("999", "0-1\n").unwrap_err().to_string();
        assert!(
            far.contains("CPU 999 is not available here (online: 0-1)"),
            "{far}"
        );
        let bad = check_cpus("x", "0-1").unwrap_err().to_string();
        assert!(bad.contains("is not a list of CPUs"), "{bad}");
        // Nothing to compare with: the syntax alone.
        assert!(check_cpus("7", "").is_ok());
    }

    #[test]
    fn a_pids_limit_above_the_kernels_most_is_refused() {
        let over = Limits {
            pids_limit: Some(i64::MAX),
            ..Limits::default()
        };
        assert!(
            over.validate()
                .unwrap_err()
                .to_string()
                .contains("above the kernel's most")
        );
        let most = Limits {
            pids_limit: Some(MAX_PIDS),
            ..Limits::default()
        };
        assert!(most.validate().is_ok());
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

    #[test]
    fn device_rates_take_numbers_and_sizes() {
        let r = parse_device_rate("8:0:1mb", false).unwrap();
        assert_eq!((r.major, r.minor, r.rate), (8, 0, 1 << 20));
        let r = parse_device_rate("8:16:100", true).unwrap();
        assert_eq!((r.major, r.minor, r.rate), (8, 16, 100));
        assert!(parse_device_rate("8:0:lots", false).is_err());
        assert!(parse_device_rate("no-rate", false).is_err());
    }
}
