//! What a listing read last time, trusted only while the file is unchanged.
//!
//! `docker ps` reads every container's record and state. With 500
//! containers that was about a dozen system calls and two JSON parses a
//! line, most of its time, though almost none of those files had changed
//! since the last `ps`. The daemon keeps nothing in memory that is not on
//! disk (see [`super::state`]), and this does not change that: the files
//! stay the truth, and this memory only saves reading them again. Each
//! value is kept with its file's *stamp* (inode, size, modification and
//! change times, one `statx`); a file whose stamp differs is read again.
//!
//! One trap is the one git calls "racily clean": the kernel stamps a write
//! with a clock that advances in ticks (a few milliseconds; whole seconds
//! on some filesystems), and every state write is a rename onto a fresh
//! inode, whose number may be the one just freed. Two writes of the same
//! size within one tick could then leave equal stamps. So a value is kept
//! only if its file was last changed at least [`SETTLED`] before it was
//! read: any later write is then stamped later, and so seen.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

use super::EngineError;
use super::state::{Record, State, read_json};

/// How long before a read a file must have last changed for the value read
/// to be kept: coarser than any kernel tick, and than filesystems that
/// stamp whole seconds.
pub const SETTLED: Duration = Duration::from_secs(2);

/// What identifies one version of a file, as `statx` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    ino: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    /// The stamp of the file at `path` now.
    pub fn of(path: &Path) -> std::io::Result<Stamp> {
        let m = std::fs::metadata(path)?;
        Ok(Stamp {
            ino: m.ino(),
            size: m.size(),
            modified: (m.mtime(), m.mtime_nsec()),
            changed: (m.ctime(), m.ctime_nsec()),
        })
    }

    /// Whether this version had been in place for [`SETTLED`] at `read`:
    /// then any later write to the file gets a different stamp.
    fn settled_at(&self, read: SystemTime) -> bool {
        let last = self.modified.max(self.changed);
        let Ok(read) = read.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        // A time before 1970 is long settled.
        let last = Duration::new(
            u64::try_from(last.0).unwrap_or(0),
            u32::try_from(last.1).unwrap_or(0),
        );
        last.checked_add(SETTLED)
            .is_some_and(|settled| settled <= read)
    }
}

/// Values read from files, each with the stamp its file had.
pub struct Remembered<T> {
    kept: HashMap<PathBuf, (Stamp, T)>,
}

impl<T: DeserializeOwned + Clone> Remembered<T> {
    fn new() -> Remembered<T> {
        Remembered {
            kept: HashMap::new(),
        }
    }

    // ANCHOR: remembered_read
    /// The JSON value in `path`: the one kept if the file still has the
    /// stamp it had, else read (and kept if settled).
    pub fn read(&mut self, path: &Path) -> Result<T, EngineError> {
        let now = SystemTime::now();
        let Ok(stamp) = Stamp::of(path) else {
            self.kept.remove(path);
            // Let the read say what is wrong (usually: it is gone).
            return read_json(path);
        };
        if let Some((kept, value)) = self.kept.get(path)
            && *kept == stamp
        {
            return Ok(value.clone());
        }
        // Stamped before it is read: if it changes in between, the stamp
        // kept is older than the value, and the next look reads it again.
        let value: T = read_json(path)?;
        if stamp.settled_at(now) {
            self.kept.insert(path.to_path_buf(), (stamp, value.clone()));
        } else {
            self.kept.remove(path);
        }
        Ok(value)
    }
    // ANCHOR_END: remembered_read

    /// Forgets every value under `dir` whose file is not in `seen`.
    fn forget_under(&mut self, dir: &Path, seen: &HashSet<PathBuf>) {
        self.kept
            .retain(|path, _| !path.starts_with(dir) || seen.contains(path));
    }
}

/// The records and states a listing read, for the whole process.
pub struct Recall {
    /// Each container's `container.json`.
    pub records: Remembered<Record>,
    /// Each container's `state.json`.
    pub states: Remembered<State>,
}

impl Recall {
    /// After a listing of `dir` that read `seen`: forgets containers gone.
    pub fn keep_only(&mut self, dir: &Path, seen: &HashSet<PathBuf>) {
        self.records.forget_under(dir, seen);
        self.states.forget_under(dir, seen);
    }
}

static RECALL: LazyLock<Mutex<Recall>> = LazyLock::new(|| {
    Mutex::new(Recall {
        records: Remembered::new(),
        states: Remembered::new(),
    })
});

/// The process's recall, for one listing at a time: two listings at once
/// take turns (each is a few milliseconds of `statx`, and the lock never
/// waits on anything but them). What it keeps is pruned by each listing of
/// the same root; a process that lists many roots that then vanish (tests)
/// keeps their lines until it ends.
pub fn recall() -> std::sync::MutexGuard<'static, Recall> {
    // A listing that panicked left nothing half-written: each value is
    // replaced whole.
    RECALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, serde::Deserialize, Debug, PartialEq)]
    struct V {
        n: u32,
    }

    #[test]
    fn a_file_changed_just_now_is_read_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.json");
        let mut kept = Remembered::<V>::new();
        std::fs::write(&path, r#"{"n":1}"#).unwrap();
        assert_eq!(kept.read(&path).unwrap(), V { n: 1 });
        assert!(kept.kept.is_empty(), "a write in the same tick could hide");
        // Same size, surely the same tick: read again, not remembered.
        std::fs::write(&path, r#"{"n":2}"#).unwrap();
        assert_eq!(kept.read(&path).unwrap(), V { n: 2 });
        std::fs::remove_file(&path).unwrap();
        assert!(kept.read(&path).is_err());
    }

    #[test]
    fn a_value_is_trusted_while_its_file_keeps_its_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.json");
        std::fs::write(&path, r#"{"n":1}"#).unwrap();
        let stamp = Stamp::of(&path).unwrap();
        assert!(stamp.settled_at(SystemTime::now() + SETTLED + Duration::from_secs(1)));
        assert!(!stamp.settled_at(SystemTime::now()));
        // What a read SETTLED later would have kept: trusted, not read
        // (a value the file does not hold proves no read happened).
        let mut kept = Remembered::<V>::new();
        kept.kept.insert(path.clone(), (stamp, V { n: 99 }));
        assert_eq!(kept.read(&path).unwrap(), V { n: 99 });
        // A rename onto it (how every state is written) changes the stamp.
        let tmp = dir.path().join("v.tmp");
        std::fs::write(&tmp, r#"{"n":2}"#).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(kept.read(&path).unwrap(), V { n: 2 });
        // A container gone from the listing is forgotten.
        kept.kept
            .insert(path.clone(), (Stamp::of(&path).unwrap(), V { n: 2 }));
        kept.forget_under(dir.path(), &HashSet::new());
        assert!(kept.kept.is_empty());
    }
}
