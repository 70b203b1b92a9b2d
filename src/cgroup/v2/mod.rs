//! cgroup v2: one unified tree.
//!
//! Every controller lives in the same directory. A controller is available
//! in a group only when its parent lists it in `cgroup.subtree_control`, and
//! a group that hands controllers down may hold no processes itself (the
//! "no internal processes" rule): so caixa's parent group enables them and
//! stays empty, and each container gets a leaf below it.

pub mod cpu;
pub mod cpuset;
pub mod io;
pub mod memory;
pub mod pids;

use std::path::{Path, PathBuf};

use super::{CgroupError, Limits, PARENT, Setting, make_dir, write_settings};
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
/// Creates `<root>/caixa/<id>` with the needed controllers and the limits.
pub fn create(
    dirs: &mut Vec<(String, PathBuf)>,
    root: &Path,
    id: &str,
    limits: &Limits,
    trace: &Trace,
) -> Result<(), CgroupError> {
    let parent = root.join(PARENT);
    make_dir(&parent)?;
    let available = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
    let needed = needed(limits);
    if let Some(missing) = needed
        .iter()
        .find(|c| !available.split_whitespace().any(|a| a == **c))
    {
        return Err(CgroupError::Unsupported {
            what: format!("the cgroup v2 {missing} controller"),
            fix: format!(
                "enable it for child groups: echo +{missing} | sudo tee {}/cgroup.subtree_control",
                root.display()
            ),
        });
    }
    // Hand the controllers down to the containers' leaves. We created this
    // parent; it holds no process, as the no-internal-processes rule wants.
    let enable: Vec<String> = needed.iter().map(|c| format!("+{c}")).collect();
    let control = parent.join("cgroup.subtree_control");
    std::fs::write(&control, enable.join(" ")).map_err(|source| CgroupError::Io {
        action: "write",
        path: control.clone(),
        source,
    })?;
    trace.step(
        Side::Parent,
        format_args!("cgroup: {} = {}", control.display(), enable.join(" ")),
    );
    let dir = parent.join(id);
    make_dir(&dir)?;
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
    write_settings(&dir, &settings, trace)
}
// ANCHOR_END: v2_create
