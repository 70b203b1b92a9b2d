//! Containers on disk: what the daemon knows outlives the daemon.
//!
//! ```text
//!   <root>/engine/containers/<id>/config.json   written once, at create
//!                                /state.json    created → running → exited,
//!                                               written by the monitor
//!                                /stdout        the container's output
//!                                /stderr
//! ```
//!
//! The daemon keeps nothing in memory that is not here: a new daemon on
//! the same root sees the same containers, running ones included, since
//! each has its own monitor process (see [`super::monitor`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EngineError;

/// What a container was created as.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// 64 hex digits, like Docker's ids (12 are shown).
    pub id: String,
    /// Its name (`--name`, or one made from the id).
    pub name: String,
    /// The image, as the client named it.
    pub image: String,
    /// The command given at create (empty: the image's).
    pub command: Vec<String>,
    /// The `run` command line it starts with (options, image, command): the
    /// same options as `step10 run`.
    pub args: Vec<String>,
    /// Seconds since the epoch.
    pub created: u64,
    /// Remove it when it ends (`--rm`, Docker's `HostConfig.AutoRemove`).
    #[serde(default)]
    pub auto_remove: bool,
}

/// Where a container is in its life.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// `created`, `running` or `exited`.
    pub status: String,
    /// The host pid of the step runner holding the container (0: none).
    pub pid: i32,
    /// The host pid of its monitor.
    pub monitor: i32,
    /// The exit code, once exited.
    pub exit_code: i32,
    /// Seconds since the epoch.
    pub started: u64,
    /// Seconds since the epoch.
    pub finished: u64,
}

/// The seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The containers of one engine root.
#[derive(Debug, Clone)]
pub struct Containers {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |e| EngineError::Io(format!("{}: {e}", path.display()))
}

impl Containers {
    /// The containers under `root` (created if missing).
    pub fn open(root: &Path) -> Result<Containers, EngineError> {
        let dir = root.join("engine/containers");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Containers { dir })
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Where container `id`'s files are now: its directory, or its
    /// tombstone once `--rm` retired it.
    pub fn files(&self, id: &str) -> PathBuf {
        let dir = self.dir(id);
        if dir.exists() {
            dir
        } else {
            self.dir.join(format!(".gone-{id}"))
        }
    }

    /// Records a new container, `created`.
    pub fn create(&self, config: &Config) -> Result<(), EngineError> {
        if self.list()?.iter().any(|(c, _)| c.name == config.name) {
            return Err(EngineError::Conflict(format!(
                "the name {:?} is already in use: remove that container first (rm), or choose another --name",
                config.name
            )));
        }
        let dir = self.dir(&config.id);
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        write_json(&dir.join("config.json"), config)?;
        self.set_state(
            &config.id,
            &State {
                status: "created".into(),
                ..State::default()
            },
        )
    }

    /// Every container, oldest first, with its state.
    pub fn list(&self) -> Result<Vec<(Config, State)>, EngineError> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            if id.starts_with('.') {
                continue;
            }
            if let (Ok(config), Ok(state)) = (self.config(&id), self.state(&id)) {
                all.push((config, state));
            }
        }
        all.sort_by_key(|(c, _)| (c.created, c.id.clone()));
        Ok(all)
    }

    /// The container named, or whose id starts with, `key`.
    pub fn find(&self, key: &str) -> Result<Config, EngineError> {
        let all = self.list()?;
        if let Some((c, _)) = all.iter().find(|(c, _)| c.name == key || c.id == key) {
            return Ok(c.clone());
        }
        let matches: Vec<&Config> = all
            .iter()
            .map(|(c, _)| c)
            .filter(|c| !key.is_empty() && c.id.starts_with(key))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(EngineError::NotFound(format!("No such container: {key}"))),
            _ => Err(EngineError::Conflict(format!(
                "{key} is the start of several container ids: give more of it"
            ))),
        }
    }

    /// Container `id`'s config.
    pub fn config(&self, id: &str) -> Result<Config, EngineError> {
        read_json(&self.dir(id).join("config.json"))
    }

    /// Container `id`'s state. A `running` one whose monitor is gone (the
    /// machine rebooted, or someone killed it) is reported as exited. A
    /// removed one is found in its tombstone for a while (see [`Containers::retire`]).
    pub fn state(&self, id: &str) -> Result<State, EngineError> {
        let tomb = self.dir.join(format!(".gone-{id}")).join("state.json");
        let mut state: State =
            read_json(&self.dir(id).join("state.json")).or_else(|_| read_json(&tomb))?;
        if state.status == "running" && !alive(state.monitor) {
            state.status = "exited".into();
            state.exit_code = 255;
        }
        Ok(state)
    }

    /// Replaces container `id`'s state (atomically: a reader sees the old
    /// or the new one, never half of one).
    pub fn set_state(&self, id: &str, state: &State) -> Result<(), EngineError> {
        write_json(&self.dir(id).join("state.json"), state)
    }

    /// Forgets container `id` and its output.
    pub fn remove(&self, id: &str) -> Result<(), EngineError> {
        let dir = self.dir(id);
        std::fs::remove_dir_all(&dir).map_err(io(&dir))
    }

    /// Removes container `id` as `--rm` asks, leaving a tombstone (its
    /// state, hidden from listings) so that a client waiting for its exit
    /// code still gets it; tombstones older than a minute are swept.
    pub fn retire(&self, id: &str) -> Result<(), EngineError> {
        let tomb = self.dir.join(format!(".gone-{id}"));
        std::fs::rename(self.dir(id), &tomb).map_err(io(&tomb))?;
        for entry in std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
        {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 60);
            if entry.file_name().to_string_lossy().starts_with(".gone-") && old {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }
}

/// Whether process `pid` exists.
pub fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), EngineError> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec_pretty(value).map_err(|e| EngineError::Io(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, EngineError> {
    let text = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&text).map_err(|e| EngineError::Io(format!("{}: {e}", path.display())))
}
