//! What a container's group has used: the counters the kernel keeps in the
//! same directories whose knobs [`super::Cgroup::create`] wrote.
//!
//! `docker stats` and `docker top` read nothing else: a cgroup counts every
//! process inside it, whoever forked it, so the counters are the
//! container's and no one else's. The files differ by version:
//!
//! | what | v2 (one directory) | v1 (one directory per controller) |
//! |---|---|---|
//! | CPU time | `cpu.stat` `usage_usec` (µs) | `cpuacct/…/cpuacct.usage` (ns) |
//! | memory used | `memory.current` | `memory/…/memory.usage_in_bytes` |
//! | its limit | `memory.max` (`max`: none) | `memory.limit_in_bytes` (a huge number: none) |
//! | breakdown | `memory.stat` | `memory.stat` |
//! | processes | `pids.current`, `pids.max` | `pids/…/pids.current`, `pids.max` |
//! | disk bytes | `io.stat` (`rbytes=`, `wbytes=`) | `blkio/…/blkio.throttle.io_service_bytes` |
//! | who is in it | `cgroup.procs` | `cgroup.procs` (of any controller's directory) |

use std::path::{Path, PathBuf};

use super::{GroupPath, Hierarchy};

/// One look at a group's counters. A counter the host does not keep (a
/// controller not mounted, a group not joined) reads 0 or `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of every process in it, ever, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory charged to it now, in bytes (page cache included).
    pub memory: u64,
    /// Its memory limit in bytes, if it has one.
    pub memory_limit: Option<u64>,
    /// `memory.stat`'s lines: what the memory is (cache, rss,
    /// `inactive_file`…), as the kernel names it.
    pub memory_stat: Vec<(String, u64)>,
    /// Processes (and threads) in it now.
    pub pids: u64,
    /// Its limit on them, if it has one.
    pub pids_limit: Option<u64>,
    /// Bytes read from and written to block devices: (major, minor, read, written).
    pub io: Vec<(u32, u32, u64, u64)>,
}

/// A v1 memory limit at or above this is no limit: the kernel's "unlimited"
/// is `PAGE_COUNTER_MAX` pages, rounded (9223372036854771712 on x86_64).
const V1_UNLIMITED: u64 = 1 << 62;

/// The directory of `group` for `controller` (v1), or its one directory (v2).
fn dir_of(hierarchy: &Hierarchy, group: &GroupPath, controller: &str) -> Option<PathBuf> {
    match hierarchy {
        Hierarchy::V2(root) => Some(group.dir_in(root)),
        Hierarchy::V1(trees) => trees
            .iter()
            .find(|t| t.controller == controller)
            .map(|t| group.dir_in(&t.mount)),
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `KEY VALUE` lines (`memory.stat`, `cpu.stat`).
fn read_pairs(path: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

// ANCHOR: read_usage
/// Reads the counters of `group` in `hierarchy`, v2 or v1.
pub fn read(hierarchy: &Hierarchy, group: &GroupPath) -> Usage {
    let at =
        |controller: &str, file: &str| dir_of(hierarchy, group, controller).map(|d| d.join(file));
    let number = |controller: &str, file: &str| at(controller, file).and_then(|p| read_u64(&p));
    match hierarchy {
        Hierarchy::V2(_) => {
            let cpu = at("cpu", "cpu.stat")
                .map(|p| read_pairs(&p))
                .unwrap_or_default();
            let usec = cpu
                .iter()
                .find(|(k, _)| k == "usage_usec")
                .map_or(0, |(_, v)| *v);
            Usage {
                cpu_ns: usec.saturating_mul(1000),
                memory: number("memory", "memory.current").unwrap_or(0),
                // `max` does not parse: no limit.
                memory_limit: number("memory", "memory.max"),
                memory_stat: at("memory", "memory.stat")
                    .map(|p| read_pairs(&p))
                    .unwrap_or_default(),
                pids: number("pids", "pids.current").unwrap_or(0),
                pids_limit: number("pids", "pids.max"),
                io: at("io", "io.stat").map(|p| io_v2(&p)).unwrap_or_default(),
            }
        }
        Hierarchy::V1(_) => Usage {
            cpu_ns: number("cpuacct", "cpuacct.usage").unwrap_or(0),
            memory: number("memory", "memory.usage_in_bytes").unwrap_or(0),
            memory_limit: number("memory", "memory.limit_in_bytes").filter(|l| *l < V1_UNLIMITED),
            memory_stat: at("memory", "memory.stat")
                .map(|p| read_pairs(&p))
                .unwrap_or_default(),
            pids: number("pids", "pids.current").unwrap_or(0),
            pids_limit: number("pids", "pids.max"),
            io: at("blkio", "blkio.throttle.io_service_bytes")
                .map(|p| io_v1(&std::fs::read_to_string(p).unwrap_or_default()))
                .unwrap_or_default(),
        },
    }
}
// ANCHOR_END: read_usage

// ANCHOR: procs
/// The processes in `group` (their host pids), from `cgroup.procs`: on v1
/// the `pids` controller's directory (every container joins it), else the
/// `memory` one's.
pub fn procs(hierarchy: &Hierarchy, group: &GroupPath) -> Vec<i32> {
    let mut pids: Vec<i32> = ["pids", "memory"]
        .iter()
        .filter_map(|c| dir_of(hierarchy, group, c))
        .map(|d| std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default())
        .find(|text| !text.trim().is_empty())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}
// ANCHOR_END: procs

/// v1's `blkio.throttle.io_service_bytes`: `MAJ:MIN Read N` and
/// `MAJ:MIN Write N` lines (and a `Total`).
fn io_v1(text: &str) -> Vec<(u32, u32, u64, u64)> {
    let mut out: Vec<(u32, u32, u64, u64)> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, op, value] = fields.as_slice() else {
            continue;
        };
        let (Some((major, minor)), Ok(value)) = (device.split_once(':'), value.parse::<u64>())
        else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        let entry = match out.iter_mut().find(|e| e.0 == major && e.1 == minor) {
            Some(entry) => entry,
            None => {
                out.push((major, minor, 0, 0));
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        match *op {
            "Read" => entry.2 = value,
            "Write" => entry.3 = value,
            _ => {}
        }
    }
    out
}

/// v2's `io.stat`: `MAJ:MIN rbytes=N wbytes=N rios=N …` lines.
fn io_v2(path: &Path) -> Vec<(u32, u32, u64, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = fields.next()?.split_once(':')?;
            let (mut read, mut written) = (0, 0);
            for field in fields {
                match field.split_once('=') {
                    Some(("rbytes", n)) => read = n.parse().unwrap_or(0),
                    Some(("wbytes", n)) => written = n.parse().unwrap_or(0),
                    _ => {}
                }
            }
            Some((major.parse().ok()?, minor.parse().ok()?, read, written))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_files_give_the_same_usage() {
        let root = tempfile::tempdir().unwrap();
        let group = GroupPath::default_for("abc");
        let v1 = |c: &str| root.path().join(c);
        let trees: Vec<crate::cgroup::Tree> = ["cpuacct", "memory", "pids", "blkio"]
            .iter()
            .map(|c| crate::cgroup::Tree::whole(c, v1(c)))
            .collect();
        let files = [
            ("cpuacct", "cpuacct.usage", "2000000\n"),
            ("memory", "memory.usage_in_bytes", "4096\n"),
            ("memory", "memory.limit_in_bytes", "67108864\n"),
            (
                "memory",
                "memory.stat",
                "cache 0\ntotal_inactive_file 1024\n",
            ),
            ("pids", "pids.current", "2\n"),
            ("pids", "pids.max", "max\n"),
            ("pids", "cgroup.procs", "12\n7\n"),
            (
                "blkio",
                "blkio.throttle.io_service_bytes",
                "8:0 Read 10\n8:0 Write 20\n8:0 Total 30\nTotal 30\n",
            ),
        ];
        for (c, file, text) in files {
            let dir = group.dir_in(&v1(c));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), text).unwrap();
        }
        let one = Hierarchy::V1(trees);
        let seen = read(&one, &group);
        assert_eq!(seen.cpu_ns, 2_000_000);
        assert_eq!((seen.memory, seen.memory_limit), (4096, Some(64 << 20)));
        assert_eq!((seen.pids, seen.pids_limit), (2, None));
        assert_eq!(seen.io, [(8, 0, 10, 20)]);
        assert_eq!(procs(&one, &group), [7, 12]);

        let unified = tempfile::tempdir().unwrap();
        let dir = group.dir_in(unified.path());
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in [
            ("cpu.stat", "usage_usec 2000\nuser_usec 1000\n"),
            ("memory.current", "4096\n"),
            ("memory.max", "max\n"),
            ("pids.current", "2\n"),
            ("pids.max", "100\n"),
            ("io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2\n"),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let two = read(&Hierarchy::V2(unified.path().to_path_buf()), &group);
        assert_eq!(two.cpu_ns, 2_000_000);
        assert_eq!((two.memory, two.memory_limit), (4096, None));
        assert_eq!((two.pids, two.pids_limit), (2, Some(100)));
        assert_eq!(two.io, [(8, 0, 10, 20)]);
    }
}
