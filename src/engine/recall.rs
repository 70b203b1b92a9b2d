//! What a listing read last time, trusted until the kernel says it changed.
//!
//! `docker ps` reads every container's record and state. With 500
//! containers that was about a dozen system calls and two JSON parses a
//! line, most of its time, though almost none of those files had changed
//! since the last `ps`. The daemon keeps nothing in memory that is not on
//! disk (see [`super::state`]), and this does not change that: the files
//! stay the truth, and this memory only saves reading them again.
//!
//! What says a file changed is inotify, through the daemon's one instance
//! ([`super::watch`]): each container's directory is watched, and every
//! change to its `container.json` or `state.json` (each written beside and
//! renamed into place) moves the directory's *stamp*. A value is kept with
//! the stamp its directory had when it was read; while the stamp is the
//! same, so is the file. Two rules make that true:
//!
//! - **Watch, then read.** A directory is watched before its files are
//!   first read, so a write after the read cannot go unreported.
//! - **Catch up, then compare.** The kernel queues an event as the rename
//!   happens, but the daemon stamps it when it reads the queue. Each
//!   listing first takes everything queued ([`super::watch::catch_up`]), so
//!   every change made before the listing began has moved its stamp.
//!
//! A directory that cannot be watched (`max_user_watches` reached, or no
//! instance) is read each time, as before this existed. An overflowing
//! queue stamps every directory: everything is read again. What is kept is
//! tied to the directory's watch, which follows its inode: this relies on
//! a container's directory never being replaced by another under its name
//! (nothing renames one into place; `rm` renames it away, to a hidden
//! `.removing-ID` that listings skip, and deletes it there, and its watch
//! goes with it).
//!
//! An earlier version compared each file's `statx` (inode, size, times)
//! instead. It cost two path walks a line, and it had to distrust any
//! file changed within the last two seconds, git's "racily clean" trap:
//! the kernel stamps writes with a clock that moves in ticks, and a rename
//! may reuse the inode just freed, so two writes within one tick can leave
//! equal stamps. inotify reports every write, however close together.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};

use nix::sys::inotify::WatchDescriptor;
use serde::de::DeserializeOwned;

use super::EngineError;
use super::state::{self, Record, State, read_json};
use super::watch;

/// What one listing of one engine root keeps, by container id.
#[derive(Default)]
pub struct Listing {
    kept: HashMap<String, Kept>,
    /// Counts listings: a container not seen by the latest is forgotten.
    generation: u64,
    /// The containers whose kept shim this listing takes on trust until
    /// [`Listing::ended_shims`] asks the kernel about all of them at once.
    trusted: Vec<String>,
    /// How many shims are kept (each a descriptor), and how many may be.
    shims: usize,
    most_shims: usize,
}

/// One container's values, and the stamp they were read under.
struct Kept {
    wd: WatchDescriptor,
    stamp: u64,
    record: Option<Record>,
    state: Option<State>,
    /// The shim its `running` state names, as a pidfd, once its lock
    /// vouched for that process under this stamp (see [`Listing::shim_alive`]).
    shim: Option<OwnedFd>,
    listed: u64,
}

impl Listing {
    /// Begins a listing: everything the kernel has queued is stamped.
    pub fn begin(&mut self) {
        self.generation += 1;
        self.trusted.clear();
        if !watch::catch_up() {
            // No instance: nothing kept can be checked.
            self.kept.clear();
        }
        self.shims = self.kept.values().filter(|k| k.shim.is_some()).count();
        if self.most_shims == 0 {
            // A quarter of the descriptors this process may open: a daemon
            // with thousands of containers runs out of kept shims, never of
            // descriptors for its requests (the rest are asked by lock).
            let (soft, _) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                    .unwrap_or((1024, 1024));
            self.most_shims = usize::try_from(soft / 4).unwrap_or(256).max(1);
        }
    }

    // ANCHOR: recalled
    /// What is kept for container `id` in `dir`, emptied if its directory
    /// changed since; `None` if it cannot be watched (read it each time).
    fn current(&mut self, id: &str, dir: &Path) -> Option<&mut Kept> {
        let generation = self.generation;
        let now = self
            .kept
            .get(id)
            .and_then(|kept| Some((kept.wd, watch::records_stamp(kept.wd)?)));
        let (wd, stamp) = match now {
            Some(known) => known,
            // New, or its watch is gone: watch it first, then read.
            None => {
                let wd = watch::watched(dir)?;
                (wd, watch::records_stamp(wd)?)
            }
        };
        // Kept values read under another stamp are dropped: read again.
        if self
            .kept
            .get(id)
            .is_none_or(|kept| (kept.wd, kept.stamp) != (wd, stamp))
        {
            let fresh = Kept {
                wd,
                stamp,
                record: None,
                state: None,
                shim: None,
                listed: generation,
            };
            self.kept.insert(id.to_string(), fresh);
        }
        let kept = self.kept.get_mut(id)?;
        kept.listed = generation;
        Some(kept)
    }
    // ANCHOR_END: recalled

    /// Container `id`'s record (`container.json` in `dir`).
    pub fn record(&mut self, id: &str, dir: &Path) -> Result<Record, EngineError> {
        self.value(id, dir, "container.json", |kept| &mut kept.record)
    }

    /// Container `id`'s state (`state.json` in `dir`), as its file says.
    pub fn state(&mut self, id: &str, dir: &Path) -> Result<State, EngineError> {
        self.value(id, dir, "state.json", |kept| &mut kept.state)
    }

    /// The value of `file` in `dir`: the one kept in `slot`, or read (and
    /// kept, if the directory is watched).
    fn value<T: DeserializeOwned + Clone>(
        &mut self,
        id: &str,
        dir: &Path,
        file: &str,
        slot: fn(&mut Kept) -> &mut Option<T>,
    ) -> Result<T, EngineError> {
        let Some(kept) = self.current(id, dir) else {
            return read_json(&dir.join(file));
        };
        if let Some(value) = slot(kept) {
            return Ok(value.clone());
        }
        let value: T = read_json(&dir.join(file))?;
        *slot(kept) = Some(value.clone());
        Ok(value)
    }

    // ANCHOR: shim_trusted
    /// Whether the shim of container `id` (in `dir`, pid `pid` as its
    /// `running` state says) is alive. The first time under a stamp its
    /// lock answers ([`state::shim_alive`]: an open, a `flock` and a close,
    /// nearly half of a listing's time with 500 containers), and a pidfd of
    /// the shim is kept; after that the answer is "yes" on trust, and
    /// [`Listing::ended_shims`] checks every trusted pidfd in one `poll`.
    ///
    /// The pidfd is opened between two answers of the lock, for the pid of
    /// the state kept under the same stamp: if the lock was held both
    /// times, the process opened was alive while a shim held the container.
    /// Could the holder be another shim, with `pid` long gone and its
    /// number reused? A new shim is only started after the daemon writes
    /// the state `created`, which moves the stamp and drops what was kept
    /// under the old one, this pidfd with it. A container with no room
    /// left for its pidfd (a quarter of the descriptors this process may
    /// open), or whose pidfd cannot be opened, is asked by its lock each time.
    pub fn shim_alive(&mut self, id: &str, dir: &Path, pid: i32) -> bool {
        let room = self.shims < self.most_shims;
        let Some(kept) = self.current(id, dir) else {
            return state::shim_alive(dir);
        };
        if kept.shim.is_some() {
            self.trusted.push(id.to_string());
            return true;
        }
        if !state::shim_alive(dir) {
            return false;
        }
        // Only the pid of the state read under this stamp: the stamp may
        // have moved since the caller's state was read.
        let same_state = kept
            .state
            .as_ref()
            .is_some_and(|s| s.status == state::Status::Running && s.shim == pid);
        if room && same_state {
            if let Ok(pidfd) = crate::pidfd::open(pid) {
                if !state::shim_alive(dir) {
                    return false;
                }
                kept.shim = Some(pidfd);
                self.shims += 1;
            }
        }
        true
    }

    /// The containers trusted by [`Listing::shim_alive`] in this listing
    /// whose shim has ended since: their kept pidfd is dropped, and the
    /// caller judges them again from their files.
    pub fn ended_shims(&mut self) -> Vec<String> {
        let trusted = std::mem::take(&mut self.trusted);
        let (ids, fds): (Vec<&String>, Vec<BorrowedFd<'_>>) = trusted
            .iter()
            .filter_map(|id| Some((id, self.kept.get(id)?.shim.as_ref()?.as_fd())))
            .unzip();
        let ended = match crate::pidfd::ended(&fds) {
            Some(ended) => ended,
            // The poll failed: trust nothing this listing trusted.
            None => vec![true; fds.len()],
        };
        let gone: Vec<String> = ids
            .into_iter()
            .zip(ended)
            .filter(|(_, ended)| *ended)
            .map(|(id, _)| id.clone())
            .collect();
        drop(fds);
        for id in &gone {
            if let Some(kept) = self.kept.get_mut(id) {
                kept.shim = None;
            }
        }
        gone
    }
    // ANCHOR_END: shim_trusted

    /// Ends a listing: forgets the containers it did not see (removed).
    pub fn end(&mut self) {
        let generation = self.generation;
        self.kept.retain(|_, kept| kept.listed == generation);
    }
}

static RECALL: LazyLock<Mutex<HashMap<PathBuf, Listing>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The recall of every engine root listed, each by its containers'
/// directory; for one listing at a time: two listings at once take turns
/// (each is a few milliseconds; a listing waits on nothing else but the
/// watch's stamps, held for one batch of events at a time). A process
/// that lists many roots that then vanish (tests) keeps their lines until
/// it ends.
pub fn recall() -> MutexGuard<'static, HashMap<PathBuf, Listing>> {
    // A listing that panicked left nothing half-written: each value is
    // replaced whole.
    RECALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> Record {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "image": "demo:1", "command": ["true"], "created": 1,
        }))
        .unwrap()
    }

    #[test]
    fn a_value_is_kept_until_its_file_is_replaced() {
        let root = tempfile::tempdir().unwrap();
        let id = "a".repeat(64);
        let dir = root.path().join(&id);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("container.json");
        super::super::state::write_json(&path, &record(&id, "first")).unwrap();
        let mut listing = Listing::default();
        listing.begin();
        assert_eq!(listing.record(&id, &dir).unwrap().name, "first");
        listing.end();
        // Kept: a value the file does not hold proves no read happened.
        listing.kept.get_mut(&id).unwrap().record = Some(record(&id, "kept"));
        listing.begin();
        assert_eq!(listing.record(&id, &dir).unwrap().name, "kept");
        listing.end();
        // Replaced as the engine writes (beside, then renamed), at once.
        super::super::state::write_json(&path, &record(&id, "second")).unwrap();
        listing.begin();
        assert_eq!(listing.record(&id, &dir).unwrap().name, "second");
        listing.end();
        // Twice within one clock tick: the second is seen too.
        super::super::state::write_json(&path, &record(&id, "third")).unwrap();
        listing.begin();
        assert_eq!(listing.record(&id, &dir).unwrap().name, "third");
        super::super::state::write_json(&path, &record(&id, "fourth")).unwrap();
        listing.end();
        listing.begin();
        assert_eq!(listing.record(&id, &dir).unwrap().name, "fourth");
        listing.end();
        // A container no listing sees is forgotten.
        listing.begin();
        listing.end();
        assert!(listing.kept.is_empty());
    }

    #[test]
    fn a_trusted_shim_that_ends_is_reported_by_the_next_listing() {
        let root = tempfile::tempdir().unwrap();
        let id = "b".repeat(64);
        let dir = root.path().join(&id);
        std::fs::create_dir(&dir).unwrap();
        let lock = dir.join("shim.lock");
        std::fs::write(&lock, "").unwrap();
        // A stand-in shim: `flock` holds the lock while its `cat` runs
        // (`-o`: only `flock` itself holds it), and `cat` ends with its stdin.
        let mut shim = std::process::Command::new("flock")
            .arg("-o")
            .arg(&lock)
            .arg("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = shim.id() as i32;
        // `cat` echoes a line once it runs: its copy of the lock's
        // descriptor was closed before its exec (`-o`), so from here on
        // only `flock` holds the lock, and its end frees it. (On a busy
        // machine the forked child may not have run yet when `flock` is
        // killed, and would hold the lock a moment longer.)
        {
            use std::io::{BufRead, Write};
            let mut input = shim.stdin.as_ref().unwrap();
            input.write_all(b"up\n").unwrap();
            let mut line = String::new();
            std::io::BufReader::new(shim.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line, "up\n", "cat never ran");
        }
        assert!(state::shim_alive(&dir), "flock does not hold the lock");
        let running = State {
            status: state::Status::Running,
            shim: pid,
            ..State::default()
        };
        state::write_json(&dir.join("state.json"), &running).unwrap();
        let mut listing = Listing::default();
        // A state read under another stamp names no pid to keep.
        listing.begin();
        assert!(listing.shim_alive(&id, &dir, pid));
        listing.end();
        assert!(listing.kept[&id].shim.is_none());
        // First with its state: asked by lock, and its pidfd kept.
        listing.begin();
        assert_eq!(listing.state(&id, &dir).unwrap().shim, pid);
        assert!(listing.shim_alive(&id, &dir, pid));
        assert!(listing.ended_shims().is_empty());
        listing.end();
        assert!(listing.kept[&id].shim.is_some());
        // Then on trust, checked by one poll: alive.
        listing.begin();
        assert!(listing.shim_alive(&id, &dir, pid));
        assert!(listing.ended_shims().is_empty());
        listing.end();
        // Killed: trusted once more, and the poll says it ended.
        shim.kill().unwrap();
        shim.wait().unwrap();
        drop(shim.stdin.take());
        listing.begin();
        assert!(listing.shim_alive(&id, &dir, pid));
        assert_eq!(listing.ended_shims(), vec![id.clone()]);
        listing.end();
        // Its pidfd is dropped: the next listing asks the lock, now free.
        listing.begin();
        assert!(!listing.shim_alive(&id, &dir, pid));
        assert!(listing.ended_shims().is_empty());
        listing.end();
    }
}
