//! The monitor: one small process per running container.
//!
//! The daemon does not run containers itself. For each start it spawns a
//! monitor in a session of its own (`setsid`), and the monitor runs the
//! container with the same code as `step10 run`, as its child, with the
//! container's output going to two files. When the container ends, the
//! monitor writes its exit code, cleans up after a runner that was killed,
//! and exits. So the daemon can stop, crash or be upgraded while its
//! containers run on: a new daemon reads their state from disk. (Docker has
//! `containerd-shim` in this place, for the same reasons.)
//!
//! ```text
//!   daemon ──spawn, setsid──▶ monitor ──spawn──▶ runner (step11 runner …)
//!                              │ waits            └─ clone ─▶ container
//!                              └─ state.json: running (pid) … exited (code)
//! ```

use std::path::Path;
use std::process::{Command, Stdio};

use super::EngineError;
use super::state::{Containers, State, now};

/// Runs container `id` of `root` to its end and records how it ended;
/// `exe` is the step binary, whose `runner` subcommand runs one container.
pub fn run(exe: &Path, root: &Path, id: &str) -> Result<i32, EngineError> {
    let code = run_to_end(exe, root, id)?;
    // `--rm`: gone once ended (a tombstone keeps the code for waiters).
    let containers = Containers::open(root)?;
    if containers.config(id)?.auto_remove {
        containers.retire(id)?;
    }
    Ok(code)
}

// ANCHOR: monitor
/// Runs container `id`, recording its states; returns its exit code.
fn run_to_end(exe: &Path, root: &Path, id: &str) -> Result<i32, EngineError> {
    let containers = Containers::open(root)?;
    let config = containers.config(id)?;
    let dir = containers.dir(id);
    let output = |name: &str| {
        std::fs::File::create(dir.join(name))
            .map_err(|e| EngineError::Io(format!("{}: {e}", dir.join(name).display())))
    };
    // EXERCISE(11): spawn `exe --root ROOT runner ARGS…` with the output files, record `running` with its pid and ours, wait for it, record `exited` with its code (128 + signal when killed)
    let mut child = Command::new(exe)
        .current_dir("/")
        .arg("--root")
        .arg(root)
        .arg("runner")
        .args(&config.args)
        .stdin(Stdio::null())
        .stdout(output("stdout")?)
        .stderr(output("stderr")?)
        .spawn()
        .map_err(|e| EngineError::Io(format!("cannot start {}: {e}", exe.display())))?;
    let mut state = State {
        status: "running".into(),
        pid: child.id() as i32,
        monitor: std::process::id() as i32,
        started: now(),
        ..State::default()
    };
    containers.set_state(id, &state)?;
    let status = child
        .wait()
        .map_err(|e| EngineError::Io(format!("wait: {e}")))?;
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    // A runner killed by a signal could not clean up: its record says what
    // it left (cgroups, the image's mount), and this removes it now.
    if status.code().is_none() {
        for line in crate::leftovers::sweep() {
            eprintln!("caixa: {line}");
        }
    }
    state.status = "exited".into();
    state.exit_code = code;
    state.finished = now();
    containers.set_state(id, &state)?;
    Ok(code)
    // END EXERCISE
}
// ANCHOR_END: monitor
