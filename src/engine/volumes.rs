//! Volumes: data that outlives containers.
//!
//! A container's own changes live in its overlay's upper directory and go
//! with it (`rm`). A volume is a directory the engine keeps beside the
//! containers, bind-mounted into each container that names it
//! ([`crate::rootfs::binds`]): what a container writes there stays for the
//! next one. Docker's layout, so its documentation reads the same:
//!
//! ```text
//!   <root>/volumes/<name>/_data         what containers see (owned by their root)
//!                        /volume.json   created, labels, anonymous or not
//!   <root>/volumes/.lock                held while volumes are resolved or removed
//! ```
//!
//! A named volume (`-v site:/www`) is made on first use, or by
//! `POST /volumes/create`, and stays until `volume rm`. An anonymous one
//! (`-v /www`) has a random name and goes with its container when it is
//! removed with `--rm` or `rm -v`. A volume in use by any container,
//! running or not, cannot be removed (409), as in Docker.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::EngineError;
use super::state::{Containers, create_dirs, io, lock_file, now, read_json, write_json};
use crate::rootfs::binds::{Bind, VolumeArg, VolumeSource, check_volume_name};

/// What the engine keeps of one volume, beside its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// Seconds since the epoch.
    pub created: u64,
    /// `--label KEY=VALUE`.
    #[serde(default)]
    pub labels: serde_json::Map<String, Value>,
    /// Made for one container (`-v /path`), with a random name.
    #[serde(default)]
    pub anonymous: bool,
}

/// One mount of a container, as its record keeps it: for `inspect`'s
/// `Mounts`, for "is this volume in use?", and to remove its anonymous
/// volumes with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// The volume's name; `None` for a bind of a host path.
    pub volume: Option<String>,
    /// The host path.
    pub source: PathBuf,
    /// The path in the container.
    pub destination: PathBuf,
    /// `:ro`.
    pub read_only: bool,
    /// The volume is anonymous: it goes with the container.
    #[serde(default)]
    pub anonymous: bool,
}

impl MountRecord {
    /// Docker's `Mounts` entry for it.
    pub fn to_json(&self) -> Value {
        json!({
            "Type": if self.volume.is_some() { "volume" } else { "bind" },
            "Name": self.volume, "Source": self.source, "Destination": self.destination,
            "Driver": if self.volume.is_some() { "local" } else { "" },
            "Mode": if self.read_only { "ro" } else { "" }, "RW": !self.read_only,
            "Propagation": if self.volume.is_some() { "" } else { "rprivate" },
        })
    }
}

/// The volumes of one engine root.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

/// The volumes' lock: held while a create resolves its volumes and records
/// its container, and while a volume is removed, so that a volume is never
/// removed between a container's choosing it and its record naming it.
#[derive(Debug)]
pub struct VolumesLocked {
    _lock: Flock<File>,
}

impl Volumes {
    /// The volumes under `root` (made if missing; `0711`: a container's
    /// unprivileged root must pass through to `_data`).
    pub fn open(root: &Path) -> Result<Volumes, EngineError> {
        let dir = root.join("volumes");
        create_dirs(&dir, 0o711)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).map_err(io(&dir))?;
        Ok(Volumes { dir })
    }

    /// Takes the volumes' lock, waiting for whoever holds it.
    pub fn lock(&self) -> Result<VolumesLocked, EngineError> {
        let lock = lock_file(&self.dir.join(".lock"), "flock(the volumes' lock)")?;
        Ok(VolumesLocked { _lock: lock })
    }

    fn path(&self, name: &str) -> Result<PathBuf, EngineError> {
        check_volume_name(name).map_err(|e| EngineError::BadRequest(e.to_string()))?;
        Ok(self.dir.join(name))
    }

    // ANCHOR: volume_create
    /// Makes volume `name` if it is new, its data owned by `owner` (the
    /// host uid and gid that container root maps to: the container's root
    /// must be able to write its own volume). An existing volume is left
    /// as it is: `docker volume create` of a name twice is no error.
    pub fn create(&self, name: &str, owner: (u32, u32), meta: Meta) -> Result<Value, EngineError> {
        let dir = self.path(name)?;
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&dir)(e)),
        }
        // A directory without its meta was being made (by a create that
        // runs beside this one, or one that died half-way): finish it.
        // Each step may be done twice, harmlessly.
        if !dir.join("volume.json").exists() {
            let data = dir.join("_data");
            create_dirs(&data, 0o755)?;
            std::os::unix::fs::chown(&data, Some(owner.0), Some(owner.1)).map_err(io(&data))?;
            // Last: a directory with its meta is a volume (see `names`).
            write_json(&dir.join("volume.json"), &meta)?;
            self.event("create", name);
        }
        self.inspect(name)
    }
    // ANCHOR_END: volume_create

    /// The host directory of volume `name`'s data.
    pub fn data(&self, name: &str) -> Result<PathBuf, EngineError> {
        Ok(self.path(name)?.join("_data"))
    }

    /// Volume `name`, as `docker volume inspect` shows it.
    pub fn inspect(&self, name: &str) -> Result<Value, EngineError> {
        let dir = self.path(name)?;
        let meta: Meta = read_json(&dir.join("volume.json"))
            .map_err(|_| EngineError::NotFound(format!("get {name}: no such volume")))?;
        Ok(json!({
            "Name": name, "Driver": "local", "Mountpoint": dir.join("_data"),
            "CreatedAt": super::daemon::rfc3339(meta.created),
            "Labels": if meta.labels.is_empty() { Value::Null } else { Value::Object(meta.labels) },
            "Scope": "local", "Options": Value::Null,
        }))
    }

    /// Every volume's name, sorted.
    pub fn names(&self) -> Result<Vec<String>, EngineError> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| check_volume_name(n).is_ok())
            .filter(|n| self.dir.join(n).join("volume.json").exists())
            .collect();
        names.sort();
        Ok(names)
    }

    // ANCHOR: volume_remove
    /// Removes volume `name` unless a container uses it. Returns the bytes
    /// it held. Only under the volumes' lock (`_locked` proves it is held),
    /// so no volume is removed while a create is choosing it, and no other
    /// removal is under way.
    pub fn remove(
        &self,
        _locked: &VolumesLocked,
        containers: &Containers,
        name: &str,
    ) -> Result<u64, EngineError> {
        let dir = self.path(name)?;
        if !dir.join("volume.json").exists() {
            return Err(EngineError::NotFound(format!("get {name}: no such volume")));
        }
        refuse_if_in_use(containers, name)?;
        let size = size_of(&dir);
        // Out of sight first (one rename), then deleted: a crash half-way
        // leaves a hidden directory, never a volume with half its data.
        let hidden = self
            .dir
            .join(format!(".removing-{name}-{}", crate::ids::random_hex(4)));
        std::fs::rename(&dir, &hidden).map_err(io(&dir))?;
        self.event("destroy", name);
        // Gone, as anyone can see: what will not be deleted now is a
        // leftover, said once and swept by the next removal, not an error
        // for a volume `volume ls` no longer shows.
        if let Err(e) = std::fs::remove_dir_all(&hidden) {
            let what = format!("volume {name}");
            eprintln!("{}", super::state::left_behind(&what, &hidden, &e));
        }
        // Every removal holds the volumes' lock: what another left hidden
        // is no removal under way, whatever its age.
        super::state::sweep_hidden(&self.dir, &[".removing-"], Duration::ZERO);
        Ok(size)
    }

    /// Records a volume's event in the engine's log ([`super::events`]).
    fn event(&self, action: &str, name: &str) {
        let event = super::events::Event::new("volume", action, name).with("driver", "local");
        if let Some(root) = self.dir.parent() {
            super::events::record(root, &event);
        }
    }
    // ANCHOR_END: volume_remove

    /// Removes every volume no container uses; returns their names and
    /// the bytes they held (`docker volume prune`, API 1.41: named and
    /// anonymous alike).
    pub fn prune(&self, containers: &Containers) -> Result<(Vec<String>, u64), EngineError> {
        let locked = self.lock()?;
        let mut gone = Vec::new();
        let mut bytes = 0;
        for name in self.names()? {
            match self.remove(&locked, containers, &name) {
                Ok(size) => {
                    gone.push(name);
                    bytes += size;
                }
                Err(EngineError::Conflict(_) | EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((gone, bytes))
    }

    // ANCHOR: resolve_volumes
    /// Turns a container's `-v` arguments into binds and records: a named
    /// volume is made on first use, an anonymous one is made with a random
    /// name, a host path is taken as it is (and must exist). Call under
    /// [`Volumes::lock`], and record the container before letting go.
    pub fn resolve(
        &self,
        args: &[VolumeArg],
        owner: (u32, u32),
    ) -> Result<(Vec<Bind>, Vec<MountRecord>), EngineError> {
        let mut binds = Vec::new();
        let mut records: Vec<MountRecord> = Vec::new();
        let made = self.resolve_into(args, owner, &mut binds, &mut records);
        if made.is_err() {
            // A later `-v` failed: the anonymous volumes made for this
            // container are nobody's, and go (the named ones stay, as
            // Docker keeps a volume `-v NAME` made).
            for name in records
                .iter()
                .filter(|m| m.anonymous)
                .filter_map(|m| m.volume.as_deref())
            {
                if let Ok(dir) = self.path(name) {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
        made.map(|()| (binds, records))
    }

    fn resolve_into(
        &self,
        args: &[VolumeArg],
        owner: (u32, u32),
        binds: &mut Vec<Bind>,
        records: &mut Vec<MountRecord>,
    ) -> Result<(), EngineError> {
        for arg in args {
            let (source, volume, anonymous) = match &arg.source {
                VolumeSource::Host(path) => {
                    if !path.exists() {
                        return Err(EngineError::BadRequest(format!(
                            "invalid mount config: bind source path does not exist: {}: create it first",
                            path.display()
                        )));
                    }
                    (path.clone(), None, false)
                }
                VolumeSource::Named(name) => {
                    let meta = Meta {
                        created: now(),
                        labels: Default::default(),
                        anonymous: false,
                    };
                    self.create(name, owner, meta)?;
                    (self.data(name)?, Some(name.clone()), false)
                }
                VolumeSource::Anonymous => {
                    let name = crate::ids::random_hex(32);
                    let meta = Meta {
                        created: now(),
                        labels: Default::default(),
                        anonymous: true,
                    };
                    self.create(&name, owner, meta)?;
                    (self.data(&name)?, Some(name), true)
                }
            };
            binds.push(Bind {
                source: source.clone(),
                target: arg.target.clone(),
                read_only: arg.read_only,
            });
            records.push(MountRecord {
                volume,
                source,
                destination: arg.target.clone(),
                read_only: arg.read_only,
                anonymous,
            });
        }
        Ok(())
    }
    // ANCHOR_END: resolve_volumes

    /// Removes the anonymous volumes of `mounts` (a container removed with
    /// `--rm` or `rm -v`); a volume another container uses stays.
    pub fn remove_anonymous(&self, containers: &Containers, mounts: &[MountRecord]) {
        if !mounts.iter().any(|m| m.anonymous) {
            return;
        }
        let Ok(locked) = self.lock() else { return };
        for name in mounts
            .iter()
            .filter(|m| m.anonymous)
            .filter_map(|m| m.volume.as_deref())
        {
            let _ = self.remove(&locked, containers, name);
        }
    }
}

// ANCHOR: in_use
/// A volume any container's record names, running or not, stays: its
/// next start needs it (409, as Docker answers).
fn refuse_if_in_use(containers: &Containers, name: &str) -> Result<(), EngineError> {
    // EXERCISE(11): refuse (EngineError::Conflict, a 409) when any container's record names the volume, running or not: users_of lists them; say which, and what to do
    let users = users_of(containers, name)?;
    if !users.is_empty() {
        return Err(EngineError::Conflict(format!(
            "remove {name}: volume is in use by {}: remove those containers first",
            users.join(", ")
        )));
    }
    Ok(())
    // END EXERCISE
}
// ANCHOR_END: in_use

/// The names of the containers whose records name volume `name`.
fn users_of(containers: &Containers, name: &str) -> Result<Vec<String>, EngineError> {
    Ok(containers
        .list()?
        .into_iter()
        .filter(|(c, _)| c.mounts.iter().any(|m| m.volume.as_deref() == Some(name)))
        .map(|(c, _)| c.name)
        .collect())
}

/// The bytes under `dir` (files' lengths; links not followed).
fn size_of(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size_of(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// `GET /volumes`: every volume, as Docker lists them. Filters are refused
/// rather than ignored: a list that ignored `dangling=true` would look like
/// a list of unused volumes and be pruned by hand.
pub fn list(
    daemon: &super::daemon::Daemon,
    req: &super::server::Request,
) -> Result<Value, EngineError> {
    if req
        .param("filters")
        .is_some_and(|f| !matches!(f.trim(), "" | "{}"))
    {
        return Err(EngineError::BadRequest(
            "volume filters are not supported by caixa's engine yet: list them all".into(),
        ));
    }
    let volumes = Volumes::open(&daemon.root)?;
    let all: Vec<Value> = volumes
        .names()?
        .iter()
        .filter_map(|n| volumes.inspect(n).ok())
        .collect();
    Ok(json!({ "Volumes": all, "Warnings": [] }))
}

/// `POST /volumes/create`: `{"Name", "Driver", "DriverOpts", "Labels"}`.
/// Its data belongs to the host uid that an engine container's root maps
/// to, so the first container that writes to it may.
pub fn create(daemon: &super::daemon::Daemon, body: &Value) -> Result<Value, EngineError> {
    let bad = |why: String| EngineError::BadRequest(why);
    // Each field of the shape Docker's API gives it, or absent (`null`):
    // a name that is a number must not become a random one, nor labels
    // that are no object none at all.
    if !body.is_object() && !body.is_null() {
        return Err(bad("the body must be a JSON object: {\"Name\": …}".into()));
    }
    for (field, shaped) in [
        ("Name", body["Name"].is_string()),
        ("Driver", body["Driver"].is_string()),
        ("DriverOpts", body["DriverOpts"].is_object()),
        ("Labels", body["Labels"].is_object()),
    ] {
        if !shaped && !body[field].is_null() {
            let kind = if matches!(field, "Name" | "Driver") {
                "a string"
            } else {
                "an object"
            };
            return Err(bad(format!("{field} must be {kind}")));
        }
    }
    let name = match body["Name"].as_str().unwrap_or_default() {
        "" => crate::ids::random_hex(32),
        name => name.to_string(),
    };
    if let Some(driver) = body["Driver"]
        .as_str()
        .filter(|d| !d.is_empty() && *d != "local")
    {
        return Err(EngineError::NotFound(format!(
            "volume driver {driver:?} not found: caixa has only \"local\""
        )));
    }
    if body["DriverOpts"]
        .as_object()
        .is_some_and(|o| !o.is_empty())
    {
        return Err(bad(
            "driver options (-o) are not supported by caixa's engine: a volume is a directory"
                .into(),
        ));
    }
    let mut labels = serde_json::Map::new();
    for (key, value) in body["Labels"].as_object().into_iter().flatten() {
        let value = value
            .as_str()
            .ok_or_else(|| bad(format!("label {key:?} must be a string")))?;
        labels.insert(key.clone(), Value::String(value.to_string()));
    }
    let map = crate::idmap::DEFAULT_ID_MAP;
    let meta = Meta {
        created: now(),
        labels,
        anonymous: false,
    };
    Volumes::open(&daemon.root)?.create(&name, (map.host, map.host), meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::tests::Undeletable;

    #[test]
    fn a_volume_whose_files_will_not_go_is_removed_and_its_leftover_swept() {
        let root = tempfile::tempdir().unwrap();
        let containers = Containers::open(root.path()).unwrap();
        let volumes = Volumes::open(root.path()).unwrap();
        let meta = |anonymous| Meta {
            created: 1,
            labels: Default::default(),
            anonymous,
        };
        volumes.create("data", (0, 0), meta(false)).unwrap();
        let data = volumes.data("data").unwrap();
        let pinned = Undeletable::file(&data.join("pinned"), root.path());

        let locked = volumes.lock().unwrap();
        volumes
            .remove(&locked, &containers, "data")
            .expect("removed, though some files stay");
        assert!(volumes.names().unwrap().is_empty());
        assert!(matches!(
            volumes.inspect("data"),
            Err(EngineError::NotFound(_))
        ));
        let hidden: Vec<PathBuf> = std::fs::read_dir(root.path().join("volumes"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains(".removing-data-"))
            .collect();
        assert_eq!(hidden.len(), 1, "left for the sweep: {hidden:?}");

        // Deletable again: the next removal sweeps it.
        drop(pinned);
        volumes.create("more", (0, 0), meta(true)).unwrap();
        volumes.remove(&locked, &containers, "more").unwrap();
        assert!(!hidden[0].exists(), "swept by the next removal");
    }
}
