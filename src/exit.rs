//! How a container ended, and the exit code the step binary passes on.
//!
//! A shell reports a process killed by signal N as exit code 128+N; the step
//! binaries do the same so `step1 sh -c 'exit 42'; echo $?` prints 42 and a
//! container killed by SIGKILL makes the step exit 137, as `docker run` does.

use nix::sys::signal::Signal;

/// The end of the container's pid 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It called exit(code).
    Code(i32),
    /// A signal killed it.
    Signal(Signal),
}

impl Exit {
    /// The shell's convention: the code itself, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal as i32,
        }
    }
}

// ANCHOR: exit_codes
/// Exit codes for failures of caixa itself, the same as `docker run` uses, so
/// a script can tell "the container said 1" from "the container never started".
pub mod codes {
    /// The container could not be set up (bad option, missing rootfs, a syscall failed).
    pub const SETUP_FAILED: i32 = 125;
    /// The command exists but cannot be executed (not executable, wrong format).
    pub const CANNOT_EXECUTE: i32 = 126;
    /// The command was not found in the container.
    pub const NOT_FOUND: i32 = 127;
}
// ANCHOR_END: exit_codes

/// Where the last panic happened, recorded by the hook of [`one_line_panics`].
static PANIC_LOCATION: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Makes a panic (a `todo!()` left in an exercise, or a bug) end as one line
/// like every other failure: the hook only records where it happened, and
/// [`panic_line`] builds the line. Set once in the parent; the child inherits
/// it at clone time.
pub fn one_line_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut slot) = PANIC_LOCATION.lock() {
            *slot = Some(at);
        }
    }));
}

/// One line for a caught panic: its message and where it happened.
pub fn panic_line(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    let at = PANIC_LOCATION
        .lock()
        .ok()
        .and_then(|slot| slot.clone())
        .map(|at| format!(" (at {at})"))
        .unwrap_or_default();
    format!("{message}{at}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_becomes_128_plus_its_number() {
        assert_eq!(Exit::Signal(Signal::SIGKILL).code(), 137);
        assert_eq!(Exit::Signal(Signal::SIGTERM).code(), 143);
        assert_eq!(Exit::Code(42).code(), 42);
    }
}
