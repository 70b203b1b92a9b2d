//! Events (`docker events`): what happened to the host's containers,
//! images, volumes and networks, in order, as one log every writer shares.
//!
//! The daemon is not the only writer. A container's shim is a separate
//! process that outlives the daemon, and only the shim sees its container
//! start again (`--restart`) or die on its own. So events cannot live in
//! the daemon's memory, as Docker's do (a ring of 256 there): they are
//! lines in one file, `ROOT/engine/events.log`, appended by whichever
//! process saw the event, and read back by `GET /events`.
//!
//! - **Atomic lines.** Each event is one JSON line, written by one
//!   `write(2)` on a descriptor opened `O_APPEND`: the kernel moves to the
//!   end and writes under the inode's lock, so two writers' lines never
//!   interleave. Lines are kept under `PIPE_BUF` (4096 bytes) all the same.
//! - **Bounded.** Past [`MAX_BYTES`] the file is renamed `events.log.1`
//!   (replacing the previous one) and a new one begins: at most two files,
//!   about 2 MiB, some thousands of events. Writers hold `events.lock`
//!   shared while they open and write, the rotation holds it exclusive, so
//!   no line goes to a file already renamed away.
//! - **Followed by polling.** A follower looks at the file every
//!   [`POLL`]: one `read` that usually returns nothing. inotify would wake
//!   it sooner, at the price of a descriptor and a watch per client and a
//!   rename to re-watch; a person reading `docker events` does not see 50 ms,
//!   and the same loop also notices a client that went away.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde_json::{Value, json};

use super::EngineError;
use super::bridge::Outlet;
use super::state::{Record, io};

/// The size past which the log is rotated.
pub const MAX_BYTES: u64 = 1 << 20;

/// The longest line written: atomic even by `pipe(7)`'s stricter rule.
const MAX_LINE: usize = 4000;

/// How often a follower looks for new lines.
pub const POLL: Duration = Duration::from_millis(50);

/// One event, before it is written: Docker's `Type`, `Action`, the actor's
/// id and attributes.
#[derive(Debug, Clone)]
pub struct Event {
    /// `container`, `image`, `volume` or `network`.
    pub kind: &'static str,
    /// `create`, `start`, `die`, `pull`, `destroy`…
    pub action: String,
    /// The actor: a container's id, an image's name or id, a volume's name.
    pub id: String,
    /// What else a reader filters or prints by (`name`, `image`, `exitCode`).
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// An event of `kind` about `id`.
    pub fn new(kind: &'static str, action: &str, id: &str) -> Event {
        Event {
            kind,
            action: action.to_string(),
            id: id.to_string(),
            attributes: BTreeMap::new(),
        }
    }

    /// A container's event, with its name and image, as Docker's have.
    pub fn container(action: &str, record: &Record) -> Event {
        Event::new("container", action, &record.id)
            .with("name", &record.name)
            .with("image", &record.image)
    }

    /// The same event with one more attribute.
    pub fn with(mut self, key: &str, value: impl ToString) -> Event {
        self.attributes.insert(key.to_string(), value.to_string());
        self
    }

    // ANCHOR: event_json
    /// Docker's event message (API 1.41): the new fields (`Type`, `Action`,
    /// `Actor`) and the old ones clients still read (`status`, `id`, `from`).
    fn to_json(&self, nanos: u128) -> Value {
        let mut message = json!({
            "Type": self.kind, "Action": self.action,
            "Actor": { "ID": self.id, "Attributes": self.attributes },
            "scope": "local",
            "time": (nanos / 1_000_000_000) as u64, "timeNano": nanos as u64,
        });
        if self.kind == "container" {
            message["status"] = json!(self.action);
            message["id"] = json!(self.id);
            message["from"] = json!(self.attributes.get("image").cloned().unwrap_or_default());
        }
        message
    }
    // ANCHOR_END: event_json
}

/// The log's files under the engine root `root`.
fn paths(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let dir = root.join("engine");
    (
        dir.join("events.log"),
        dir.join("events.log.1"),
        dir.join("events.lock"),
    )
}

/// Now, in ns since the epoch: the unit of `since`, `until` and `timeNano`.
pub fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

// ANCHOR: record
/// Appends `event` to the log of the engine at `root`. An event that
/// cannot be written is reported on stderr, never as the failure of what
/// it reports: a container that started did start.
pub fn record(root: &Path, event: &Event) {
    if let Err(e) = append(root, event) {
        eprintln!(
            "caixa: recording the event {} {}: {e}",
            event.kind, event.action
        );
    }
}

fn append(root: &Path, event: &Event) -> Result<(), EngineError> {
    let (log, old, lock) = paths(root);
    let mut line = event.to_json(now_nanos()).to_string();
    if line.len() >= MAX_LINE {
        // Only a hostile name makes one this long: keep the facts.
        let mut short = event.clone();
        short
            .attributes
            .retain(|k, _| k == "exitCode" || k == "signal");
        line = short.to_json(now_nanos()).to_string();
    }
    line.push('\n');
    let locking = |source| EngineError::Sys {
        call: "flock(the events' lock)",
        source,
    };
    // Shared: appenders run side by side; a rotation waits for them.
    let shared =
        Flock::lock(open_append(&lock)?, FlockArg::LockShared).map_err(|(_, e)| locking(e))?;
    let mut file = open_append(&log)?;
    if file.metadata().map_err(io(&log))?.len() >= MAX_BYTES {
        drop(file);
        let lock_file = shared.unlock().map_err(|(_, e)| locking(e))?;
        let exclusive =
            Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, e)| locking(e))?;
        // Another writer may have rotated it while we waited.
        if std::fs::metadata(&log).is_ok_and(|m| m.len() >= MAX_BYTES) {
            std::fs::rename(&log, &old).map_err(io(&log))?;
        }
        file = open_append(&log)?;
        return write_line(&mut file, &log, &line).map(|()| drop(exclusive));
    }
    write_line(&mut file, &log, &line).map(|()| drop(shared))
}
// ANCHOR_END: record

fn open_append(log: &Path) -> Result<File, EngineError> {
    File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(io(log))
}

/// One `write(2)`: the whole line or an error, never half of it silently.
fn write_line(file: &mut File, log: &Path, line: &str) -> Result<(), EngineError> {
    match file.write(line.as_bytes()) {
        Ok(n) if n == line.len() => Ok(()),
        Ok(n) => Err(EngineError::File {
            path: log.to_path_buf(),
            source: std::io::Error::other(format!("wrote {n} of {} bytes", line.len())),
        }),
        Err(e) => Err(io(log)(e)),
    }
}

/// What a reader of the log wants: from when, until when, which events.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// Events at or after this time (ns since the epoch); `None`: only new ones.
    pub since: Option<u128>,
    /// Events at or before this time; `None`: follow for ever.
    pub until: Option<u128>,
    /// Docker's filters (`type`, `event`, `container`, `image`…).
    pub filters: super::filters::Filters,
}

/// The keys `GET /events` filters by (`label` is not among them: caixa's
/// containers have none, and a filter that matched nothing silently
/// would look like a quiet host).
pub const FILTER_KEYS: [&str; 6] = ["type", "event", "container", "image", "volume", "network"];

impl Wanted {
    /// Whether `message` (a parsed line) passes the filters.
    fn passes(&self, message: &Value) -> bool {
        let f = &self.filters;
        let kind = message["Type"].as_str().unwrap_or_default();
        let attr = |k: &str| {
            message["Actor"]["Attributes"][k]
                .as_str()
                .unwrap_or_default()
        };
        let id = message["Actor"]["ID"].as_str().unwrap_or_default();
        let of = |k: &str| kind == k && (f.matches(k, |v| id.starts_with(v) || attr("name") == v));
        f.matches("type", |v| v == kind)
            && f.matches("event", |v| message["Action"] == v)
            && (f.get("container").is_none() || of("container"))
            && (f.get("volume").is_none() || of("volume"))
            && (f.get("network").is_none() || of("network"))
            && f.matches("image", |v| {
                let image = if kind == "image" { id } else { attr("image") };
                let name = if kind == "image" { attr("name") } else { "" };
                super::filters::same_image(image, v) || super::filters::same_image(name, v)
            })
    }
}

// ANCHOR: stream
/// Sends the events `wanted` asks for to `out`, one JSON line each: those
/// already in the log from `since`, then (unless `until` has passed) new
/// ones as they come, until `until`, or until the client has left
/// ([`Outlet::client_gone`]).
pub fn stream(root: &Path, wanted: &Wanted, out: &mut dyn Outlet) -> Result<(), EngineError> {
    let (log, old, _) = paths(root);
    let start = now_nanos();
    // Opened before the old file is read: a rotation in between leaves
    // this descriptor on what became `.1`, which is read to its end below.
    let mut current = File::open(&log).ok();
    let mut offset = 0;
    if let Some(since) = wanted.since {
        let current_inode = current
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.ino());
        let old_inode = std::fs::metadata(&old).ok().map(|m| m.ino());
        if old_inode.is_some() && old_inode != current_inode {
            send_lines(File::open(&old).ok(), &mut 0, wanted, since, out)?;
        }
        send_lines(
            current.as_ref().and_then(|f| f.try_clone().ok()),
            &mut offset,
            wanted,
            since,
            out,
        )?;
    } else if let Some(file) = &current {
        offset = file.metadata().map_or(0, |m| m.len());
    }
    let past = |t: u128| wanted.until.is_some_and(|until| t > until);
    if past(start) {
        return Ok(());
    }
    // From here on only new events, from where the backlog ended.
    loop {
        std::thread::sleep(POLL);
        if out.client_gone() {
            return Ok(());
        }
        // Past `until`: one last look (for what came in the last pause), then the end.
        let last = past(now_nanos());
        // Rotated since we opened it? Finish the old one, then go on in the new.
        let renamed = match (&current, std::fs::metadata(&log)) {
            (Some(file), Ok(now)) => file.metadata().map_or(true, |m| m.ino() != now.ino()),
            (None, Ok(_)) => true,
            (_, Err(_)) => false,
        };
        let mut send_new = |current: &Option<File>, offset: &mut u64| {
            send_lines(
                current.as_ref().and_then(|f| f.try_clone().ok()),
                offset,
                wanted,
                0,
                out,
            )
        };
        send_new(&current, &mut offset)?;
        if renamed {
            current = File::open(&log).ok();
            offset = 0;
            send_new(&current, &mut offset)?;
        }
        if last {
            return Ok(());
        }
    }
}
// ANCHOR_END: stream

/// Sends the whole lines of `file` from `offset` (moved past them) that
/// are at or after `since` and pass the filters.
fn send_lines(
    file: Option<File>,
    offset: &mut u64,
    wanted: &Wanted,
    since: u128,
    out: &mut dyn Write,
) -> Result<(), EngineError> {
    let Some(mut file) = file else { return Ok(()) };
    file.seek(std::io::SeekFrom::Start(*offset))
        .map_err(EngineError::Connection)?;
    // At most one rotation's worth: the file's bound.
    let mut reader = BufReader::new(file.take(2 * MAX_BYTES));
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(EngineError::Connection)?;
        if n == 0 || !line.ends_with('\n') {
            return Ok(()); // the end, or a line still being written
        }
        *offset += n as u64;
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue; // not ours: skipped, not fatal
        };
        let time = u128::from(message["timeNano"].as_u64().unwrap_or(0));
        if time < since || wanted.until.is_some_and(|u| time > u) || !wanted.passes(&message) {
            continue;
        }
        out.write_all(line.as_bytes())
            .map_err(EngineError::Connection)?;
    }
}

/// A time as the Docker CLI sends it (`SECONDS[.NANOSECONDS]`, already
/// converted from what the user typed), in ns since the epoch.
pub fn parse_time(text: &str) -> Result<u128, EngineError> {
    let bad = || {
        EngineError::BadRequest(format!(
            "invalid time {text:?}: use seconds since the epoch, e.g. 1700000000.5"
        ))
    };
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: u128 = secs.parse().map_err(|_| bad())?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let nanos: u128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(nanos))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_seconds_with_a_fraction() {
        assert_eq!(parse_time("12").unwrap(), 12_000_000_000);
        assert_eq!(parse_time("12.5").unwrap(), 12_500_000_000);
        assert_eq!(parse_time("12.000000001").unwrap(), 12_000_000_001);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("1.0000000001").is_err());
    }

    #[test]
    fn lines_are_appended_read_back_and_filtered() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("engine")).unwrap();
        record(root.path(), &Event::new("volume", "create", "data"));
        record(
            root.path(),
            &Event::new("network", "create", "n1").with("name", "app"),
        );
        let mut wanted = Wanted {
            since: Some(0),
            until: Some(now_nanos()),
            ..Wanted::default()
        };
        let mut out = Vec::new();
        stream(root.path(), &wanted, &mut out).unwrap();
        assert_eq!(String::from_utf8_lossy(&out).lines().count(), 2);
        wanted.filters =
            super::super::filters::parse(Some(r#"{"type":["network"]}"#), &FILTER_KEYS).unwrap();
        let mut out = Vec::new();
        stream(root.path(), &wanted, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("\"n1\"") && !text.contains("\"data\""),
            "{text}"
        );
    }

    #[test]
    fn a_full_log_is_rotated_and_both_halves_are_read() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("engine")).unwrap();
        let (log, old, _) = paths(root.path());
        std::fs::write(&log, " ".repeat(MAX_BYTES as usize) + "\n").unwrap();
        record(root.path(), &Event::new("volume", "create", "after"));
        assert!(old.exists() && std::fs::metadata(&log).unwrap().len() < 1000);
        let wanted = Wanted {
            since: Some(0),
            until: Some(now_nanos()),
            ..Wanted::default()
        };
        let mut out = Vec::new();
        stream(root.path(), &wanted, &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("after"));
    }
}
