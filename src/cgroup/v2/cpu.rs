//! v2 `cpu`: bandwidth (`cpu.max` = "QUOTA PERIOD") and priority (`cpu.weight`).

use crate::cgroup::{CFS_PERIOD_US, Limits, Setting, shares_to_weight};

/// The files to write: `--cpus 0.5` is "50000 100000".
pub fn settings(l: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(quota) = l.cpu_quota_us() {
        out.push(Setting::new("cpu.max", format!("{quota} {CFS_PERIOD_US}")));
    }
    if let Some(weight) = l.cpu_weight.or(l.cpu_shares.map(shares_to_weight)) {
        out.push(Setting::new("cpu.weight", weight));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_period_and_weight() {
        let l = Limits {
            cpus: Some(1.5),
            cpu_shares: Some(1024),
            ..Limits::default()
        };
        assert_eq!(
            settings(&l),
            [
                Setting::new("cpu.max", "150000 100000"),
                Setting::new("cpu.weight", 39)
            ]
        );
    }
}
