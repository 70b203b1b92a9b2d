//! An idle shim gives back the pages it touched only to start its container.
//!
//! A shim is a copy of `step11`, a program that can also pull, build and
//! serve an API. Starting a container runs a good part of it: the bundle's
//! JSON, the runtime's parent side, the network's netlink. Each page of code
//! it ran stays mapped in the shim, and `ps` counts it in the shim's
//! resident size (RSS): about 6 MiB, though the shim then only waits in
//! `poll(2)` and copies a few bytes to a log. Those pages are the binary's
//! and the C library's own, clean copies of the file, which every shim and
//! the daemon share through the page cache: the memory a shim alone holds
//! is about 0.35 MiB (its `Private_Dirty`), and its proportional size (PSS)
//! about 1.3 MiB.
//!
//! So once its container has run a moment, the shim drops those pages from
//! its own page table: `madvise(MADV_DONTNEED)` on each mapping of a file
//! that it cannot write and that holds no page of its own. The page cache
//! keeps them for every other process; if the shim needs one again (its
//! container ends, and the teardown runs), the next access faults it back
//! in from the cache, as after any reclaim. This is what the kernel would
//! do to an idle process under memory pressure, done ahead of it, and what
//! Android does to the apps its zygote forked (our [`super::launcher`] is
//! one) once they sit in the background. `malloc_trim` then returns the
//! heap's free pages. Afterwards the shim's RSS is what it really uses
//! while it waits: its loop, its buffers, its stack.
//!
//! Why only those pages, and two guards:
//!
//! - **Never a page of the process's own.** A read-only mapping of a file
//!   can still hold pages written before it was made read-only: the
//!   dynamic loader relocates `.data.rel.ro` and then protects it
//!   (`RELRO`). Dropping those would bring back the file's unrelocated
//!   bytes, and the next call through them would crash. `/proc/self/smaps`
//!   says, for each mapping, how many of its pages are anonymous, and how
//!   many are swapped out (a swapped page of the process's own counts
//!   there, not as anonymous): only a mapping with neither is a candidate.
//! - **Never an address that has changed hands.** In the daemon, other
//!   threads run while `smaps` is read: a file mapping read there could be
//!   unmapped (the loader maps and unmaps `/etc/ld.so.cache` in a
//!   `dlopen`), and its addresses given to fresh anonymous memory, before
//!   the `madvise`, which would then zero live data. So the ranges come
//!   from the loader itself: `dl_iterate_phdr(3)` lists each loaded
//!   object's segments and holds the loader's lock while its callback
//!   runs, so no object can be unloaded meanwhile. Only a segment the
//!   object never writes (`PT_LOAD` without `PF_W`: its code and constants;
//!   RELRO is part of a writable segment) is dropped, and only where
//!   `smaps` found it clean.
//!
//! And one economy: what runs after the drop decides what comes back. A
//! fault on a page of a file maps its neighbours too, as many as are in
//! the page cache within an aligned window of 64 KiB (*fault-around*), so
//! every page of code run between the drop and the wait costs sixteen.
//! The heap is trimmed first, the windows of the few functions that run
//! afterwards are kept rather than dropped, and a process that only waits
//! goes straight from the drop into its `poll` ([`idle_pages_then_wait`]).

use nix::poll::PollFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How long a process of the engine waits with nothing to do before it
/// sheds: a shim from its container's start, the launcher and the daemon
/// from their last request. A container that ends sooner (`run --rm IMAGE
/// true`) never pays for it; a start that comes sooner finds its pages.
pub const IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// One mapping of `/proc/self/smaps`, as far as shedding cares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    /// `rwxp` or `r--s`: may it be written, is it shared.
    perms: String,
    /// The file it maps, or a `[name]` such as `[heap]`, or nothing.
    path: String,
    /// Resident, anonymous, swapped-out and locked KiB; `None` when
    /// `smaps` did not say, which never counts as clean.
    rss: Option<u64>,
    anonymous: Option<u64>,
    swap: Option<u64>,
    locked: Option<u64>,
}

impl Mapping {
    /// A private mapping of a file that this process cannot write and has
    /// no page of its own in, in memory or in swap: every resident page is
    /// the file's, in the page cache, and comes back unchanged when touched
    /// again.
    fn clean(&self) -> bool {
        let perms = self.perms.as_bytes();
        perms.len() == 4
            && perms[1] == b'-'
            && perms[3] == b'p'
            && self.path.starts_with('/')
            && self.anonymous == Some(0)
            && self.swap == Some(0)
            && self.locked == Some(0)
            && self.rss.is_some_and(|kib| kib > 0)
    }
}

/// Reads the mappings of `smaps` text (the header line of each mapping,
/// then its `Name: N kB` lines).
fn mappings(smaps: &str) -> Vec<Mapping> {
    let mut all: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            let perms = words.next().unwrap_or_default().to_string();
            // offset, device, inode, then the path (which may hold spaces).
            let path = words.skip(3).collect::<Vec<_>>().join(" ");
            all.push(Mapping {
                start,
                end,
                perms,
                path,
                rss: None,
                anonymous: None,
                swap: None,
                locked: None,
            });
            continue;
        }
        let Some(mapping) = all.last_mut() else {
            continue;
        };
        let kib = words.next().and_then(|n| n.parse::<u64>().ok());
        match first {
            "Rss:" => mapping.rss = kib,
            "Anonymous:" => mapping.anonymous = kib,
            "Swap:" => mapping.swap = kib,
            "Locked:" => mapping.locked = kib,
            _ => {}
        }
    }
    all
}

/// What one shedding gave back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shed {
    /// KiB of address space advised (resident or not).
    pub kib: u64,
    /// How many ranges were advised.
    pub ranges: usize,
}

/// What [`dl_iterate_phdr`](libc::dl_iterate_phdr)'s callback needs: the
/// clean mappings `smaps` showed, and what was done.
struct Walk {
    clean: Vec<(usize, usize)>,
    /// Sorted, disjoint windows left mapped: see [`FAULT_AROUND`].
    keep: Vec<(usize, usize)>,
    page: usize,
    shed: Shed,
}

impl Walk {
    /// Drops the pages of `start..end` (a segment no object writes) that
    /// lie in a mapping `smaps` found clean, but not in a window to keep.
    fn drop_clean(&mut self, start: usize, end: usize) {
        let Walk {
            clean, keep, shed, ..
        } = self;
        for &(from, to) in clean.iter() {
            outside(from.max(start), to.min(end), keep, |from, to| {
                // SAFETY: `from..to` is whole pages of a segment of an
                // object that stays loaded while the loader's lock is held
                // (we are in its callback), that no object writes (no
                // `PF_W`), and that `smaps` showed as a private, read-only
                // file mapping with no page of the process's own: every
                // page dropped is a clean copy of its file, which the next
                // access reads back.
                let advised = unsafe {
                    libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED)
                };
                if advised == 0 {
                    shed.kib += ((to - from) / 1024) as u64;
                    shed.ranges += 1;
                }
            });
        }
    }
}

/// Calls `each` with the parts of `from..to` that no window of `keep`
/// (sorted, disjoint) covers; nothing when `from >= to`. It allocates
/// nothing: it runs while the pages are being dropped.
fn outside(from: usize, to: usize, keep: &[(usize, usize)], mut each: impl FnMut(usize, usize)) {
    let mut at = from;
    for &(k0, k1) in keep {
        if at >= to {
            return;
        }
        if k1 <= at || k0 >= to {
            continue;
        }
        if k0 > at {
            each(at, k0);
        }
        at = k1;
    }
    if at < to {
        each(at, to);
    }
}

/// The callback: each loaded object's `PT_LOAD` segments without `PF_W`,
/// shrunk to the whole pages inside them (a page at an edge may be shared
/// with a writable segment).
unsafe extern "C" fn each_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is the `Walk` that `drop_then` lends for the call;
    // `info` and its program headers are the loader's, valid during it.
    let (walk, info) = unsafe { (&mut *(data as *mut Walk), &*info) };
    for i in 0..usize::from(info.dlpi_phnum) {
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` headers.
        let header = unsafe { &*info.dlpi_phdr.add(i) };
        if header.p_type != libc::PT_LOAD || header.p_flags & libc::PF_W != 0 {
            continue;
        }
        let page = walk.page;
        let start = (info.dlpi_addr as usize).checked_add(header.p_vaddr as usize);
        let end = start.and_then(|s| s.checked_add(header.p_memsz as usize));
        let (Some(start), Some(end)) = (start, end) else {
            continue;
        };
        let Some(first) = start.checked_next_multiple_of(page) else {
            continue;
        };
        let last = end - end % page;
        if first < last {
            walk.drop_clean(first, last);
        }
    }
    0
}

// ANCHOR: shed
/// Drops this process's resident pages of its code and constants, and its
/// libraries', where it holds none of its own, then gives the heap's free
/// pages back. Why and why it is safe: the module's text. Best effort, as
/// reclaim is: what cannot be read or advised is left as it is.
pub fn idle_pages() -> Shed {
    drop_then(None)
}

/// Sheds as [`idle_pages`] does, then waits in `poll(2)` on `fds` without a
/// limit and returns when one is ready (or a signal came): the caller polls
/// again and finds it. A process that only waits (a shim, the launcher)
/// sheds this way, so that between the drop and the wait nothing runs but
/// code in windows it kept ([`FAULT_AROUND`]).
pub fn idle_pages_then_wait(fds: &mut [PollFd]) -> Shed {
    drop_then(Some(fds))
}

/// How many bytes around a faulting page the kernel maps at once, when they
/// are in the page cache (`fault_around_bytes`, 64 KiB unless changed in
/// debugfs): each page of code that runs after the drop brings its whole
/// window back. So the windows of the code that runs between the drop and
/// the wait are kept, not dropped and faulted back in, and that code is
/// kept short: this function's loop, the loader's walk, `madvise`, `poll`.
pub const FAULT_AROUND: usize = 64 * 1024;

fn drop_then(wait: Option<&mut [PollFd]>) -> Shed {
    let Ok(text) = std::fs::read_to_string("/proc/self/smaps") else {
        return Shed::default();
    };
    let clean = mappings(&text)
        .into_iter()
        .filter(Mapping::clean)
        .map(|m| (m.start, m.end))
        .collect();
    drop(text);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| usize::try_from(p).ok())
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096);
    // The code that runs once the pages are gone: each window it lies in.
    let ran_after = [
        drop_then as *const () as usize,
        each_object as *const () as usize,
        Walk::drop_clean as *const () as usize,
        libc::dl_iterate_phdr as *const () as usize,
        libc::madvise as *const () as usize,
        libc::poll as *const () as usize,
    ];
    let mut walk = Walk {
        clean,
        keep: windows(&ran_after, FAULT_AROUND.max(page)),
        page,
        shed: Shed::default(),
    };
    // SAFETY: malloc_trim only hands free heap pages back to the kernel.
    // First, so that nothing of malloc's runs after the drop.
    unsafe {
        libc::malloc_trim(0);
    }
    // SAFETY: the callback only reads what the loader hands it and uses
    // `walk`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(each_object), (&mut walk as *mut Walk).cast());
    }
    if let Some(fds) = wait {
        // SAFETY: nix's `PollFd` is a transparent `libc::pollfd`, and `fds`
        // lends `fds.len()` of them for the call. Its result is not needed:
        // the caller polls again.
        unsafe {
            libc::poll(
                fds.as_mut_ptr().cast::<libc::pollfd>(),
                fds.len() as libc::nfds_t,
                -1,
            );
        }
    }
    walk.shed
}
// ANCHOR_END: shed

/// The aligned windows of `size` bytes that hold `addresses`, sorted and
/// merged.
fn windows(addresses: &[usize], size: usize) -> Vec<(usize, usize)> {
    let mut all: Vec<(usize, usize)> = addresses
        .iter()
        .map(|a| {
            let from = a - a % size;
            (from, from.saturating_add(size))
        })
        .collect();
    all.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(all.len());
    for (from, to) in all {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
}

// ANCHOR: activity
/// When a server of many threads (the daemon) last began or ended a
/// request: it sheds once it has been quiet for [`IDLE`], not while a
/// request runs, and again after the next one.
#[derive(Debug)]
pub struct Activity {
    began: Instant,
    /// Milliseconds since `began`, at the last request's start or end.
    last: AtomicU64,
    woke: tokio::sync::Notify,
}

impl Activity {
    /// A new record, which counts as activity now: the first shed comes a
    /// second after the server starts, if nothing comes.
    pub fn new() -> Arc<Activity> {
        let activity = Arc::new(Activity {
            began: Instant::now(),
            last: AtomicU64::new(0),
            woke: tokio::sync::Notify::new(),
        });
        activity.woke.notify_one();
        activity
    }

    /// A request began or ended.
    pub fn touch(&self) {
        let now = self.began.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
        self.woke.notify_one();
    }

    fn quiet_for(&self) -> std::time::Duration {
        let now = self.began.elapsed();
        let last = std::time::Duration::from_millis(self.last.load(Ordering::Relaxed));
        now.saturating_sub(last)
    }

    /// The server's shedder, a task for ever: after any activity, waits
    /// until a whole [`IDLE`] has passed with none, then sheds (on a
    /// blocking thread: it reads a file and walks the loader's list).
    pub async fn shed_when_quiet(self: Arc<Activity>) {
        loop {
            self.woke.notified().await;
            loop {
                let quiet = self.quiet_for();
                if quiet >= IDLE {
                    break;
                }
                tokio::time::sleep(IDLE - quiet).await;
            }
            let _ = tokio::task::spawn_blocking(idle_pages).await;
        }
    }
}
// ANCHOR_END: activity

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 1234 /usr/bin/step11
Rss:                 420 kB
Swap:                  0 kB
Anonymous:             0 kB
Locked:                0 kB
55d0c0100000-55d0c0300000 r-xp 00100000 08:01 1234 /usr/bin/step11
Rss:                2064 kB
Anonymous:             0 kB
Swap:                  0 kB
Locked:                0 kB
55d0c0300000-55d0c0400000 r--p 00300000 08:01 1234 /usr/bin/step11
Rss:                1036 kB
Anonymous:           300 kB
Swap:                  0 kB
Locked:                0 kB
55d0c0400000-55d0c0410000 r--p 00400000 08:01 1234 /usr/bin/step11
Rss:                   4 kB
Anonymous:             0 kB
Swap:                 60 kB
Locked:                0 kB
55d0c0410000-55d0c0420000 rw-p 00410000 08:01 1234 /usr/bin/step11
Rss:                  64 kB
Anonymous:            64 kB
Swap:                  0 kB
Locked:                0 kB
55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0 [heap]
Rss:                 272 kB
Anonymous:           272 kB
7f0000000000-7f0000100000 r-xp 00000000 08:01 99 /opt/with space/lib.so
Rss:                 100 kB
Anonymous:             0 kB
Swap:                  0 kB
Locked:                4 kB
7f0000100000-7f0000200000 r--s 00000000 08:01 98 /dev/shm/x
Rss:                  12 kB
Anonymous:             0 kB
Swap:                  0 kB
Locked:                0 kB
7f0000200000-7f0000300000 r-xp 00000000 08:01 97 /usr/lib/old.so
Rss:                  40 kB
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Rss:                   8 kB
Anonymous:             0 kB
Swap:                  0 kB
Locked:                0 kB
";

    #[test]
    fn only_clean_read_only_private_file_mappings_are_candidates() {
        let all = mappings(SMAPS);
        assert_eq!(all.len(), 10);
        assert_eq!(all[6].path, "/opt/with space/lib.so");
        let clean: Vec<(usize, &str)> = all
            .iter()
            .filter(|m| m.clean())
            .map(|m| (m.start, m.perms.as_str()))
            .collect();
        // The code and the constants; never the relocated RELRO pages (in
        // memory or swapped out), the writable data, the heap, a locked or
        // a shared mapping, one whose counts smaps did not give, the vdso.
        assert_eq!(
            clean,
            vec![(0x55d0c0000000, "r--p"), (0x55d0c0100000, "r-xp")]
        );
    }

    #[test]
    fn the_windows_to_keep_are_cut_out_of_each_range() {
        let keep = windows(
            &[0x1_0010, 0x1_fff0, 0x3_0000, 0x3_8000, 0x9_0000],
            0x1_0000,
        );
        assert_eq!(
            keep,
            vec![
                (0x1_0000, 0x2_0000),
                (0x3_0000, 0x4_0000),
                (0x9_0000, 0xa_0000)
            ]
        );
        let cut = |from, to| {
            let mut parts = Vec::new();
            outside(from, to, &keep, |a, b| parts.push((a, b)));
            parts
        };
        // Around, between and after the windows; inside one, nothing.
        assert_eq!(
            cut(0x0_8000, 0x5_0000),
            vec![
                (0x0_8000, 0x1_0000),
                (0x2_0000, 0x3_0000),
                (0x4_0000, 0x5_0000)
            ]
        );
        assert_eq!(cut(0x1_1000, 0x1_2000), vec![]);
        assert_eq!(
            cut(0x3_8000, 0xa_8000),
            vec![(0x4_0000, 0x9_0000), (0xa_0000, 0xa_8000)]
        );
        assert_eq!(cut(0x5_0000, 0x6_0000), vec![(0x5_0000, 0x6_0000)]);
        assert_eq!(cut(0x6_0000, 0x6_0000), vec![]);
    }

    #[test]
    fn waiting_after_the_drop_returns_when_a_descriptor_is_ready() {
        let (read, write) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&write, b"x").unwrap();
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&read),
            nix::poll::PollFlags::POLLIN,
        )];
        let shed = idle_pages_then_wait(&mut fds);
        assert!(shed.ranges > 0, "{shed:?}");
        assert!(
            fds[0]
                .revents()
                .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN))
        );
    }

    #[test]
    fn shedding_drops_resident_code_and_the_process_runs_on() {
        let resident = || -> u64 {
            let text = std::fs::read_to_string("/proc/self/smaps").unwrap();
            mappings(&text)
                .iter()
                .filter(|m| m.clean())
                .filter_map(|m| m.rss)
                .sum()
        };
        let before = resident();
        let shed = idle_pages();
        assert!(shed.ranges > 0 && shed.kib > 0, "{shed:?}");
        let after = resident();
        // Other test threads fault some back in at once; fewer than it had.
        assert!(
            after < before,
            "resident clean file pages: {before} KiB before, {after} KiB after"
        );
        // The code it dropped runs again, read back from the page cache.
        let mut v: Vec<String> = (0..1000).map(|i| format!("{i}")).collect();
        v.sort();
        assert_eq!(v.first().map(String::as_str), Some("0"));
    }
}
