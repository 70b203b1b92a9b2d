//! Rootless containers: the steps run by an ordinary user, as podman does.
//!
//! The user namespace is the one namespace an unprivileged process may
//! create, and once it exists, its root holds every capability *over the
//! namespaces it owns*: a PID, network, IPC, mount or UTS namespace made in
//! the same `clone` belongs to it. So a rootless start is the same sequence
//! as a root one, with three differences, all decided here, before the
//! clone ([`adapt`]):
//!
//! 1. There is always a user namespace, created first (steps 1–5 get one
//!    they would not need as root).
//! 2. Its maps. A process may map only its own uid and gid, one id each,
//!    and must write `deny` to `setgroups` first (user_namespaces(7)): the
//!    parent writes `0 UID 1` itself. A map of more ids (`--uid-map` with
//!    the user's `/etc/subuid` range) needs the setuid helpers `newuidmap`
//!    and `newgidmap` (Debian's `uidmap`), which check the ranges the
//!    administrator gave the user ([`write_maps`]).
//! 3. What needs root on the host is refused in one line: cgroup limits
//!    without a delegated cgroup (with one, see `crate::cgroup::delegation`,
//!    the container's group is made there), a bridge and its netfilter
//!    rules (a
//!    user-mode network, `--network pasta`, needs none: see
//!    `crate::net::usermode`). The
//!    root's overlay (the default rootfs's, or an image's layers, unpacked
//!    as the user: see `image::unpack::Shift::rootless`) is mounted by the
//!    child inside its user namespace instead of by the parent on the host
//!    (see `init`).

use std::path::PathBuf;
use std::process::Command;

use nix::sched::CloneFlags;
use nix::unistd::{Pid, getegid, geteuid};

use crate::idmap::{self, IdMap, IdMapError};
use crate::ns::Namespace;
use crate::spec::Spec;

/// Something a rootless start cannot do, with what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    /// Limits need a cgroup: root's, or a subtree delegated to the user
    /// (see `crate::cgroup::delegation`), and there is none.
    #[error(
        "limits without root need a cgroup v2 subtree the system delegates to you, and {why}: start caixa in one (systemd-run --user --scope -p Delegate=yes -- COMMAND), leave the limits out, or run as root"
    )]
    Limits {
        /// Why there is no delegated group here.
        why: String,
    },
    /// Device rules are a BPF program, which only root may load.
    #[error(
        "device rules for a cgroup load a BPF program, which needs root (in a user namespace no device node can be made anyway): leave them out, or run as root"
    )]
    DeviceRules,
    /// A bridge, veths and netfilter rules change the host's network.
    #[error(
        "a bridge and its netfilter rules change the host's network, which needs root: use --network none, or --network pasta (user-mode networking, no root needed), or run as root"
    )]
    Network,
    /// A path the overlay's options cannot carry.
    #[error(
        "the rootfs path {0} holds a ',' or ':', which overlayfs options cannot carry: set CAIXA_CACHE_DIR to a plain path"
    )]
    OverlayPath(PathBuf),
    /// A map of more than one's own id, and no helper to write it.
    #[error(
        "{helper} not found: a map of more ids than your own needs it (sudo apt-get install uidmap), or map only your own id (the default)"
    )]
    NoHelper {
        /// `newuidmap` or `newgidmap`.
        helper: &'static str,
    },
    /// The helper refused (no range in /etc/subuid, a range not yours …).
    #[error(
        "{helper} refused the map {maps}: {reason}; /etc/subuid and /etc/subgid list the ranges you may map"
    )]
    Helper {
        /// `newuidmap` or `newgidmap`.
        helper: &'static str,
        /// The map, as the helper got it.
        maps: String,
        /// Its first line of stderr.
        reason: String,
    },
    /// Writing our own one-id map failed.
    #[error(transparent)]
    IdMap(#[from] IdMapError),
}

/// Whether this start is rootless: we are not root on the host.
pub fn active() -> bool {
    !geteuid().is_root()
}

/// The maps of a rootless container by default: its root is the user
/// (`0 UID 1`, `0 GID 1`), the only ids a process may map by itself. As
/// root the default is the range of [`idmap::DEFAULT_ID_MAP`].
pub fn default_maps() -> (Vec<IdMap>, Vec<IdMap>) {
    if !active() {
        return (vec![idmap::DEFAULT_ID_MAP], vec![idmap::DEFAULT_ID_MAP]);
    }
    let own = |id: u32| IdMap {
        container: 0,
        host: id,
        count: 1,
    };
    (vec![own(geteuid().as_raw())], vec![own(getegid().as_raw())])
}

// ANCHOR: adapt
/// Makes `spec` one an ordinary user can start, or says in one line why it
/// cannot be: a user namespace first, the user's own ids mapped unless the
/// spec maps others, and nothing that needs root on the host.
pub fn adapt(spec: &Spec) -> Result<Spec, RootlessError> {
    refusal(spec)?;
    let mut spec = spec.clone();
    // Steps 7 on give every container a cgroup, limits or none, to tell an
    // OOM kill apart; without limits there is nothing a rootless one needs.
    // With limits, the group is made in the delegated subtree (`parent`).
    if spec.limits.as_ref().is_some_and(|l| l.is_empty()) {
        spec.limits = None;
    }
    if !spec.has(Namespace::User) {
        spec.namespaces.insert(0, Namespace::User);
    }
    let (uid, gid) = default_maps();
    if spec.uid_map.is_empty() {
        spec.uid_map = uid;
    }
    if spec.gid_map.is_empty() {
        spec.gid_map = gid;
    }
    Ok(spec)
}
// ANCHOR_END: adapt

/// What of `spec` needs root on the host, as the first error [`adapt`]
/// would give; the step binaries ask before they build a default rootfs.
pub fn refusal(spec: &Spec) -> Result<(), RootlessError> {
    refusal_with(spec, || {
        let hierarchy = crate::cgroup::detect().map_err(|e| e.to_string())?;
        crate::cgroup::delegation::find(&hierarchy)
    })
}

/// [`refusal`], with `delegated` asked for the delegated cgroup only when
/// the spec has limits.
fn refusal_with(
    spec: &Spec,
    delegated: impl FnOnce() -> Result<PathBuf, String>,
) -> Result<(), RootlessError> {
    if let Some(limits) = spec.limits.as_ref().filter(|l| !l.is_empty()) {
        if limits.devices.is_some() {
            return Err(RootlessError::DeviceRules);
        }
        delegated().map_err(|why| RootlessError::Limits { why })?;
    }
    if spec.network.is_some() || !spec.joined_networks.is_empty() {
        return Err(RootlessError::Network);
    }
    Ok(())
}

/// Why the kernel refused an ordinary user a user namespace (`clone`
/// failed with `errno`), read from the knobs that can refuse it, as one
/// line with what to do; `None` when none of them did (then the plain
/// `clone` advice stands).
pub fn userns_refused(errno: nix::errno::Errno) -> Option<String> {
    use nix::errno::Errno;
    let knob = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|text| text.trim().to_string())
    };
    let why = if knob("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        "user.max_user_namespaces is 0 here (an administrator may raise it: sudo sysctl -w user.max_user_namespaces=15000)"
    } else if errno == Errno::ENOSPC {
        return None;
    } else if knob("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        "Debian's kernel.unprivileged_userns_clone is 0 (an administrator may set it: sudo sysctl -w kernel.unprivileged_userns_clone=1)"
    } else if knob("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
    {
        "AppArmor restricts unprivileged user namespaces (Ubuntu 23.10 on: an administrator may set kernel.apparmor_restrict_unprivileged_userns=0, or give caixa an AppArmor profile that allows userns)"
    } else {
        "no sysctl forbids it, so a seccomp profile or a security module does (are you inside a container or a sandbox?)"
    };
    Some(format!(
        "the kernel gives an ordinary user no user namespace here ({errno}): {why}; or run as root"
    ))
}

// ANCHOR: write_maps
/// Writes the child's maps from an unprivileged parent: by itself when they
/// map only our own uid and gid, else through `newgidmap` and `newuidmap`,
/// setuid-root helpers that check `/etc/subgid` and `/etc/subuid` first.
pub fn write_maps(child: Pid, uid: &[IdMap], gid: &[IdMap]) -> Result<(), RootlessError> {
    if !maps_more_than_own_ids(uid, gid) {
        return Ok(idmap::write_maps(child, uid, gid)?);
    }
    // gid first, as the kernel would have it written by hand: newgidmap
    // leaves setgroups allowed, which it may, having checked the ranges.
    run_helper("newgidmap", child, gid)?;
    run_helper("newuidmap", child, uid)
}
// ANCHOR_END: write_maps

/// Whether `spec`'s maps name ids beyond the user's own uid and gid.
pub fn maps_more_than_own(spec: &Spec) -> bool {
    maps_more_than_own_ids(&spec.uid_map, &spec.gid_map)
}

fn maps_more_than_own_ids(uid: &[IdMap], gid: &[IdMap]) -> bool {
    let only_own = |maps: &[IdMap], own: u32| matches!(maps, [m] if m.host == own && m.count == 1);
    !(only_own(uid, geteuid().as_raw()) && only_own(gid, getegid().as_raw()))
}

/// `newuidmap PID C H N [C H N …]`, its first line of stderr on failure.
fn run_helper(helper: &'static str, child: Pid, maps: &[IdMap]) -> Result<(), RootlessError> {
    let args: Vec<String> = maps
        .iter()
        .flat_map(|m| [m.container, m.host, m.count])
        .map(|n| n.to_string())
        .collect();
    let output = match Command::new(helper)
        .arg(child.to_string())
        .args(&args)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RootlessError::NoHelper { helper });
        }
        Err(e) => {
            return Err(RootlessError::Helper {
                helper,
                maps: args.join(" "),
                reason: e.to_string(),
            });
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(RootlessError::Helper {
        helper,
        maps: args.join(" "),
        reason: stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("it failed and said nothing")
            .trim()
            .to_string(),
    })
}

// ANCHOR: remove_as_mapped_root
/// Deletes `dir` as root of a new user namespace with the maps `uid` and
/// `gid`: what a rootless container wrote as its other users belongs to
/// the user's subordinate ids, which the user may not delete on the host,
/// but root of a namespace mapping them may (`podman unshare rm` does the
/// same). The caller must be single-threaded, as for a start: the child
/// allocates as it walks the tree.
pub fn remove_as_mapped_root(
    dir: &std::path::Path,
    uid: &[IdMap],
    gid: &[IdMap],
) -> Result<(), String> {
    let what = format!("delete {}", dir.display());
    let (code, _) = as_mapped_root(CloneFlags::empty(), uid, gid, &what, |_| {
        i32::from(std::fs::remove_dir_all(dir).is_err())
    })?;
    match code {
        0 => Ok(()),
        _ => Err(format!(
            "deleting {} in a user namespace failed",
            dir.display()
        )),
    }
}

/// Runs `job` in a forked child that is root of a new user namespace with
/// the maps `uid` and `gid` (and of the namespaces `flags` adds, made in the
/// same clone): it waits on a pipe until the parent has written its maps,
/// becomes uid and gid 0 there, runs `job` and exits with what it returns.
/// Returns that code and what `job` wrote to the writer it is given (a
/// pipe: at most [`SAID_MAX`] bytes, a line saying what went wrong); `what`
/// names the job in errors.
pub fn as_mapped_root(
    flags: CloneFlags,
    uid: &[IdMap],
    gid: &[IdMap],
    what: &str,
    job: impl FnOnce(&mut dyn std::io::Write) -> i32,
) -> Result<(i32, String), String> {
    use std::io::Read;
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (said_r, said_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the child only reads a pipe, changes its ids, runs `job` and
    // exits. The callers make that safe: the step binaries are
    // single-threaded here (see `crate::ns::clone`), and a job for a
    // process with threads (the probe below) makes only system calls.
    let forked = unsafe { crate::ns::clone::clone_child(CloneFlags::CLONE_NEWUSER | flags) };
    match forked {
        Ok(crate::ns::clone::Forked::Child) => {
            drop((ready_w, said_r));
            let mut byte = [0u8; 1];
            let code = match nix::unistd::read(&ready_r, &mut byte) {
                Ok(1) => {
                    let zero = nix::unistd::Uid::from_raw(0);
                    let gzero = nix::unistd::Gid::from_raw(0);
                    let _ = nix::unistd::setresgid(gzero, gzero, gzero);
                    let _ = nix::unistd::setresuid(zero, zero, zero);
                    let mut said = std::fs::File::from(said_w);
                    job(&mut said)
                }
                _ => 255,
            };
            // SAFETY: ends this forked child without running the parent's
            // destructors.
            unsafe { libc::_exit(code) }
        }
        Ok(crate::ns::clone::Forked::Parent(pid)) => {
            drop((ready_r, said_w));
            let written = write_maps(pid, uid, gid).map_err(|e| e.to_string());
            if written.is_ok() {
                let _ = nix::unistd::write(&ready_w, b"1");
            }
            drop(ready_w);
            // Read until the child's end closes (its exit): the first
            // SAID_MAX bytes are kept (a job says one line), the rest read
            // and dropped, so a long message (a hostile layer's name) can
            // never fill the pipe and leave the child blocked on its write
            // while we wait for it.
            let mut said = Vec::new();
            let mut pipe = std::fs::File::from(said_r);
            let _ = (&mut pipe).take(SAID_MAX).read_to_end(&mut said);
            let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            let status = nix::sys::wait::waitpid(pid, None);
            written?;
            let said = String::from_utf8_lossy(&said).trim().to_string();
            match status {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => Ok((code, said)),
                other => Err(format!(
                    "{what} in a user namespace: the child ended {other:?}"
                )),
            }
        }
        Err(errno) => Err(format!("clone(CLONE_NEWUSER) to {what}: {errno}")),
    }
}

/// The most a job of [`as_mapped_root`] may say, in bytes.
pub const SAID_MAX: u64 = 4096;
// ANCHOR_END: remove_as_mapped_root

/// The overlay options the child of a rootless start mounts its root with
/// (`userxattr`: overlayfs keeps its own marks in `user.overlay.*`
/// attributes, the ones an unprivileged mounter may write).
pub fn overlay_options(
    lower: &[PathBuf],
    upper: &std::path::Path,
    work: &std::path::Path,
) -> Result<String, RootlessError> {
    Ok(overlay_dirs(lower, upper, work)? + ",userxattr")
}

/// The directories of an overlay as its options name them (lower ones top
/// first): the part overlayfs and fuse-overlayfs share. A path holding a
/// `,` or `:` cannot be carried, and is refused.
pub fn overlay_dirs(
    lower: &[PathBuf],
    upper: &std::path::Path,
    work: &std::path::Path,
) -> Result<String, RootlessError> {
    for path in lower.iter().map(PathBuf::as_path).chain([upper, work]) {
        let text = path.to_string_lossy();
        if text.contains(',') || text.contains(':') {
            return Err(RootlessError::OverlayPath(path.to_path_buf()));
        }
    }
    let lower: Vec<String> = lower.iter().map(|l| l.display().to_string()).collect();
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    ))
}

// ANCHOR: native_overlay_refused
/// Whether the kernel refuses this user the overlay `options` at `merged`:
/// tried once in a throwaway child, root of a new user and mount namespace
/// with the user's own ids (what the container's child will be), which
/// unmounts it again and exits. `Some(errno)` when the mount failed with
/// an error a refusal gives: `EPERM` (Linux before 5.11 has no overlayfs
/// in a user namespace, or a security module forbids it), `EINVAL` or
/// `EOPNOTSUPP` (an upper filesystem without `user.*` attributes, such as
/// tmpfs before Linux 6.6). A probe costs one clone, a mount and an
/// unmount; it is the kernel's own answer, where a version check would be
/// a guess (distributions back-port and forbid).
pub fn native_overlay_refused(
    options: &str,
    merged: &std::path::Path,
) -> Result<Option<nix::errno::Errno>, String> {
    use nix::errno::Errno;
    use std::os::unix::ffi::OsStrExt;
    // Built before the clone: the child only makes system calls.
    let cstring = |bytes: &[u8]| {
        std::ffi::CString::new(bytes).map_err(|_| format!("a NUL byte in {}", merged.display()))
    };
    let (target, data) = (
        cstring(merged.as_os_str().as_bytes())?,
        cstring(options.as_bytes())?,
    );
    let (uid, gid) = default_maps();
    let (code, _) = as_mapped_root(
        CloneFlags::CLONE_NEWNS,
        &uid,
        &gid,
        "probe overlayfs",
        |_| {
            let none = nix::mount::MsFlags::empty();
            let fstype = c"overlay";
            match nix::mount::mount(
                Some(fstype),
                target.as_c_str(),
                Some(fstype),
                none,
                Some(data.as_c_str()),
            ) {
                Ok(()) => {
                    let _ = nix::mount::umount2(target.as_c_str(), nix::mount::MntFlags::empty());
                    0
                }
                Err(errno) => errno as i32,
            }
        },
    )?;
    Ok(match Errno::from_raw(code) {
        _ if code == 0 => None,
        e @ (Errno::EPERM | Errno::EACCES | Errno::EINVAL | Errno::EOPNOTSUPP) => Some(e),
        // Anything else is not a refusal of user-namespace mounts: the
        // child's own mount will fail and say what it was.
        _ => None,
    })
}
// ANCHOR_END: native_overlay_refused

/// The user's own directory for `what` (`cache`, `runtime`, `data`): the
/// XDG base directory when it is set, else one under `$HOME`, else
/// `/tmp/caixa-UID` if that is the user's own directory. Root's directories
/// (`/var/cache`, `/run`, `/var/lib`) are not writable by a user.
pub fn user_dir(what: &str) -> PathBuf {
    let xdg = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    let home = || xdg("HOME").map(|h| PathBuf::from(h).join(".cache/caixa"));
    let found = match what {
        "runtime" => xdg("XDG_RUNTIME_DIR")
            .map(|d| PathBuf::from(d).join("caixa"))
            .or_else(|| home().map(|h| h.join("run"))),
        "data" => xdg("XDG_DATA_HOME")
            .map(|d| PathBuf::from(d).join("caixa"))
            .or_else(|| xdg("HOME").map(|h| PathBuf::from(h).join(".local/share/caixa"))),
        _ => xdg("XDG_CACHE_HOME")
            .map(|d| PathBuf::from(d).join("caixa"))
            .or_else(home),
    };
    found.unwrap_or_else(|| own_tmp_dir().join(what))
}

/// `/tmp/caixa-UID`, made 0700 if missing. Anyone may create that name
/// first, so it is used only if it is a real directory of ours (not a
/// symlink); else a path that cannot be written, so the start fails with
/// its one line saying which variable to set.
fn own_tmp_dir() -> PathBuf {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = geteuid().as_raw();
    let dir = PathBuf::from(format!("/tmp/caixa-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    match std::fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() && meta.uid() == uid && meta.mode() & 0o022 == 0 => dir,
        _ => PathBuf::from(format!("/nonexistent/caixa-{uid}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rootless_spec_gets_a_user_namespace_first_and_refuses_host_changes() {
        let mut spec = Spec::new(vec!["true".into()]);
        spec.namespaces = vec![Namespace::Pid];
        let adapted = adapt(&spec).unwrap();
        assert_eq!(adapted.namespaces, [Namespace::User, Namespace::Pid]);
        assert_eq!(adapted.uid_map.len(), 1);
        spec.limits = Some(Default::default());
        assert_eq!(adapt(&spec).unwrap().limits, None);
        spec.limits = Some(crate::cgroup::Limits {
            memory: Some(32 << 20),
            ..Default::default()
        });
        let none = || Err("nothing was delegated".to_string());
        assert!(matches!(
            refusal_with(&spec, none),
            Err(RootlessError::Limits { .. })
        ));
        assert!(refusal_with(&spec, || Ok(PathBuf::from("/sys/fs/cgroup/u"))).is_ok());
        spec.limits.as_mut().unwrap().devices = Some(Vec::new());
        assert!(matches!(
            refusal_with(&spec, none),
            Err(RootlessError::DeviceRules)
        ));
    }

    #[test]
    fn a_job_that_says_too_much_is_cut_and_never_stuck() {
        // Root's own ids, mapped to themselves: no helper needed. The job
        // writes four times a pipe's usual capacity (a hostile layer's
        // name can be that long); the buffer is made before the fork, the
        // child only writes it.
        let own = [IdMap {
            container: 0,
            host: geteuid().as_raw(),
            count: 1,
        }];
        let group = [IdMap {
            container: 0,
            host: getegid().as_raw(),
            count: 1,
        }];
        let long = vec![b'x'; 256 << 10];
        let (code, said) = as_mapped_root(CloneFlags::empty(), &own, &group, "say", |out| {
            let _ = out.write_all(&long);
            7
        })
        .unwrap();
        assert_eq!((code, said.len()), (7, SAID_MAX as usize));
    }

    #[test]
    fn overlay_options_refuse_what_they_cannot_carry() {
        let p = std::path::Path::new;
        let l = |s: &str| vec![PathBuf::from(s)];
        let two = vec![PathBuf::from("/l/2"), PathBuf::from("/l/1")];
        assert_eq!(
            overlay_options(&two, p("/u"), p("/w")).unwrap(),
            "lowerdir=/l/2:/l/1,upperdir=/u,workdir=/w,userxattr"
        );
        assert!(overlay_options(&l("/a,b"), p("/u"), p("/w")).is_err());
        assert!(overlay_options(&l("/l"), p("/u:x"), p("/w")).is_err());
    }
}
