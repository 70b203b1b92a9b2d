//! The client's views of the whole host: `ps` (filters, `-q`, `--format`),
//! `events`, `info` and `system df`. The daemon answers JSON; what the
//! Docker CLI does on its side (templates, tables, sizes for people), the
//! client does here.

use caixa::engine::EngineError;
use caixa::engine::client::Client;
use caixa::engine::template;
use caixa::registry::client::percent_encode;
use serde_json::Value;

/// `--filter k=v` (repeatable) as Docker's filters JSON,
/// `{"k":{"v":true}}`; empty when there are none.
fn filters_json(pairs: &[String]) -> Result<String, EngineError> {
    let mut filters = serde_json::Map::new();
    for pair in pairs {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            EngineError::BadRequest(format!(
                "invalid --filter {pair:?}: use KEY=VALUE, e.g. status=exited"
            ))
        })?;
        let set = filters
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        set[value] = Value::Bool(true);
    }
    if filters.is_empty() {
        return Ok(String::new());
    }
    Ok(percent_encode(&Value::Object(filters).to_string()))
}

/// The fields `ps --format` knows, with their table headers.
const PS_FIELDS: [(&str, &str); 12] = [
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
];

/// The part of a container summary (`GET /containers/json`, one a line)
/// that `ps` prints. Parsed into this rather than a `serde_json::Value`:
/// with 500 containers, building and dropping a tree of every line's
/// whole summary (its `HostConfig`, its `NetworkSettings`…) was most of
/// the client's time; serde skips what is not named here without keeping it.
/// A field that is `null` (a Go daemon writes an empty list or map so)
/// reads as missing: empty.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Summary {
    #[serde(deserialize_with = "or_empty")]
    id: String,
    #[serde(deserialize_with = "or_empty")]
    image: String,
    #[serde(deserialize_with = "or_empty")]
    command: String,
    #[serde(deserialize_with = "or_empty")]
    created: u64,
    #[serde(deserialize_with = "or_empty")]
    status: String,
    #[serde(deserialize_with = "or_empty")]
    state: String,
    #[serde(deserialize_with = "or_empty")]
    names: Vec<String>,
    #[serde(deserialize_with = "or_empty")]
    ports: Vec<Value>,
    #[serde(deserialize_with = "or_empty")]
    mounts: Vec<Value>,
    #[serde(deserialize_with = "or_empty")]
    network_settings: SummaryNetworks,
}

/// `NetworkSettings.Networks` of a summary: only the names are printed.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SummaryNetworks {
    #[serde(deserialize_with = "or_empty")]
    networks: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
}

/// A value, or its empty default where the JSON has `null`.
fn or_empty<'de, D, T>(from: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(from)?.unwrap_or_default())
}

/// One field of one container summary, as `docker ps` prints it.
fn ps_field(c: &Summary, field: &str) -> String {
    match field {
        "ID" => c.id.chars().take(12).collect(),
        "Image" => c.image.clone(),
        "Status" => c.status.clone(),
        "State" => c.state.clone(),
        "Command" => format!("{:?}", c.command),
        "CreatedAt" => caixa::engine::daemon::rfc3339(c.created),
        "RunningFor" => {
            let now = caixa::engine::state::now();
            format!("{} seconds ago", now.saturating_sub(c.created))
        }
        "Ports" => c
            .ports
            .iter()
            .map(|p| {
                format!(
                    "{}:{}->{}/{}",
                    p["IP"].as_str().unwrap_or_default(),
                    p["PublicPort"],
                    p["PrivatePort"],
                    p["Type"].as_str().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        "Names" => c
            .names
            .iter()
            .map(|n| n.trim_start_matches('/'))
            .collect::<Vec<_>>()
            .join(","),
        "Mounts" => c
            .mounts
            .iter()
            .map(|m| match m["Name"].as_str() {
                Some(name) => name.to_string(),
                None => m["Source"].as_str().unwrap_or_default().to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        "Networks" => c
            .network_settings
            .networks
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(), // Labels: caixa's containers have none
    }
}

// ANCHOR: client_ps
/// `step11 ps [-a] [-q] [-n N] [--filter k=v]… [--format T]`.
pub(crate) fn ps(
    client: &Client,
    all: bool,
    quiet: bool,
    last: Option<u32>,
    filters: &[String],
    format: Option<&str>,
) -> Result<(), EngineError> {
    // The template is checked before anything is asked.
    let names: Vec<&str> = PS_FIELDS.iter().map(|(f, _)| *f).collect();
    let template = format
        .map(|f| template::parse(f, &names))
        .transpose()
        .map_err(|e| EngineError::BadRequest(e.to_string()))?;
    let mut target = format!(
        "/containers/json?all={}&filters={}",
        u8::from(all),
        filters_json(filters)?
    );
    if let Some(n) = last {
        target.push_str(&format!("&limit={n}"));
    }
    let list: Vec<Summary> = client
        .json_as::<Option<Vec<Summary>>>("GET", &target)?
        .unwrap_or_default();
    // One string, printed at once: `println!` per line would be a `write`
    // per line (stdout flushes at each newline).
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    if quiet {
        for c in &list {
            line(ps_field(c, "ID"));
        }
    } else if let Some(template) = template {
        if template.table {
            let header = |f: &str| {
                PS_FIELDS
                    .iter()
                    .find(|(name, _)| *name == f)
                    .map_or(f, |(_, h)| h)
                    .to_string()
            };
            line(template.render(&header));
        }
        for c in &list {
            line(template.render(&|f| ps_field(c, f)));
        }
    } else {
        line("CONTAINER ID\tIMAGE\tCOMMAND\tSTATUS\tNAMES".to_string());
        for c in &list {
            let fields: Vec<String> = ["ID", "Image", "Command", "Status", "Names"]
                .iter()
                .map(|f| ps_field(c, f))
                .collect();
            line(fields.join("\t"));
        }
    }
    print!("{out}");
    Ok(())
}
// ANCHOR_END: client_ps

/// A time as a user gives it — seconds since the epoch (`1700000000.5`),
/// RFC 3339 (`2026-12-03T09:00:00Z`), or a duration ago (`10m`) — as the
/// API takes it, `SECONDS.NANOSECONDS` (the Docker CLI converts the same way).
pub(crate) fn api_time(text: &str) -> Result<String, EngineError> {
    use std::time::{SystemTime, UNIX_EPOCH};
    let bad = || {
        EngineError::BadRequest(format!(
            "invalid time {text:?}: use seconds since the epoch, RFC 3339 (2026-12-03T09:00:00Z) or a duration ago (10m)"
        ))
    };
    // Seconds as they are: digits, and at most nine after a point (it goes
    // into a query string as it is).
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !secs.is_empty() && digits(secs) && secs.parse::<u64>().is_ok() {
        if frac.len() > 9 || !digits(frac) {
            return Err(bad());
        }
        return Ok(text.to_string());
    }
    let at = if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        t
    } else if let Ok(ago) = humantime::parse_duration(text) {
        SystemTime::now().checked_sub(ago).ok_or_else(bad)?
    } else {
        return Err(bad());
    };
    // A time before the epoch is none the API can say.
    let d = at.duration_since(UNIX_EPOCH).map_err(|_| bad())?;
    Ok(format!("{}.{:09}", d.as_secs(), d.subsec_nanos()))
}

/// One event as `docker events` prints it: time, type, action, actor,
/// attributes.
fn event_line(e: &Value) -> String {
    let nanos = e["timeNano"].as_u64().unwrap_or(0);
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
    let attributes: Vec<String> = e["Actor"]["Attributes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    format!(
        "{} {} {} {} ({})",
        humantime::format_rfc3339_nanos(time),
        e["Type"].as_str().unwrap_or_default(),
        e["Action"].as_str().unwrap_or_default(),
        e["Actor"]["ID"].as_str().unwrap_or_default(),
        attributes.join(", ")
    )
}

// ANCHOR: client_events
/// `step11 events [--since T] [--until T] [--filter k=v]…`: prints each
/// event as it comes (the daemon streams one JSON line per event).
pub(crate) fn events(
    client: &Client,
    since: Option<&str>,
    until: Option<&str>,
    filters: &[String],
) -> Result<(), EngineError> {
    let mut target = format!("/events?filters={}", filters_json(filters)?);
    for (key, value) in [("since", since), ("until", until)] {
        if let Some(value) = value {
            target.push_str(&format!("&{key}={}", api_time(value)?));
        }
    }
    let mut pending = Vec::new();
    client.call("GET", &target, None, &mut |chunk| {
        pending.extend_from_slice(chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Ok(event) = serde_json::from_slice::<Value>(&line) {
                println!("{}", event_line(&event));
            }
        }
    })?;
    Ok(())
}
// ANCHOR_END: client_events

/// Bytes for people, as Docker prints them (decimal units: 1 MB = 10⁶ B).
fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.3}{}", units[unit])
    }
}

/// `step11 info`: what the daemon says of itself and its host.
pub(crate) fn info(client: &Client) -> Result<(), EngineError> {
    let i = client.json("GET", "/info", None)?;
    let s = |k: &str| match &i[k] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let security: Vec<String> = i["SecurityOptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_str())
        .map(|o| o.trim_start_matches("name=").to_string())
        .collect();
    println!("Server Version: {}", s("ServerVersion"));
    println!("Containers: {}", s("Containers"));
    println!(" Running: {}", s("ContainersRunning"));
    println!(" Paused: {}", s("ContainersPaused"));
    println!(" Stopped: {}", s("ContainersStopped"));
    println!("Images: {}", s("Images"));
    println!("Storage Driver: {}", s("Driver"));
    println!("Cgroup Driver: {}", s("CgroupDriver"));
    println!("Cgroup Version: {}", s("CgroupVersion"));
    println!("Default Runtime: {}", s("DefaultRuntime"));
    println!("Security Options: {}", security.join(", "));
    println!("Kernel Version: {}", s("KernelVersion"));
    println!("Operating System: {}", s("OperatingSystem"));
    println!("OSType: {}", s("OSType"));
    println!("Architecture: {}", s("Architecture"));
    println!("CPUs: {}", s("NCPU"));
    println!(
        "Total Memory: {}",
        human(i["MemTotal"].as_u64().unwrap_or(0))
    );
    println!("Name: {}", s("Name"));
    println!("ID: {}", s("ID"));
    println!("Docker Root Dir: {}", s("DockerRootDir"));
    Ok(())
}

// ANCHOR: client_df
/// `step11 system df [-v]`: the disk the engine uses, by kind; with `-v`,
/// each image, container and volume.
pub(crate) fn system_df(client: &Client, verbose: bool) -> Result<(), EngineError> {
    let df = client.json("GET", "/system/df", None)?;
    let list = |k: &str| df[k].as_array().cloned().unwrap_or_default();
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let (images, containers, volumes) = (list("Images"), list("Containers"), list("Volumes"));
    let active_images = images.iter().filter(|i| n(i, "Containers") > 0).count();
    let unused_images: u64 = images
        .iter()
        .filter(|i| n(i, "Containers") == 0)
        .map(|i| n(i, "Size") - n(i, "SharedSize"))
        .sum();
    let running = |c: &Value| c["State"] == "running";
    let rw: u64 = containers.iter().map(|c| n(c, "SizeRw")).sum();
    let stopped_rw: u64 = containers
        .iter()
        .filter(|c| !running(c))
        .map(|c| n(c, "SizeRw"))
        .sum();
    let used = |v: &Value| n(&v["UsageData"], "RefCount") > 0;
    let size = |v: &Value| n(&v["UsageData"], "Size");
    let volume_bytes: u64 = volumes.iter().map(size).sum();
    let unused_volumes: u64 = volumes.iter().filter(|v| !used(v)).map(size).sum();
    println!("TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE");
    let rows = [
        (
            "Images",
            images.len(),
            active_images,
            n(&df, "LayersSize"),
            unused_images,
        ),
        (
            "Containers",
            containers.len(),
            containers.iter().filter(|c| running(c)).count(),
            rw,
            stopped_rw,
        ),
        (
            "Local Volumes",
            volumes.len(),
            volumes.iter().filter(|v| used(v)).count(),
            volume_bytes,
            unused_volumes,
        ),
        ("Build Cache", 0, 0, 0, 0),
    ];
    for (what, total, active, size, reclaimable) in rows {
        println!(
            "{what}\t{total}\t{active}\t{}\t{}",
            human(size),
            human(reclaimable)
        );
    }
    if verbose {
        println!("\nIMAGE\tID\tSIZE\tSHARED SIZE\tCONTAINERS");
        for i in &images {
            let id = i["Id"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("sha256:");
            println!(
                "{}\t{}\t{}\t{}\t{}",
                i["RepoTags"][0].as_str().unwrap_or("<none>"),
                &id[..id.len().min(12)],
                human(n(i, "Size")),
                human(n(i, "SharedSize")),
                n(i, "Containers")
            );
        }
        println!("\nCONTAINER ID\tIMAGE\tSIZE\tSTATUS\tNAMES");
        for c in &containers {
            let line = <Summary as serde::Deserialize>::deserialize(c).unwrap_or_default();
            println!(
                "{}\t{}\t{}\t{}\t{}",
                ps_field(&line, "ID"),
                ps_field(&line, "Image"),
                human(n(c, "SizeRw")),
                ps_field(&line, "Status"),
                ps_field(&line, "Names")
            );
        }
        println!("\nVOLUME NAME\tLINKS\tSIZE");
        for v in &volumes {
            println!(
                "{}\t{}\t{}",
                v["Name"].as_str().unwrap_or_default(),
                n(&v["UsageData"], "RefCount"),
                human(size(v))
            );
        }
    }
    Ok(())
}
// ANCHOR_END: client_df

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_with_null_lists_prints_as_empty() {
        let lines: Vec<Summary> = serde_json::from_str(
            r#"[{"Id":"0123456789abcdef","Names":null,"Ports":null,"Mounts":null,
                 "Created":null,"NetworkSettings":{"Networks":null},"Status":"Up 1 second"},
                {"Id":"fedcba9876543210","Names":["/web"],"NetworkSettings":null,
                 "Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"}],
                 "HostConfig":{"NetworkMode":"bridge"}}]"#,
        )
        .unwrap();
        assert_eq!(ps_field(&lines[0], "ID"), "0123456789ab");
        assert_eq!(ps_field(&lines[0], "Names"), "");
        assert_eq!(ps_field(&lines[0], "Ports"), "");
        assert_eq!(ps_field(&lines[0], "Networks"), "");
        assert_eq!(ps_field(&lines[0], "Status"), "Up 1 second");
        assert_eq!(ps_field(&lines[1], "Names"), "web");
        assert_eq!(ps_field(&lines[1], "Ports"), "0.0.0.0:8080->80/tcp");
    }
}
