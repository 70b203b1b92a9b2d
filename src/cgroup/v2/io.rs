//! v2 `io`: throttles per device in one file, `io.max`
//! ("MAJ:MIN rbps=… wbps=… riops=… wiops=…"), and a weight (`io.weight`).
//!
//! Unlike v1, v2 throttles buffered writes too: writeback is charged to the
//! group whose memory holds the dirty pages.

use std::path::Path;

use crate::cgroup::{DeviceRate, Limits, Setting};

/// The files to write: one `io.max` line per device and key.
pub fn settings(l: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(w) = l.blkio_weight {
        let weight = crate::cgroup::blkio_to_io_weight(w);
        out.push(Setting::new("io.weight", format!("default {weight}")));
    }
    let lines = |key: &'static str, rates: &[DeviceRate]| -> Vec<Setting> {
        rates
            .iter()
            .map(|r| {
                Setting::new(
                    "io.max",
                    format!("{}:{} {key}={}", r.major, r.minor, r.rate),
                )
            })
            .collect()
    };
    out.extend(lines("rbps", &l.device_read_bps));
    out.extend(lines("wbps", &l.device_write_bps));
    out.extend(lines("riops", &l.device_read_iops));
    out.extend(lines("wiops", &l.device_write_iops));
    out
}

/// Bytes (read, written) from `io.stat`.
pub fn bytes(dir: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(dir.join("io.stat")).unwrap_or_default();
    let sum = |key: &str| -> u64 {
        text.split_whitespace()
            .filter_map(|kv| kv.strip_prefix(key)?.parse::<u64>().ok())
            .sum()
    };
    (sum("rbytes="), sum("wbytes="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_io_max_line_per_key() {
        let rate = DeviceRate {
            major: 8,
            minor: 0,
            rate: 1048576,
        };
        let l = Limits {
            device_read_bps: vec![rate],
            device_write_iops: vec![DeviceRate { rate: 100, ..rate }],
            ..Limits::default()
        };
        assert_eq!(
            settings(&l),
            [
                Setting::new("io.max", "8:0 rbps=1048576"),
                Setting::new("io.max", "8:0 wiops=100")
            ]
        );
    }

    #[test]
    fn bytes_from_io_stat() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("io.stat"),
            "8:0 rbytes=10 wbytes=20 rios=1 wios=2\n8:16 rbytes=1 wbytes=2\n",
        )
        .unwrap();
        assert_eq!(bytes(dir.path()), (11, 22));
    }
}
