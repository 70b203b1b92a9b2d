//! Containers on disk: what the daemon knows outlives the daemon.
//!
//! One directory per container, named by its one id (the API's 64 hex
//! digits, which are also its cgroup's, overlay's, lease's and rules' name):
//!
//! ```text
//!   <root>/containers/<id>/container.json  the engine's record, written at create (and rename)
//!                         /config.json     the OCI bundle's config (see `crate::bundle`)
//!                         /upper /work /merged   the overlay: the bundle's rootfs
//!                         /state.json      created → running → exited, written by the shim
//!                         /container.log   the output, in Docker's json-file format
//!                         /shim.log        the shim's own diagnostics
//!                         /lock            the lifecycle lock (see `Locked`)
//!                         /shim.lock       held by the shim for its whole life
//!                         /shim.sock       the shim's control socket (0600)
//!   <root>/engine/names/<name>             a name, reserved atomically, holding the id
//! ```
//!
//! The daemon keeps nothing in memory that is not here: a new daemon on the
//! same root sees the same containers, running ones included, since each
//! has its own shim (see [`super::shim`]).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::EngineError;

/// What a container was created as: the engine's own record, beside the
/// bundle's `config.json` (which is the runtime's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits, like Docker's ids (12 are shown).
    pub id: String,
    /// Its name (`--name`, or one made from the id).
    pub name: String,
    /// The image, as the client named it.
    pub image: String,
    /// The command given at create (empty: the image's).
    pub command: Vec<String>,
    /// Seconds since the epoch.
    pub created: u64,
    /// And the nanoseconds past that second: what orders the containers
    /// made within one second (`ps` lists the newest first). 0 in a
    /// record an older daemon wrote.
    #[serde(default)]
    pub created_nanos: u32,
    /// Remove it when it ends (`--rm`, Docker's `HostConfig.AutoRemove`).
    #[serde(default)]
    pub auto_remove: bool,
    /// It has a terminal (`-t`): its output is one raw stream, not frames.
    #[serde(default)]
    pub tty: bool,
    /// Its host name (`--hostname`, or the short id).
    #[serde(default)]
    pub hostname: String,
    /// Its volumes and binds (`-v`), in order.
    #[serde(default)]
    pub mounts: Vec<super::volumes::MountRecord>,
    /// Its stdin is open for clients to write to (`-i`, `OpenStdin`).
    #[serde(default)]
    pub open_stdin: bool,
    /// The first client to leave closes its stdin (`StdinOnce`, which
    /// `docker run -i` sets: the program then sees its input end).
    #[serde(default)]
    pub stdin_once: bool,
    /// When its shim starts it again (`--restart`).
    #[serde(default)]
    pub restart: super::restart::Policy,
    /// The named network it is on (`--network NAME`), or `pasta` (a
    /// user-mode network); empty: step 8's bridge, or none.
    #[serde(default)]
    pub network: String,
    /// The networks it joined later (`docker network connect`), in order:
    /// `eth1`, `eth2`… (`bridge` for step 8's).
    #[serde(default)]
    pub joined: Vec<String>,
    /// The ports it publishes (`-p`), as its bundle's annotation lists
    /// them: here too, so that `ps` reads a small record per container,
    /// not each bundle's 15 KB. `None` in a record an older daemon wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<String>,
}

impl Record {
    /// The names of the networks it is on: the one it was made on
    /// (`bridge` for step 8's), then those it joined, in order.
    pub fn networks(&self) -> Vec<&str> {
        let first = if self.network.is_empty() {
            "bridge"
        } else {
            self.network.as_str()
        };
        std::iter::once(first)
            .chain(self.joined.iter().map(String::as_str))
            .collect()
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started (or its start failed before it ran).
    #[default]
    Created,
    /// Its shim holds it.
    Running,
    /// Ended; its exit code is known.
    Exited,
}

impl Status {
    /// Docker's word for it (`State.Status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

/// A container's state, as its shim records it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// Created, running or exited.
    pub status: Status,
    /// The host pid of the container's pid 1 while it runs (0: none). Shown
    /// by inspect; never used to signal it (see [`super::shim::send`]).
    pub pid: i32,
    /// The host pid of its shim (0: none).
    pub shim: i32,
    /// The exit code, once exited (128 + N when signal N ended it).
    pub exit_code: i32,
    /// Whether the kernel's OOM killer killed a process of it.
    #[serde(default)]
    pub oom_killed: bool,
    /// Why it could not start, or how its shim was lost.
    #[serde(default)]
    pub error: String,
    /// Seconds since the epoch.
    pub started: u64,
    /// Seconds since the epoch.
    pub finished: u64,
    /// Ended, and its shim will start it again after a pause (`--restart`).
    #[serde(default)]
    pub restarting: bool,
    /// How many times its shim has restarted it.
    #[serde(default)]
    pub restart_count: u32,
    /// Its shim died while it ran (SIGKILL, a crash, the host's restart):
    /// never written, only seen ([`Containers::state`]). What `--restart`
    /// brings back when a daemon starts.
    #[serde(skip)]
    pub lost: bool,
}

/// The seconds since the epoch, now.
pub fn now() -> u64 {
    now_precise().0
}

/// Now, as seconds since the epoch and the nanoseconds past that second.
pub fn now_precise() -> (u64, u32) {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()))
}

/// The containers of one engine root.
#[derive(Debug, Clone)]
pub struct Containers {
    dir: PathBuf,
    names: PathBuf,
}

// ANCHOR: modes
/// The mode of `containers/` and of each container's directory: traversable
/// by the container's (unprivileged) root on its way to the rootfs, not
/// listable or writable by anyone but root.
pub const CONTAINER_DIR_MODE: u32 = 0o711;

/// Gives this process (a daemon, a shim, a registry) the engine's own
/// umask, `022` (Docker's, and what containers inherit as their default),
/// so that what it creates has the modes it gives, whatever umask it was
/// started with: under `umask 000`, another user could otherwise rename
/// the daemon's socket away or write into its state.
pub fn set_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
}

/// Creates `dir` and its missing parents with `mode` (never `0777` minus
/// whatever umask the caller had; the engine's processes set theirs to
/// `022`, so `mode` is what they get). Existing directories are left as
/// they are: a socket's parent may be `/run`.
pub fn create_dirs(dir: &Path, mode: u32) -> Result<(), EngineError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(io(dir))
}
// ANCHOR_END: modes

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// A container's lifecycle lock: start, stop, rm, and whatever rewrites
/// its record take it (a create needs none: its id is new, and its name is
/// reserved atomically), so two of them never interleave on one container
/// (two concurrent starts cannot both see `created`). `kill` needs none:
/// the shim answers its requests one at a time. Released when dropped.
#[derive(Debug)]
pub struct Locked {
    _lock: Flock<File>,
    /// The container it locks: what [`Containers::rewrite`] may write.
    id: String,
}

impl Containers {
    /// The containers under `root` (created if missing), with their modes
    /// set whatever the umask: `containers` may be traversed (a container's
    /// root user is an unprivileged host uid that must reach its rootfs)
    /// but not listed or written; the names are root's alone.
    pub fn open(root: &Path) -> Result<Containers, EngineError> {
        let dir = root.join("containers");
        let names = root.join("engine/names");
        for (d, mode) in [(&dir, CONTAINER_DIR_MODE), (&names, 0o700)] {
            create_dirs(d, mode)?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).map_err(io(d))?;
        }
        Ok(Containers { dir, names })
    }

    /// The engine root these containers are under (where the events'
    /// log is, see [`super::events`]).
    pub fn root(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    /// The directory of container `id`: its bundle and its state.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Whether container `id` is here, recorded and not removed: its
    /// record is what makes a directory a container (see [`Containers::list`]).
    pub fn exists(&self, id: &str) -> bool {
        self.dir(id).join("container.json").exists()
    }

    /// Where container `id`'s files are now: its directory, or its
    /// tombstone once `--rm` retired it.
    pub fn files(&self, id: &str) -> PathBuf {
        let dir = self.dir(id);
        if self.exists(id) {
            dir
        } else {
            self.dir.join(format!(".gone-{id}"))
        }
    }

    /// Takes container `id`'s lifecycle lock, waiting for whoever holds it.
    pub fn lock(&self, id: &str) -> Result<Locked, EngineError> {
        let dir = self.dir(id);
        let lock = lock_file(&dir.join("lock"), "flock(the container's lock)").map_err(|e| {
            // Removed since the caller found it: its directory is gone.
            match dir.exists() {
                true => e,
                false => EngineError::NotFound(format!("No such container: {id}")),
            }
        })?;
        Ok(Locked {
            _lock: lock,
            id: id.to_string(),
        })
    }

    /// Takes container `id`'s lock, then reads its record under it: the
    /// record a change must start from. One read before the lock may be
    /// stale by the time the lock is ours (a rename or a `network connect`
    /// that went first), and writing a change of it back would undo theirs.
    pub fn lock_record(&self, id: &str) -> Result<(Locked, Record), EngineError> {
        let locked = self.lock(id)?;
        let record = self.record(id)?;
        Ok((locked, record))
    }

    // ANCHOR: reserve_name
    /// Reserves `name` for `id`: creating the name's file is atomic
    /// (`O_EXCL`), so of two creates with one name exactly one wins.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<(), EngineError> {
        let path = self.names.join(name);
        match File::options().write(true).create_new(true).open(&path) {
            Ok(mut file) => file.write_all(id.as_bytes()).map_err(io(&path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && self.stale(&path) => {
                // Reserved by a create that died before its container was
                // recorded: free it, then try once more.
                let _ = std::fs::remove_file(&path);
                File::options()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .and_then(|mut file| file.write_all(id.as_bytes()))
                    .map_err(io(&path))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(EngineError::Conflict(format!(
                    "the name {name:?} is already in use: remove that container first (rm), or choose another --name"
                )))
            }
            Err(e) => Err(io(&path)(e)),
        }
    }
    // ANCHOR_END: reserve_name

    /// Whether the name at `path` was reserved by a create that never
    /// recorded its container (the daemon died between the two): its
    /// holder has no record, and a minute has passed, far longer than any
    /// create takes.
    fn stale(&self, path: &Path) -> bool {
        let holder = std::fs::read_to_string(path).unwrap_or_default();
        older_than(path, LEFTOVER_GRACE) && !self.dir(holder.trim()).join("container.json").exists()
    }

    /// Frees `name`, if `id` holds it.
    pub fn release_name(&self, name: &str, id: &str) {
        if self.holds_name(name, id) {
            let _ = std::fs::remove_file(self.names.join(name));
        }
    }

    /// Whether container `id` holds `name`: a removal frees the name once
    /// the directory is out of sight ([`Containers::remove`]), so a waiter
    /// for `removed` knows from this that it is over.
    pub fn holds_name(&self, name: &str, id: &str) -> bool {
        std::fs::read_to_string(self.names.join(name)).is_ok_and(|holder| holder == id)
    }

    /// Records a new container, `created`: its record (the bundle is written
    /// by the caller into the same directory).
    pub fn create(&self, record: &Record) -> Result<(), EngineError> {
        let dir = self.dir(&record.id);
        create_dirs(&dir, CONTAINER_DIR_MODE)?;
        self.set_state(&record.id, &State::default())?;
        // Last: a directory with a record is a container (see `list`).
        write_json(&dir.join("container.json"), record)
    }

    /// Writes a changed record (a rename, a network joined) over the old
    /// one, whole: only under the container's lock, and for the container
    /// it locks (read by [`Containers::lock_record`], so no change is lost).
    pub fn rewrite(&self, locked: &Locked, record: &Record) -> Result<(), EngineError> {
        if locked.id != record.id {
            return Err(EngineError::Conflict(format!(
                "container {} is not the one locked ({})",
                record.id, locked.id
            )));
        }
        // A start parked at `create` was made from the old record.
        super::shim::unpark(&self.dir(&record.id));
        write_json(&self.dir(&record.id).join("container.json"), record)
    }

    // ANCHOR: list_recalled
    /// Every container, oldest first, with its state. A file unchanged since
    /// an earlier listing is not read again ([`super::recall`]); a state
    /// that says `running` is judged by its shim's lock the first time, and
    /// after that by a pidfd of the shim, all of them asked at once at the
    /// end (by its lock each time if no pidfd could be kept); any
    /// doubt goes to [`Containers::state`], which reads the files and asks
    /// the lock.
    pub fn list(&self) -> Result<Vec<(Record, State)>, EngineError> {
        let mut all = Vec::new();
        let mut recall = super::recall::recall();
        let listing = recall.entry(self.dir.clone()).or_default();
        listing.begin();
        for entry in std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            // Not an id: a tombstone (`.gone-ID`), or something else.
            if !is_id(&id) {
                continue;
            }
            let dir = entry.path();
            let line = match listing.line(&id, &dir) {
                Ok(Some(line)) => line,
                // Its state in doubt: read it again, and ask its lock.
                Ok(None) => match (listing.record(&id, &dir), self.state(&id)) {
                    (Ok(record), Ok(state)) => (record, state),
                    _ => continue,
                },
                Err(_) => continue,
            };
            all.push(line);
        }
        // The shims taken on trust, asked all at once: any that ended since
        // the last listing is judged again from its files and its lock.
        for id in listing.ended_shims() {
            if let Some(i) = all.iter().position(|(c, _)| c.id == id) {
                match self.state(&id) {
                    Ok(state) => all[i].1 = state,
                    Err(_) => {
                        all.remove(i);
                    }
                }
            }
        }
        listing.end();
        // Oldest first. The order is sorted, not the lines: a stable sort
        // moves each element several times, and a line is a record and a
        // state, hundreds of bytes (with 500 containers, the sort's copies
        // were a twentieth of a listing). Then each line moves once.
        let mut order: Vec<usize> = (0..all.len()).collect();
        order.sort_by_key(|&i| all.get(i).map(|(c, _)| (c.created, c.id.as_str())));
        let mut lines: Vec<Option<(Record, State)>> = all.into_iter().map(Some).collect();
        Ok(order
            .into_iter()
            .filter_map(|i| lines.get_mut(i).and_then(Option::take))
            .collect())
    }
    // ANCHOR_END: list_recalled

    /// The container named, or whose id starts with, `key`.
    pub fn find(&self, key: &str) -> Result<Record, EngineError> {
        if let Ok(id) = std::fs::read_to_string(self.names.join(key)) {
            if let Ok(record) = self.record(&id) {
                return Ok(record);
            }
        }
        let missing = || EngineError::NotFound(format!("No such container: {key}"));
        if !is_id(key) {
            return Err(missing());
        }
        // An id, or the start of one: the directory's names are the ids,
        // so only a match's record is read (not every container's, as a
        // listing must: a start names its container by its full id).
        let mut matches = Vec::new();
        for entry in std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            if id.starts_with(key) {
                if let Ok(record) = self.record(&id) {
                    matches.push(record);
                }
            }
        }
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(missing()),
            _ => Err(EngineError::Conflict(format!(
                "{key} is the start of several container ids: give more of it"
            ))),
        }
    }

    /// Container `id`'s record.
    pub fn record(&self, id: &str) -> Result<Record, EngineError> {
        if !is_id(id) {
            return Err(EngineError::NotFound(format!("No such container: {id}")));
        }
        read_json(&self.dir(id).join("container.json")).map_err(|e| no_such(e, id))
    }

    /// Container `id`'s spec, as its bundle says (what it was created
    /// with: its image, its maps, its limits, its published ports).
    pub fn spec(&self, id: &str) -> Result<crate::Spec, EngineError> {
        let dir = self.dir(id);
        let config = crate::bundle::read(&dir)?;
        Ok(crate::bundle::from_oci(&config, &dir, id)?)
    }

    // ANCHOR: state_view
    /// Container `id`'s state. A `running` one whose shim no longer holds
    /// its lock (killed, or the machine rebooted) is reported exited (255),
    /// never judged by its pid, which another process may have by now. A
    /// removed one is found in its tombstone for a while (see [`Containers::retire`]).
    pub fn state(&self, id: &str) -> Result<State, EngineError> {
        // Its directory, or the tombstone `retire` copied it to first (the
        // directory may go between our look and our read).
        let read = || -> Result<(PathBuf, State), EngineError> {
            let dir = self.dir(id);
            match read_json(&dir.join("state.json")) {
                Err(EngineError::NotFound(_)) => {
                    let tomb = self.dir.join(format!(".gone-{id}"));
                    let state = read_json(&tomb.join("state.json"))?;
                    Ok((tomb, state))
                }
                other => Ok((dir, other?)),
            }
        };
        let (files, mut state) = read().map_err(|e| no_such(e, id))?;
        if state.status == Status::Running && !shim_alive(&files) {
            // The shim records its end before its lock goes (with it): it may
            // have done both since our read, so read once more.
            state = read().map_err(|e| no_such(e, id))?.1;
            if state.status == Status::Running {
                state.status = Status::Exited;
                state.exit_code = 255;
                state.error = "its shim died: the container was killed with it".into();
                state.lost = true;
            }
        }
        Ok(state)
    }
    // ANCHOR_END: state_view

    /// Replaces container `id`'s state (atomically: a reader sees the old
    /// or the new one, never half of one).
    pub fn set_state(&self, id: &str, state: &State) -> Result<(), EngineError> {
        write_json(&self.dir(id).join("state.json"), state)
    }

    // ANCHOR: remove
    /// Forgets container `id`: its directory (bundle, rootfs, output) and
    /// name. As anyone can see it, in two steps: the directory leaves in one
    /// move (a rename to a hidden `.removing-ID`), then the name is freed;
    /// only then are the files deleted, a whole rootfs among them. So a
    /// waiter for `removed` (the Docker CLI's `run --rm`) is answered once
    /// the container can no longer be found, not after every file of it is
    /// gone (measured: 2–3 ms of a `run --rm true`). A removal that ends
    /// half-way, or files that will not be deleted, leave the hidden
    /// directory, which a later removal sweeps.
    pub fn remove(&self, record: &Record) -> Result<(), EngineError> {
        self.unmounted(record)?;
        self.remove_unmounting(record, |_| {})
    }

    /// The removal itself, for a caller that has checked nothing is
    /// mounted, or one whose rootfs is still mounted in its sight (through
    /// [`Containers::retire_unmounting`]): `unmount` is given the
    /// directory's hidden place once the name is free, and unmounts there
    /// before the files go. So even the unmount (1–3 ms) comes after the
    /// answer.
    fn remove_unmounting(
        &self,
        record: &Record,
        unmount: impl FnOnce(&Path),
    ) -> Result<(), EngineError> {
        let dir = self.dir(&record.id);
        if let Some(root) = self.dir.parent() {
            super::exec::forget(root, &dir);
        }
        let hidden = self.dir.join(format!(".removing-{}", record.id));
        if std::fs::rename(&dir, &hidden).is_ok() {
            self.release_name(&record.name, &record.id);
            // The record first: its deletion is what wakes a waiter (the
            // name's is not in a watched directory), now, not after the
            // unmount.
            let _ = std::fs::remove_file(hidden.join("container.json"));
            unmount(&hidden);
            // Removed, as anyone can see: files that will not go now are
            // a leftover to sweep, not a failed removal (a 500 for a
            // container `ps` no longer shows, and a `--rm` shim that
            // stops before its `destroy` event and its volumes).
            if let Err(e) = crate::image::overlay::remove_container_dir(&hidden) {
                let what = format!("container {}", record.name);
                eprintln!("{}", left_behind(&what, &hidden, &e));
            }
        } else {
            // Not moved (a leftover of the same name is in the way): deleted
            // where it is, and the name freed last, as "removed" promises.
            unmount(&dir);
            crate::image::overlay::remove_container_dir(&dir).map_err(io(&dir))?;
            self.release_name(&record.name, &record.id);
        }
        self.sweep_hidden();
        Ok(())
    }
    // ANCHOR_END: remove

    /// Refuses to remove a container whose rootfs is mounted where this
    /// process sees it: its shim has not cleaned up yet.
    fn unmounted(&self, record: &Record) -> Result<(), EngineError> {
        if crate::image::overlay::is_mounted(&self.dir(&record.id).join("merged")) {
            return Err(EngineError::Conflict(format!(
                "the root filesystem of {} is still mounted: try again once its shim has cleaned up",
                record.name
            )));
        }
        Ok(())
    }

    /// Removes the tombstone of container `id`, once the waits for it have
    /// read it ([`super::wait`]).
    pub fn bury(&self, id: &str) {
        let _ = std::fs::remove_dir_all(self.dir.join(format!(".gone-{id}")));
    }

    /// Removes container `id` as `--rm` asks, leaving a tombstone (its
    /// state, hidden from listings) so that a client waiting for its exit
    /// code still gets it; tombstones older than a minute are swept, and
    /// so are removals that ended half-way.
    pub fn retire(&self, record: &Record) -> Result<(), EngineError> {
        self.unmounted(record)?;
        self.retire_unmounting(record, |_| {})
    }

    /// [`Containers::retire`] by the shim of a `--rm` container, its
    /// rootfs still mounted: `unmount` is called with the directory's
    /// hidden place once the container can no longer be found, and must
    /// unmount it there before the files are deleted.
    pub fn retire_unmounting(
        &self,
        record: &Record,
        unmount: impl FnOnce(&Path),
    ) -> Result<(), EngineError> {
        let tomb = self.dir.join(format!(".gone-{}", record.id));
        create_dirs(&tomb, 0o700)?;
        let state = self.dir(&record.id).join("state.json");
        keep(&state, &tomb.join("state.json")).map_err(io(&state))?;
        let log = self.dir(&record.id).join("container.log");
        let _ = keep(&log, &tomb.join("container.log"));
        self.remove_unmounting(record, unmount)
    }

    /// Deletes the tombstones and half-done removals (`.gone-ID`,
    /// `.removing-ID`) older than a minute: a younger tombstone may still
    /// be read by a waiter. Best effort, after every removal.
    fn sweep_hidden(&self) {
        sweep_hidden(&self.dir, &[".gone-", ".removing-"], LEFTOVER_GRACE);
    }
}

/// How long a tombstone stays for its waiters, and a name reserved by a
/// create that never recorded its container stays reserved.
const LEFTOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether the file at `path` (not followed, if a link) was last changed
/// more than `limit` ago.
fn older_than(path: &Path, limit: std::time::Duration) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > limit)
}

/// Deletes what removals left hidden in `dir` (entries named with one of
/// `prefixes`), older than `grace`, unless a removal is still under way
/// in one: every removal holds its container's lock, and the lock's file
/// moves with the directory. What still will not go is tried again by
/// the next removal. One sweep for containers and volumes alike.
pub(crate) fn sweep_hidden(dir: &Path, prefixes: &[&str], grace: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // The name first: a stat of each of 500 live containers'
        // directories would cost every removal more than its own work.
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let path = entry.path();
        if !older_than(&path, grace) {
            continue;
        }
        // Held while this sweep deletes, so no second sweep starts on it.
        let _busy = match File::open(path.join("lock")) {
            Ok(file) => match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(held) => Some(held),
                Err(_) => continue,
            },
            Err(_) => None,
        };
        let _ = crate::image::overlay::remove_container_dir(&path);
    }
}

/// The one line for files that outlived their removal: what is gone,
/// what is left where and why, and what to do if it stays.
pub(crate) fn left_behind(what: &str, hidden: &Path, e: &std::io::Error) -> String {
    format!(
        "caixa: {what} is removed, but some of its files could not be deleted ({}: {e}); the next removal tries again, or delete them by hand",
        hidden.display()
    )
}

/// Keeps the file `from` at `to` as well: a second name for it (an ended
/// container's files no longer change, and its log can be large), or a
/// copy where the filesystem refuses a link.
fn keep(from: &Path, to: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(to);
    std::fs::hard_link(from, to).or_else(|_| std::fs::copy(from, to).map(|_| ()))
}

/// Whether `name` can be a container's id, or the start of one: hex
/// digits only, 64 at most (as the daemon makes them), so never a path of
/// more than one component.
pub(crate) fn is_id(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An exclusive `flock` on `path` (made if missing), waiting for whoever
/// holds it; the kernel lets go when the file closes, however the holder
/// ends. `call` names the lock in an error.
pub(crate) fn lock_file(path: &Path, call: &'static str) -> Result<Flock<File>, EngineError> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, source)| EngineError::Sys { call, source })
}

// ANCHOR: shim_alive
/// Whether a shim holds the container in `dir`: it keeps an exclusive lock
/// on `shim.lock` for its whole life, and the kernel drops that lock when
/// the shim dies, however it dies. A shared lock we can take means nobody
/// holds it; we let go at once.
pub fn shim_alive(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join("shim.lock")) else {
        return false;
    };
    Flock::lock(file, FlockArg::LockSharedNonblock).is_err()
}
// ANCHOR_END: shim_alive

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), EngineError> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec_pretty(value).map_err(|source| EngineError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, EngineError> {
    let text = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            EngineError::NotFound(format!("no file {}", path.display()))
        } else {
            io(path)(e)
        }
    })?;
    serde_json::from_slice(&text).map_err(|source| EngineError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// A file of container `id` that is not there (it was removed between a
/// client's lookup and this read) as the client should hear it: by the
/// name it asked for, never by a path of the daemon's.
pub(crate) fn no_such(e: EngineError, id: &str) -> EngineError {
    match e {
        EngineError::NotFound(_) => EngineError::NotFound(format!("No such container: {id}")),
        other => other,
    }
}

/// Unit tests; [`tests::Undeletable`] is lent to the volumes' too.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file that even root cannot delete (`chattr +i`) until the guard
    /// goes: then everything under `root`, the test's directory, is made
    /// deletable again, wherever a removal moved the file meanwhile, so
    /// the test's directory goes too, whether the test passed or failed.
    pub(crate) struct Undeletable {
        root: PathBuf,
    }

    impl Undeletable {
        /// Makes `file` (written here) immutable. Only root may, and root
        /// alone passes every permission, so nothing less would make a
        /// file it cannot delete: run by anyone else, the test fails and
        /// says so.
        pub(crate) fn file(file: &Path, root: &Path) -> Undeletable {
            assert!(
                nix::unistd::geteuid().is_root(),
                "this test needs root: it makes a file undeletable with chattr +i (run cargo test as root)"
            );
            std::fs::write(file, "x").unwrap();
            let pinned = Undeletable {
                root: root.to_path_buf(),
            };
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(file)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "chattr +i {} failed: install e2fsprogs, on a filesystem that keeps the flag (ext4; tmpfs from Linux 6.0)",
                file.display()
            );
            assert!(
                std::fs::remove_file(file).is_err(),
                "deleted, though pinned"
            );
            pinned
        }
    }

    impl Drop for Undeletable {
        fn drop(&mut self) {
            // Quiet: chattr says it cannot read the flags of a socket.
            let _ = std::process::Command::new("chattr")
                .args(["-R", "-i"])
                .arg(&self.root)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    #[test]
    fn ids_are_hex_and_short() {
        assert!(is_id("0123abcdef"));
        assert!(is_id(&"a".repeat(64)));
        assert!(!is_id(""));
        assert!(!is_id(&"a".repeat(65)));
        assert!(!is_id("../etc"));
        assert!(!is_id("abc def"));
        assert!(!is_id(".gone-0123"));
    }

    /// A record of container `id` named `name`, for a test.
    pub(crate) fn record(id: &str, name: &str) -> Record {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "image": "bb:1", "command": [], "created": 1,
        }))
        .unwrap()
    }

    #[test]
    fn a_change_starts_from_the_record_as_it_is_under_the_lock() {
        let root = tempfile::tempdir().unwrap();
        let containers = Containers::open(root.path()).unwrap();
        let (a, b) = ("ef12".repeat(16), "ef34".repeat(16));
        for (id, name) in [(&a, "one"), (&b, "two")] {
            containers.reserve_name(name, id).unwrap();
            containers.create(&record(id, name)).unwrap();
        }
        // What a request read before it had the lock…
        let stale = containers.find("one").unwrap();
        {
            // …while another request changed it under the lock.
            let (locked, mut now) = containers.lock_record(&a).unwrap();
            now.name = "renamed".into();
            containers.rewrite(&locked, &now).unwrap();
        }
        let (locked, now) = containers.lock_record(&stale.id).unwrap();
        assert_eq!(
            now.name, "renamed",
            "lock_record must read the record under the lock"
        );
        // A lock is good for its own container's record only.
        assert!(containers.rewrite(&locked, &record(&b, "x")).is_err());
        assert_eq!(containers.record(&b).unwrap().name, "two");
    }

    #[test]
    fn a_container_that_is_gone_is_named_by_its_id_never_by_a_path() {
        let root = tempfile::tempdir().unwrap();
        let containers = Containers::open(root.path()).unwrap();
        let id = "fe12".repeat(16);
        for e in [
            containers.record(&id).unwrap_err(),
            containers.state(&id).unwrap_err(),
        ] {
            let said = e.to_string();
            assert!(
                matches!(e, EngineError::NotFound(_)) && said == format!("No such container: {id}"),
                "{said}"
            );
        }
    }

    #[test]
    fn find_takes_a_name_an_id_or_the_unique_start_of_one() {
        let root = tempfile::tempdir().unwrap();
        let containers = Containers::open(root.path()).unwrap();
        let (a, b) = ("ab12".repeat(16), "ab34".repeat(16));
        for (id, name) in [(&a, "one"), (&b, "two")] {
            containers.reserve_name(name, id).unwrap();
            containers.create(&record(id, name)).unwrap();
        }
        // A directory without its record yet is no container.
        create_dirs(&containers.dir(&"ab56".repeat(16)), 0o700).unwrap();
        assert_eq!(containers.find("two").unwrap().id, b);
        assert_eq!(containers.find(&a).unwrap().id, a);
        assert_eq!(containers.find("ab3").unwrap().id, b);
        assert!(matches!(
            containers.find("ab"),
            Err(EngineError::Conflict(_))
        ));
        for missing in ["ab5", "cd", "three", "", "../containers"] {
            assert!(
                matches!(containers.find(missing), Err(EngineError::NotFound(_))),
                "{missing}"
            );
        }
    }

    #[test]
    fn retire_keeps_the_state_and_log_and_sweeps_old_leftovers() {
        let root = tempfile::tempdir().unwrap();
        let containers = Containers::open(root.path()).unwrap();
        let id = "cd12".repeat(16);
        containers.reserve_name("gone", &id).unwrap();
        let gone = record(&id, "gone");
        containers.create(&gone).unwrap();
        let ended = State {
            status: Status::Exited,
            exit_code: 3,
            ..State::default()
        };
        containers.set_state(&id, &ended).unwrap();
        std::fs::write(containers.dir(&id).join("container.log"), "out\n").unwrap();
        create_dirs(&containers.dir(&id).join("upper/etc"), 0o755).unwrap();
        // A removal that stopped half-way a while ago, and one under way now.
        let (stale, fresh) = (
            root.path().join("containers/.removing-old"),
            root.path().join("containers/.removing-new"),
        );
        for dir in [&stale, &fresh] {
            create_dirs(&dir.join("upper"), 0o755).unwrap();
        }
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        File::open(&stale).unwrap().set_modified(long_ago).unwrap();

        containers.retire(&gone).unwrap();

        assert!(!containers.dir(&id).exists());
        assert!(
            !root
                .path()
                .join(format!("containers/.removing-{id}"))
                .exists()
        );
        assert!(!containers.holds_name("gone", &id));
        // The tombstone answers for it: its end and its output.
        assert_eq!(containers.state(&id).unwrap().exit_code, 3);
        let tomb = containers.files(&id);
        assert_eq!(
            std::fs::read_to_string(tomb.join("container.log")).unwrap(),
            "out\n"
        );
        assert!(
            !stale.exists(),
            "a removal left half-way is swept after a minute"
        );
        assert!(fresh.exists(), "a removal under way is left to its owner");
        // Not listed: neither the tombstone nor a removal.
        assert!(containers.list().unwrap().is_empty());
    }

    #[test]
    fn files_that_will_not_go_are_left_to_the_sweep_and_the_removal_stands() {
        let root = tempfile::tempdir().unwrap();
        let containers = Containers::open(root.path()).unwrap();
        let id = "ef12".repeat(16);
        containers.reserve_name("stuck", &id).unwrap();
        let stuck = record(&id, "stuck");
        containers.create(&stuck).unwrap();
        let upper = containers.dir(&id).join("upper");
        create_dirs(&upper, 0o755).unwrap();
        let pinned = Undeletable::file(&upper.join("pinned"), root.path());

        containers
            .remove(&stuck)
            .expect("removed, though some files stay");

        assert!(!containers.holds_name("stuck", &id));
        assert!(matches!(
            containers.find("stuck"),
            Err(EngineError::NotFound(_))
        ));
        assert!(containers.list().unwrap().is_empty());
        let hidden = root.path().join(format!("containers/.removing-{id}"));
        assert!(hidden.join("upper/pinned").exists(), "left for the sweep");

        // Deletable again, and a minute old: the next removal sweeps it.
        drop(pinned);
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        File::open(&hidden).unwrap().set_modified(long_ago).unwrap();
        let next = "ef34".repeat(16);
        containers.reserve_name("next", &next).unwrap();
        containers.create(&record(&next, "next")).unwrap();
        containers.remove(&record(&next, "next")).unwrap();
        assert!(!hidden.exists(), "swept by the next removal");
    }
}
