//! What the runtime keeps of a container between its commands, and how it
//! tells the container's status from the kernel's view.
//!
//! Each command of an OCI runtime is a new process: `create` exits, and
//! `state`, `start`, `kill` and `delete` come later. All they share is a
//! directory per container under the runtime's `--root` (runc's
//! `/run/runc/<id>`):
//!
//! ```text
//! <root>/<id>/state.json   what create saved: pid, its start time, bundle, hooks…
//! <root>/<id>/exec.fifo    the start gate, there until `start`
//! <root>/<id>/made         what create made on the host, for `delete`
//! ```
//!
//! The status is never saved: it is read off the kernel each time, so a
//! container that ended on its own shows `stopped` without anyone writing
//! it. A pid alone could name a newer process that got the same number, so
//! the process's start time (`/proc/PID/stat`, field 22) is saved beside
//! it and compared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::start_gate;

/// The file of what `create` saved.
pub const STATE_FILE: &str = "state.json";
/// The record of what `create` made on the host (see [`crate::leftovers`]).
pub const MADE_FILE: &str = "made";

/// The lifecycle of the runtime spec: `creating` is never seen from outside
/// (`create` holds the directory until it is done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, waiting at the start gate for `start`.
    Created,
    /// The user's command runs.
    Running,
    /// The container's process has ended.
    Stopped,
}

impl Status {
    /// The word of the runtime spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// What `create` saved in `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// The container's id.
    pub id: String,
    /// Its pid 1, as the host sees it.
    pub pid: i32,
    /// That process's start time, in clock ticks after boot.
    pub start_time: u64,
    /// The bundle's directory, absolute.
    pub bundle: PathBuf,
    /// The root filesystem, absolute.
    pub rootfs: PathBuf,
    /// When `create` finished, RFC 3339.
    pub created: String,
    /// The bundle's annotations: `state` reports them.
    pub annotations: HashMap<String, String>,
    /// Its hooks, for `start` (poststart) and `delete` (poststop).
    #[serde(default)]
    pub hooks: Option<crate::hooks::Hooks>,
}

/// The state of the runtime spec (`runtime.md`, "State"), as `state` prints
/// it: the spec's fields plus runc's `rootfs`, `created` and `owner`, which
/// containerd's and podman's runtime clients read too.
#[derive(Debug, Serialize)]
pub struct Reported {
    /// The runtime spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: &'static str,
    /// The container's id.
    pub id: String,
    /// created, running or stopped.
    pub status: Status,
    /// The pid while there is a process; 0 once stopped.
    pub pid: i32,
    /// The bundle's directory.
    pub bundle: PathBuf,
    /// The root filesystem.
    pub rootfs: PathBuf,
    /// When it was created.
    pub created: String,
    /// The user that owns it: empty, as runc says for root.
    pub owner: String,
    /// The bundle's annotations.
    pub annotations: HashMap<String, String>,
}

/// A process as `/proc/PID/stat` shows it: its state letter and start time.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: the fields we want come after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': field 3 (state) is [0], field 22 (starttime) is [19].
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// The start time of process `pid`, to save beside it.
pub fn start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

impl Saved {
    /// Whether `pid` is still this container's process and has not ended:
    /// a zombie (ended, not yet reaped by its parent) has ended.
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((state, start))
            if start == self.start_time && state != 'Z' && state != 'X')
    }

    // ANCHOR: status
    /// The status now, read off the kernel and the start gate.
    pub fn status(&self, dir: &Path) -> Status {
        // EXERCISE(12): stopped when the saved process is gone (or another took its pid), created while the start gate's FIFO is there, else running
        if !self.alive() {
            Status::Stopped
        } else if dir.join(start_gate::FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
        // END EXERCISE
    }
    // ANCHOR_END: status

    /// The state `state` prints.
    pub fn report(&self, dir: &Path) -> Reported {
        let status = self.status(dir);
        Reported {
            oci_version: crate::bundle::OCI_VERSION,
            id: self.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: String::new(),
            annotations: self.annotations.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id() as i32;
        let start = start_time(pid).expect("our own /proc/self/stat");
        let mut saved = Saved {
            id: "x".into(),
            pid,
            start_time: start,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: String::new(),
            annotations: HashMap::new(),
            hooks: None,
        };
        assert!(saved.alive());
        saved.start_time = start + 1;
        assert!(!saved.alive(), "another start time means another process");
    }
}
