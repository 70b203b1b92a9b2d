//! v1 `cpu`: CFS bandwidth (`cpu.cfs_quota_us` per `cpu.cfs_period_us`) and
//! relative priority (`cpu.shares`).

use crate::cgroup::{CFS_PERIOD_US, Limits, Setting, weight_to_shares};

/// The files to write: `--cpus 0.5` is 50 ms of CPU time per 100 ms period.
pub fn settings(l: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(quota) = l.cpu_quota_us() {
        out.push(Setting::new("cpu.cfs_period_us", CFS_PERIOD_US));
        out.push(Setting::new("cpu.cfs_quota_us", quota));
    }
    if let Some(shares) = l.cpu_shares.or(l.cpu_weight.map(weight_to_shares)) {
        out.push(Setting::new("cpu.shares", shares));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_and_shares() {
        let l = Limits {
            cpus: Some(0.5),
            cpu_weight: Some(100),
            ..Limits::default()
        };
        assert_eq!(
            settings(&l),
            [
                Setting::new("cpu.cfs_period_us", 100000),
                Setting::new("cpu.cfs_quota_us", 50000),
                Setting::new("cpu.shares", 2597)
            ]
        );
    }
}
