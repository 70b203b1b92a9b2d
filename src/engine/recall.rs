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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
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
    /// Every kept pidfd, added as it is kept ([`Listing::ended_shims`]);
    /// `None` if the kernel gave no set (then they are polled).
    ends: Option<Epoll>,
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
            self.ends = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ok();
        }
    }

    /// What is kept for container `id` in `dir`, emptied if its directory
    /// changed since; `None` if it cannot be watched (read it each time).
    fn current(&mut self, id: &str, dir: &Path) -> Option<&mut Kept> {
        current_in(&mut self.kept, self.generation, id, dir)
    }

    /// Container `id`'s record (`container.json` in `dir`).
    pub fn record(&mut self, id: &str, dir: &Path) -> Result<Record, EngineError> {
        let kept = self.current(id, dir);
        value(kept, dir, "container.json", |kept| &mut kept.record)
    }

    /// Container `id`'s state (`state.json` in `dir`), as its file says.
    pub fn state(&mut self, id: &str, dir: &Path) -> Result<State, EngineError> {
        let kept = self.current(id, dir);
        value(kept, dir, "state.json", |kept| &mut kept.state)
    }

    // ANCHOR: line
    /// Container `id`'s record and state, with one look at what is kept
    /// (a listing's line: [`Listing::record`], [`Listing::state`] and
    /// [`Listing::shim_alive`] each look it up, and with 500 containers the
    /// lookups were a tenth of a listing). `Ok(None)`: a state that could
    /// not be read, or a `running` one whose shim could not be vouched
    /// for: the caller reads it again from the files ([`state::Containers::state`]).
    pub fn line(&mut self, id: &str, dir: &Path) -> Result<Option<(Record, State)>, EngineError> {
        let room = self.shims < self.most_shims;
        let ends = self.ends.as_ref();
        let Some(kept) = current_in(&mut self.kept, self.generation, id, dir) else {
            // Not watched: read each time, and the lock asked each time.
            let record = read_json(&dir.join("container.json"))?;
            let Ok(state) = read_json::<State>(&dir.join("state.json")) else {
                return Ok(None);
            };
            let alive = state.status != state::Status::Running || state::shim_alive(dir);
            return Ok(alive.then_some((record, state)));
        };
        let record = value(Some(&mut *kept), dir, "container.json", |kept| {
            &mut kept.record
        })?;
        let Ok(state) = value(Some(&mut *kept), dir, "state.json", |kept| &mut kept.state) else {
            return Ok(None);
        };
        if state.status != state::Status::Running {
            return Ok(Some((record, state)));
        }
        let vouched = vouch(kept, dir, state.shim, room, ends);
        Ok(self.heed(id, vouched).then_some((record, state)))
    }
    // ANCHOR_END: line

    // ANCHOR: shim_trusted
    /// Whether the shim of container `id` (in `dir`, pid `pid` as its
    /// `running` state says) is alive. The first time under a stamp its
    /// lock answers ([`state::shim_alive`]: an open, a `flock` and a close,
    /// nearly half of a listing's time with 500 containers), and a pidfd of
    /// the shim is kept; after that the answer is "yes" on trust, and
    /// [`Listing::ended_shims`] asks which trusted pidfds ended, all at once.
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
        let ends = self.ends.as_ref();
        let Some(kept) = current_in(&mut self.kept, self.generation, id, dir) else {
            return state::shim_alive(dir);
        };
        let vouched = vouch(kept, dir, pid, room, ends);
        self.heed(id, vouched)
    }

    /// Counts what [`vouch`] found for container `id` (a shim taken on
    /// trust, to ask at the end; one more pidfd kept); whether it lives.
    fn heed(&mut self, id: &str, vouched: Vouched) -> bool {
        match vouched {
            Vouched::OnTrust => self.trusted.push(id.to_string()),
            Vouched::Kept => self.shims += 1,
            Vouched::ByLock => {}
            Vouched::Not => return false,
        }
        true
    }

    /// The containers trusted by [`Listing::shim_alive`] in this listing
    /// whose shim has ended since: their kept pidfd is dropped, and the
    /// caller judges them again from their files. Every kept pidfd is in
    /// one epoll set, so the kernel names the few that ended (usually
    /// none) instead of a `poll` of them all (with 500 containers, 7% of a
    /// listing); without the set, they are polled.
    pub fn ended_shims(&mut self) -> Vec<String> {
        let trusted = std::mem::take(&mut self.trusted);
        if let Some(ends) = &self.ends {
            if let Some(ended) = crate::pidfd::ended_in(ends) {
                if ended.is_empty() {
                    return Vec::new();
                }
                let gone: Vec<String> = trusted
                    .into_iter()
                    .filter(|id| {
                        self.kept
                            .get(id)
                            .and_then(|k| k.shim.as_ref())
                            .is_some_and(|fd| ended.contains(&fd.as_raw_fd()))
                    })
                    .collect();
                self.forget_shims(&gone);
                return gone;
            }
            // The set failed: trust nothing this listing trusted.
            self.forget_shims(&trusted);
            return trusted;
        }
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
        self.forget_shims(&gone);
        gone
    }

    /// Drops the kept pidfds of `ids` (closing one takes it out of the
    /// epoll set too).
    fn forget_shims(&mut self, ids: &[String]) {
        for id in ids {
            if let Some(kept) = self.kept.get_mut(id) {
                kept.shim = None;
            }
        }
    }
    // ANCHOR_END: shim_trusted

    /// Ends a listing: forgets the containers it did not see (removed).
    pub fn end(&mut self) {
        let generation = self.generation;
        self.kept.retain(|_, kept| kept.listed == generation);
    }
}

// ANCHOR: recalled
/// [`Listing::current`], on the map alone (so the caller may hold the
/// listing's other fields meanwhile): two lookups of `id`, three for a
/// container seen for the first time.
fn current_in<'k>(
    kept: &'k mut HashMap<String, Kept>,
    generation: u64,
    id: &str,
    dir: &Path,
) -> Option<&'k mut Kept> {
    let known = kept
        .get(id)
        .and_then(|k| Some((k.wd, watch::records_stamp(k.wd)?)));
    let Some((_, stamp)) = known else {
        // New, or its watch is gone: watch it first, then read.
        let wd = watch::watched(dir)?;
        let stamp = watch::records_stamp(wd)?;
        let fresh = Kept {
            wd,
            stamp,
            record: None,
            state: None,
            shim: None,
            listed: generation,
        };
        kept.insert(id.to_string(), fresh);
        return kept.get_mut(id);
    };
    let k = kept.get_mut(id)?;
    // Kept values read under another stamp are dropped: read again.
    if k.stamp != stamp {
        k.stamp = stamp;
        k.record = None;
        k.state = None;
        k.shim = None;
    }
    k.listed = generation;
    Some(k)
}
// ANCHOR_END: recalled

/// The value of `file` in `dir`: the one kept in `slot`, or read (and
/// kept, if the directory is watched: `kept` is `Some`).
fn value<T: DeserializeOwned + Clone>(
    kept: Option<&mut Kept>,
    dir: &Path,
    file: &str,
    slot: fn(&mut Kept) -> &mut Option<T>,
) -> Result<T, EngineError> {
    let Some(kept) = kept else {
        return read_json(&dir.join(file));
    };
    if let Some(value) = slot(kept) {
        return Ok(value.clone());
    }
    let value: T = read_json(&dir.join(file))?;
    *slot(kept) = Some(value.clone());
    Ok(value)
}

// ANCHOR: vouch
/// How a shim was found alive, or not ([`vouch`]).
enum Vouched {
    /// Its kept pidfd: taken on trust until [`Listing::ended_shims`].
    OnTrust,
    /// By its lock, and a pidfd of it is kept from now on.
    Kept,
    /// By its lock (no room, or no pidfd).
    ByLock,
    /// Its lock is free: it is not.
    Not,
}

/// Whether the shim that container's `running` state names (pid `pid`)
/// is alive, as [`Listing::shim_alive`] explains; `room` for one more
/// kept pidfd, which goes in `ends` (if there is a set) as it is kept.
fn vouch(kept: &mut Kept, dir: &Path, pid: i32, room: bool, ends: Option<&Epoll>) -> Vouched {
    if kept.shim.is_some() {
        return Vouched::OnTrust;
    }
    if !state::shim_alive(dir) {
        return Vouched::Not;
    }
    // Only the pid of the state read under this stamp: the stamp may
    // have moved since the caller's state was read.
    let same_state = kept
        .state
        .as_ref()
        .is_some_and(|s| s.status == state::Status::Running && s.shim == pid);
    if !(room && same_state) {
        return Vouched::ByLock;
    }
    let Ok(pidfd) = crate::pidfd::open(pid) else {
        return Vouched::ByLock;
    };
    if !state::shim_alive(dir) {
        return Vouched::Not;
    }
    // Not in the set, not kept: `ended_shims` could not see it end.
    if let Some(ends) = ends {
        let event = EpollEvent::new(EpollFlags::EPOLLIN, pidfd.as_raw_fd() as u64);
        if ends.add(&pidfd, event).is_err() {
            return Vouched::ByLock;
        }
    }
    kept.shim = Some(pidfd);
    Vouched::Kept
}
// ANCHOR_END: vouch

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
        trusted_shim_ends(true);
    }

    #[test]
    fn without_an_epoll_set_the_kept_pidfds_are_polled() {
        trusted_shim_ends(false);
    }

    /// A stand-in shim trusted, then killed: the next listing reports it,
    /// through the epoll set (`with_set`) or a poll of the kept pidfds.
    fn trusted_shim_ends(with_set: bool) {
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
        assert!(listing.ends.is_some(), "the kernel gave no epoll set");
        if !with_set {
            listing.ends = None;
        }
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
        // Then on trust, asked all at once: alive.
        listing.begin();
        assert!(listing.shim_alive(&id, &dir, pid));
        assert!(listing.ended_shims().is_empty());
        listing.end();
        // Killed: trusted once more, and the kernel says it ended.
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
