//! `docker stats`: what a container uses, from its cgroup's counters
//! (`GET /containers/ID/stats?stream=0|1`, Docker's JSON).
//!
//! A counter is a total since the group was made (CPU nanoseconds, bytes
//! read); a rate needs two looks. So each answer carries two samples a
//! second apart: `cpu_stats` now, `precpu_stats` a second ago, with the
//! whole machine's CPU time (`system_cpu_usage`, from `/proc/stat`) beside
//! each. The Docker CLI's CPU % is then
//! `Δcontainer / Δsystem × online_cpus × 100`. Memory and pids are read as
//! they are now, the limit from the group's own limit file (`--memory`).
//! Network bytes are the container's network namespace's, read through its
//! pid 1 (`/proc/PID/net/dev` shows the namespace of that process).

use std::io::Write;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::EngineError;
use super::server::{Request, Responder};
use super::state::{Containers, Record, Status};
use crate::cgroup::usage::{self, Usage};

/// One look at a container and at the machine.
#[derive(Debug, Clone, Default)]
struct Sample {
    /// When, as Docker writes it.
    read: String,
    usage: Usage,
    /// The machine's CPU time, all CPUs, in nanoseconds.
    system_ns: u64,
    online_cpus: u64,
    /// (interface, rx bytes, rx packets, tx bytes, tx packets).
    networks: Vec<(String, u64, u64, u64, u64)>,
}

/// The time between two samples: Docker's collector's interval.
const INTERVAL: Duration = Duration::from_secs(1);

// ANCHOR: serve_stats
/// Answers one stats request: one JSON object (`stream=0`), or one a
/// second until the client goes or the container ends.
pub fn serve(
    containers: &Containers,
    record: &Record,
    req: &Request,
    out: &mut Responder,
) -> Result<(), EngineError> {
    let stream = req.param("stream").is_none() || req.flag("stream");
    let spec = containers.spec(&record.id)?;
    let group = spec.limits.as_ref().map(|l| l.group(&record.id));
    let hierarchy = crate::cgroup::delegation::containers_root().ok();
    let running = || {
        containers
            .state(&record.id)
            .is_ok_and(|s| s.status == Status::Running)
    };
    let look = || {
        let state = containers.state(&record.id).unwrap_or_default();
        match (&hierarchy, &group) {
            (Some(h), Some(g)) if state.status == Status::Running => sample(h, g, state.pid),
            _ => Sample::default(),
        }
    };
    let mut out = out
        .stream(200, "application/json")
        .map_err(EngineError::Connection)?;
    let mut before = look();
    loop {
        if running() {
            std::thread::sleep(INTERVAL);
        }
        let now = look();
        let line = format!("{}\n", to_json(record, &now, &before));
        if out.write_all(line.as_bytes()).is_err() || !stream || !running() {
            return Ok(()); // the client went, or it asked for one, or it ended
        }
        before = now;
    }
}
// ANCHOR_END: serve_stats

fn sample(
    hierarchy: &crate::cgroup::Hierarchy,
    group: &crate::cgroup::GroupPath,
    pid: i32,
) -> Sample {
    let (system_ns, online_cpus) = system_cpu();
    Sample {
        read: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        usage: usage::read(hierarchy, group),
        system_ns,
        online_cpus,
        networks: networks(pid),
    }
}

/// The machine's CPU time in nanoseconds (the first line of `/proc/stat`:
/// user nice system idle iowait irq softirq steal, in clock ticks) and how
/// many CPUs are online (its `cpuN` lines), as Docker's daemon reads them.
fn system_cpu() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // SAFETY: sysconf reads a constant of the C library.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|h| *h > 0)
        .unwrap_or(100);
    let ticks: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .map(|l| {
            l.split_whitespace()
                .take(8)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let cpus = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u64;
    (ticks.saturating_mul(1_000_000_000 / hz), cpus)
}

/// The interfaces of the network namespace process `pid` is in, but `lo`.
fn networks(pid: i32) -> Vec<(String, u64, u64, u64, u64)> {
    if pid <= 0 {
        return Vec::new();
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let n: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            let name = name.trim();
            (name != "lo" && n.len() >= 10).then(|| (name.to_string(), n[0], n[1], n[8], n[9]))
        })
        .collect()
}

/// The machine's memory, the limit Docker reports for a container without one.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

// ANCHOR: stats_json
/// Docker's `types.StatsJSON` for two samples, `now` and `before`.
fn to_json(record: &Record, now: &Sample, before: &Sample) -> Value {
    let cpu = |s: &Sample| {
        json!({
            "cpu_usage": { "total_usage": s.usage.cpu_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "system_cpu_usage": s.system_ns,
            "online_cpus": s.online_cpus,
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        })
    };
    let stat: Map<String, Value> = now
        .usage
        .memory_stat
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let networks: Map<String, Value> = now
        .networks
        .iter()
        .map(|(name, rx, rxp, tx, txp)| {
            (
                name.clone(),
                json!({ "rx_bytes": rx, "rx_packets": rxp, "tx_bytes": tx, "tx_packets": txp,
                        "rx_errors": 0, "rx_dropped": 0, "tx_errors": 0, "tx_dropped": 0 }),
            )
        })
        .collect();
    let io: Vec<Value> = now
        .usage
        .io
        .iter()
        .flat_map(|(major, minor, read, written)| {
            [("Read", read), ("Write", written)].map(
                |(op, value)| json!({ "major": major, "minor": minor, "op": op, "value": value }),
            )
        })
        .collect();
    let mut pids = json!({ "current": now.usage.pids });
    if let Some(limit) = now.usage.pids_limit {
        pids["limit"] = json!(limit);
    }
    json!({
        "name": format!("/{}", record.name),
        "id": record.id,
        "read": if now.read.is_empty() { "0001-01-01T00:00:00Z" } else { &now.read },
        "preread": if before.read.is_empty() { "0001-01-01T00:00:00Z" } else { &before.read },
        "cpu_stats": cpu(now),
        "precpu_stats": cpu(before),
        "memory_stats": {
            "usage": now.usage.memory,
            "limit": now.usage.memory_limit.unwrap_or_else(host_memory),
            "stats": stat,
        },
        "pids_stats": pids,
        "blkio_stats": { "io_service_bytes_recursive": io },
        "networks": networks,
    })
}
// ANCHOR_END: stats_json
