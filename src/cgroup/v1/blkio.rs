//! v1 `blkio`: a relative weight (`blkio.weight`, needs the BFQ scheduler) and
//! throttles per device (`blkio.throttle.{read,write}_{bps,iops}_device`).
//!
//! Throttles apply to I/O that reaches the device from this group: direct
//! I/O and the writes a `fsync` forces. Plain buffered writes are flushed
//! later by the kernel's writeback threads, outside the group: v1 cannot
//! throttle them (v2 can, with the memory controller's help).

use std::path::Path;

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

/// Bytes (read, written) from `blkio.throttle.io_service_bytes`.
pub fn bytes(dir: &Path) -> (u64, u64) {
    let text =
        std::fs::read_to_string(dir.join("blkio.throttle.io_service_bytes")).unwrap_or_default();
    let sum = |op: &str| {
        text.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (_dev, kind, n) = (f.next()?, f.next()?, f.next()?);
                (kind == op).then(|| n.parse::<u64>().ok()).flatten()
            })
            .sum()
    };
    (sum("Read"), sum("Write"))
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

    #[test]
    fn bytes_are_summed_per_direction() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("blkio.throttle.io_service_bytes"),
            "254:0 Read 10\n254:0 Write 20\n254:0 Sync 30\n8:0 Write 5\nTotal 65\n",
        )
        .unwrap();
        assert_eq!(bytes(dir.path()), (10, 25));
    }
}
