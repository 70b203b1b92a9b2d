//! v2 `cpuset`: `cpuset.cpus`. Unlike v1, an empty v2 cpuset means "the
//! parent's", so nothing else needs filling in.

use crate::cgroup::{Limits, Setting};

/// The files to write.
pub fn settings(l: &Limits) -> Vec<Setting> {
    l.cpuset_cpus
        .iter()
        .map(|c| Setting::new("cpuset.cpus", c))
        .collect()
}
