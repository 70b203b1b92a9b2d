//! v2 `pids`: `pids.max`, the same file as v1.

use crate::cgroup::{Limits, Setting};

/// The files to write (v1 and v2 agree here).
pub fn settings(l: &Limits) -> Vec<Setting> {
    crate::cgroup::v1::pids::settings(l)
}
