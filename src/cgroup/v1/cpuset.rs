//! v1 `cpuset`: which CPUs (`cpuset.cpus`) and memory nodes (`cpuset.mems`).
//!
//! A new v1 cpuset starts with *no* CPUs and *no* memory nodes, and a process
//! cannot join a cpuset with none: both must be filled in first, from the
//! parent, before anything joins.

use std::path::Path;

use crate::cgroup::{CgroupError, Limits, Setting};

/// The files to write: the CPUs asked for, and the parent's memory nodes.
pub fn settings(l: &Limits, parent: &Path) -> Vec<Setting> {
    let mems = std::fs::read_to_string(parent.join("cpuset.mems")).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(cpus) = &l.cpuset_cpus {
        out.push(Setting::new("cpuset.cpus", cpus));
        out.push(Setting::new("cpuset.mems", mems.trim()));
    }
    out
}

/// Fills a new cpuset `parent` (caixa's, or a cgroupsPath's parent) from
/// the one above it, `root`, when it is still empty.
pub fn inherit(parent: &Path, root: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mine = parent.join(file);
        if std::fs::read_to_string(&mine)
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            let value = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            std::fs::write(&mine, value.trim()).map_err(|source| CgroupError::Io {
                action: "write",
                path: mine.clone(),
                source,
            })?;
        }
    }
    Ok(())
}
