//! v1 `blkio`: a relative weight (`blkio.weight`, needs the BFQ scheduler) and
//! throttles per device (`blkio.throttle.{read,write}_{bps,iops}_device`).
//!
//! Throttles apply to I/O that reaches the device from this group: direct
//! I/O and the writes a `fsync` forces. Plain buffered writes are flushed
//! later by the kernel's writeback threads, outside the group: v1 cannot
//! throttle them (v2 can, with the memory controller's help).

use crate::cgroup::{DeviceRate, Limits, Setting};

/// The files to write: one line per device and direction.
pub fn settings(l: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(w) = l.blkio_weight {
        out.push(Setting::new("blkio.weight", w));
    }
    let lines = |file: &'static str, rates: &[DeviceRate]| -> Vec<Setting> {
        rates
            .iter()
            .map(|r| Setting::new(file, format!("{}:{} {}", r.major, r.minor, r.rate)))
            .collect()
    };
    out.extend(lines("blkio.throttle.read_bps_device", &l.device_read_bps));
    out.extend(lines(
        "blkio.throttle.write_bps_device",
        &l.device_write_bps,
    ));
    out.extend(lines(
        "blkio.throttle.read_iops_device",
        &l.device_read_iops,
    ));
    out.extend(lines(
        "blkio.throttle.write_iops_device",
        &l.device_write_iops,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_device() {
        let rate = DeviceRate {
            major: 254,
            minor: 0,
            rate: 1 << 20,
        };
        let l = Limits {
            device_write_bps: vec![rate],
            blkio_weight: Some(500),
            ..Limits::default()
        };
        assert_eq!(
            settings(&l),
            [
                Setting::new("blkio.weight", 500),
                Setting::new("blkio.throttle.write_bps_device", "254:0 1048576")
            ]
        );
    }
}
