//! v2 `cpu`: bandwidth (`cpu.max` = "QUOTA PERIOD") and priority (`cpu.weight`).

use crate::cgroup::{Limits, Setting, shares_to_weight};

/// The period quota is counted in, 100 ms, as Docker does.
pub const PERIOD_US: u64 = 100_000;

/// The files to write: `--cpus 0.5` is "50000 100000".
pub fn settings(l: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(cpus) = l.cpus {
        let quota = (cpus * PERIOD_US as f64).round() as u64;
        out.push(Setting::new("cpu.max", format!("{quota} {PERIOD_US}")));
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
