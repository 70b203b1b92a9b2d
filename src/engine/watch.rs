//! Waiting for a container's files to change: one inotify instance for the
//! daemon's whole life, so a waiter wakes when the shim writes, not at its
//! next poll.
//!
//! The daemon often waits on files another process writes. The shim records
//! `running`, then `exited`, in `state.json` (written beside it and renamed
//! into place), appends the container's output to `container.log`, and
//! when it ends its lock file `shim.lock` is closed. `start` waits for the
//! first, `attach` and `logs -f` for the log and the end, `wait` and `stop`
//! for the end, `rm` for the shim to be gone.
//!
//! Polling with a growing pause (1 ms, doubling to 20 ms) answered those
//! waits late: a `true` container ended 1–2 ms after it ran, and its
//! attached client heard of it up to 8 ms later, at the next poll. inotify
//! wakes exactly, but an instance per wait cost more than it saved: closing
//! one waits for the kernel's fsnotify SRCU grace period (measured on
//! 2026-12-05: 53–55 ms a run with an instance per wait, against 22–24
//! polling). So the daemon keeps **one** instance, never closed, and one
//! thread that reads it: each event stamps the watched directory with a
//! fresh number under a mutex and wakes every waiter on a condvar; a waiter
//! sleeps until its directory's number moves.
//!
//! Not every change concerns every waiter. Each directory has three
//! stamps, and an event moves those its file concerns ([`Moved`]): any
//! change (the log grew: `attach` and `logs -f` wake), a change to the
//! container's life (its state, its shim's lock or log: `start`, `wait`,
//! `stop` and `rm` wake, not at each line a chatty container writes), a
//! change to its record or state (`ps`). A file written beside another, to
//! be renamed into place, moves none: its rename does.
//!
//! The poll stays, as a safety net, in the waiter's timeout: a directory
//! inotify cannot watch (`max_user_watches` reached), a change it does not
//! report (a lock released a moment after its file's close event), or a
//! daemon whose instance failed, are all still seen, at the old pace.
//!
//! A watch is added the first time someone waits on a directory, or `ps`
//! lists it, and added again costs nothing (the kernel answers the same
//! descriptor for the same inode). It is never removed by hand: the kernel
//! drops it when the directory is deleted (`IN_IGNORED`), as `rm` and
//! `--rm` do once they have renamed it to a hidden `.removing-ID` (the
//! watch follows the directory, so a waiter still hears its files go).
//!
//! `ps` uses the same stamps ([`super::recall`]): a record or state read
//! under one stamp is still what the file holds while the stamp has not
//! moved. That needs more than a waiter does: every change made before the
//! listing began must be stamped when it looks, not a moment later when the
//! reader thread gets to it. So events are only ever taken from the
//! instance with the stamps' lock held, by the reader and by [`catch_up`]
//! alike: once `catch_up` returns, whatever the kernel had queued when it
//! was called is stamped. Neither holds the lock for long: the reader
//! takes one read's worth of events per turn, and `catch_up` takes what
//! was queued when it began (`FIONREAD` counts it), not what keeps coming.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// The first pause of a waiter between two looks, when nothing wakes it.
const FIRST: Duration = Duration::from_millis(1);
/// The longest pause: what a change inotify did not report can cost.
const LONGEST: Duration = Duration::from_millis(20);

/// The daemon's one instance, its reader's stamps, and who waits on them.
struct Watch {
    inotify: Inotify,
    stamps: Mutex<Stamps>,
    changed: Condvar,
}

/// Each watched directory's latest stamps: numbers from one counter, so a
/// directory deleted and a descriptor reused never look unchanged.
#[derive(Default)]
struct Stamps {
    next: u64,
    of: HashMap<WatchDescriptor, Stamp>,
}

/// A directory's stamps, one per kind of change ([`Moved`]): of its last
/// change, of the last change to its life (its state, its shim's lock or
/// log), and of the last change to its record or state (`ps` reads those
/// two, and need not read them again when only its log grew).
#[derive(Clone, Copy)]
struct Stamp {
    any: u64,
    life: u64,
    records: u64,
}

/// The files of a container's directory that `ps` reads.
const RECORDS: [&str; 2] = ["container.json", "state.json"];

/// Which of a directory's stamps an event moves: each kind moves the ones
/// after it too (a record's change is a change to its life, and a change).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Moved {
    /// Nothing: a file written beside another, to be renamed into place
    /// (`state.tmp`, `.config.json.tmp-PID`). Its rename is what says the
    /// file changed; its writes and its close would wake every waiter
    /// twice more for each state the shim records.
    Nothing,
    /// `any`: the log grew, a socket went.
    Any,
    /// `life` and `any`: the shim's lock closed (the shim ended), or it
    /// wrote to its own log, which it does when something goes wrong (a
    /// shim that dies before it takes its lock writes only there).
    Life,
    /// All three: the record or the state (or the directory itself).
    Records,
}

impl Moved {
    /// What an event about `name` (in a container's directory) moves.
    fn by(name: Option<&std::ffi::OsStr>) -> Moved {
        let Some(name) = name.map(|n| n.to_string_lossy()) else {
            return Moved::Records;
        };
        if RECORDS.contains(&name.as_ref()) {
            Moved::Records
        } else if name == "shim.lock" || name == "shim.log" {
            Moved::Life
        } else if name.ends_with(".tmp") || name.contains(".tmp-") {
            Moved::Nothing
        } else {
            Moved::Any
        }
    }
}

impl Stamps {
    /// A new stamp for `wd`, in the stamps `moved` says.
    fn stamp(&mut self, wd: WatchDescriptor, moved: Moved) {
        if moved == Moved::Nothing {
            return;
        }
        self.next += 1;
        let now = self.next;
        let stamp = self.of.entry(wd).or_insert(Stamp {
            any: now,
            life: now,
            records: now,
        });
        stamp.any = now;
        if moved >= Moved::Life {
            stamp.life = now;
        }
        if moved == Moved::Records {
            stamp.records = now;
        }
    }

    /// Stamps what `event` says changed.
    fn apply(&mut self, event: &nix::sys::inotify::InotifyEvent) {
        if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            // Events were lost: every directory may have changed.
            let all: Vec<_> = self.of.keys().copied().collect();
            all.into_iter()
                .for_each(|wd| self.stamp(wd, Moved::Records));
        } else if event.mask.contains(AddWatchFlags::IN_IGNORED) {
            // The directory is gone: its waiters see "changed".
            self.of.remove(&event.wd);
        } else {
            self.stamp(event.wd, Moved::by(event.name.as_deref()));
        }
    }
}

/// The daemon's watch, made (with its reader thread) on first use; `None`
/// when the kernel refused an instance: then everyone polls.
fn watch() -> Option<&'static Arc<Watch>> {
    static WATCH: OnceLock<Option<Arc<Watch>>> = OnceLock::new();
    WATCH
        .get_or_init(|| {
            // Non-blocking: events are taken only under the stamps' lock,
            // and the reader waits for them in `poll`, without it.
            let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok()?;
            let watch = Arc::new(Watch {
                inotify,
                stamps: Mutex::new(Stamps::default()),
                changed: Condvar::new(),
            });
            let reader = Arc::clone(&watch);
            std::thread::Builder::new()
                .name("watch".into())
                .spawn(move || reader.read_forever())
                .ok()?;
            Some(watch)
        })
        .as_ref()
}

impl Watch {
    fn stamps(&self) -> MutexGuard<'_, Stamps> {
        // A waiter that panicked holding it left the map whole: go on.
        self.stamps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The reader: waits for events, stamps each event's directory and
    /// wakes the waiters, one read's worth per turn of the lock. If the
    /// instance ever fails, it ends, and waiters fall back to their
    /// timeouts (polling).
    fn read_forever(&self) {
        use nix::errno::Errno;
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        loop {
            let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
            let mut stamps = self.stamps();
            let taken = self.take(&mut stamps);
            drop(stamps);
            self.changed.notify_all();
            // EAGAIN: a listing's `catch_up` took them first.
            if let Err(e) = taken
                && e != Errno::EAGAIN
                && e != Errno::EINTR
            {
                return;
            }
        }
    }

    /// Takes one read's worth of events and stamps them (the stamps' lock
    /// is held, as `stamps` says); returns the bytes they took in the queue.
    fn take(&self, stamps: &mut Stamps) -> Result<usize, nix::errno::Errno> {
        let events = self.inotify.read_events()?;
        events.iter().for_each(|e| stamps.apply(e));
        Ok(events.iter().map(queued_size).sum())
    }

    /// Takes the events queued now, and no more (with the lock held);
    /// whether there were any.
    fn drain(&self, stamps: &mut Stamps) -> Result<bool, nix::errno::Errno> {
        use nix::errno::Errno;
        let queued = queued_bytes(&self.inotify)?;
        let mut left = queued;
        while left > 0 {
            match self.take(stamps) {
                Ok(taken) => left = left.saturating_sub(taken),
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(queued > 0)
    }
}

/// The bytes queued on the instance now (`FIONREAD`).
fn queued_bytes(inotify: &Inotify) -> Result<usize, nix::errno::Errno> {
    use std::os::fd::{AsFd, AsRawFd};
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int to the pointer, which is valid.
    let done = unsafe {
        libc::ioctl(
            inotify.as_fd().as_raw_fd(),
            libc::FIONREAD,
            &mut queued as *mut libc::c_int,
        )
    };
    nix::errno::Errno::result(done)?;
    Ok(usize::try_from(queued).unwrap_or(0))
}

/// The bytes `event` took in the queue, as the kernel counts them: its
/// header, and its name with the NUL padding to a multiple of the header's
/// size (`round_event_name_len` in the kernel's `inotify_user.c`).
fn queued_size(event: &nix::sys::inotify::InotifyEvent) -> usize {
    let header = std::mem::size_of::<libc::inotify_event>();
    header
        + event
            .name
            .as_ref()
            .map_or(0, |name| (name.len() + 1).next_multiple_of(header))
}

/// The changes to watch in a container's directory.
fn changes() -> AddWatchFlags {
    AddWatchFlags::IN_MOVED_TO // state.json, renamed into place
        | AddWatchFlags::IN_MODIFY // the log, appended
        | AddWatchFlags::IN_CLOSE_WRITE // shim.lock, closed as the shim ends
        | AddWatchFlags::IN_DELETE // a file removed (the lock, a socket)
}

// ANCHOR: catch_up
/// Stamps every change the kernel has queued: after this, a directory's
/// stamp covers every change made before the call. `false` when there is
/// no watch (the kernel refused an instance, or it failed).
pub fn catch_up() -> bool {
    let Some(watch) = watch() else {
        return false;
    };
    let mut stamps = watch.stamps();
    let drained = watch.drain(&mut stamps);
    drop(stamps);
    if drained == Ok(true) {
        watch.changed.notify_all();
    }
    drained.is_ok()
}

/// Starts watching `dir` (a container's directory), if it was not: its
/// descriptor, for [`records_stamp`]. `None` when it cannot be watched.
pub fn watched(dir: &Path) -> Option<WatchDescriptor> {
    let watch = watch()?;
    let wd = watch.inotify.add_watch(dir, changes()).ok()?;
    // A directory seen for the first time gets stamps to compare with.
    let mut stamps = watch.stamps();
    if !stamps.of.contains_key(&wd) {
        stamps.stamp(wd, Moved::Records);
    }
    Some(wd)
}

/// The stamp of the last change to the record or state in the directory
/// `wd` watches; `None` once the directory is gone.
pub fn records_stamp(wd: WatchDescriptor) -> Option<u64> {
    Some(watch()?.stamps().of.get(&wd)?.records)
}
// ANCHOR_END: catch_up

// ANCHOR: waiter
/// One waiter's view of one directory: take a [`Waiter::mark`] before you
/// look at its files, then [`Waiter::pause`] with it, and no change made
/// after the mark is missed.
pub struct Waiter {
    /// The directory's watch, or `None` to poll (no instance, or the
    /// kernel refused the watch).
    wd: Option<WatchDescriptor>,
    /// Which changes wake it: [`Moved::Any`] or [`Moved::Life`].
    wakes: Moved,
    next: Duration,
}

/// What a directory's stamp was when a waiter last looked.
#[derive(Clone, Copy)]
pub struct Mark(Option<u64>);

impl Waiter {
    /// Starts watching `dir` (a container's directory) for what the shim
    /// writes there.
    pub fn on(dir: &Path) -> Waiter {
        Waiter::woken_by(dir, Moved::Any)
    }

    /// Starts watching `dir` (a container's directory) for changes to its
    /// life only: its state, its shim's end. For those who wait for a
    /// start, an end or a removal (`start`, `wait`, `stop`, `rm`), whom the
    /// log growing under a chatty container would wake at every write.
    pub fn on_life(dir: &Path) -> Waiter {
        Waiter::woken_by(dir, Moved::Life)
    }

    fn woken_by(dir: &Path, wakes: Moved) -> Waiter {
        // A directory seen for the first time gets a stamp to compare with.
        Waiter {
            wd: watched(dir),
            wakes,
            next: FIRST,
        }
    }

    /// The stamp of `stamp` this waiter compares.
    fn of(&self, stamp: &Stamp) -> u64 {
        match self.wakes {
            Moved::Life => stamp.life,
            Moved::Records => stamp.records,
            Moved::Any | Moved::Nothing => stamp.any,
        }
    }

    /// The directory's stamp now: take it before looking at its files.
    pub fn mark(&self) -> Mark {
        Mark(match (watch(), self.wd) {
            (Some(watch), Some(wd)) => watch.stamps().of.get(&wd).map(|s| self.of(s)),
            _ => None,
        })
    }

    /// Sleeps until the directory changes after `mark`, or the pause (1 ms,
    /// doubling to 20 ms between changes) ends, or `deadline` comes.
    pub fn pause(&mut self, mark: Mark, deadline: Option<Instant>) {
        let mut limit = self.next;
        if let Some(deadline) = deadline {
            limit = limit.min(deadline.saturating_duration_since(Instant::now()));
        }
        self.next = (self.next * 2).min(LONGEST);
        let (Some(watch), Some(wd), Mark(Some(seen))) = (watch(), self.wd, mark) else {
            std::thread::sleep(limit);
            return;
        };
        let stamps = watch.stamps();
        let (_stamps, waited) = watch
            .changed
            .wait_timeout_while(stamps, limit, |stamps| {
                stamps.of.get(&wd).map(|s| self.of(s)) == Some(seen)
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !waited.timed_out() {
            // Something happens there: look again soon if this was not it
            // (a lock goes a moment after its file's close is reported).
            self.next = FIRST;
        }
    }
}
// ANCHOR_END: waiter

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_after_the_mark_is_never_missed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut waiter = Waiter::on(dir.path());
        let mark = waiter.mark();
        assert!(mark.0.is_some(), "the directory should be watched");
        // As the shim records a state: written beside, renamed into place.
        std::fs::write(dir.path().join(".state.tmp"), b"{}").expect("write");
        std::fs::rename(dir.path().join(".state.tmp"), dir.path().join("state.json"))
            .expect("rename");
        let deadline = Instant::now() + Duration::from_secs(10);
        while waiter.mark().0 == mark.0 && Instant::now() < deadline {
            waiter.pause(mark, Some(deadline));
        }
        assert_ne!(waiter.mark().0, mark.0, "the rename should be stamped");
    }

    #[test]
    fn the_bytes_counted_per_event_are_the_kernels() {
        // catch_up stops after FIONREAD's bytes: counting an event longer
        // than the kernel does would stop it before the last ones.
        let dir = tempfile::tempdir().expect("tempdir");
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).expect("init");
        inotify.add_watch(dir.path(), changes()).expect("watch");
        for name in [
            "a",
            "state.json",
            "fifteen-chars-x",
            "sixteen-chars-xy",
            &"n".repeat(200),
        ] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        std::fs::remove_file(dir.path().join("a")).expect("rm");
        let queued = queued_bytes(&inotify).expect("FIONREAD");
        let mut counted = 0;
        while let Ok(events) = inotify.read_events() {
            counted += events.iter().map(queued_size).sum::<usize>();
        }
        assert!(queued > 0);
        assert_eq!(counted, queued);
    }

    #[test]
    fn each_file_moves_the_stamps_of_what_it_is() {
        let by = |name: &str| Moved::by(Some(std::ffi::OsStr::new(name)));
        assert_eq!(by("state.json"), Moved::Records);
        assert_eq!(by("container.json"), Moved::Records);
        assert_eq!(Moved::by(None), Moved::Records);
        assert_eq!(by("shim.lock"), Moved::Life);
        assert_eq!(by("shim.log"), Moved::Life);
        assert_eq!(by("container.log"), Moved::Any);
        assert_eq!(by("shim.sock"), Moved::Any);
        assert_eq!(by("state.tmp"), Moved::Nothing);
        assert_eq!(by(".config.json.tmp-4242"), Moved::Nothing);
    }

    #[test]
    fn a_waiter_on_the_life_sleeps_through_the_log_and_wakes_for_the_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let life = Waiter::on_life(dir.path());
        let any = Waiter::on(dir.path());
        let (life_mark, any_mark) = (life.mark(), any.mark());
        assert!(life_mark.0.is_some(), "the directory should be watched");
        // The log grows, and a state is written beside its file.
        std::fs::write(dir.path().join("container.log"), b"hello\n").expect("log");
        std::fs::write(dir.path().join("state.tmp"), b"{}").expect("tmp");
        let deadline = Instant::now() + Duration::from_secs(10);
        while any.mark().0 == any_mark.0 && Instant::now() < deadline {
            catch_up();
        }
        assert_ne!(any.mark().0, any_mark.0, "the log's growth is a change");
        assert_eq!(life.mark().0, life_mark.0, "but not one of its life");
        // The state renamed into place: that is.
        std::fs::rename(dir.path().join("state.tmp"), dir.path().join("state.json"))
            .expect("rename");
        while life.mark().0 == life_mark.0 && Instant::now() < deadline {
            catch_up();
        }
        assert_ne!(life.mark().0, life_mark.0, "the state's rename wakes it");
    }

    #[test]
    fn a_deleted_directory_reads_as_changed() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("c");
        std::fs::create_dir(&dir).expect("mkdir");
        let waiter = Waiter::on(&dir);
        let mark = waiter.mark();
        std::fs::remove_dir(&dir).expect("rmdir");
        let begin = Instant::now();
        while waiter.mark().0 == mark.0 && begin.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(waiter.mark().0, None, "a deleted directory has no stamp");
    }
}
