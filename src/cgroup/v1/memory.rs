//! v1 `memory`: `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes`, and
//! the OOM-kill counter in `memory.oom_control`.

use std::path::Path;

use crate::cgroup::{Limits, Setting, read_key};

/// The files to write. The memory limit comes before memory+swap: the kernel
/// refuses a memsw limit below the memory limit.
pub fn settings(l: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(m) = l.memory {
        out.push(Setting::new("memory.limit_in_bytes", m));
    }
    if let Some(s) = l.memory_swap {
        out.push(Setting::new("memory.memsw.limit_in_bytes", s));
    }
    out
}

/// How many times the OOM killer killed in this group (Linux 4.13+).
pub fn oom_kills(dir: &Path) -> u64 {
    read_key(&dir.join("memory.oom_control"), "oom_kill")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_then_swap() {
        let l = Limits {
            memory: Some(32 << 20),
            memory_swap: Some(-1),
            ..Limits::default()
        };
        assert_eq!(
            settings(&l),
            [
                Setting::new("memory.limit_in_bytes", 33554432),
                Setting::new("memory.memsw.limit_in_bytes", -1)
            ]
        );
        assert!(settings(&Limits::default()).is_empty());
    }

    #[test]
    fn oom_kills_are_read_from_oom_control() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(oom_kills(dir.path()), 2);
    }
}
