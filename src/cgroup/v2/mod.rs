//! cgroup v2: one unified tree.
//!
//! Every controller lives in the same directory. A controller is available
//! in a group only when its parent lists it in `cgroup.subtree_control`, and
//! a group that hands controllers down may hold no processes itself (the
//! "no internal processes" rule): so caixa's parent group enables them and
//! stays empty, and each container gets a leaf below it.

pub mod cpu;
pub mod cpuset;
pub mod devices;
pub mod io;
pub mod memory;
pub mod pids;

use std::path::{Path, PathBuf};

use super::{CgroupError, GroupPath, Limits, Setting, make_dir, make_group_dir, write_settings};
use crate::trace::{Side, Trace};

/// The controllers a container with `limits` needs: memory and pids always
/// (for OOM reports), the others when asked for.
pub fn needed(limits: &Limits) -> Vec<&'static str> {
    let mut out = vec!["memory", "pids"];
    if limits.cpus.is_some() || limits.cpu_shares.is_some() || limits.cpu_weight.is_some() {
        out.push("cpu");
    }
    let io = limits.has_io();
    if io {
        out.push("io");
    }
    if limits.cpuset_cpus.is_some() {
        out.push("cpuset");
    }
    out
}

/// Every file to write for `limits`, controller by controller.
pub fn settings(limits: &Limits) -> Vec<Setting> {
    let mut out = memory::settings(limits);
    out.extend(pids::settings(limits));
    out.extend(cpu::settings(limits));
    out.extend(io::settings(limits));
    out.extend(cpuset::settings(limits));
    out
}

// ANCHOR: v2_create
/// Creates `group` (`caixa/<id>` or a cgroupsPath) with the needed
/// controllers, the limits and the device program.
pub fn create(
    dirs: &mut Vec<(String, PathBuf)>,
    root: &Path,
    group: &GroupPath,
    limits: &Limits,
    trace: &Trace,
) -> Result<(), CgroupError> {
    let needed = needed(limits);
    let mut above = root.to_path_buf();
    for parent in group.parents_in(root) {
        make_dir(&parent)?;
        hand_down(&parent, &above, &needed, trace)?;
        above = parent;
    }
    let dir = group.dir_in(root);
    make_group_dir(&dir, group)?;
    dirs.push((String::new(), dir.clone()));
    let mut settings = settings(limits);
    for s in &mut settings {
        // io.weight needs the io.cost model; with BFQ the file is io.bfq.weight.
        if s.file == "io.weight" && !dir.join(s.file).exists() && dir.join("io.bfq.weight").exists()
        {
            // BFQ keeps the 1-1000 scale of --blkio-weight.
            s.file = "io.bfq.weight";
            s.value = format!("default {}", limits.blkio_weight.unwrap_or(500));
        }
    }
    write_settings(&dir, &settings, trace)?;
    // Before any process joins: the first open(2) is already checked.
    if let Some(rules) = &limits.devices {
        let policy = super::devices::policy(rules)
            .map_err(|e| CgroupError::Invalid(format!("device {e}")))?;
        devices::attach(&dir, &policy)?;
        trace.step(
            Side::Parent,
            format_args!(
                "cgroup: {} <- device program ({} exceptions, default {})",
                dir.display(),
                policy.exceptions.len(),
                if policy.default_allow {
                    "allow"
                } else {
                    "deny"
                }
            ),
        );
    }
    Ok(())
}
// ANCHOR_END: v2_create

// ANCHOR: hand_down
/// Hands the `needed` controllers down from `parent` to the groups below
/// it, through its `cgroup.subtree_control`; `above` is its own parent,
/// which must offer them. The parents hold no process (caixa puts
/// processes only in leaves), as the no-internal-processes rule wants;
/// a parent made by someone else that does hold some refuses (EBUSY).
pub(super) fn hand_down(
    parent: &Path,
    above: &Path,
    needed: &[&str],
    trace: &Trace,
) -> Result<(), CgroupError> {
    let available = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
    if let Some(missing) = needed
        .iter()
        .find(|c| !available.split_whitespace().any(|a| a == **c))
    {
        return Err(CgroupError::Unsupported {
            what: format!("the cgroup v2 {missing} controller in {}", parent.display()),
            fix: format!(
                "enable it for child groups: echo +{missing} | sudo tee {}/cgroup.subtree_control",
                above.display()
            ),
        });
    }
    let enable: Vec<String> = needed.iter().map(|c| format!("+{c}")).collect();
    let control = parent.join("cgroup.subtree_control");
    std::fs::write(&control, enable.join(" ")).map_err(|source| {
        match source.raw_os_error() {
            Some(libc::EBUSY) => CgroupError::Invalid(format!(
                "{} holds processes itself, so it cannot hand controllers down (cgroup v2's no-internal-processes rule): choose a cgroupsPath whose parents hold none",
                parent.display()
            )),
            _ => CgroupError::Io {
                action: "write",
                path: control.clone(),
                source,
            },
        }
    })?;
    trace.step(
        Side::Parent,
        format_args!("cgroup: {} = {}", control.display(), enable.join(" ")),
    );
    Ok(())
}
// ANCHOR_END: hand_down
// ANCHOR_END: v2_create
