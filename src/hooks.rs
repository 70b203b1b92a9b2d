//! Hooks: programs a bundle asks the runtime to run at points of a
//! container's life (step 12; the runtime spec's `config.md`, "POSIX-platform
//! Hooks").
//!
//! An orchestrator uses them to do what only it knows how to, at the one
//! moment it can be done: a network plugin (CNI) wires up the network
//! namespace after it exists and before the command runs; a GPU toolkit
//! mounts driver files into the root before `pivot_root`. Each hook is a
//! program with its arguments and environment; it gets the container's state
//! as JSON on stdin, and its exit code says whether it worked.
//!
//! ```text
//!  create:  namespaces made ─▶ createRuntime (the runtime's namespaces, by `create`)
//!                           ─▶ createContainer (the container's, by its init) ─▶ pivot_root
//!  start:   the gate opens  ─▶ startContainer (the container's, by its init) ─▶ execve
//!                           ─▶ poststart (the runtime's, by `start`)
//!  delete:  all removed     ─▶ poststop (the runtime's, by `delete`)
//! ```
//!
//! A failed hook before the command runs fails the container; a failed
//! poststart or poststop is reported and the operation goes on, as the spec
//! says. `prestart` is the old name of createRuntime: it runs first, with it.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One program to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// An absolute path (resolved in the namespaces the hook runs in).
    pub path: PathBuf,
    /// Its argv, `args[0]` included (the spec's convention, as `execv`).
    pub args: Vec<String>,
    /// Its whole environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Killed, and counted as failed, after this long.
    pub timeout: Option<Duration>,
}

/// Every hook of a bundle, and what their state on stdin needs besides the
/// pid: the bundle and its annotations. `create` saves them with the
/// container's state: `start` and `delete` run the hooks of the config as
/// it was at `create`, whatever became of config.json since.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Hooks {
    /// `prestart` then `createRuntime`: by `create`, in the runtime's
    /// namespaces, once the container's namespaces exist.
    pub create_runtime: Vec<Hook>,
    /// By the container's init, in its namespaces, before `pivot_root`.
    pub create_container: Vec<Hook>,
    /// By the container's init, after `start`, just before `execve`.
    pub start_container: Vec<Hook>,
    /// By `start`, once the command runs.
    pub poststart: Vec<Hook>,
    /// By `delete`, once everything is removed.
    pub poststop: Vec<Hook>,
    /// The bundle's directory, absolute (the state's `bundle`).
    pub bundle: PathBuf,
    /// The bundle's annotations (the state's `annotations`).
    pub annotations: HashMap<String, String>,
}

/// The container's state, as the runtime spec defines it: what a hook
/// reads on stdin.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookState<'a> {
    /// The runtime spec's version.
    pub oci_version: &'static str,
    /// The container's id.
    pub id: &'a str,
    /// `creating`, `created`, `running` or `stopped`.
    pub status: &'static str,
    /// pid 1 of the container as the host sees it (0 once stopped).
    pub pid: i32,
    /// The bundle's directory.
    pub bundle: &'a std::path::Path,
    /// The bundle's annotations.
    pub annotations: &'a HashMap<String, String>,
}

/// Why a hook failed: one line, naming it.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// It could not be started.
    #[error("the {point} hook {path} could not run: {source}")]
    Spawn {
        /// createRuntime, createContainer, …
        point: &'static str,
        /// The program.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// It ended with another code than 0, or by a signal.
    #[error("the {point} hook {path} failed ({status})")]
    Failed {
        /// createRuntime, createContainer, …
        point: &'static str,
        /// The program.
        path: PathBuf,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// It ran past its timeout and was killed.
    #[error("the {point} hook {path} did not end within its timeout of {seconds} s and was killed")]
    Timeout {
        /// createRuntime, createContainer, …
        point: &'static str,
        /// The program.
        path: PathBuf,
        /// The timeout.
        seconds: u64,
    },
}

impl Hooks {
    /// The createRuntime hooks need the parent (`create`): the child asks
    /// for them (`sync::Request::RunCreateHooks`) only if there are some.
    pub fn need_the_runtime_at_create(&self) -> bool {
        !self.create_runtime.is_empty()
    }

    /// The state a hook reads, for container `id` with pid 1 `pid`.
    pub fn state<'a>(&'a self, id: &'a str, status: &'static str, pid: i32) -> HookState<'a> {
        HookState {
            oci_version: crate::bundle::OCI_VERSION,
            id,
            status,
            pid,
            bundle: &self.bundle,
            annotations: &self.annotations,
        }
    }
}

// ANCHOR: run_hooks
/// Runs `hooks` in order, each with `state` on its stdin and its stdout and
/// stderr ours; stops at the first that fails (the points before the
/// command: a failure there fails the container).
pub fn run_all(
    point: &'static str,
    hooks: &[Hook],
    state: &HookState<'_>,
) -> Result<(), HookError> {
    let input = serde_json::to_vec(state).unwrap_or_default();
    hooks
        .iter()
        .try_for_each(|hook| run_one(point, hook, &input))
}

/// Runs every hook of `hooks`, whatever the others did, and returns what
/// failed (poststart and poststop: "the remaining hooks and lifecycle
/// continue as if the hook had succeeded", the runtime spec says).
pub fn run_each(point: &'static str, hooks: &[Hook], state: &HookState<'_>) -> Vec<HookError> {
    let input = serde_json::to_vec(state).unwrap_or_default();
    hooks
        .iter()
        .filter_map(|hook| run_one(point, hook, &input).err())
        .collect()
}

/// One hook: spawned with `input` on its stdin, waited for (and killed at
/// its timeout).
fn run_one(point: &'static str, hook: &Hook, input: &[u8]) -> Result<(), HookError> {
    let spawn_error = |source| HookError::Spawn {
        point,
        path: hook.path.clone(),
        source,
    };
    let mut command = Command::new(&hook.path);
    if let Some((arg0, rest)) = hook.args.split_first() {
        std::os::unix::process::CommandExt::arg0(&mut command, arg0);
        command.args(rest);
    }
    command.env_clear().stdin(Stdio::piped());
    for pair in &hook.env {
        if let Some((key, value)) = pair.split_once('=') {
            command.env(key, value);
        }
    }
    let mut child = command.spawn().map_err(spawn_error)?;
    // A hook that does not read its stdin must not block us: a failed
    // write (EPIPE) is its business, its exit code says the rest.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let deadline = hook.timeout.map(|t| Instant::now() + t);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_error)? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                point,
                path: hook.path.clone(),
                seconds: hook.timeout.map_or(0, |t| t.as_secs()),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if !status.success() {
        return Err(HookError::Failed {
            point,
            path: hook.path.clone(),
            status,
        });
    }
    Ok(())
}
// ANCHOR_END: run_hooks
