//! `-v`: print each setup step as it happens, so a learner sees the sequence.
//!
//! Both sides of the start write here: the parent (host side) and the child
//! (pid 1 in the new namespaces). Each line carries the time since the parent
//! began, so the same output shows where the time goes.

use std::fmt;
use std::io::Write;
use std::time::Instant;

/// Which side of the start a line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The step binary itself, on the host.
    Parent,
    /// The cloned child, inside the new namespaces, before it execs the command.
    Child,
}

/// Writes numbered, timed setup steps to stderr when enabled.
///
/// It is `Copy` because the child gets its own copy at clone time: the start
/// instant stays the parent's, so both sides share one clock.
#[derive(Debug, Clone, Copy)]
pub struct Trace {
    enabled: bool,
    start: Instant,
}

impl Trace {
    /// A trace that prints when `enabled` (the `-v` flag) and is silent otherwise.
    pub fn new(enabled: bool) -> Self {
        Trace {
            enabled,
            start: Instant::now(),
        }
    }

    /// Whether lines are printed; callers skip costly formatting when not.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Prints one step: `caixa   0.412 ms  child   pivot_root(".", ".")`.
    pub fn step(&self, side: Side, what: fmt::Arguments<'_>) {
        if !self.enabled {
            return;
        }
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let side = match side {
            Side::Parent => "parent",
            Side::Child => "child ",
        };
        // One write per line so the two sides' lines do not interleave mid-line.
        let line = format!("caixa {ms:8.3} ms  {side}  {what}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}
