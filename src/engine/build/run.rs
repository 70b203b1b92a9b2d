//! RUN: a command in a container of the layers so far; its changes, a layer.
//!
//! The container is an ordinary caixa container: an overlay of the image's
//! layers under a fresh upper directory, every namespace, the default
//! capabilities, seccomp filter and user namespace (container root is host
//! uid 100000), the image's Env, WorkingDir and User. Its network namespace
//! has only `lo`: a build's RUN reaches no network (Docker's
//! `--network none`); nothing on the host is published either.
//!
//! The runtime's parent side must run in a single-threaded process (it
//! clones, blocks signals and waits for SIGCHLD), and the daemon has many
//! threads; so the daemon writes the container as an OCI bundle and starts
//! its own binary on it (`step11 build-run DIR ID`, [`helper`]), as it
//! starts a shim. What the command prints comes back on one pipe and goes
//! to the client as it comes. When it has ended, [`super::super::super::image::diff`]
//! turns the upper directory into the layer, and the container's
//! directory, its mount (if a killed helper left it) and the bundle go, on
//! every path.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::BuildError;
use crate::image::diff::{Layer, write_layer};
use crate::image::overlay::{ImageRoot, is_mounted};
use crate::image::store::Store;
use crate::image::unpack::Shift;
use crate::privilege::Privilege;
use crate::spec::Spec;

/// What one RUN runs.
#[derive(Debug, Clone)]
pub struct RunStep {
    /// The manifest of the image so far.
    pub manifest: String,
    /// The command (exec form, or the shell and the text).
    pub args: Vec<String>,
    /// The environment: the image's Env and the build's ARGs.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// The user, if not root.
    pub user: Option<String>,
}

/// The host ids a build container's root maps to: the default id map's.
pub fn build_shift() -> Shift {
    let map = crate::idmap::DEFAULT_ID_MAP;
    Shift {
        uid_base: map.host,
        gid_base: map.host,
        count: map.count,
        rootless: false,
        mapped: None,
    }
}

/// The host ids a container's root maps to, read from its bundle's maps:
/// uids from the uid map and gids from the gid map, which may differ (a
/// container made with other maps than the default); for a map without
/// container id 0, the default's. The count is what both maps cover, so no
/// id is shifted past the end of either.
pub fn shift_of(
    uid_map: Option<&[oci_spec::runtime::LinuxIdMapping]>,
    gid_map: Option<&[oci_spec::runtime::LinuxIdMapping]>,
) -> Shift {
    let default = build_shift();
    let root = |map: Option<&[oci_spec::runtime::LinuxIdMapping]>| {
        map.and_then(|m| m.iter().find(|m| m.container_id() == 0))
            .map_or((default.uid_base, default.count), |m| {
                (m.host_id(), m.size())
            })
    };
    let ((uid_base, uid_count), (gid_base, gid_count)) = (root(uid_map), root(gid_map));
    Shift {
        uid_base,
        gid_base,
        count: uid_count.min(gid_count),
        rootless: false,
        mapped: None,
    }
}

/// Removes a build container's traces when dropped: its mount, if a
/// killed helper left it, its directory (upper, work), its bundle.
struct Traces {
    container_dir: PathBuf,
    bundle: PathBuf,
}

impl Drop for Traces {
    fn drop(&mut self) {
        let merged = self.container_dir.join("merged");
        if is_mounted(&merged) {
            let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.container_dir);
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

// ANCHOR: run_step
/// Runs `step` in a container of the image so far, passing what it prints
/// to `output`; returns its changes as a layer in `store`.
pub fn run_step(
    store: &Store,
    exe: &Path,
    work: &Path,
    step: &RunStep,
    output: &mut dyn FnMut(&str),
) -> Result<Layer, BuildError> {
    let mut spec = Spec::new(step.args.clone());
    spec.namespaces = crate::ns::ALL.to_vec();
    spec.process.env = step.env.clone();
    spec.process.cwd = PathBuf::from(if step.cwd.is_empty() { "/" } else { &step.cwd });
    spec.process.user = step.user.clone();
    spec.hostname = Some(spec.id.clone());
    spec.image = Some(ImageRoot {
        store: store.root.clone(),
        manifest: step.manifest.clone(),
        // Its upper directory outlives the helper: it becomes the layer.
        keep: true,
    });
    Privilege::default()
        .apply(&mut spec)
        .map_err(|e| BuildError::Other(e.to_string()))?;
    let id = spec.id.clone();
    let traces = Traces {
        container_dir: store.container_dir(&id),
        bundle: work.join(format!("run-{id}")),
    };
    std::fs::create_dir_all(&traces.bundle).map_err(BuildError::io(&traces.bundle))?;
    let oci = crate::bundle::to_oci(&spec).map_err(|e| BuildError::Other(e.to_string()))?;
    crate::bundle::write(&traces.bundle, &oci).map_err(|e| BuildError::Other(e.to_string()))?;

    output(&format!(" ---> Running in {id}\n"));
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| BuildError::Other(format!("pipe: {e}")))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| BuildError::Other(format!("dup: {e}")))?;
    let mut child = Command::new(exe)
        .current_dir("/")
        .arg("--root")
        .arg(&store.root)
        .arg("build-run")
        .arg(&traces.bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .spawn()
        .map_err(|e| BuildError::Other(format!("starting {}: {e}", exe.display())))?;
    // Our copies of the write end went into the Command, which is gone:
    // the pipe ends when the helper and the container have exited.
    pump(reader, output);
    let status = child
        .wait()
        .map_err(|e| BuildError::Other(format!("waiting for the RUN helper: {e}")))?;
    output(&format!("Removing intermediate container {id}\n"));
    if !status.success() {
        return Err(BuildError::RunFailed {
            command: step.args.join(" "),
            code: status.code().unwrap_or(255),
        });
    }
    let upper = traces.container_dir.join("upper");
    let layer = write_layer(store, &upper, &build_shift())?;
    drop(traces);
    Ok(layer)
}
// ANCHOR_END: run_step

fn pump(reader: OwnedFd, output: &mut dyn FnMut(&str)) {
    let mut file = std::fs::File::from(reader);
    let mut buf = [0u8; 8192];
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => output(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

/// The helper's side (`step11 build-run DIR ID`): runs the bundle in `dir`
/// as container `id` in this single-threaded process, with this process's
/// stdio; returns the exit code to end with.
pub fn helper(dir: &Path, id: &str) -> i32 {
    let spec =
        crate::bundle::read(dir).and_then(|config| crate::bundle::from_oci(&config, dir, id));
    let spec = match spec {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("caixa build: {e}");
            return crate::exit::codes::SETUP_FAILED;
        }
    };
    match crate::parent::run(&spec) {
        Ok(ended) => {
            for e in &ended.cleanup_errors {
                eprintln!("caixa build: cleanup: {e}");
            }
            ended.exit.code()
        }
        Err(e) => {
            eprintln!("caixa build: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};

    fn map(container: u32, host: u32, size: u32) -> LinuxIdMapping {
        LinuxIdMappingBuilder::default()
            .container_id(container)
            .host_id(host)
            .size(size)
            .build()
            .unwrap()
    }

    #[test]
    fn a_commits_gids_come_from_the_gid_map_not_the_uid_map() {
        let shift = shift_of(
            Some(&[map(0, 100_000, 65_536)]),
            Some(&[map(0, 200_000, 65_536)]),
        );
        assert_eq!(
            (shift.uid_base, shift.gid_base, shift.count),
            (100_000, 200_000, 65_536),
            "expected the gid base from the gid map; most likely cause: shift_of reads the \
             uid map twice"
        );
    }

    #[test]
    fn a_missing_map_falls_back_to_the_default_and_the_count_is_what_both_cover() {
        let default = build_shift();
        let shift = shift_of(Some(&[map(1, 5, 10), map(0, 300_000, 1_000)]), None);
        assert_eq!(
            (shift.uid_base, shift.gid_base, shift.count),
            (300_000, default.gid_base, 1_000.min(default.count)),
            "expected the uid map's root entry, the default gid base, and the smaller count"
        );
    }
}
