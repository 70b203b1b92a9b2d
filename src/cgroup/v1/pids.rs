//! v1 `pids`: `pids.max`, the most processes (and threads) at once.

use crate::cgroup::{Limits, Setting};

/// The files to write; zero or less means no limit (`max`), as in Docker.
pub fn settings(l: &Limits) -> Vec<Setting> {
    match l.pids_limit {
        Some(n) if n > 0 => vec![Setting::new("pids.max", n)],
        Some(_) => vec![Setting::new("pids.max", "max")],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_or_max() {
        let l = |n| Limits {
            pids_limit: Some(n),
            ..Limits::default()
        };
        assert_eq!(settings(&l(5)), [Setting::new("pids.max", 5)]);
        assert_eq!(settings(&l(-1)), [Setting::new("pids.max", "max")]);
    }
}
