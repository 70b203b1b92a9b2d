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
//! | `POST /images/NAME/tag`, `DELETE /images/NAME`, `GET /images/NAME/json`, `…/history` | tag, remove, inspect, history |
//! | `GET /images/NAME/get`, `GET /images/get?names=…` | save: an OCI layout with Docker's `manifest.json` |
//! | `POST /auth`, `POST /images/NAME/push?tag=T` | log in (check credentials), push with the client's `X-Registry-Auth` |
//! | `POST /containers/create?name=N` | record a container (Docker's JSON body) |
//! | `POST /containers/ID/start` | spawn its shim, which runs it |
//! | `POST /containers/ID/attach` | `101`, then as frames what it wrote (`logs=1`) and what it writes from now on (`stream=1`); `stdin=1`: the client's input to its stdin |
//! | `POST /containers/ID/resize?h=R&w=C` | set the size of its terminal |
//! | `GET /containers/ID/json` | inspect: its config and state |
//! | `POST /containers/ID/wait?condition=C` | block until it does not run, runs and exits, or is removed: `{"StatusCode":N}` ([`super::wait`]) |
//! | `GET /containers/ID/logs` | its output, in Docker's frames (`follow=1`: live; `since`, `until`: a window of time) |
//! | `POST /containers/ID/stop?t=S` | SIGTERM, then SIGKILL after S seconds |
//! | `POST /containers/ID/kill?signal=S` | send a signal (default SIGKILL) |
//! | `POST /containers/ID/restart?t=S`, `/rename?name=N`, `POST /containers/prune` | stop then start; a new name; remove every stopped one |
//! | `GET /containers/json?all=1&limit=N&filters=F` | the containers, running (or all), filtered ([`super::ps`]) |
//! | `GET /events?since=T&until=T&filters=F` | what happened, then what happens, as JSON lines ([`super::events`]) |
//! | `GET /info`, `GET /system/df` | the engine and its host ([`super::info`]); the disk it uses ([`super::usage`]) |
//! | `DELETE /containers/ID?force=1&v=1` | forget it (stopping it first if forced; `v`: its anonymous volumes too) |
//! | `POST /containers/ID/exec`, `POST /exec/EID/start`, `GET /exec/EID/json` | run a second process in it, its output, its exit code |
//! | `POST /exec/EID/resize?h=R&w=C` | set the size of an exec's terminal (`-t`) |
//! | `POST /volumes/create`, `GET /volumes`, `GET /volumes/NAME` | make, list, inspect volumes |
//! | `DELETE /volumes/NAME`, `POST /volumes/prune` | remove one (409 in use), or every unused one |
//! | `GET`/`HEAD`/`PUT /containers/ID/archive?path=P` | `cp`: a tar of P (its stat in a header), or a tar unpacked into P |
//! | `GET /containers/ID/top`, `GET /containers/ID/stats?stream=0\|1` | its processes; what it uses (its cgroup's counters) |
//!
//! HTTP is [`super::server`]'s (hyper); each request runs its handler on
//! a thread of its own; everything the daemon knows is on disk
//! ([`super::state`]), so the threads share nothing but paths.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::EngineError;
use super::bridge::Outlet;
use super::events::{self, Event};
use super::launcher::{Launcher, NoFork, Spawned};
use super::log;
use super::server::{self, Limits, Request, RequestBody, Responder};
use super::shim;
use super::state::{Containers, Record, State, Status, now};
use super::terminal::DetachKeys;
use super::volumes::Volumes;
use super::wait;
use super::watch::Waiter;
use crate::image::store::Store;
use crate::registry::client::Options;

/// What a daemon serves.
#[derive(Debug, Clone)]
pub struct Daemon {
    /// The image store and engine state root (`--root`).
    pub root: PathBuf,
    /// The step binary (the shim launcher's, and each shim's without one).
    pub exe: PathBuf,
    /// How to reach registries.
    pub options: Options,
    /// How long a created container's start is kept made up to its exec,
    /// waiting for `start` (see [`park`]); zero: not at all.
    park: Duration,
    /// The fork server that starts shims, once [`serve`] has started it.
    launcher: Arc<Launcher>,
}

/// [`Daemon::park`] unless told otherwise: longer than a client takes
/// between `create` and `start`, short enough that a container created
/// and never started does not keep a process for long.
pub const PARK: Duration = Duration::from_secs(10);

impl Daemon {
    /// A daemon of the store at `root`, `exe` its own binary; its shim
    /// launcher is started by [`serve`].
    pub fn new(root: PathBuf, exe: PathBuf, options: Options) -> Daemon {
        Daemon {
            root,
            exe,
            options,
            park: PARK,
            launcher: Arc::default(),
        }
    }

    /// The same daemon, its created containers' starts kept ready for
    /// `park` (`--park-seconds`; zero: none).
    pub fn parking_for(self, park: Duration) -> Daemon {
        Daemon { park, ..self }
    }
}

// ANCHOR: serve
/// Listens on `socket` (mode 0660: root and its group may drive the
/// daemon) and serves its requests, within `limits`, forever.
pub fn serve(daemon: Daemon, socket: &Path, limits: Limits) -> Result<(), EngineError> {
    // Modes as given, whatever umask the daemon was started under.
    super::state::set_umask();
    if UnixStream::connect(socket).is_ok() {
        return Err(EngineError::Conflict(format!(
            "a daemon already listens on {}: stop it first, or choose another --socket",
            socket.display()
        )));
    }
    // Nobody answers: a socket file left by a daemon that died.
    let _ = std::fs::remove_file(socket);
    if let Some(dir) = socket.parent() {
        super::state::create_dirs(dir, 0o755)?;
    }
    Containers::open(&daemon.root)?;
    Store::open(&daemon.root)?;
    // What shims killed since the last daemon left: swept before anyone
    // can ask for a new container.
    sweep_leftovers();
    sweep_scratch(&daemon.root);
    // One thread so far: the launcher is a program of its own (see
    // `super::launcher` for why it cannot be a fork of the daemon).
    daemon.launcher.start(&daemon.exe, &daemon.root);
    restore(&daemon);
    let listener = UnixListener::bind(socket).map_err(super::state::io(socket))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(super::state::io(socket))?;
    // Not in the directory it was started from, which may go away: every
    // path the daemon uses is absolute.
    std::env::set_current_dir("/").map_err(super::state::io(Path::new("/")))?;
    eprintln!("caixa daemon: listening on {}", socket.display());
    let handler = move |req: &Request, body: &mut RequestBody, out: &mut Responder| {
        handle(&daemon, req, body, out);
    };
    server::serve(listener, limits, Arc::new(handler)).map_err(super::state::io(socket))
}
// ANCHOR_END: serve

// ANCHOR: sweep_leftovers
/// Undoes what dead shims left on the host: the records of their cgroups
/// and mounts ([`crate::leftovers`]) and their network leases, with the
/// port rules, veths and files each stands for ([`crate::net::ipam::sweep`]).
/// A shim tears all of it down as its container ends; this is for shims
/// that could not (`SIGKILL`, a crash, the OOM killer): at the daemon's
/// start, when it finds a shim dead, and when the launcher reaps one that
/// a signal ended. Shims themselves do not sweep as they start (see
/// `Spec::sweep_leftovers`).
pub(super) fn sweep_leftovers() {
    let trace = crate::trace::Trace::new(false);
    let lines = crate::leftovers::sweep()
        .into_iter()
        .chain(crate::net::ipam::sweep(&crate::net::state_dir(), &trace));
    for line in lines {
        eprintln!("caixa daemon: {line}");
    }
}
// ANCHOR_END: sweep_leftovers

/// Removes what an earlier daemon of this root left in `engine/tmp` when
/// it ended in the middle of a request: a build's context and steps
/// (`build-PID-ID`), a load's files (`PID-N`). A request cleans its own up
/// as it ends; a daemon killed first cannot. Only what the engine names so
/// goes, and only where that daemon (`PID`) is dead: another daemon on
/// this root keeps its own. Never through a link.
fn sweep_scratch(root: &Path) {
    let dir = root.join("engine/tmp");
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = scratch_owner(&name) else {
            continue;
        };
        let alive = owner.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        });
        if alive {
            continue;
        }
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        match gone {
            Ok(()) => eprintln!(
                "caixa daemon: removed {}, left by a daemon that ended in the middle of a request",
                path.display()
            ),
            Err(e) => eprintln!(
                "caixa daemon: cannot remove {}, left by an earlier daemon: {e}",
                path.display()
            ),
        }
    }
}

/// Whose scratch `name` is: `None` if the engine does not name anything
/// so; `Some(None)` for a build's of an older daemon, which named no pid.
fn scratch_owner(name: &str) -> Option<Option<i32>> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = name.strip_prefix("build-") {
        return Some(match rest.split_once('-') {
            Some((pid, _)) if digits(pid) => pid.parse().ok(),
            _ => None,
        });
    }
    match name.split_once('-') {
        Some((pid, n)) if digits(pid) && digits(n) => Some(pid.parse().ok()),
        _ => None,
    }
}

// ANCHOR: restore
/// What `--restart` owes when a daemon starts, by Docker's rules. A
/// container whose shim died while it ran (a crash, the host's restart)
/// starts again under `always` and `unless-stopped`; an `always` one that
/// was stopped by hand starts too (Docker's "restarted when the daemon
/// restarts"); `unless-stopped` ones stopped by hand, and `on-failure`
/// ones, stay as they are. Running ones keep their shims: a daemon's
/// restart is nothing to them.
fn restore(daemon: &Daemon) {
    let Ok(containers) = Containers::open(&daemon.root) else {
        return;
    };
    for (record, state) in containers.list().unwrap_or_default() {
        let ever_started = state.started > 0;
        let again = match record.restart.name.as_str() {
            "always" => state.lost || (state.status == Status::Exited && ever_started),
            "unless-stopped" => state.lost,
            _ => false,
        };
        // A shim alive holds it still (it may be pausing between restarts).
        if !again || super::state::shim_alive(&containers.dir(&record.id)) {
            continue;
        }
        match start(daemon, &containers, &record) {
            Ok(_) => eprintln!(
                "caixa daemon: started {} again (--restart {})",
                record.name, record.restart.name
            ),
            Err(e) => eprintln!("caixa daemon: could not start {} again: {e}", record.name),
        }
    }
}
// ANCHOR_END: restore

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
    out.json(status, value).map_err(EngineError::Connection)
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
            .map_err(EngineError::Connection),
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
        ("GET", ["images", "get"]) => {
            let names: Vec<String> = req
                .query
                .iter()
                .filter(|(k, _)| k == "names")
                .map(|(_, v)| v.clone())
                .collect();
            super::images::save(daemon, &names, out)
        }
        ("GET", ["images", name @ .., "get"]) => {
            super::images::save(daemon, &[name.join("/")], out)
        }
        ("GET", ["images", name @ .., "json"]) => {
            reply_json(out, 200, &super::images::inspect(daemon, &name.join("/"))?)
        }
        ("GET", ["images", name @ .., "history"]) => {
            reply_json(out, 200, &super::images::history(daemon, &name.join("/"))?)
        }
        ("POST", ["images", name @ .., "tag"]) => {
            super::images::tag(daemon, &name.join("/"), req)?;
            out.respond(201, "text/plain", b"")
                .map_err(EngineError::Connection)
        }
        ("POST", ["images", name @ .., "push"]) => {
            super::images::push(daemon, &name.join("/"), req, out)
        }
        ("DELETE", ["images", name @ ..]) => {
            let answer = super::images::remove(daemon, &name.join("/"), req.flag("force"))?;
            reply_json(out, 200, &answer)
        }
        ("POST", ["auth"]) => {
            let json = read_json(body)?;
            reply_json(out, 200, &super::images::login(daemon, &json)?)
        }
        ("POST", ["build"]) => super::build::serve_build(&daemon.root, &daemon.exe, req, body, out),
        ("POST", ["commit"]) => super::build::serve_commit(&daemon.root, req, out),
        ("POST", ["containers", "create"]) => {
            let json = read_json(body)?;
            let config = create(daemon, &containers, req.param("name"), &json)?;
            reply_json(out, 201, &json!({ "Id": config.id, "Warnings": [] }))
        }
        ("GET", ["containers", "json"]) => {
            let body = super::ps::list(&containers, req)?;
            out.respond(200, "application/json", &body)
                .map_err(EngineError::Connection)
        }
        ("GET", ["events"]) => serve_events(daemon, req, out),
        ("GET", ["info"]) => reply_json(out, 200, &super::info::info(&daemon.root)?),
        ("GET", ["system", "df"]) => reply_json(out, 200, &super::usage::system_df(&daemon.root)?),
        ("GET", ["containers", key, "json"]) => {
            let record = containers.find(key)?;
            let state = containers.state(&record.id)?;
            // What `-p` asked for, from the bundle (a bundle that does
            // not read shows none, as for a container without a network).
            let publish = containers
                .spec(&record.id)
                .ok()
                .and_then(|spec| match (spec.network, spec.user_network) {
                    (Some(net), _) => Some(net.publish),
                    (None, user_mode) => user_mode.map(|net| net.publish),
                })
                .unwrap_or_default();
            reply_json(out, 200, &inspect(&daemon.root, &record, &state, &publish))
        }
        ("GET" | "HEAD", ["containers", key, "archive"]) => {
            let record = containers.find(key)?;
            super::archive::serve_get(&containers, &record, req, out)
        }
        ("PUT", ["containers", key, "archive"]) => {
            let record = containers.find(key)?;
            super::archive::serve_put(&daemon.root, &containers, &record, req, body, out)
        }
        ("GET", ["containers", key, "top"]) => {
            let record = containers.find(key)?;
            let answer = super::top::top(&containers, &record, req.param("ps_args"))?;
            reply_json(out, 200, &answer)
        }
        ("GET", ["containers", key, "stats"]) => {
            let record = containers.find(key)?;
            super::stats::serve(&containers, &record, req, out)
        }
        ("POST", ["containers", key, "start"]) => {
            let record = containers.find(key)?;
            let started = start(daemon, &containers, &record);
            if started.is_err() && record.auto_remove {
                forget_unstarted(daemon, &containers, &record);
            }
            if started? {
                out.respond(204, "text/plain", b"")
            } else {
                out.respond(304, "text/plain", b"")
            }
            .map_err(EngineError::Connection)
        }
        ("POST", ["containers", key, "wait"]) => {
            // The head at once, the body when the condition holds: the
            // Docker CLI starts a container only once its wait is answered.
            let config = containers.find(key)?;
            let condition = wait::Condition::parse(req.param("condition"))?;
            let mut out = out
                .stream(200, "application/json")
                .map_err(EngineError::Connection)?;
            // The status line is sent: an error now travels in the body.
            let body = match wait::until(&containers, &config, condition) {
                Ok(state) => json!({ "StatusCode": state.exit_code }),
                Err(e) => json!({ "StatusCode": 125, "Error": { "Message": e.to_string() } }),
            };
            let _ = writeln!(out, "{body}");
            Ok(())
        }
        ("POST", ["containers", key, "stop"]) => {
            let record = containers.find(key)?;
            stop(&containers, &record, grace(req)?)?;
            // Not for one an `rm -f` took away during the grace: its
            // `destroy` was its last event.
            if containers.exists(&record.id) {
                events::record(&daemon.root, &Event::container("stop", &record));
            }
            out.respond(204, "text/plain", b"")
                .map_err(EngineError::Connection)
        }
        ("POST", ["containers", key, "kill"]) => {
            let record = containers.find(key)?;
            let signal = parse_signal(req.param("signal").unwrap_or("SIGKILL"))?;
            // No lifecycle lock: a signal is one request the shim answers
            // in turn, and a `stop` waiting out its grace must not hold a
            // `kill` back (Docker's acts at once).
            if containers.state(&record.id)?.status != Status::Running
                || !shim::send(&containers.dir(&record.id), signal)?
            {
                return Err(EngineError::Conflict(format!(
                    "container {} is not running",
                    record.name
                )));
            }
            let event = Event::container("kill", &record).with("signal", signal as i32);
            events::record(&daemon.root, &event);
            out.respond(204, "text/plain", b"")
                .map_err(EngineError::Connection)
        }
        ("POST", ["containers", key, "attach"]) => {
            // Docker's attach takes over the connection ("hijack"): after
            // `101 UPGRADED` the output flows as frames until the
            // container ends. Attached before start, a client sees it all.
            // With `stdin=1`, what the client sends goes to its stdin.
            let config = containers.find(key)?;
            let keys = match req.param("detachKeys").filter(|k| !k.is_empty()) {
                Some(keys) => DetachKeys::parse(keys)?,
                None => DetachKeys::default(),
            };
            let wanted = Wanted::of(req, &config);
            // What was written before comes only with `logs=1`, as in
            // Docker: `docker attach` shows what comes from now on.
            let replay = req.flag("logs");
            let from = Following::attach(&containers, &config.id, replay)?;
            let mut raw = out
                .upgrade("application/vnd.docker.raw-stream")
                .map_err(EngineError::Connection)?;
            if !req.flag("stream") {
                // No live output asked (Docker's default): the log, if
                // asked, and the end.
                if replay {
                    send_log(&containers, &config.id, &wanted, &mut raw)?;
                }
                return Ok(());
            }
            let stop = AtomicBool::new(false);
            let follow =
                |raw: &mut dyn Outlet| follow(&containers, &config.id, &wanted, raw, &stop, from);
            if !(req.flag("stdin") && config.open_stdin) {
                return follow(&mut raw);
            }
            let input = raw.try_clone().map_err(EngineError::Connection)?;
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    super::attach::forward_input(&containers, &config, input, keys, &stop);
                });
                let result = follow(&mut raw);
                // Its end ends the input side too (it may be reading).
                stop.store(true, Ordering::Relaxed);
                let _ = raw.shutdown(std::net::Shutdown::Both);
                result
            })
        }
        ("POST", ["containers", key, "resize"]) => {
            let record = containers.find(key)?;
            let (rows, cols) = window_size(req)?;
            if !shim::resize(&containers.dir(&record.id), rows, cols)? {
                return Err(EngineError::Conflict(format!(
                    "container {} is not running",
                    record.name
                )));
            }
            out.respond(200, "text/plain", b"")
                .map_err(EngineError::Connection)
        }
        ("GET", ["containers", key, "logs"]) if req.flag("follow") => {
            let config = containers.find(key)?;
            let wanted = Wanted::of(req, &config).within(req)?;
            let mut out = out
                .stream(200, "application/vnd.docker.raw-stream")
                .map_err(EngineError::Connection)?;
            let never = AtomicBool::new(false);
            follow(
                &containers,
                &config.id,
                &wanted,
                &mut out,
                &never,
                Following::Log,
            )
        }
        ("GET", ["containers", key, "logs"]) => {
            let config = containers.find(key)?;
            let wanted = Wanted::of(req, &config).within(req)?;
            let mut out = out
                .stream(200, "application/vnd.docker.raw-stream")
                .map_err(EngineError::Connection)?;
            send_log(&containers, &config.id, &wanted, &mut out)
        }
        ("DELETE", ["containers", key]) => {
            let record = containers.find(key)?;
            remove(
                daemon,
                &containers,
                &record,
                req.flag("force"),
                req.flag("v"),
            )?;
            out.respond(204, "text/plain", b"")
                .map_err(EngineError::Connection)
        }
        ("POST", ["containers", key, "restart"]) => {
            let record = containers.find(key)?;
            restart(daemon, &containers, &record, grace(req)?)?;
            out.respond(204, "text/plain", b"")
                .map_err(EngineError::Connection)
        }
        ("POST", ["containers", key, "rename"]) => {
            let record = containers.find(key)?;
            let name = req.param("name").unwrap_or_default();
            rename(&containers, &record.id, name.trim_start_matches('/'))?;
            out.respond(204, "text/plain", b"")
                .map_err(EngineError::Connection)
        }
        ("POST", ["containers", "prune"]) => {
            no_filters(req, "container prune")?;
            let gone = prune(daemon, &containers)?;
            let answer = json!({ "ContainersDeleted": gone, "SpaceReclaimed": 0 });
            reply_json(out, 200, &answer)
        }
        ("POST", ["containers", key, "exec"]) => {
            let record = containers.find(key)?;
            let json = read_json(body)?;
            let exec = super::exec::create(&daemon.root, &containers, &record, &json)?;
            reply_json(out, 201, &json!({ "Id": exec.id }))
        }
        ("POST", ["exec", id, "start"]) => {
            let exec = super::exec::find(&daemon.root, &containers, id)?;
            let mut bytes = Vec::new();
            body.limit(server::MAX_JSON)
                .read_to_end(&mut bytes)
                .map_err(|e| body_error(e, "reading the body"))?;
            let detach = serde_json::from_slice::<Value>(&bytes)
                .is_ok_and(|v| v["Detach"].as_bool() == Some(true));
            // Taken for this request before any head goes out: a second
            // start hears its 409.
            super::exec::claim(&containers, &exec)?;
            let (exe, root) = (daemon.exe.clone(), daemon.root.clone());
            if detach {
                // Detached: it runs on; its end is recorded all the same.
                let containers = containers.clone();
                std::thread::spawn(move || {
                    super::exec::start(&exe, &root, &containers, exec, None, &mut std::io::sink())
                });
                return out
                    .respond(200, "text/plain", b"")
                    .map_err(EngineError::Connection);
            }
            // Docker's clients hijack the connection (`Upgrade: tcp`);
            // others get an ordinary streamed answer with the same frames.
            if req.headers.contains_key(hyper::header::UPGRADE) {
                let mut raw = out
                    .upgrade("application/vnd.docker.raw-stream")
                    .map_err(EngineError::Connection)?;
                // Both ways: the client's keys in, with -i.
                let input = raw.try_clone().map_err(EngineError::Connection)?;
                super::exec::start(&exe, &root, &containers, exec, Some(input), &mut raw)
            } else {
                let mut stream = out
                    .stream(200, "application/vnd.docker.raw-stream")
                    .map_err(EngineError::Connection)?;
                super::exec::start(&exe, &root, &containers, exec, None, &mut stream)
            }
        }
        ("POST", ["exec", id, "resize"]) => {
            let exec = super::exec::find(&daemon.root, &containers, id)?;
            let (rows, cols) = window_size(req)?;
            super::exec::resize(&exec, rows, cols)?;
            out.respond(200, "text/plain", b"")
                .map_err(EngineError::Connection)
        }
        ("GET", ["exec", id, "json"]) => {
            let exec = super::exec::find(&daemon.root, &containers, id)?;
            reply_json(out, 200, &exec.to_json())
        }
        ("GET", ["networks"]) => reply_json(out, 200, &super::networks::list(&daemon.root)?),
        ("POST", ["networks", "create"]) => {
            let json = read_json(body)?;
            reply_json(out, 201, &super::networks::create(&daemon.root, &json)?)
        }
        ("POST", ["networks", "prune"]) => {
            no_filters(req, "network prune")?;
            reply_json(out, 200, &super::networks::prune(&daemon.root)?)
        }
        ("POST", ["networks", key, verb @ ("connect" | "disconnect")]) => {
            let json = read_json(body)?;
            if *verb == "connect" {
                super::connect::connect(&daemon.root, key, &json)?;
            } else {
                super::connect::disconnect(&daemon.root, key, &json)?;
            }
            out.respond(200, "text/plain", b"")
                .map_err(EngineError::Connection)
        }
        ("GET", ["networks", key]) => {
            reply_json(out, 200, &super::networks::inspect(&daemon.root, key)?)
        }
        ("DELETE", ["networks", key]) => {
            super::networks::remove(&daemon.root, key)?;
            out.respond(204, "text/plain", b"")
                .map_err(EngineError::Connection)
        }
        ("GET", ["volumes"]) => reply_json(out, 200, &super::volumes::list(daemon, req)?),
        ("POST", ["volumes", "create"]) => {
            let json = read_json(body)?;
            reply_json(out, 201, &super::volumes::create(daemon, &json)?)
        }
        ("POST", ["volumes", "prune"]) => {
            no_filters(req, "volume prune")?;
            let (gone, bytes) = Volumes::open(&daemon.root)?.prune(&containers)?;
            let answer = json!({ "VolumesDeleted": gone, "SpaceReclaimed": bytes });
            reply_json(out, 200, &answer)
        }
        ("GET", ["volumes", name]) => {
            reply_json(out, 200, &Volumes::open(&daemon.root)?.inspect(name)?)
        }
        ("DELETE", ["volumes", name]) => {
            let volumes = Volumes::open(&daemon.root)?;
            let locked = volumes.lock()?;
            match volumes.remove(&locked, &containers, name) {
                Err(EngineError::NotFound(_)) if req.flag("force") => Ok(0),
                other => other,
            }?;
            out.respond(204, "text/plain", b"")
                .map_err(EngineError::Connection)
        }
        _ => Err(EngineError::NotFound(format!(
            "page not found: {} {} is not part of caixa's API",
            req.method, req.path
        ))),
    }
}
// ANCHOR_END: route

// ANCHOR: serve_events
/// `GET /events?since=&until=&filters=`: the shared log from `since`, then
/// what happens next, one JSON line per event, until `until` or until the
/// client leaves (which the stream notices within [`events::POLL`]).
fn serve_events(daemon: &Daemon, req: &Request, out: &mut Responder) -> Result<(), EngineError> {
    let time = |key| {
        req.param(key)
            .filter(|t| !t.is_empty())
            .map(events::parse_time)
            .transpose()
    };
    let wanted = events::Wanted {
        since: time("since")?,
        until: time("until")?,
        filters: super::filters::parse(req.param("filters"), &events::FILTER_KEYS)?,
    };
    let mut out = out
        .stream(200, "application/json")
        .map_err(EngineError::Connection)?;
    // The head is sent: a failure now can only end the stream.
    let _ = events::stream(&daemon.root, &wanted, &mut out);
    Ok(())
}
// ANCHOR_END: serve_events

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
    let store = Store::open(&daemon.root)?;
    let mut by_digest: Vec<(String, Vec<String>)> = Vec::new();
    for (name, digest) in store.images()? {
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
            .map(|(digest, mut names)| {
                // An image with no name: Docker's `<none>`, an empty list.
                names.retain(|n| !crate::image::store::is_unnamed(n, &digest));
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

/// The reference a pull names: `fromImage`, and `tag` joined to it. The
/// Docker CLI sends `pull NAME@sha256:…` as `fromImage=NAME` and
/// `tag=sha256:…`: a digest joins with `@`, never as a tag.
fn pulled_name(image: &str, tag: Option<&str>) -> String {
    match tag.filter(|t| !t.is_empty()) {
        Some(_) if image.contains('@') => image.to_string(),
        Some(digest) if digest.contains(':') => format!("{image}@{digest}"),
        Some(tag) => format!("{image}:{tag}"),
        None => image.to_string(),
    }
}

fn pull(daemon: &Daemon, req: &Request, out: &mut Responder) -> Result<(), EngineError> {
    let image = req
        .param("fromImage")
        .ok_or_else(|| EngineError::BadRequest("fromImage is missing".into()))?;
    let name = pulled_name(image, req.param("tag"));
    let reference = crate::registry::reference::Reference::parse(&name)
        .map_err(|e| EngineError::BadRequest(e.to_string()))?;
    // The client's credentials for this pull, if it sent some.
    let options = Options {
        credentials: super::images::registry_auth(req)?,
        ..daemon.options.clone()
    };
    let store = Store::open(&daemon.root)?;
    let mut out = out
        .stream(200, "application/json")
        .map_err(EngineError::Connection)?;
    // From here on the status is sent: errors travel as Docker's
    // {"error": …} line, which clients print and exit non-zero on.
    let progress = crate::registry::progress::Progress::Lines;
    let line = match crate::registry::pull::pull(
        &store,
        &reference,
        &crate::registry::pull::this_platform(),
        &options,
        &progress,
    ) {
        Ok(pulled) => {
            let event = Event::new("image", "pull", &name).with("name", &name);
            events::record(&daemon.root, &event);
            json!({ "status": format!("pulled {pulled}") })
        }
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
    let store = Store::open(&daemon.root)?;
    let dir = tempfile_dir(&daemon.root)?;
    let path = dir.join("archive.tar");
    let result = (|| {
        let mut file = std::fs::File::create(&path).map_err(super::state::io(&path))?;
        // hyper checks a sized body's length: one cut short is an error.
        std::io::copy(&mut body.limit(server::MAX_BODY), &mut file)
            .map_err(|e| body_error(e, "reading the archive"))?;
        crate::image::load::load(&store, &path, req.param("name"))
            .map_err(|e| EngineError::BadRequest(e.to_string()))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let names = result?;
    for name in &names {
        events::record(
            &daemon.root,
            &Event::new("image", "load", name).with("name", name),
        );
    }
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
    super::state::create_dirs(&dir, 0o700)?;
    Ok(dir)
}

/// Docker's rule for names: they appear in ps, in paths and in errors.
fn check_name(n: &str) -> Result<(), EngineError> {
    let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.len() <= 128
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(EngineError::BadRequest(format!(
            "invalid container name {n:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )));
    }
    Ok(())
}

// ANCHOR: create
/// Records a container from Docker's create body: the request becomes a
/// spec (see [`super::request`]), the spec an OCI bundle in the container's
/// directory; its name is reserved first, atomically, so of two creates
/// with one name exactly one wins. Nothing runs yet, but its start may
/// be made up to the exec, to wait for `start` ([`park`]).
fn create(
    daemon: &Daemon,
    containers: &Containers,
    name: Option<&str>,
    body: &Value,
) -> Result<Record, EngineError> {
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        check_name(n)?;
    }
    let store = Store::open(&daemon.root)?;
    let id = random_id();
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => format!("caixa-{}", &id[..12]),
    };
    // A named network: it must exist (404), and it gives the bridge, the
    // subnet and the names the others will reach this container by.
    let joining = super::networks::joining(&daemon.root, body, &name, &id)?;
    let super::request::Plan { mut spec, volumes } =
        super::request::to_spec(&store, &id, body, joining.as_ref())?;
    // A rootless daemon: what needs root on the host is refused here, in
    // its one line, rather than by the shim when the container starts.
    // Limits are given where the system delegated a cgroup v2 group to
    // the daemon's user (see `cgroup::delegation`), and refused elsewhere.
    if crate::rootless::active() {
        crate::rootless::refusal(&spec).map_err(|e| EngineError::BadRequest(e.to_string()))?;
    }
    let (created, created_nanos) = super::state::now_precise();
    let mut record = Record {
        name,
        id,
        image: super::request::image_name(body)?.to_string(),
        command: spec.process.args.clone(),
        created,
        created_nanos,
        auto_remove: body["HostConfig"]["AutoRemove"].as_bool().unwrap_or(false),
        tty: spec.terminal,
        hostname: spec.hostname.clone().unwrap_or_default(),
        mounts: Vec::new(),
        open_stdin: body["OpenStdin"].as_bool() == Some(true),
        stdin_once: body["StdinOnce"].as_bool() == Some(true),
        restart: super::restart::Policy::from_create(body)?,
        network: match (&joining, &spec.user_network) {
            (Some(j), _) => j.network.name.clone(),
            (None, Some(_)) => "pasta".into(),
            (None, None) => String::new(),
        },
        joined: Vec::new(),
        publish: None,
    };
    containers.reserve_name(&record.name, &record.id)?;
    let store = Volumes::open(&daemon.root)?;
    let made = (|| {
        // Under the volumes' lock until the record names them: a volume
        // chosen here cannot be removed before it is seen in use.
        let _locked = store.lock()?;
        let owner = crate::privilege::host_root(&spec);
        let (binds, mounts) = store.resolve(&volumes, owner)?;
        record.mounts = mounts;
        spec.mounts.extend(binds);
        let config = crate::bundle::to_oci(&spec)?;
        let annotations = config.annotations().as_ref();
        let publish = annotations.and_then(|a| a.get(crate::bundle::ANNOTATION_PUBLISH));
        record.publish = Some(publish.cloned().unwrap_or_default());
        let dir = containers.dir(&record.id);
        super::state::create_dirs(&dir, super::state::CONTAINER_DIR_MODE)?;
        crate::bundle::write(&dir, &config)?;
        containers.create(&record)
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(containers.dir(&record.id));
        containers.release_name(&record.name, &record.id);
        store.remove_anonymous(containers, &record.mounts);
        return Err(e);
    }
    events::record(&daemon.root, &Event::container("create", &record));
    park(daemon, containers, &record, &spec);
    Ok(record)
}
// ANCHOR_END: create

// ANCHOR: park
/// Forks the new container's shim now, to make its start up to the exec
/// and wait there ([`shim::PARKED`]): a Docker CLI's `run` sends `start`
/// a few milliseconds after `create` is answered, and by then most of the
/// start is done. Only where nothing made then could be wrong by the
/// start: no network to plug in (an address is a start's, not a
/// create's), none joined, no stdin to attach. Without a launcher, or if
/// it fails, the container starts as before.
fn park(daemon: &Daemon, containers: &Containers, record: &Record, spec: &crate::spec::Spec) {
    let plain = spec.network.is_none()
        && spec.joined_networks.is_empty()
        && spec.user_network.is_none()
        && spec.entered.is_empty()
        && !record.open_stdin;
    if daemon.park.is_zero() || !plain || crate::rootless::active() {
        return;
    }
    let dir = containers.dir(&record.id);
    let marker = dir.join(shim::PARKED);
    if std::fs::write(&marker, daemon.park.as_secs().to_string()).is_err() {
        return;
    }
    let launched = shim_log(&dir).map_err(|e| e.to_string()).and_then(|log| {
        match daemon.launcher.launch(&record.id, log.as_fd()) {
            // It may have forked one: `start` finds out (`shim::go`).
            Ok(_) | Err(NoFork::Unknown(_)) => Ok(()),
            Err(NoFork::Absent) => Err("no shim launcher".to_string()),
            Err(NoFork::Refused(why)) => Err(why),
        }
    });
    if let Err(why) = launched {
        let _ = std::fs::remove_file(&marker);
        eprintln!(
            "caixa daemon: {}: nothing made at create ({why}); its start makes it all",
            record.name
        );
    }
}
// ANCHOR_END: park

/// The shim's `shim.log` in `dir`, opened for appending: its stderr, so
/// a shim that fails says why somewhere a user can read.
fn shim_log(dir: &Path) -> Result<std::fs::File, EngineError> {
    let path = dir.join("shim.log");
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(super::state::io(&path))
}

// ANCHOR: start
/// Spawns the shim of a created (or exited) container in a session of its
/// own, so it outlives this daemon; returns once the shim says the
/// container runs, or why it could not. `false` when it runs already
/// (Docker answers 304). Under the container's lock: of two concurrent
/// starts, the second finds it running.
fn start(daemon: &Daemon, containers: &Containers, record: &Record) -> Result<bool, EngineError> {
    let _locked = containers.lock(&record.id)?;
    let dir = containers.dir(&record.id);
    let status = containers.state(&record.id)?.status;
    // Made up to its exec at `create` (`park`): the word to go on. A parked
    // shim that does not take it (its time is up, or it is being sent
    // away) is seen gone before a shim is made here.
    if status == Status::Created && dir.join(shim::PARKED).exists() {
        if shim::go(&dir) {
            return await_shim(containers, record, None).map(|()| true);
        }
        shim::unpark(&dir);
        shim_gone(containers, record);
        // One killed while parked left its record of what it made.
        sweep_leftovers();
    }
    match status {
        Status::Running => return Ok(false),
        // A shim holds it but has not said `running` yet: a start whose
        // daemon died half-way. That start goes on; this one waits for it.
        Status::Created if super::state::shim_alive(&dir) => {
            return await_shim(containers, record, None).map(|()| false);
        }
        // Its last shim may still be cleaning up after it: let it finish.
        // One that died without cleaning up: sweep what it left.
        Status::Exited => {
            shim_gone(containers, record);
            settle(containers, record)?;
        }
        Status::Created => {}
    }
    // (What dead shims left is swept by the daemon, not by each start: see
    // `sweep_leftovers`; leases by `ipam::Leases::take_back_dead`.)
    // The networks' bridges are the engine's: up before the container.
    super::networks::keep_bridges_up(&daemon.root, record)?;
    containers.set_state(&record.id, &State::default())?;
    let log = shim_log(&dir)?;
    // Forked by the launcher, or else started as a program.
    let shim = match daemon.launcher.launch(&record.id, log.as_fd()) {
        Ok(forked) => Spawned::Forked(forked),
        Err(NoFork::Absent) => Spawned::Exec(spawn_shim(daemon, record, log)?),
        Err(NoFork::Refused(why)) => {
            eprintln!(
                "caixa daemon: the shim launcher forked no shim ({why}); starting it as a program"
            );
            Spawned::Exec(spawn_shim(daemon, record, log)?)
        }
        // It may have forked one before it failed: a second shim would
        // lose the race for shim.lock, and this start would say it failed.
        Err(NoFork::Unknown(_)) if shim_appears(&dir, Duration::from_secs(2)) => {
            return await_shim(containers, record, None).map(|()| true);
        }
        Err(NoFork::Unknown(_)) => Spawned::Exec(spawn_shim(daemon, record, log)?),
    };
    await_shim(containers, record, Some(shim))?;
    Ok(true)
}

/// A `--rm` container whose start failed before its shim could run it:
/// removed here, as its shim would have after a run, since the Docker CLI
/// waits for that (`wait?condition=removed`) before it reports the error.
/// Left alone if a shim holds it: that shim removes it itself.
fn forget_unstarted(daemon: &Daemon, containers: &Containers, record: &Record) {
    let Ok(_locked) = containers.lock(&record.id) else {
        return;
    };
    let dir = containers.dir(&record.id);
    let exists = dir.join("container.json").exists();
    let idle = containers
        .state(&record.id)
        .is_ok_and(|s| s.status != Status::Running);
    if !exists || !idle || super::state::shim_alive(&dir) {
        return;
    }
    match containers.retire(record) {
        Ok(()) => events::record(&daemon.root, &Event::container("destroy", record)),
        Err(e) => eprintln!(
            "caixa daemon: removing {} (--rm) after its failed start: {e}",
            record.name
        ),
    }
    if let Ok(volumes) = Volumes::open(&daemon.root) {
        volumes.remove_anonymous(containers, &record.mounts);
    }
}

/// Whether a shim takes the lock of the container in `dir` within `limit`
/// (after a launcher failed between a request and its answer).
fn shim_appears(dir: &Path, limit: Duration) -> bool {
    let begin = std::time::Instant::now();
    while begin.elapsed() < limit {
        if super::state::shim_alive(dir) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The shim as a program, `exe --root ROOT shim ID`, its stderr `log`.
fn spawn_shim(
    daemon: &Daemon,
    record: &Record,
    log: std::fs::File,
) -> Result<std::process::Child, EngineError> {
    let mut command = std::process::Command::new(&daemon.exe);
    command
        .current_dir("/")
        .arg("--root")
        .arg(&daemon.root)
        .args(["shim", &record.id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // No `pre_exec` here (the shim calls `setsid` itself, first thing): a
    // command without one is spawned by `posix_spawn`, a vfork that shares
    // the daemon's memory until the exec, not a fork that copies the page
    // tables of a daemon with many threads.
    command.spawn().map_err(|source| EngineError::Spawn {
        what: "the shim",
        source,
    })
}

/// Waits until the shim of `record` says the container runs, or why it
/// could not; `shim` is the one we just started (None: another start's).
fn await_shim(
    containers: &Containers,
    record: &Record,
    mut shim: Option<Spawned>,
) -> Result<(), EngineError> {
    let dir = containers.dir(&record.id);
    let mut waiter = Waiter::on_life(&dir);
    loop {
        let mark = waiter.mark();
        // Whether the shim is gone, first: a shim records how things went
        // before it ends, so a state read after that is its last word.
        let gone = match shim.as_mut() {
            Some(spawned) => spawned.ended(),
            // Not ours: gone when nobody holds its lock any more.
            None => (!super::state::shim_alive(&dir)).then(|| "gone".to_string()),
        };
        let state = containers.state(&record.id)?;
        match state.status {
            Status::Running => break,
            // It ran, and ended before we looked: a quick container.
            Status::Exited if state.started != 0 && state.error.is_empty() => break,
            Status::Exited => {
                // Reaped on a thread of its own: with `--rm` the shim takes
                // the container's lock to remove it, and our caller holds
                // that lock until we return (waiting here would deadlock).
                if let Some(shim) = shim {
                    shim.reap_later();
                }
                return Err(EngineError::StartFailed {
                    name: record.name.clone(),
                    code: state.exit_code,
                    reason: state.error,
                });
            }
            Status::Created => {}
        }
        if let Some(status) = gone {
            let log = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
            return Err(EngineError::StartFailed {
                name: record.name.clone(),
                code: 125,
                reason: format!(
                    "its shim ended ({status}) before the container ran: {}",
                    log.lines().last().unwrap_or("see shim.log")
                ),
            });
        }
        waiter.pause(mark, None);
    }
    // Reap ours when it ends (if this daemon still runs then).
    if let Some(shim) = shim {
        shim.reap_later();
    }
    Ok(())
}
// ANCHOR_END: start

/// Wall-clock time `nanos` (since the epoch) as a deadline of the
/// monotonic clock; `None` if it is too far off to say.
fn deadline_of(nanos: u128) -> Option<std::time::Instant> {
    let ahead = nanos.saturating_sub(events::now_nanos());
    let ahead = Duration::from_nanos(u64::try_from(ahead).ok()?);
    std::time::Instant::now().checked_add(ahead)
}

/// Which streams a `logs` or `attach` asked for, and how.
#[derive(Debug)]
struct Wanted {
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    /// A container with a terminal: raw bytes, no frames (Docker's rule;
    /// clients read `Config.Tty` to know).
    raw: bool,
    /// `logs --since` and `--until`, ns since the epoch: only the entries
    /// written from `since` to `until`, both included (Docker's bounds).
    since: Option<u128>,
    until: Option<u128>,
}

impl Wanted {
    fn of(req: &Request, record: &Record) -> Wanted {
        let stream = |name| req.param(name).is_none() || req.flag(name);
        Wanted {
            stdout: stream("stdout"),
            stderr: stream("stderr"),
            timestamps: req.flag("timestamps"),
            raw: record.tty,
            since: None,
            until: None,
        }
    }

    // ANCHOR: log_window
    /// `logs`' time window: `since` and `until` as the Docker CLI sends
    /// them (`SECONDS[.NANOSECONDS]`, converted from `10m` or RFC 3339);
    /// absent, empty or `0`, no bound. A 400 for anything else, before the
    /// answer begins.
    fn within(self, req: &Request) -> Result<Wanted, EngineError> {
        let bound = |name| -> Result<Option<u128>, EngineError> {
            match req.param(name).filter(|t| !t.is_empty()) {
                Some(text) => Ok(Some(events::parse_time(text)?).filter(|t| *t > 0)),
                None => Ok(None),
            }
        };
        Ok(Wanted {
            since: bound("since")?,
            until: bound("until")?,
            ..self
        })
    }

    /// Whether an entry falls inside the window. An entry whose time
    /// cannot be read counts as written at the epoch: before any `since`.
    fn in_window(&self, entry: &log::Entry) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let at = entry.nanos().unwrap_or(0);
        self.since.is_none_or(|since| at >= since) && self.until.is_none_or(|until| at <= until)
    }
    // ANCHOR_END: log_window

    /// The frame of one log entry, or nothing if its stream is not wanted.
    fn frame(&self, entry: &log::Entry) -> Vec<u8> {
        let wanted = match entry.stream {
            log::Stream::Stdout => self.stdout,
            log::Stream::Stderr => self.stderr,
        };
        if !wanted || !self.in_window(entry) {
            return Vec::new();
        }
        let text = if self.timestamps {
            format!("{} {}", entry.time, entry.log)
        } else {
            entry.log.clone()
        };
        if self.raw {
            text.into_bytes()
        } else {
            frame(entry.stream.frame_id(), text.as_bytes())
        }
    }
}

// ANCHOR: send_log
/// Sends container `id`'s log as it is now, a chunk at a time: the
/// daemon's memory stays bounded whatever the log's size, and a client
/// that reads slowly slows the reading (the stream's back-pressure).
fn send_log(
    containers: &Containers,
    id: &str,
    wanted: &Wanted,
    out: &mut dyn Write,
) -> Result<(), EngineError> {
    let path = containers.files(id).join("container.log");
    // Frames gathered into chunks of 64 KiB, not one chunk per line.
    let mut out = std::io::BufWriter::with_capacity(64 << 10, out);
    let mut offset = 0;
    loop {
        let (entries, next) = log::read_from(&path, offset).map_err(EngineError::Connection)?;
        if next == offset {
            break; // the end, as it is now
        }
        offset = next;
        for entry in &entries {
            if out.write_all(&wanted.frame(entry)).is_err() {
                return Ok(()); // the client went away
            }
        }
    }
    let _ = out.flush();
    Ok(())
}
// ANCHOR_END: send_log

// ANCHOR: follow
/// Where a [`follow`] begins, and which end ends it.
enum Following {
    /// `logs -f`: the whole log, then what comes until the container does
    /// not run.
    Log,
    /// `attach`: what comes after `offset` in the log, until the end of the
    /// run going on, or, for a container that did not run when the attach
    /// began (as `start -a` finds it, before its start), `next_run`'s end,
    /// not that of a run that is over.
    Attach {
        offset: u64,
        next_run: Option<wait::NextEnd>,
    },
}

impl Following {
    /// An attach to container `id` from now on (from the log's beginning
    /// with `replay`, Docker's `logs=1`). Taken before the `101` goes out:
    /// a client may send input as soon as it has the answer, and the
    /// container's echo of it comes after "now", never before.
    fn attach(containers: &Containers, id: &str, replay: bool) -> Result<Following, EngineError> {
        let offset = match replay {
            true => 0,
            false => log::end_of_lines(&containers.files(id).join("container.log"))
                .map_err(EngineError::Connection)?,
        };
        let first = containers.state(id)?;
        Ok(Following::Attach {
            offset,
            next_run: (first.status == Status::Exited).then(|| wait::NextEnd::after(&first)),
        })
    }
}

/// Sends container `id`'s output as frames, as its log grows, until the
/// end that `from` waits for and everything is sent, or `stop` is set (the
/// user detached).
fn follow(
    containers: &Containers,
    id: &str,
    wanted: &Wanted,
    out: &mut dyn Outlet,
    stop: &AtomicBool,
    from: Following,
) -> Result<(), EngineError> {
    let _reading = wait::Waiting::on(containers, id);
    // Looked up each time: after `--rm` it is in the tombstone.
    let log = || containers.files(id).join("container.log");
    let (mut offset, mut next_run) = match from {
        Following::Log => (0, None),
        Following::Attach { offset, next_run } => (offset, next_run),
    };
    let mut waiter = Waiter::on(&containers.dir(id));
    while !stop.load(Ordering::Relaxed) {
        let mark = waiter.mark();
        let past_until = wanted
            .until
            .is_some_and(|until| events::now_nanos() > until);
        // Read the state first: the shim writes the log before it records
        // `exited`, so what was written before is sure to be seen below.
        let state = containers.state(id)?;
        let ended = match next_run.as_mut() {
            Some(next) => next.reached(&state),
            None => state.status == Status::Exited,
        };
        let (entries, next) = log::read_from(&log(), offset).map_err(EngineError::Connection)?;
        offset = next;
        for entry in &entries {
            if out.write_all(&wanted.frame(entry)).is_err() {
                return Ok(()); // the client went away
            }
        }
        if ended && entries.is_empty() {
            return Ok(());
        }
        if entries.is_empty() && out.client_gone() {
            return Ok(()); // it left while the container was quiet
        }
        // `logs -f --until T`: nothing after T is sent, so the stream ends
        // once T had passed before a read that reached the log's end, or a
        // line after T: all written by T is out. (A read is a chunk: a
        // long log takes several.)
        let beyond = |entry: &log::Entry| {
            let until = wanted.until.unwrap_or(u128::MAX);
            entry.nanos().is_some_and(|t| t > until)
        };
        if past_until && entries.last().is_none_or(beyond) {
            return Ok(());
        }
        waiter.pause(mark, wanted.until.and_then(deadline_of));
    }
    Ok(())
}
// ANCHOR_END: follow

/// The `h` and `w` of a resize request: rows and columns.
fn window_size(req: &Request) -> Result<(u16, u16), EngineError> {
    let number = |name| {
        req.param(name)
            .and_then(|v| v.parse::<u16>().ok())
            .ok_or_else(|| {
                EngineError::BadRequest(format!(
                    "resize needs {name}, a number of {} from 0 to 65535",
                    if name == "h" { "rows" } else { "columns" }
                ))
            })
    };
    Ok((number("h")?, number("w")?))
}

/// Waits until container `id` does not run (at most `limit`; `None`, or
/// a limit past what a clock can count, without one); its state then.
/// `stop`'s wait: a client's waits are [`wait::until`]'s.
fn stopped_within(
    containers: &Containers,
    id: &str,
    limit: Option<Duration>,
) -> Result<State, EngineError> {
    let deadline = limit.and_then(|limit| std::time::Instant::now().checked_add(limit));
    let mut waiter = Waiter::on_life(&containers.dir(id));
    loop {
        let mark = waiter.mark();
        let state = containers.state(id)?;
        if state.status != Status::Running
            || deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline)
        {
            return Ok(state);
        }
        waiter.pause(mark, deadline);
    }
}

/// The grace of a `stop` or `restart`, `t` in seconds, as Docker reads
/// it: 10 when not given, none at all when negative (`-t -1`: wait for as
/// long as it takes); anything but a whole number is refused.
fn grace(req: &Request) -> Result<Option<Duration>, EngineError> {
    let Some(t) = req.param("t").filter(|t| !t.is_empty()) else {
        return Ok(Some(Duration::from_secs(10)));
    };
    let seconds: i64 = t.parse().map_err(|_| {
        EngineError::BadRequest(format!(
            "invalid t {t:?}: the seconds to wait before the kill, a whole number (-1: no limit)"
        ))
    })?;
    Ok(u64::try_from(seconds).ok().map(Duration::from_secs))
}

// ANCHOR: stop
/// `docker stop`: SIGTERM through the shim (which passes it to the
/// container), then SIGKILL once `grace` is over (`None`: never, Docker's
/// `-t -1`); returns when it has exited. The container's lock is held to
/// send each signal and let go in between: a `kill` or an `rm -f` that
/// comes during the grace acts at once, as in Docker, instead of waiting
/// for it behind the lock. A container removed meanwhile is stopped.
fn stop(
    containers: &Containers,
    record: &Record,
    grace: Option<Duration>,
) -> Result<(), EngineError> {
    use nix::sys::signal::Signal;
    if grace != Some(Duration::ZERO) {
        let Some(locked) = lock_unless_gone(containers, record)? else {
            return Ok(());
        };
        let state = containers.state(&record.id)?;
        if state.status != Status::Running {
            return end_lingering(containers, record, &locked, state);
        }
        kill_event(containers, record, Signal::SIGTERM);
        if !shim::stop(&containers.dir(&record.id), Signal::SIGTERM)? {
            return settle(containers, record);
        }
        drop(locked);
        match stopped_within(containers, &record.id, grace) {
            Ok(state) if state.status == Status::Running => {}
            Ok(_) => {
                shim_gone(containers, record);
                return Ok(());
            }
            Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    let Some(locked) = lock_unless_gone(containers, record)? else {
        return Ok(());
    };
    kill_now(containers, record, &locked)
}

/// The end of a stop, under the container's lock (which `rm -f` holds
/// throughout): SIGKILL, and the wait for its exit and its shim's end.
fn kill_now(
    containers: &Containers,
    record: &Record,
    locked: &super::state::Locked,
) -> Result<(), EngineError> {
    use nix::sys::signal::Signal;
    let state = containers.state(&record.id)?;
    if state.status != Status::Running {
        return end_lingering(containers, record, locked, state);
    }
    // `stop`, not `kill`, on the shim's socket: no restart after this.
    kill_event(containers, record, Signal::SIGKILL);
    if !shim::stop(&containers.dir(&record.id), Signal::SIGKILL)? {
        return settle(containers, record);
    }
    stopped_within(containers, &record.id, Some(Duration::from_secs(30)))?;
    shim_gone(containers, record);
    Ok(())
}

/// A stop of a container that does not run: if its shim lives on, it
/// waits to start it again, or is about to decide whether to; tell it not
/// to. Then what a dead shim left is settled. (`_locked`: the caller holds
/// the container's lock.)
fn end_lingering(
    containers: &Containers,
    record: &Record,
    _locked: &super::state::Locked,
    state: State,
) -> Result<(), EngineError> {
    let dir = containers.dir(&record.id);
    if state.restarting || super::state::shim_alive(&dir) {
        shim::stop(&dir, nix::sys::signal::Signal::SIGKILL)?;
        shim_gone(containers, record);
    }
    settle(containers, record)
}

/// The container's lock, or `None` if the container was removed before
/// it could be taken (its directory, and the lock's file, are gone).
fn lock_unless_gone(
    containers: &Containers,
    record: &Record,
) -> Result<Option<super::state::Locked>, EngineError> {
    match containers.lock(&record.id) {
        Ok(locked) if containers.exists(&record.id) => Ok(Some(locked)),
        Ok(_) | Err(EngineError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Docker's `kill` event, which a stop's signals write too.
fn kill_event(containers: &Containers, record: &Record, signal: nix::sys::signal::Signal) {
    let event = Event::container("kill", record).with("signal", signal as i32);
    events::record(containers.root(), &event);
}
// ANCHOR_END: stop

/// A container whose state says `running` but whose shim is gone: record
/// the end the state view reports, and sweep what the dead shim left
/// (its cgroup, its mount, its lease, rules and veth).
fn settle(containers: &Containers, record: &Record) -> Result<(), EngineError> {
    let view = containers.state(&record.id)?;
    let file: State = super::state::read_json(&containers.dir(&record.id).join("state.json"))
        .map_err(|e| super::state::no_such(e, &record.id))?;
    if file.status == Status::Running && view.status == Status::Exited {
        containers.set_state(
            &record.id,
            &State {
                finished: now(),
                ..view
            },
        )?;
        sweep_leftovers();
    }
    Ok(())
}

/// `docker rm [-f] [-v]`: stops it if forced, then forgets it (and its
/// anonymous volumes with `-v`).
fn remove(
    daemon: &Daemon,
    containers: &Containers,
    record: &Record,
    force: bool,
    volumes: bool,
) -> Result<(), EngineError> {
    let locked = containers.lock(&record.id)?;
    shim::unpark(&containers.dir(&record.id));
    let state = containers.state(&record.id)?;
    // Running, or between two runs of its restart policy: live either way.
    if state.status == Status::Running || state.restarting {
        if !force {
            let what = if state.restarting {
                "restarting"
            } else {
                "running"
            };
            return Err(EngineError::Conflict(format!(
                "container {} is {what}: stop it first, or remove it with -f",
                record.name
            )));
        }
        kill_now(containers, record, &locked)?;
    }
    settle(containers, record)?;
    shim_gone(containers, record);
    // A shim that lives on holds the root mounted in its mount namespace.
    if super::state::shim_alive(&containers.dir(&record.id)) {
        return Err(EngineError::Conflict(format!(
            "the root filesystem of {} is still mounted by its shim: try again once it has cleaned up",
            record.name
        )));
    }
    containers.remove(record)?;
    events::record(&daemon.root, &Event::container("destroy", record));
    if volumes {
        Volumes::open(&daemon.root)?.remove_anonymous(containers, &record.mounts);
    }
    Ok(())
}

/// Waits (a few seconds at most) for the shim of an ended container to
/// end too: it unmounts the root and gives the network back after its
/// container's exit is recorded, and a `rm` or a second `start` must not
/// overtake it.
fn shim_gone(containers: &Containers, record: &Record) {
    // Up to half a minute: a shim told to stop while it was starting the
    // container again (`--restart`) reads the request only once that
    // start is done, then stops it and cleans up, and a slow machine
    // takes its time over both.
    let dir = containers.dir(&record.id);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut waiter = Waiter::on_life(&dir);
    loop {
        let mark = waiter.mark();
        if !super::state::shim_alive(&dir) || std::time::Instant::now() >= deadline {
            break;
        }
        waiter.pause(mark, Some(deadline));
    }
}

/// `docker restart`: stop (SIGTERM, SIGKILL after `grace`) if it runs,
/// then start, as one request.
fn restart(
    daemon: &Daemon,
    containers: &Containers,
    record: &Record,
    grace: Option<Duration>,
) -> Result<(), EngineError> {
    stop(containers, record, grace)?;
    start(daemon, containers, record)?;
    events::record(&daemon.root, &Event::container("restart", record));
    Ok(())
}

/// `docker rename`: the new name is reserved first (of two renames to one
/// name, one wins), then the record says it, then the old name is freed.
/// The record is read again under the lock: the name to free is the one
/// it has now, which a rename that went first may have changed.
fn rename(containers: &Containers, id: &str, name: &str) -> Result<(), EngineError> {
    check_name(name)?;
    let (locked, record) = containers.lock_record(id)?;
    containers.reserve_name(name, &record.id)?;
    let mut renamed = record.clone();
    renamed.name = name.to_string();
    if let Err(e) = containers.rewrite(&locked, &renamed) {
        containers.release_name(name, &record.id);
        return Err(e);
    }
    containers.release_name(&record.name, &record.id);
    let event = Event::container("rename", &renamed).with("oldName", &record.name);
    events::record(containers.root(), &event);
    Ok(())
}

/// `docker container prune`: removes every container that is not running;
/// their ids.
fn prune(daemon: &Daemon, containers: &Containers) -> Result<Vec<String>, EngineError> {
    let mut gone = Vec::new();
    for (record, state) in containers.list()? {
        if state.status != Status::Running
            && remove(daemon, containers, &record, false, false).is_ok()
        {
            gone.push(record.id);
        }
    }
    Ok(gone)
}

/// Refuses a prune's `filters` (`label=…`, `until=…`): caixa's prunes do
/// not read them yet, and a prune that ignored them would delete more than
/// was asked, which cannot be undone. An empty set is no filter.
fn no_filters(req: &Request, what: &str) -> Result<(), EngineError> {
    super::filters::parse(req.param("filters"), &[])
        .map(|_| ())
        .map_err(|_| {
            EngineError::BadRequest(format!(
                "{what} takes no --filter in caixa yet: it would remove more than asked; prune without one, or remove by name"
            ))
        })
}

/// A signal by Docker's names: `SIGTERM`, `TERM` or `15`.
fn parse_signal(text: &str) -> Result<nix::sys::signal::Signal, EngineError> {
    use std::str::FromStr;
    let bad =
        || EngineError::BadRequest(format!("invalid signal {text:?}: use e.g. SIGTERM or 15"));
    if let Ok(n) = text.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| bad());
    }
    let name = if text.starts_with("SIG") {
        text.to_string()
    } else {
        format!("SIG{text}")
    };
    nix::sys::signal::Signal::from_str(&name.to_ascii_uppercase()).map_err(|_| bad())
}

/// A time as Docker writes it (RFC 3339); zero is Docker's zero time.
pub fn rfc3339(secs: u64) -> String {
    if secs == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// `docker inspect`'s shape, the fields caixa knows (the Docker CLI reads
/// `Config.Tty` before `logs`, to know whether the output is framed).
fn inspect(root: &Path, c: &Record, s: &State, publish: &[crate::net::portmap::Publish]) -> Value {
    let (ports, bindings) = super::ports::to_json(publish, s.status == Status::Running);
    let mut settings = network_settings(root, c, s);
    settings["Ports"] = ports;
    json!({
        "Id": c.id, "Name": format!("/{}", c.name), "Created": rfc3339(c.created),
        "Image": c.image, "Path": c.command.first(), "Args": c.command.get(1..),
        "State": {
            "Status": if s.restarting { "restarting" } else { s.status.as_str() },
            "Running": s.status == Status::Running,
            "Pid": s.pid, "ExitCode": s.exit_code, "OOMKilled": s.oom_killed,
            "Restarting": s.restarting,
            "Error": s.error, "StartedAt": rfc3339(s.started),
            "FinishedAt": rfc3339(s.finished),
        },
        "Config": {
            "Image": c.image, "Cmd": c.command, "Tty": c.tty, "Hostname": c.hostname,
            "OpenStdin": c.open_stdin, "StdinOnce": c.stdin_once, "AttachStdin": c.open_stdin,
        },
        "RestartCount": s.restart_count,
        "HostConfig": {
            "AutoRemove": c.auto_remove, "RestartPolicy": c.restart.to_json(),
            "PortBindings": bindings,
        },
        "Mounts": c.mounts.iter().map(|m| m.to_json()).collect::<Vec<_>>(),
        "NetworkSettings": settings,
    })
}

/// Where a running container is on each of its networks: its address on
/// each, from the leases of the network's bridge (a container that is not
/// running holds none). `IPAddress` is its first network's, as Docker's.
pub(crate) fn network_settings(root: &Path, c: &Record, s: &State) -> Value {
    NetworkView::now(root).settings(c, s)
}

/// What the host's networks look like now, read once: the live leases and
/// the user networks' bridges. `ps` lists many containers with one view,
/// so its cost per container is a lookup, not two directory reads.
pub struct NetworkView {
    held: crate::net::ipam::Held,
    networks: Option<super::networks::Networks>,
}

impl NetworkView {
    /// The view now, for the engine rooted at `root`.
    pub fn now(root: &Path) -> NetworkView {
        NetworkView {
            held: crate::net::ipam::Held::now(&crate::net::state_dir()),
            networks: super::networks::Networks::open(root).ok(),
        }
    }

    /// `NetworkSettings` of container `c` in state `s`: each network it is
    /// on, and the address it holds there while it runs.
    pub fn settings(&self, c: &Record, s: &State) -> Value {
        let addresses = self.addresses(c, s);
        let first = addresses
            .first()
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let each: serde_json::Map<String, Value> = addresses
            .into_iter()
            .map(|(name, address)| (name.to_string(), json!({ "IPAddress": address })))
            .collect();
        json!({ "IPAddress": first, "Networks": each })
    }

    /// Each network container `c` is on, first its first, with the
    /// address it holds there while it runs (else an empty one).
    pub fn addresses<'a>(&self, c: &'a Record, s: &State) -> Vec<(&'a str, String)> {
        let held = if s.status == Status::Running {
            self.held.of(&c.id)
        } else {
            Vec::new()
        };
        let bridge_of = |name: &str| match name {
            "bridge" => Some(crate::net::DEFAULT_BRIDGE.to_string()),
            _ => self.networks.as_ref()?.find(name).ok().map(|n| n.bridge),
        };
        c.networks()
            .into_iter()
            .map(|name| {
                let address = bridge_of(name)
                    .and_then(|bridge| held.iter().find(|(b, _, _)| *b == bridge))
                    .map(|(_, address, _)| address.to_string())
                    .unwrap_or_default();
                (name, address)
            })
            .collect()
    }
}

/// 64 hex digits from the kernel's random source, like Docker's ids.
fn random_id() -> String {
    crate::ids::random_hex(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scratch_the_engine_names_is_anyones_to_sweep() {
        assert_eq!(scratch_owner("build-4242-0123456789ab"), Some(Some(4242)));
        assert_eq!(scratch_owner("build-0123456789ab"), Some(None));
        assert_eq!(scratch_owner("4242-7"), Some(Some(4242)));
        for other in ["notes", "4242", "4242-x", "-1", "build"] {
            assert_eq!(scratch_owner(other), None, "{other}");
        }
    }

    #[test]
    fn a_logs_window_holds_both_its_bounds_and_refuses_a_bound_it_cannot_read() {
        let ask = |query: &[(&str, &str)]| Request {
            method: "GET".into(),
            path: "/containers/x/logs".into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers: Default::default(),
        };
        let entry = |time: &str| log::Entry {
            log: "x\n".into(),
            stream: log::Stream::Stdout,
            time: time.into(),
        };
        let at = entry("2026-12-07T10:00:00.5Z");
        assert_eq!(at.nanos(), Some(1_796_637_600_500_000_000));
        let window = |query: &[(&str, &str)]| {
            let all = Wanted {
                stdout: true,
                stderr: true,
                timestamps: false,
                raw: false,
                since: None,
                until: None,
            };
            all.within(&ask(query))
        };
        let inside = |query: &[(&str, &str)]| window(query).unwrap().in_window(&at);
        assert!(inside(&[]));
        assert!(inside(&[("since", "0"), ("until", "")]));
        assert!(inside(&[
            ("since", "1796637600.5"),
            ("until", "1796637600.5")
        ]));
        assert!(!inside(&[("since", "1796637600.500000001")]));
        assert!(!inside(&[("until", "1796637600.499999999")]));
        // A line whose time does not read is before any `since`.
        let untimed = entry("t");
        assert!(!window(&[("since", "1")]).unwrap().in_window(&untimed));
        assert!(window(&[("until", "1")]).unwrap().in_window(&untimed));
        for bad in ["soon", "1.x", "-1", "1.1234567890"] {
            let refused = window(&[("since", bad)]);
            assert!(
                matches!(refused, Err(EngineError::BadRequest(ref m)) if m.contains("invalid time")),
                "{bad}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_pull_by_digest_joins_the_digest_with_an_at() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(pulled_name("bb", Some(&digest)), format!("bb@{digest}"));
        assert_eq!(pulled_name("bb", Some("1")), "bb:1");
        assert_eq!(pulled_name("bb", Some("")), "bb");
        assert_eq!(pulled_name("bb", None), "bb");
        let named = format!("bb@{digest}");
        assert_eq!(pulled_name(&named, Some("1")), named);
    }

    #[test]
    fn renames_from_one_lookup_free_each_name_they_take_over() {
        let root = tempfile::tempdir().unwrap();
        let containers = Containers::open(root.path()).unwrap();
        let id = "aa12".repeat(16);
        containers.reserve_name("n1", &id).unwrap();
        containers
            .create(&super::super::state::tests::record(&id, "n1"))
            .unwrap();
        // Two rename requests that looked the container up at once, by its
        // first name, then renamed it one after the other.
        let found = containers.find("n1").unwrap();
        rename(&containers, &found.id, "n2").unwrap();
        rename(&containers, &found.id, "n3").unwrap();
        assert_eq!(containers.record(&id).unwrap().name, "n3");
        assert!(containers.holds_name("n3", &id));
        for freed in ["n1", "n2"] {
            assert!(
                !containers.holds_name(freed, &id),
                "{freed} is still reserved: the second rename freed the name of a record read before the first"
            );
        }
    }
}
