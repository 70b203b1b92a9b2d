//! The daemon: images and containers behind an HTTP API on a unix socket.
//!
//! The endpoints are a subset of the Docker Engine API (v1.41), with its
//! paths, query parameters and JSON field names, so what a student learns
//! here reads the same in Docker's documentation:
//!
//! | endpoint | does |
//! |---|---|
//! | `GET /_ping`, `GET /version` | is it there, what is it |
//! | `GET /images/json` | the images of the store |
//! | `POST /images/create?fromImage=REF` | pull (progress streamed as JSON lines) |
//! | `POST /images/load` | load a `docker save` or OCI archive (the body) |
//! | `POST /containers/create?name=N` | record a container (Docker's JSON body) |
//! | `POST /containers/ID/start` | spawn its monitor, which runs it |
//! | `POST /containers/ID/attach` | `101`, then its output as frames, live |
//! | `GET /containers/ID/json` | inspect: its config and state |
//! | `POST /containers/ID/wait` | block until it exits: `{"StatusCode":N}` |
//! | `GET /containers/ID/logs` | its output, in Docker's frames (`follow=1`: live) |
//! | `POST /containers/ID/stop?t=S` | SIGTERM, then SIGKILL after S seconds |
//! | `GET /containers/json?all=1` | the containers, running (or all) |
//! | `DELETE /containers/ID?force=1` | forget it (stopping it first if forced) |
//!
//! HTTP is [`super::server`]'s (hyper); each request runs its handler on
//! a thread of its own; everything the daemon knows is on disk
//! ([`super::state`]), so the threads share nothing but paths.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

use super::EngineError;
use super::server::{self, Limits, Request, RequestBody, Responder};
use super::state::{Config, Containers, State, alive, now};
use crate::image::store::Store;
use crate::registry::client::Options;

/// What a daemon serves.
#[derive(Debug, Clone)]
pub struct Daemon {
    /// The image store and engine state root (`--root`).
    pub root: PathBuf,
    /// The step binary (re-executed as monitor and runner).
    pub exe: PathBuf,
    /// How to reach registries.
    pub options: Options,
}

// ANCHOR: serve
/// Listens on `socket` (mode 0660: root and its group may drive the
/// daemon) and serves its requests, within `limits`, forever.
pub fn serve(daemon: Daemon, socket: &Path, limits: Limits) -> Result<(), EngineError> {
    if UnixStream::connect(socket).is_ok() {
        return Err(EngineError::Conflict(format!(
            "a daemon already listens on {}: stop it first, or choose another --socket",
            socket.display()
        )));
    }
    // Nobody answers: a socket file left by a daemon that died.
    let _ = std::fs::remove_file(socket);
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| EngineError::Io(format!("{}: {e}", dir.display())))?;
    }
    let listener = UnixListener::bind(socket)
        .map_err(|e| EngineError::Io(format!("bind {}: {e}", socket.display())))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| EngineError::Io(format!("chmod {}: {e}", socket.display())))?;
    Containers::open(&daemon.root)?;
    Store::open(&daemon.root).map_err(|e| EngineError::Io(e.to_string()))?;
    // Not in the directory it was started from, which may go away: every
    // path the daemon uses is absolute.
    std::env::set_current_dir("/").map_err(|e| EngineError::Io(format!("chdir /: {e}")))?;
    eprintln!("caixa daemon: listening on {}", socket.display());
    let handler = move |req: &Request, body: &mut RequestBody, out: &mut Responder| {
        handle(&daemon, req, body, out);
    };
    server::serve(listener, limits, Arc::new(handler))
        .map_err(|e| EngineError::Io(format!("serving {}: {e}", socket.display())))
}
// ANCHOR_END: serve

/// Answers one request: a response, or an error as Docker's
/// `{"message": …}` with the error's status, if the head has not gone out
/// yet (after it, an arm sends its errors in the body, as Docker does).
fn handle(daemon: &Daemon, req: &Request, body: &mut RequestBody, out: &mut Responder) {
    if let Err(e) = route(daemon, req, body, out) {
        if !out.sent() {
            let _ = reply_error(out, &e);
        }
    }
}

fn reply_error(out: &mut Responder, error: &EngineError) -> std::io::Result<()> {
    out.json(error.status(), &json!({ "message": error.to_string() }))
}

fn reply_json(out: &mut Responder, status: u16, value: &Value) -> Result<(), EngineError> {
    out.json(status, value)
        .map_err(|e| EngineError::Io(e.to_string()))
}

// ANCHOR: route
fn route(
    daemon: &Daemon,
    req: &Request,
    body: &mut RequestBody,
    out: &mut Responder,
) -> Result<(), EngineError> {
    let containers = Containers::open(&daemon.root)?;
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => out
            .respond(200, "text/plain", b"OK")
            .map_err(|e| EngineError::Io(e.to_string())),
        ("GET", ["version"]) => reply_json(
            out,
            200,
            &json!({
                "Version": env!("CARGO_PKG_VERSION"), "ApiVersion": "1.41",
                "MinAPIVersion": "1.41", "Os": "linux",
                "Arch": crate::registry::pull::this_platform().trim_start_matches("linux/"),
                "Components": [{ "Name": "caixa", "Version": env!("CARGO_PKG_VERSION") }],
            }),
        ),
        ("GET", ["images", "json"]) => reply_json(out, 200, &images(daemon)?),
        ("POST", ["images", "create"]) => pull(daemon, req, out),
        ("POST", ["images", "load"]) => load(daemon, req, body, out),
        ("POST", ["containers", "create"]) => {
            let json = read_json(body)?;
            let config = create(daemon, &containers, req.param("name"), &json)?;
            reply_json(out, 201, &json!({ "Id": config.id, "Warnings": [] }))
        }
        ("GET", ["containers", "json"]) => {
            let all = req.flag("all");
            let list: Vec<Value> = containers
                .list()?
                .into_iter()
                .filter(|(_, s)| all || s.status == "running")
                .map(|(c, s)| summary(&c, &s))
                .collect();
            reply_json(out, 200, &Value::Array(list))
        }
        ("GET", ["containers", key, "json"]) => {
            let config = containers.find(key)?;
            let state = containers.state(&config.id)?;
            reply_json(out, 200, &inspect(&config, &state))
        }
        ("POST", ["containers", key, "start"]) => {
            let config = containers.find(key)?;
            if start(daemon, &containers, &config)? {
                out.respond(204, "text/plain", b"")
            } else {
                out.respond(304, "text/plain", b"")
            }
            .map_err(|e| EngineError::Io(e.to_string()))
        }
        ("POST", ["containers", key, "wait"]) => {
            // The head at once, the body when it has exited: the Docker CLI
            // starts a container only once its wait has been answered.
            let config = containers.find(key)?;
            let mut out = out
                .stream(200, "application/json")
                .map_err(|e| EngineError::Io(e.to_string()))?;
            // The status line is sent: an error now travels in the body.
            let body = match wait(&containers, &config.id, None) {
                Ok(state) => json!({ "StatusCode": state.exit_code }),
                Err(e) => json!({ "StatusCode": 125, "Error": { "Message": e.to_string() } }),
            };
            let _ = writeln!(out, "{body}");
            Ok(())
        }
        ("POST", ["containers", key, "stop"]) => {
            let config = containers.find(key)?;
            let grace = req.param("t").and_then(|t| t.parse().ok()).unwrap_or(10);
            stop(&containers, &config.id, Duration::from_secs(grace))?;
            out.respond(204, "text/plain", b"")
                .map_err(|e| EngineError::Io(e.to_string()))
        }
        ("POST", ["containers", key, "attach"]) => {
            // Docker's attach takes over the connection ("hijack"): after
            // `101 UPGRADED` the output flows as frames until the
            // container ends. Attached before start, a client sees it all.
            let config = containers.find(key)?;
            let mut raw = out
                .upgrade("application/vnd.docker.raw-stream")
                .map_err(|e| EngineError::Io(e.to_string()))?;
            follow(&containers, &config.id, &mut raw)
        }
        ("GET", ["containers", key, "logs"]) if req.flag("follow") => {
            let config = containers.find(key)?;
            let mut out = out
                .stream(200, "application/vnd.docker.raw-stream")
                .map_err(|e| EngineError::Io(e.to_string()))?;
            follow(&containers, &config.id, &mut out)
        }
        ("GET", ["containers", key, "logs"]) => {
            let config = containers.find(key)?;
            let mut framed = Vec::new();
            for (stream, file) in [(1u8, "stdout"), (2, "stderr")] {
                let wanted = req.param(file).is_none() || req.flag(file);
                let data = std::fs::read(containers.dir(&config.id).join(file)).unwrap_or_default();
                if wanted && !data.is_empty() {
                    framed.extend(frame(stream, &data));
                }
            }
            out.respond(200, "application/vnd.docker.raw-stream", &framed)
                .map_err(|e| EngineError::Io(e.to_string()))
        }
        ("DELETE", ["containers", key]) => {
            let config = containers.find(key)?;
            if containers.state(&config.id)?.status == "running" {
                if !req.flag("force") {
                    return Err(EngineError::Conflict(format!(
                        "container {} is running: stop it first, or remove it with -f",
                        config.name
                    )));
                }
                stop(&containers, &config.id, Duration::ZERO)?;
            }
            containers.remove(&config.id)?;
            out.respond(204, "text/plain", b"")
                .map_err(|e| EngineError::Io(e.to_string()))
        }
        _ => Err(EngineError::NotFound(format!(
            "page not found: {} {} is not part of caixa's API",
            req.method, req.path
        ))),
    }
}
// ANCHOR_END: route

fn read_json(body: &mut RequestBody) -> Result<Value, EngineError> {
    let mut bytes = Vec::new();
    body.limit(server::MAX_JSON)
        .read_to_end(&mut bytes)
        .map_err(|e| body_error(e, "reading the body"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::BadRequest(format!("the body is not valid JSON: {e}")))
}

// ANCHOR: frame
/// Docker's frame of a multiplexed stream: stream (1 stdout, 2 stderr),
/// three zero bytes, the length (big-endian), the bytes.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    for chunk in data.chunks(u32::MAX as usize) {
        out.extend_from_slice(&[stream, 0, 0, 0]);
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}
// ANCHOR_END: frame

fn images(daemon: &Daemon) -> Result<Value, EngineError> {
    let store = Store::open(&daemon.root).map_err(|e| EngineError::Io(e.to_string()))?;
    let mut by_digest: Vec<(String, Vec<String>)> = Vec::new();
    for (name, digest) in store.images().map_err(|e| EngineError::Io(e.to_string()))? {
        match by_digest.iter_mut().find(|(d, _)| *d == digest) {
            Some((_, names)) => names.push(name),
            None => by_digest.push((digest, vec![name])),
        }
    }
    Ok(Value::Array(
        by_digest
            .into_iter()
            // Docker's summary has these fields always; typed clients
            // (bollard) refuse one without them. -1: not counted.
            .map(|(digest, names)| {
                json!({
                    "Id": digest, "RepoTags": names, "RepoDigests": [], "ParentId": "",
                    "Created": 0, "Size": 0, "SharedSize": -1, "Labels": {}, "Containers": -1,
                })
            })
            .collect(),
    ))
}

/// A request body that could not be read: over its limit (413), or cut.
fn body_error(e: std::io::Error, doing: &str) -> EngineError {
    if e.kind() == std::io::ErrorKind::FileTooLarge {
        EngineError::TooLarge(e.to_string())
    } else {
        EngineError::BadRequest(format!("{doing}: {e}"))
    }
}

fn pull(daemon: &Daemon, req: &Request, out: &mut Responder) -> Result<(), EngineError> {
    let image = req
        .param("fromImage")
        .ok_or_else(|| EngineError::BadRequest("fromImage is missing".into()))?;
    let name = match req.param("tag").filter(|t| !t.is_empty()) {
        Some(tag) if !image.contains('@') => format!("{image}:{tag}"),
        _ => image.to_string(),
    };
    let reference = crate::registry::reference::Reference::parse(&name)
        .map_err(|e| EngineError::BadRequest(e.to_string()))?;
    let store = Store::open(&daemon.root).map_err(|e| EngineError::Io(e.to_string()))?;
    let mut out = out
        .stream(200, "application/json")
        .map_err(|e| EngineError::Io(e.to_string()))?;
    // From here on the status is sent: errors travel as Docker's
    // {"error": …} line, which clients print and exit non-zero on.
    let progress = crate::registry::progress::Progress::Lines;
    let line = match crate::registry::pull::pull(
        &store,
        &reference,
        &crate::registry::pull::this_platform(),
        &daemon.options,
        &progress,
    ) {
        Ok(pulled) => json!({ "status": format!("pulled {pulled}") }),
        Err(e) => json!({ "error": e.to_string(), "errorDetail": { "message": e.to_string() } }),
    };
    let _ = writeln!(out, "{line}");
    Ok(())
}

fn load(
    daemon: &Daemon,
    req: &Request,
    body: &mut RequestBody,
    out: &mut Responder,
) -> Result<(), EngineError> {
    let store = Store::open(&daemon.root).map_err(|e| EngineError::Io(e.to_string()))?;
    let dir = tempfile_dir(&daemon.root)?;
    let path = dir.join("archive.tar");
    let result = (|| {
        let mut file = std::fs::File::create(&path).map_err(|e| EngineError::Io(e.to_string()))?;
        // hyper checks a sized body's length: one cut short is an error.
        std::io::copy(&mut body.limit(server::MAX_BODY), &mut file)
            .map_err(|e| body_error(e, "reading the archive"))?;
        crate::image::load::load(&store, &path, req.param("name"))
            .map_err(|e| EngineError::BadRequest(e.to_string()))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let names = result?;
    let stream: String = names
        .iter()
        .map(|n| format!("Loaded image: {n}\n"))
        .collect();
    reply_json(out, 200, &json!({ "stream": stream }))
}

/// A fresh private directory under the root's `engine/tmp`.
fn tempfile_dir(root: &Path) -> Result<PathBuf, EngineError> {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = root
        .join("engine/tmp")
        .join(format!("{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| EngineError::Io(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

// ANCHOR: create
/// Records a container from Docker's create body: the fields become the
/// `run` options they stand for, checked now by the same parser the runner
/// will use, so a bad value is a 400 at create, not a failure at start.
fn create(
    daemon: &Daemon,
    containers: &Containers,
    name: Option<&str>,
    body: &Value,
) -> Result<Config, EngineError> {
    let image = body["Image"]
        .as_str()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| EngineError::BadRequest("Image is missing".into()))?;
    let reference = crate::registry::reference::Reference::parse(image)
        .map_err(|e| EngineError::BadRequest(e.to_string()))?;
    let store = Store::open(&daemon.root).map_err(|e| EngineError::Io(e.to_string()))?;
    let local = if store.resolve(image).is_ok() {
        image.to_string()
    } else {
        reference.store_name()
    };
    if store.resolve(&local).is_err() {
        return Err(EngineError::NotFound(format!("No such image: {image}")));
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let host = &body["HostConfig"];
    // Refused rather than ignored: a user asking for a volume must not
    // believe their data is kept.
    let mounts = ["Binds", "Mounts"]
        .iter()
        .any(|k| host[*k].as_array().is_some_and(|a| !a.is_empty()))
        || body["Volumes"].as_object().is_some_and(|v| !v.is_empty());
    if mounts {
        return Err(EngineError::BadRequest(
            "volumes and bind mounts are not supported by caixa's engine yet: run without -v"
                .into(),
        ));
    }
    let mut args = Vec::new();
    let mut opt = |flag: &str, value: String| {
        args.push(flag.to_string());
        args.push(value);
    };
    for e in strings(&body["Env"]) {
        opt("-e", e);
    }
    if let Some(dir) = body["WorkingDir"].as_str().filter(|d| !d.is_empty()) {
        opt("-w", dir.to_string());
    }
    if let Some(h) = body["Hostname"].as_str().filter(|h| !h.is_empty()) {
        opt("--hostname", h.to_string());
    }
    match host["NetworkMode"].as_str() {
        Some("none") => opt("--network", "none".into()),
        Some("" | "default" | "bridge") | None => {}
        Some(other) => {
            return Err(EngineError::BadRequest(format!(
                "network mode {other:?}: caixa has bridge and none"
            )));
        }
    }
    if let Some(m) = host["Memory"].as_u64().filter(|m| *m > 0) {
        opt("--memory", m.to_string());
    }
    if let Some(n) = host["NanoCpus"].as_u64().filter(|n| *n > 0) {
        opt("--cpus", format!("{}", n as f64 / 1e9));
    }
    if let Some(p) = host["PidsLimit"].as_i64().filter(|p| *p > 0) {
        opt("--pids-limit", p.to_string());
    }
    for cap in strings(&host["CapAdd"]) {
        opt("--cap-add", cap);
    }
    for cap in strings(&host["CapDrop"]) {
        opt("--cap-drop", cap);
    }
    // "80/tcp": [{"HostIp": "", "HostPort": "8080"}]  →  -p 8080:80/tcp
    for (port, bindings) in host["PortBindings"].as_object().into_iter().flatten() {
        for b in bindings.as_array().into_iter().flatten() {
            let host_port = b["HostPort"].as_str().unwrap_or("");
            let ip = b["HostIp"].as_str().filter(|i| !i.is_empty());
            opt(
                "-p",
                match ip {
                    Some(ip) => format!("{ip}:{host_port}:{port}"),
                    None => format!("{host_port}:{port}"),
                },
            );
        }
    }
    let command = strings(&body["Cmd"]);
    args.push(local);
    args.extend(command.iter().cloned());
    // The runner's own parser, now.
    crate::cli::ImageRunLine::try_parse_from(&args)
        .and_then(|line| {
            line.run
                .network
                .to_network()
                .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, e))?;
            line.run
                .limits
                .to_limits()
                .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, e))?;
            Ok(())
        })
        .map_err(|e| {
            EngineError::BadRequest(e.to_string().lines().next().unwrap_or("").to_string())
        })?;
    // Docker's rule for names: they appear in ps and in error lines.
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.len() <= 128
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(EngineError::BadRequest(format!(
                "invalid container name {n:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
            )));
        }
    }
    let id = random_id();
    let config = Config {
        name: match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => format!("caixa-{}", &id[..12]),
        },
        id,
        image: image.to_string(),
        command,
        args,
        created: now(),
        auto_remove: host["AutoRemove"].as_bool().unwrap_or(false),
    };
    containers.create(&config)?;
    Ok(config)
}
// ANCHOR_END: create

// ANCHOR: start
/// Spawns the monitor of a created container in a session of its own, so
/// it outlives this daemon; waits until it says the container runs.
/// `false` when it ran already (Docker answers 304).
fn start(daemon: &Daemon, containers: &Containers, config: &Config) -> Result<bool, EngineError> {
    if containers.state(&config.id)?.status != "created" {
        return Ok(false);
    }
    let log = std::fs::File::create(containers.dir(&config.id).join("monitor.log"))
        .map_err(|e| EngineError::Io(e.to_string()))?;
    let mut command = std::process::Command::new(&daemon.exe);
    command
        .arg("--root")
        .arg(&daemon.root)
        .args(["monitor", &config.id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // SAFETY: setsid(2) is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut monitor = command
        .spawn()
        .map_err(|e| EngineError::Io(format!("cannot start the monitor: {e}")))?;
    // Reap it when it ends (if this daemon still runs then).
    std::thread::spawn(move || monitor.wait());
    let mut pause = Backoff::default();
    let begin = std::time::Instant::now();
    while begin.elapsed() < Duration::from_secs(5) {
        if containers.state(&config.id)?.status != "created" {
            return Ok(true);
        }
        pause.sleep();
    }
    Err(EngineError::Io(format!(
        "the monitor of {} did not start: see {}",
        config.name,
        containers.dir(&config.id).join("monitor.log").display()
    )))
}
// ANCHOR_END: start

// ANCHOR: follow
/// Sends container `id`'s output as frames, as it grows, until the
/// container has exited and everything is sent.
fn follow(containers: &Containers, id: &str, out: &mut dyn Write) -> Result<(), EngineError> {
    let mut sent = [0u64; 2];
    let mut pause = Backoff::default();
    loop {
        // Read the state first: output written before it says `exited` is
        // then sure to be seen below.
        let ended = containers.state(id)?.status == "exited";
        let dir = containers.files(id);
        let mut any = false;
        for (i, (stream, name)) in [(1u8, "stdout"), (2, "stderr")].into_iter().enumerate() {
            let Ok(mut file) = std::fs::File::open(dir.join(name)) else {
                continue;
            };
            let _ = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(sent[i]));
            let mut data = Vec::new();
            let _ = file.read_to_end(&mut data);
            if !data.is_empty() {
                sent[i] += data.len() as u64;
                any = true;
                if out.write_all(&frame(stream, &data)).is_err() {
                    return Ok(()); // the client went away
                }
            }
        }
        if ended && !any {
            return Ok(());
        }
        if any {
            pause = Backoff::default();
        }
        pause.sleep();
    }
}
// ANCHOR_END: follow

/// Pauses between looks at a file another process writes: 1 ms at first,
/// doubling up to 20 ms, so a quick container is seen quickly and a long
/// one costs little. (inotify would wake us exactly; polling is simpler to
/// read, and these files are on the daemon's own disk.)
#[derive(Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(Duration::from_millis(1))
    }
}

impl Backoff {
    fn sleep(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_millis(20));
    }
}

/// Waits until container `id` has exited (at most `limit`); its state.
fn wait(containers: &Containers, id: &str, limit: Option<Duration>) -> Result<State, EngineError> {
    let begin = std::time::Instant::now();
    let mut pause = Backoff::default();
    loop {
        let state = containers.state(id)?;
        if state.status == "exited" || state.status == "created" && limit.is_some() {
            return Ok(state);
        }
        if limit.is_some_and(|l| begin.elapsed() >= l) {
            return Ok(state);
        }
        pause.sleep();
    }
}

/// SIGTERM to the runner (which passes it to the container), then SIGKILL
/// after `grace`; returns when it has exited.
fn stop(containers: &Containers, id: &str, grace: Duration) -> Result<(), EngineError> {
    use nix::sys::signal::{Signal, kill};
    let state = containers.state(id)?;
    if state.status != "running" {
        return Ok(());
    }
    let runner = nix::unistd::Pid::from_raw(state.pid);
    if !grace.is_zero() {
        let _ = kill(runner, Signal::SIGTERM);
        if wait(containers, id, Some(grace))?.status == "exited" {
            return Ok(());
        }
    }
    if alive(state.pid) {
        let _ = kill(runner, Signal::SIGKILL);
    }
    wait(containers, id, Some(Duration::from_secs(30))).map(|_| ())
}

/// `docker inspect`'s shape, the fields caixa knows (the Docker CLI reads
/// `Config.Tty` before `logs`, to know whether the output is framed).
fn inspect(c: &Config, s: &State) -> Value {
    json!({
        "Id": c.id, "Name": format!("/{}", c.name), "Created": c.created.to_string(),
        "Image": c.image, "Args": c.command,
        "State": {
            "Status": s.status, "Running": s.status == "running", "Pid": s.pid,
            "ExitCode": s.exit_code, "StartedAt": s.started.to_string(),
            "FinishedAt": s.finished.to_string(),
        },
        "Config": { "Image": c.image, "Cmd": c.command, "Tty": false },
        "HostConfig": { "AutoRemove": c.auto_remove },
    })
}

fn summary(c: &Config, s: &State) -> Value {
    let status = match s.status.as_str() {
        "running" => format!("Up {} seconds", now().saturating_sub(s.started)),
        "exited" => format!("Exited ({})", s.exit_code),
        other => other.to_string(),
    };
    json!({
        "Id": c.id, "Names": [format!("/{}", c.name)], "Image": c.image,
        "Command": c.command.join(" "), "Created": c.created,
        "State": s.status, "Status": status,
    })
}

/// 64 hex digits from the kernel's random source.
fn random_id() -> String {
    let mut bytes = [0u8; 32];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if filled.is_err() {
        // Never the only source of uniqueness: the time and pid differ too.
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        bytes.copy_from_slice(&sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            seed.as_bytes(),
        )));
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
