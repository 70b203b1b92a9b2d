//! v2 `io`: throttles per device in one file, `io.max`
//! ("MAJ:MIN rbps=… wbps=… riops=… wiops=…"), and a weight (`io.weight`).
//!
//! Unlike v1, v2 throttles buffered writes too: writeback is charged to the
//! group whose memory holds the dirty pages.

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
}
