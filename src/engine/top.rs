//! `docker top`: the processes of a container, seen from the host
//! (`GET /containers/ID/top` → `{"Titles": […], "Processes": [[…]]}`).
//!
//! Which processes are the container's is the cgroup's answer: its
//! `cgroup.procs` lists every process in the group, whoever forked it,
//! `exec`'s included, and nothing else (see [`crate::cgroup::usage::procs`]).
//! What each one is comes from `/proc/PID`: `stat` (parent, times, terminal),
//! `status` (real uid) and `cmdline`. Docker runs the host's `ps` with the
//! client's options and keeps the lines of those pids; caixa reads `/proc`
//! itself, as `ps` does: no program of anyone's runs for a `top`, and the
//! columns are `ps -ef`'s, the ones `docker top` shows by default.

use serde_json::{Value, json};

use super::EngineError;
use super::state::{Containers, Record, Status};

/// `ps -ef`'s columns, which Docker shows by default.
const TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

// ANCHOR: top
/// The processes of `record`'s running container, as `ps -ef` shows them;
/// `ps_args` other than `-ef` are refused (caixa runs no `ps`).
pub fn top(
    containers: &Containers,
    record: &Record,
    ps_args: Option<&str>,
) -> Result<Value, EngineError> {
    if !matches!(ps_args.map(str::trim), None | Some("" | "-ef" | "ef")) {
        return Err(EngineError::BadRequest(format!(
            "ps options {:?} are not supported: caixa's top reads /proc itself and shows ps -ef's columns",
            ps_args.unwrap_or_default()
        )));
    }
    let state = containers.state(&record.id)?;
    if state.status != Status::Running {
        return Err(EngineError::Conflict(format!(
            "Container {} is not running",
            record.name
        )));
    }
    let pids = pids_of(containers, record)?;
    let clock = Clock::now();
    let processes: Vec<Value> = pids
        .iter()
        .filter_map(|pid| row(*pid, &clock))
        .map(|row| json!(row))
        .collect();
    Ok(json!({ "Titles": TITLES, "Processes": processes }))
}
// ANCHOR_END: top

/// The host pids in `record`'s cgroup (as its bundle names the group). A
/// rootless container has no cgroup: its processes are then those in the
/// PID namespace of its pid 1 (which `exec` joins too).
pub(crate) fn pids_of(containers: &Containers, record: &Record) -> Result<Vec<i32>, EngineError> {
    if crate::rootless::active() {
        let pid1 = containers.state(&record.id)?.pid;
        return Ok(in_pid_namespace_of(pid1));
    }
    let spec = containers.spec(&record.id)?;
    let group = spec
        .limits
        .as_ref()
        .map(|l| l.group(&record.id))
        .ok_or_else(|| EngineError::Conflict(format!("container {} has no cgroup", record.name)))?;
    let hierarchy = crate::cgroup::detect()
        .map_err(|e| EngineError::Conflict(format!("cannot read cgroups: {e}")))?;
    Ok(crate::cgroup::usage::procs(&hierarchy, &group))
}

/// The pids of `/proc` whose PID namespace is `pid`'s (an unprivileged
/// daemon reads only its user's processes, which a rootless container's are).
fn in_pid_namespace_of(pid: i32) -> Vec<i32> {
    let ns_of = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let Some(wanted) = ns_of(&pid.to_string()) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|p| ns_of(&p.to_string()).as_ref() == Some(&wanted))
        .collect();
    pids.sort_unstable();
    pids
}

/// What turns `/proc`'s clock ticks into times.
struct Clock {
    /// Ticks per second (`sysconf(_SC_CLK_TCK)`, 100 nearly everywhere).
    hz: u64,
    /// When the machine booted, in seconds since the epoch (`btime`).
    boot: u64,
    /// Now, in seconds since the epoch.
    now: u64,
}

impl Clock {
    fn now() -> Clock {
        // SAFETY: sysconf reads a constant of the C library.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let boot = std::fs::read_to_string("/proc/stat")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
            .unwrap_or(0);
        Clock {
            hz: u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100),
            boot,
            now: super::state::now(),
        }
    }
}

/// One process's line, or `None` if it is gone already.
fn row(pid: i32, clock: &Clock) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `PID (COMM) STATE PPID …`: COMM may hold spaces and parentheses.
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(').map_or("", |(_, c)| c);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let number = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (ppid, tty, ticks, start) = (
        fields.get(1).copied().unwrap_or("0"),
        number(4),
        number(11) + number(12),
        number(19),
    );
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = if cmdline.is_empty() {
        format!("[{comm}]")
    } else {
        String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ")
    };
    let started = clock.boot + start / clock.hz;
    let cpu_secs = ticks / clock.hz;
    let alive = clock.now.saturating_sub(started).max(1);
    let stime = super::daemon::rfc3339(started);
    Some(vec![
        user,
        pid.to_string(),
        ppid.to_string(),
        (cpu_secs * 100 / alive).to_string(),
        stime.get(11..16).unwrap_or("?").to_string(),
        terminal(tty),
        format!(
            "{:02}:{:02}:{:02}",
            cpu_secs / 3600,
            cpu_secs / 60 % 60,
            cpu_secs % 60
        ),
        cmd,
    ])
}

/// `ps`'s name for a `tty_nr`: `pts/N` for a pseudo-terminal, `?` for none.
fn terminal(tty: u64) -> String {
    let major = (tty >> 8) & 0xfff;
    let minor = (tty & 0xff) | ((tty >> 12) & 0xfff00);
    match (tty, major) {
        (0, _) => "?".into(),
        (_, 136..=143) => format!("pts/{}", (major - 136) * 256 + minor),
        _ => format!("{major}:{minor}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminals_are_named_as_ps_names_them() {
        assert_eq!(terminal(0), "?");
        assert_eq!(terminal((136 << 8) | 3), "pts/3");
    }

    #[test]
    fn this_process_has_a_row() {
        let row = row(std::process::id() as i32, &Clock::now()).unwrap();
        assert_eq!(row.len(), TITLES.len());
        assert_eq!(row[1], std::process::id().to_string());
    }
}
