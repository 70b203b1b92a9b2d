//! `linux.resources` and `linux.cgroupsPath`, both ways: caixa's [`Limits`]
//! in the OCI's cgroup terms.
//!
//! `linux.resources` present means "make a cgroup" (steps 7 and later always
//! do, even with no limit, so usage can be read); absent means no cgroup,
//! unless `linux.cgroupsPath` names one (then it is made, with no limit).
//! `linux.resources.devices` becomes the container's device rules (see
//! `crate::cgroup::devices`), checked here so a rule cgroup v1 could not
//! keep exactly is refused before anything runs.
//! `--cpus` is a CFS quota of caixa's fixed 100 ms period; `--cpu-weight`
//! (cgroup v2's scale) has no OCI field, so it travels as the unified
//! `cpu.weight` key, as runc reads it.

use std::collections::HashMap;

use oci_spec::runtime::{
    Linux, LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxPids,
    LinuxResources, LinuxThrottleDevice, LinuxThrottleDeviceBuilder,
};

use super::{BundleError, invalid, refuse, refuse_unconverted};
use crate::cgroup::{Access, DeviceKind, DeviceRate, DeviceRule, GroupPath, Limits};

use crate::cgroup::CFS_PERIOD_US as PERIOD_US;

/// The unified key that carries `--cpu-weight`.
const CPU_WEIGHT: &str = "cpu.weight";

/// The four throttles of `linux.resources.blockIO`, in caixa's order:
/// read bps, write bps, read IOPS, write IOPS.
const THROTTLES: [&str; 4] = [
    "throttleReadBpsDevice",
    "throttleWriteBpsDevice",
    "throttleReadIOPSDevice",
    "throttleWriteIOPSDevice",
];

fn throttles(
    field: &str,
    rates: &[DeviceRate],
) -> Result<Option<Vec<LinuxThrottleDevice>>, BundleError> {
    let list = rates
        .iter()
        .map(|r| {
            // Device numbers are 32 bits wide on Linux: they fit an i64.
            LinuxThrottleDeviceBuilder::default()
                .major(r.major as i64)
                .minor(r.minor as i64)
                .rate(r.rate)
                .build()
                .map_err(|e| invalid(&format!("linux.resources.blockIO.{field}"), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((!list.is_empty()).then_some(list))
}

/// The OCI resources for caixa's limits.
pub(super) fn resources_to_oci(l: &Limits) -> Result<LinuxResources, BundleError> {
    let mut r = LinuxResources::default();
    if l.memory.is_some() || l.memory_swap.is_some() {
        let limit = l
            .memory
            .map(|m| {
                i64::try_from(m).map_err(|_| invalid("linux.resources.memory.limit", "too large"))
            })
            .transpose()?;
        let mut memory = LinuxMemory::default();
        memory.set_limit(limit).set_swap(l.memory_swap);
        r.set_memory(Some(memory));
    }
    if l.cpus.is_some() || l.cpu_shares.is_some() || l.cpuset_cpus.is_some() {
        let mut cpu = LinuxCpu::default();
        if let Some(quota) = l.cpu_quota_us() {
            // The same quota the cgroup writers write.
            cpu.set_quota(Some(quota as i64))
                .set_period(Some(PERIOD_US));
        }
        cpu.set_shares(l.cpu_shares).set_cpus(l.cpuset_cpus.clone());
        r.set_cpu(Some(cpu));
    }
    if let Some(weight) = l.cpu_weight {
        r.set_unified(Some(HashMap::from([(
            CPU_WEIGHT.into(),
            weight.to_string(),
        )])));
    }
    if let Some(limit) = l.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        r.set_pids(Some(pids));
    }
    if let Some(rules) = &l.devices {
        r.set_devices(Some(rules.iter().map(device_to_oci).collect()));
    }
    if l.has_io() {
        let mut io = LinuxBlockIo::default();
        io.set_weight(l.blkio_weight)
            .set_throttle_read_bps_device(throttles(THROTTLES[0], &l.device_read_bps)?)
            .set_throttle_write_bps_device(throttles(THROTTLES[1], &l.device_write_bps)?)
            .set_throttle_read_iops_device(throttles(THROTTLES[2], &l.device_read_iops)?)
            .set_throttle_write_iops_device(throttles(THROTTLES[3], &l.device_write_iops)?);
        r.set_block_io(Some(io));
    }
    Ok(r)
}

fn rates(
    field: &str,
    list: &Option<Vec<LinuxThrottleDevice>>,
) -> Result<Vec<DeviceRate>, BundleError> {
    list.iter()
        .flatten()
        .map(
            |t| match (u64::try_from(t.major()), u64::try_from(t.minor())) {
                (Ok(major), Ok(minor)) => Ok(DeviceRate {
                    major,
                    minor,
                    rate: t.rate(),
                }),
                _ => Err(invalid(
                    &format!("linux.resources.blockIO.{field}"),
                    "device numbers cannot be negative",
                )),
            },
        )
        .collect()
}

// ANCHOR: limits_from_oci
/// caixa's limits for container `id`'s `linux.resources` and
/// `linux.cgroupsPath`: `None` (no cgroup) when both are absent.
pub(super) fn limits_from_oci(linux: &Linux, id: &str) -> Result<Option<Limits>, BundleError> {
    let group = linux
        .cgroups_path()
        .as_ref()
        .map(|path| {
            let text = path.to_str().unwrap_or("\u{fffd}");
            GroupPath::from_cgroups_path(text, id)
                .map_err(|e| invalid("linux.cgroupsPath", e.to_string()))
        })
        .transpose()?;
    let mut limits = match (linux.resources(), &group) {
        (Some(r), _) => resources_from_oci(r)?,
        (None, Some(_)) => Limits::default(),
        (None, None) => return Ok(None),
    };
    limits.group = group;
    Ok(Some(limits))
}
// ANCHOR_END: limits_from_oci

/// The OCI rule for one of caixa's: `*` numbers are left out.
fn device_to_oci(rule: &DeviceRule) -> LinuxDeviceCgroup {
    let mut oci = LinuxDeviceCgroup::default();
    oci.set_allow(rule.allow)
        .set_typ(Some(match rule.kind {
            DeviceKind::All => LinuxDeviceType::A,
            DeviceKind::Block => LinuxDeviceType::B,
            DeviceKind::Char => LinuxDeviceType::C,
        }))
        .set_major(rule.major.map(i64::from))
        .set_minor(rule.minor.map(i64::from))
        .set_access(Some(rule.access.to_string()));
    oci
}

/// caixa's rule for `linux.resources.devices[index]`. The type defaults to
/// `a` and the access to `rwm`, as runc reads them; a number absent or -1
/// is every number.
fn device_from_oci(index: usize, oci: &LinuxDeviceCgroup) -> Result<DeviceRule, BundleError> {
    let at = |field: &str| format!("linux.resources.devices[{index}]{field}");
    let kind = match oci.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => DeviceKind::All,
        LinuxDeviceType::B => DeviceKind::Block,
        LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
        LinuxDeviceType::P => {
            return Err(invalid(&at(".type"), "a FIFO is no device: use a, b or c"));
        }
    };
    // Linux's device numbers: 12 bits of major, 20 of minor.
    let number = |field: &str, value: Option<i64>, max: i64| match value {
        None | Some(-1) => Ok(None),
        Some(n) if (0..=max).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(invalid(
            &at(field),
            format!("{n} is not a device number (0-{max}, or -1 for all)"),
        )),
    };
    let access = match oci.access().as_deref() {
        None => Access::ALL,
        Some(text) => Access::parse(text)
            .ok_or_else(|| invalid(&at(".access"), format!("{text:?}: give some of r, w and m")))?,
    };
    Ok(DeviceRule {
        allow: oci.allow(),
        kind,
        major: number(".major", oci.major(), (1 << 12) - 1)?,
        minor: number(".minor", oci.minor(), (1 << 20) - 1)?,
        access,
    })
}

/// The device rules of `linux.resources.devices`, checked as a whole: a
/// list cgroup v1 could not keep exactly is refused, naming the rule.
fn devices_from_oci(list: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, BundleError> {
    let rules = list
        .iter()
        .enumerate()
        .map(|(i, d)| device_from_oci(i, d))
        .collect::<Result<Vec<_>, _>>()?;
    crate::cgroup::devices::policy(&rules).map_err(|e| BundleError::Unsupported {
        field: format!("linux.resources.devices[{}]", e.index),
        why: e.why,
    })?;
    Ok(rules)
}

/// caixa's limits for the OCI resources; every field caixa cannot set is
/// refused, and the result is checked as `docker run`'s options would be.
pub(super) fn resources_from_oci(r: &LinuxResources) -> Result<Limits, BundleError> {
    let at = |field: &str| format!("linux.resources.{field}");
    refuse_unconverted(
        "linux.resources",
        r,
        &["memory", "cpu", "pids", "blockIO", "unified", "devices"],
    )?;
    let mut l = Limits::default();
    if let Some(m) = r.memory() {
        refuse_unconverted(&at("memory"), m, &["limit", "swap"])?;
        l.memory = match m.limit() {
            None | Some(-1) => None,
            Some(n) => Some(u64::try_from(n).map_err(|_| {
                invalid(&at("memory.limit"), "use a number of bytes, or -1 for none")
            })?),
        };
        l.memory_swap = match m.swap() {
            Some(n) if n < -1 => {
                return Err(invalid(
                    &at("memory.swap"),
                    "use memory plus swap in bytes, or -1 for unlimited swap",
                ));
            }
            swap => swap,
        };
    }
    if let Some(c) = r.cpu() {
        refuse_unconverted(&at("cpu"), c, &["shares", "quota", "period", "cpus"])?;
        if c.period().is_some_and(|p| p != PERIOD_US) {
            return Err(refuse(&at("cpu.period")));
        }
        l.cpus = match c.quota() {
            None | Some(-1) => None,
            Some(q) if q > 0 => Some(q as f64 / PERIOD_US as f64),
            Some(_) => {
                return Err(invalid(
                    &at("cpu.quota"),
                    "use a positive quota in µs, or -1 for none",
                ));
            }
        };
        l.cpu_shares = c.shares();
        l.cpuset_cpus = c.cpus().clone();
    }
    for (key, value) in r.unified().iter().flatten() {
        if key != CPU_WEIGHT {
            return Err(BundleError::Unsupported {
                field: at("unified"),
                why: format!("caixa reads only {CPU_WEIGHT} from unified, not {key}"),
            });
        }
        l.cpu_weight = Some(value.parse().map_err(|_| {
            invalid(
                &at("unified"),
                format!("{CPU_WEIGHT} {value:?} is not a number from 1 to 10000"),
            )
        })?);
    }
    l.pids_limit = r.pids().map(|p| p.limit());
    // An empty list asks for nothing (no device cgroup), as when absent.
    l.devices = match r.devices().as_deref() {
        None | Some([]) => None,
        Some(list) => Some(devices_from_oci(list)?),
    };
    if let Some(io) = r.block_io() {
        let mut converted = vec!["weight"];
        converted.extend(THROTTLES);
        refuse_unconverted(&at("blockIO"), io, &converted)?;
        l.blkio_weight = io.weight();
        l.device_read_bps = rates(THROTTLES[0], io.throttle_read_bps_device())?;
        l.device_write_bps = rates(THROTTLES[1], io.throttle_write_bps_device())?;
        l.device_read_iops = rates(THROTTLES[2], io.throttle_read_iops_device())?;
        l.device_write_iops = rates(THROTTLES[3], io.throttle_write_iops_device())?;
    }
    l.validate()
        .map_err(|e| invalid("linux.resources", e.to_string()))?;
    Ok(l)
}
