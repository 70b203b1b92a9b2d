//! cgroup v1: one tree per controller.
//!
//! Each controller is its own filesystem (`/sys/fs/cgroup/memory`, `…/cpu`),
//! so a container has one directory per controller and joins each of them.
//! Hosts often mount `cpu` and `cpuacct` together; then two controllers share
//! one directory.

pub mod blkio;
pub mod cpu;
pub mod cpuset;
pub mod memory;
pub mod pids;
pub mod visit;

use std::path::{Path, PathBuf};

use super::{
    CgroupError, GroupPath, Limits, Setting, Tree, devices, make_dir, make_group_dir,
    write_settings,
};
use crate::trace::Trace;

/// The v1 controllers caixa knows.
pub const CONTROLLERS: [&str; 7] = [
    "memory", "cpu", "cpuacct", "pids", "blkio", "cpuset", "devices",
];

/// The controllers a container with `limits` joins: memory and pids always
/// (for OOM reports), cpu and cpuacct always (CPU time), blkio, cpuset and
/// devices only when asked for.
pub fn needed(limits: &Limits) -> Vec<&'static str> {
    let mut out = vec!["memory", "pids", "cpu", "cpuacct"];
    let io = limits.has_io();
    if io {
        out.push("blkio");
    }
    if limits.cpuset_cpus.is_some() {
        out.push("cpuset");
    }
    if limits.devices.is_some() {
        out.push("devices");
    }
    out
}

/// What each controller writes for `limits`.
pub fn settings(controller: &str, limits: &Limits, parent: &Path) -> Vec<Setting> {
    match controller {
        "memory" => memory::settings(limits),
        "cpu" => cpu::settings(limits),
        "pids" => pids::settings(limits),
        "blkio" => blkio::settings(limits),
        "cpuset" => cpuset::settings(limits, parent),
        // Checked by `Limits::validate` before anything is created.
        "devices" => match limits.devices.as_deref().map(devices::policy) {
            Some(Ok(policy)) => devices::v1_settings(&policy),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

// ANCHOR: v1_create
/// Creates `group` (`caixa/<id>` or a cgroupsPath) in the tree of every
/// needed controller, its parents first, and writes the limits; every
/// directory of the container is pushed to `dirs` at once, so a failure
/// half-way is cleaned up by the caller. Parents are never pushed: they
/// may be shared with other containers, and stay.
pub fn create(
    dirs: &mut Vec<(String, PathBuf)>,
    trees: &[Tree],
    group: &GroupPath,
    limits: &Limits,
    trace: &Trace,
) -> Result<(), CgroupError> {
    for controller in needed(limits) {
        let mount = trees
            .iter()
            .find(|t| t.controller == controller)
            .map(|t| &t.mount)
            .ok_or_else(|| CgroupError::Unsupported {
                what: format!("the cgroup v1 {controller} controller"),
                fix: format!("mount it: sudo mkdir -p /sys/fs/cgroup/{controller} && sudo mount -t cgroup -o {controller} none /sys/fs/cgroup/{controller}"),
            })?;
        let mut parent = mount.clone();
        for dir in group.parents_in(mount) {
            make_dir(&dir)?;
            if controller == "cpuset" {
                cpuset::inherit(&dir, &parent)?;
            }
            parent = dir;
        }
        let dir = group.dir_in(mount);
        if !dirs.iter().any(|(_, d)| *d == dir) {
            make_group_dir(&dir, group)?;
            dirs.push((controller.to_string(), dir.clone()));
        }
        let mut settings = settings(controller, limits, &parent);
        for s in &mut settings {
            // Kernels with BFQ as a module name the weight after it.
            if s.file == "blkio.weight"
                && !dir.join(s.file).exists()
                && dir.join("blkio.bfq.weight").exists()
            {
                s.file = "blkio.bfq.weight";
            }
        }
        write_settings(&dir, &settings, trace)?;
    }
    Ok(())
}
// ANCHOR_END: v1_create
