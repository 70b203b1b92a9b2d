//! `docker ps`: the containers, newest first, filtered as Docker filters
//! them (`GET /containers/json?all=&limit=&filters=`).
//!
//! | filter | keeps a container whose… |
//! |---|---|
//! | `status` | state is one of these (`created`, `running`, `restarting`, `exited`…); implies `all` |
//! | `name` | name contains this (Docker takes a regular expression; caixa, a plain substring) |
//! | `id` | id starts with this |
//! | `ancestor` | image is this name (`demo` = `demo:latest`) or image id |
//! | `exited` | exit code is this (exited containers only) |
//! | `network` | network is this one (by name) |
//! | `volume` | mounts this volume (by name) or something at this path |
//! | `before`, `since` | was created before, or after, this container |
//!
//! `label` is refused: caixa's containers have no labels yet, and a list
//! that ignored the filter would look filtered. Every other key is
//! Docker's 400, `invalid filter 'KEY'`.

use serde::Serialize;
use serde_json::Value;

use super::EngineError;
use super::filters::{Filters, same_image};
use super::server::Request;
use super::state::{Containers, Record, State, Status};

/// The keys `GET /containers/json` filters by.
pub const FILTER_KEYS: [&str; 10] = [
    "status", "name", "id", "ancestor", "label", "exited", "network", "volume", "before", "since",
];

/// Docker's container states, the values `status` takes.
const STATES: [&str; 7] = [
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

// ANCHOR: list
/// `GET /containers/json`: the summaries of the containers asked for, as
/// the JSON body of the answer.
pub fn list(containers: &Containers, req: &Request) -> Result<Vec<u8>, EngineError> {
    let filters = super::filters::parse(req.param("filters"), &FILTER_KEYS)?;
    check(&filters)?;
    let limit = match req.param("limit").filter(|l| !l.is_empty()) {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| EngineError::BadRequest(format!("invalid limit {l:?}: use a number")))?,
        None => -1,
    };
    // As in Docker: a status filter, or a limit, lists stopped ones too.
    let every = req.flag("all") || filters.get("status").is_some() || limit > 0;
    let all = containers.list()?;
    // Newest first, as `docker ps` shows them: records say the second and
    // the nanosecond; a record without them (an older daemon's) has the
    // bundle's mtime (written once, at create), one `statx` more. (What is
    // sorted is references: a line is hundreds of bytes to move.)
    let mut listed: Vec<&(Record, State)> = all.iter().collect();
    listed.sort_by_cached_key(|(c, _)| {
        let nanos = match c.created_nanos {
            0 => std::fs::metadata(containers.dir(&c.id).join("config.json"))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.subsec_nanos()),
            n => n,
        };
        std::cmp::Reverse((c.created, nanos))
    });
    let position = |key: &str| {
        listed
            .iter()
            .position(|(c, _)| c.id.starts_with(key) || c.name == key)
            .ok_or_else(|| EngineError::NotFound(format!("No such container: {key}")))
    };
    // The host's networks, read once for all the lines.
    let networks = super::daemon::NetworkView::now(containers.root());
    let mut window = 0..listed.len();
    if let Some([before]) = filters.get("before") {
        window.start = window.start.max(position(before)? + 1);
    }
    if let Some([since]) = filters.get("since") {
        window.end = window.end.min(position(since)?);
    }
    let shown: Vec<Line> = listed
        .get(window)
        .unwrap_or_default()
        .iter()
        .filter(|(c, s)| (every || s.status == Status::Running) && keeps(&filters, c, s))
        .take(if limit > 0 {
            limit as usize
        } else {
            usize::MAX
        })
        .map(|(c, s)| summary(containers, &networks, c, s))
        .collect();
    // Plain strings and numbers: it fails only as writing the answer would.
    // Sized for the lines (about 350 bytes each), so it is not copied as
    // it grows.
    let mut body = Vec::with_capacity(shown.len().saturating_mul(400).saturating_add(2));
    serde_json::to_writer(&mut body, &shown).map_err(|e| EngineError::Connection(e.into()))?;
    Ok(body)
}
// ANCHOR_END: list

/// Refuses what cannot be answered truthfully, before anything is listed.
fn check(filters: &Filters) -> Result<(), EngineError> {
    let bad = |why: String| Err(EngineError::BadRequest(why));
    if filters.get("label").is_some() {
        return bad(
            "invalid filter 'label': caixa's containers have no labels yet, so none would match"
                .into(),
        );
    }
    for value in filters.get("status").unwrap_or_default() {
        if !STATES.contains(&value.as_str()) {
            return bad(format!(
                "invalid filter 'status={value}': use one of {}",
                STATES.join(", ")
            ));
        }
    }
    for value in filters.get("exited").unwrap_or_default() {
        if value.parse::<i32>().is_err() {
            return bad(format!("invalid filter 'exited={value}': use an exit code"));
        }
    }
    for key in ["before", "since"] {
        if filters.get(key).is_some_and(|v| v.len() > 1) {
            return bad(format!("invalid filter '{key}': give one container"));
        }
    }
    Ok(())
}

/// Docker's word for a container's state.
fn state_word(s: &State) -> &'static str {
    if s.restarting {
        "restarting"
    } else {
        s.status.as_str()
    }
}

/// Whether container `c` in state `s` passes every filter.
fn keeps(f: &Filters, c: &Record, s: &State) -> bool {
    f.matches("status", |v| v == state_word(s))
        && f.matches("name", |v| c.name.contains(v.trim_start_matches('/')))
        && f.matches("id", |v| c.id.starts_with(v))
        && f.matches("ancestor", |v| same_image(&c.image, v))
        && f.matches("exited", |v| {
            s.status == Status::Exited && v.parse() == Ok(s.exit_code)
        })
        && f.matches("network", |v| c.networks().contains(&v))
        && f.matches("volume", |v| {
            c.mounts
                .iter()
                .any(|m| m.volume.as_deref() == Some(v) || m.destination == std::path::Path::new(v))
        })
}

// ANCHOR: summary
/// One line of `docker ps` (and of `system df`'s containers), in the shape
/// of Docker's API. A struct, not a `serde_json::Value`: serde writes it
/// straight out, where a `Value` is a tree of maps built, written and freed
/// for every line (with 500 containers, a large share of a listing).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Line<'a> {
    id: &'a str,
    names: [String; 1],
    image: &'a str,
    command: String,
    created: u64,
    state: &'static str,
    status: String,
    ports: Vec<Port>,
    mounts: Vec<Value>,
    /// Always `{}`: caixa's containers have no labels yet.
    labels: Empty,
    host_config: HostConfig<'a>,
    network_settings: NetworkSettings<'a>,
}

/// An object with nothing in it.
#[derive(Serialize)]
struct Empty {}

/// A line's `HostConfig`: its network mode.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HostConfig<'a> {
    network_mode: &'a str,
}

/// A line's `NetworkSettings`: each network it is on, and its address there.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkSettings<'a> {
    networks: std::collections::BTreeMap<&'a str, Address>,
}

/// An address on one network (empty while not running).
#[derive(Serialize)]
struct Address {
    #[serde(rename = "IPAddress")]
    ip_address: String,
}

/// A published port, as Docker's `Ports` entries.
#[derive(Serialize)]
struct Port {
    #[serde(rename = "IP")]
    ip: String,
    #[serde(rename = "PrivatePort")]
    private_port: u16,
    #[serde(rename = "PublicPort")]
    public_port: u16,
    #[serde(rename = "Type")]
    protocol: String,
}

/// One line of `docker ps`: what the record and state say, with the
/// addresses the host's networks give it.
pub fn summary<'a>(
    containers: &Containers,
    networks: &super::daemon::NetworkView,
    c: &'a Record,
    s: &State,
) -> Line<'a> {
    let network = if c.network.is_empty() {
        "bridge"
    } else {
        &c.network
    };
    Line {
        id: &c.id,
        names: [format!("/{}", c.name)],
        image: &c.image,
        command: c.command.join(" "),
        created: c.created,
        state: s.status.as_str(),
        status: status_text(s),
        ports: ports(containers, c),
        mounts: c.mounts.iter().map(|m| m.to_json()).collect(),
        labels: Empty {},
        host_config: HostConfig {
            network_mode: network,
        },
        network_settings: NetworkSettings {
            networks: networks
                .addresses(c, s)
                .into_iter()
                .map(|(name, ip_address)| (name, Address { ip_address }))
                .collect(),
        },
    }
}
// ANCHOR_END: summary

/// Docker's `Status` words for state `s`: `Up 5 seconds`, `Exited (0)`…
fn status_text(s: &State) -> String {
    match s.status {
        Status::Running => format!(
            "Up {} seconds",
            super::state::now().saturating_sub(s.started)
        ),
        Status::Exited if s.restarting => format!("Restarting ({})", s.exit_code),
        Status::Exited => format!("Exited ({})", s.exit_code),
        Status::Created => "Created".to_string(),
    }
}

/// The ports it publishes (`-p`), from its record (or, for a record of an
/// older daemon, its bundle's annotation), as Docker's `Ports` entries.
fn ports(containers: &Containers, c: &Record) -> Vec<Port> {
    let list = match &c.publish {
        Some(list) => std::borrow::Cow::Borrowed(list.as_str()),
        None => std::borrow::Cow::Owned(published_in_bundle(containers, c)),
    };
    list.split(',')
        .filter_map(|p| p.parse::<crate::net::portmap::Publish>().ok())
        .map(|p| Port {
            ip: p.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string()),
            private_port: p.container_port,
            public_port: p.host_port,
            protocol: p.protocol.to_string(),
        })
        .collect()
}

/// The bundle's list of published ports: what records written before they
/// kept their own copy give.
fn published_in_bundle(containers: &Containers, c: &Record) -> String {
    /// Only the bundle's annotations: serde skips the rest of its ~15 KB
    /// (the seccomp profile is most of it) without building it.
    #[derive(serde::Deserialize, Default)]
    struct Annotated {
        #[serde(default)]
        annotations: std::collections::HashMap<String, String>,
    }
    let mut config: Annotated = std::fs::read(containers.dir(&c.id).join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    config
        .annotations
        .remove(crate::bundle::ANNOTATION_PUBLISH)
        .unwrap_or_default()
}
