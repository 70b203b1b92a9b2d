//! v2 `memory`: `memory.max`, `memory.swap.max`, and the OOM-kill counter in
//! `memory.events`.

use std::path::Path;

use crate::cgroup::{Limits, Setting, read_key};

/// The files to write. v2 counts swap on its own, so Docker's
/// `--memory-swap` (memory plus swap) becomes swap = total − memory.
pub fn settings(l: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(m) = l.memory {
        out.push(Setting::new("memory.max", m));
    }
    match (l.memory, l.memory_swap) {
        (_, Some(-1)) => out.push(Setting::new("memory.swap.max", "max")),
        (Some(m), Some(total)) => out.push(Setting::new(
            "memory.swap.max",
            (total as u64).saturating_sub(m),
        )),
        _ => {}
    }
    out
}

/// How many times the OOM killer killed in this group.
pub fn oom_kills(dir: &Path) -> u64 {
    read_key(&dir.join("memory.events"), "oom_kill")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_is_the_total_minus_memory() {
        let l = Limits {
            memory: Some(100),
            memory_swap: Some(300),
            ..Limits::default()
        };
        assert_eq!(
            settings(&l),
            [
                Setting::new("memory.max", 100),
                Setting::new("memory.swap.max", 200)
            ]
        );
        let l = Limits {
            memory: Some(100),
            memory_swap: Some(-1),
            ..Limits::default()
        };
        assert_eq!(settings(&l)[1], Setting::new("memory.swap.max", "max"));
    }

    #[test]
    fn oom_kills_are_read_from_memory_events() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(oom_kills(dir.path()), 1);
    }
}
