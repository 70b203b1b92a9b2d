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
//! Why only those mappings: a read-only mapping of a file can still hold
//! pages of the process's own, written before it was made read-only. The
//! dynamic loader relocates `.data.rel.ro` and then protects it
//! (`RELRO`): dropping those pages would bring back the file's unrelocated
//! bytes, and the next call through them would crash. `/proc/self/smaps`
//! says, for each mapping, how many of its pages are anonymous; only a
//! mapping with none is dropped.

use std::path::Path;

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
    /// Resident and anonymous KiB.
    rss: u64,
    anonymous: u64,
    locked: u64,
}

impl Mapping {
    /// A private mapping of a file that this process cannot write and has
    /// no page of its own in: every resident page is the file's, in the
    /// page cache, and comes back unchanged when touched again.
    fn can_shed(&self) -> bool {
        let perms = self.perms.as_bytes();
        perms.len() == 4
            && perms[1] == b'-'
            && perms[3] == b'p'
            && self.path.starts_with('/')
            && self.anonymous == 0
            && self.locked == 0
            && self.rss > 0
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
                rss: 0,
                anonymous: 0,
                locked: 0,
            });
            continue;
        }
        let Some(mapping) = all.last_mut() else {
            continue;
        };
        let mut kib = || {
            words
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Rss:" => mapping.rss = kib(),
            "Anonymous:" => mapping.anonymous = kib(),
            "Locked:" => mapping.locked = kib(),
            _ => {}
        }
    }
    all
}

/// What one shedding gave back, in KiB of the process's resident size.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shed {
    /// Resident KiB of the mappings it dropped, as `smaps` counted them.
    pub file_kib: u64,
    /// How many mappings it dropped.
    pub mappings: usize,
}

// ANCHOR: shed
/// Drops this process's resident pages of the files it maps read-only
/// and has not written (its code, its constants, its libraries'), then
/// gives the heap's free pages back. Why and why it is safe: the module's
/// text. Best effort, as reclaim is: a mapping that cannot be read or
/// advised is left as it is.
pub fn idle_pages() -> Shed {
    idle_pages_of(Path::new("/proc/self/smaps"))
}

fn idle_pages_of(smaps: &Path) -> Shed {
    let mut shed = Shed::default();
    let Ok(text) = std::fs::read_to_string(smaps) else {
        return shed;
    };
    for mapping in mappings(&text).iter().filter(|m| m.can_shed()) {
        // SAFETY: the range is one whole mapping of this process, read
        // from its own smaps; the process cannot write it and holds no
        // anonymous page in it (`can_shed`), so every page dropped here is
        // a clean copy of its file that the next access reads back.
        let advised = unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.end - mapping.start,
                libc::MADV_DONTNEED,
            )
        };
        if advised == 0 {
            shed.file_kib += mapping.rss;
            shed.mappings += 1;
        }
    }
    // SAFETY: malloc_trim only hands free heap pages back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    shed
}
// ANCHOR_END: shed

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 1234 /usr/bin/step11
Rss:                 420 kB
Anonymous:             0 kB
Locked:                0 kB
55d0c0100000-55d0c0300000 r-xp 00100000 08:01 1234 /usr/bin/step11
Rss:                2064 kB
Anonymous:             0 kB
Locked:                0 kB
55d0c0300000-55d0c0400000 r--p 00300000 08:01 1234 /usr/bin/step11
Rss:                1036 kB
Anonymous:           300 kB
Locked:                0 kB
55d0c0400000-55d0c0410000 rw-p 00400000 08:01 1234 /usr/bin/step11
Rss:                  64 kB
Anonymous:            64 kB
Locked:                0 kB
55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0 [heap]
Rss:                 272 kB
Anonymous:           272 kB
7f0000000000-7f0000100000 r-xp 00000000 08:01 99 /opt/with space/lib.so
Rss:                 100 kB
Anonymous:             0 kB
Locked:                4 kB
7f0000100000-7f0000200000 r--s 00000000 08:01 98 /dev/shm/x
Rss:                  12 kB
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Rss:                   8 kB
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_private_file_mappings_are_shed() {
        let all = mappings(SMAPS);
        assert_eq!(all.len(), 8);
        assert_eq!(all[5].path, "/opt/with space/lib.so");
        let shed: Vec<(usize, &str)> = all
            .iter()
            .filter(|m| m.can_shed())
            .map(|m| (m.start, m.perms.as_str()))
            .collect();
        // The code and the constants; never the relocated RELRO pages, the
        // writable data, the heap, a locked or a shared mapping, the vdso.
        assert_eq!(
            shed,
            vec![(0x55d0c0000000, "r--p"), (0x55d0c0100000, "r-xp")]
        );
    }

    #[test]
    fn shedding_drops_the_resident_code_and_the_process_runs_on() {
        let resident = || -> u64 {
            let text = std::fs::read_to_string("/proc/self/smaps").unwrap();
            mappings(&text)
                .iter()
                .filter(|m| m.can_shed())
                .map(|m| m.rss)
                .sum()
        };
        let before = resident();
        let shed = idle_pages();
        assert!(shed.mappings > 0 && shed.file_kib > 0, "{shed:?}");
        let after = resident();
        // Other test threads fault some back in at once; most stay out.
        assert!(
            after < before / 2,
            "resident file pages: {before} KiB before, {after} KiB after"
        );
        // The code it dropped runs again, read back from the page cache.
        let mut v: Vec<String> = (0..1000).map(|i| format!("{i}")).collect();
        v.sort();
        assert_eq!(v.first().map(String::as_str), Some("0"));
    }
}
