//! The plan for one container: which namespaces, which root, which command.
//!
//! A step binary fills a [`Spec`] with more features switched on at each step;
//! [`crate::parent::start`] carries it out. Steps switch features on; they
//! never reorder them: the order lives in `parent::start` and `init::run` alone.

use std::path::PathBuf;

use crate::idmap::IdMap;
use crate::ns::{self, Namespace};

/// The `PATH` a container gets when the caller sets none, as Docker's.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The command and its arguments; `args[0]` is looked up in `PATH`.
    pub args: Vec<String>,
    /// The environment, as `KEY=VALUE` strings.
    pub env: Vec<String>,
    /// The working directory, inside the container.
    pub cwd: PathBuf,
    /// The user to run as (`uid[:gid]` or a name from the container's
    /// /etc/passwd), from an image's config (step 9); `None` is root.
    pub user: Option<String>,
    /// The command's file mode creation mask (`process.user.umask` of a
    /// bundle, step 12); `None` is Docker's 022.
    pub umask: Option<u32>,
    /// Resource limits the command starts with (`process.rlimits`, step 12).
    pub rlimits: Vec<crate::rlimit::Rlimit>,
    /// Supplementary groups besides the user's own group
    /// (`process.user.additionalGids`, step 12).
    pub additional_gids: Vec<u32>,
}

// ANCHOR: spec_struct
/// Everything needed to start one container.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// A short random id (12 hex digits): names the container's cgroup.
    pub id: String,
    /// The namespaces to create, in step order.
    pub namespaces: Vec<Namespace>,
    /// What to run.
    pub process: Process,
    /// The root filesystem (needs the mount namespace); `None` keeps the host's.
    pub root: Option<PathBuf>,
    /// `root` is a tree every container shares (the default rootfs, steps
    /// 6–8): the container gets a copy-on-write overlay of it of its own.
    pub root_overlay: bool,
    /// That overlay when the child mounts it on `root` itself, in its own
    /// mount namespace: a rootless start, whose parent may not mount on the
    /// host, or the shared root, which nobody on the host needs (set by the
    /// parent, see `image::overlay::Mounter`).
    pub root_overlay_in_child: Option<crate::image::overlay::ChildOverlay>,
    /// The host name (needs the UTS namespace).
    pub hostname: Option<String>,
    /// uid and gid maps (needs the user namespace; step 6).
    pub uid_map: Vec<IdMap>,
    /// See `uid_map`.
    pub gid_map: Vec<IdMap>,
    /// The capabilities to keep (step 6); `None` keeps all of root's.
    pub capabilities: Option<Vec<caps::Capability>>,
    /// Set no_new_privs: no exec may gain privilege (setuid bits, file caps).
    pub no_new_privs: bool,
    /// The seccomp filter to install last (step 6): none, caixa's default,
    /// or a profile from a bundle's config.json.
    pub seccomp: crate::seccomp::Confinement,
    /// Resource limits (step 7): `Some` creates a cgroup for the container.
    pub limits: Option<crate::cgroup::Limits>,
    /// A network (step 8): bridge, veth, address, published ports.
    pub network: Option<crate::net::NetworkSpec>,
    /// The networks it joined after it was made (`docker network
    /// connect`), on `eth1`, `eth2`…: beside `network`, never without it.
    pub joined_networks: Vec<crate::net::NetworkSpec>,
    /// A user-mode network instead (`--network pasta`): what a rootless
    /// container has for a way out, since a bridge needs root.
    pub user_network: Option<crate::net::usermode::UserModeNetwork>,
    /// Host directories and files bind-mounted into the container, in
    /// order: volumes (`-v`) and the network's `/etc/hosts` and friends.
    pub mounts: Vec<crate::rootfs::binds::Bind>,
    /// An image to build the root from (step 9): an overlay of its layers.
    pub image: Option<crate::image::overlay::ImageRoot>,
    /// Print each setup step as it happens (`-v`).
    pub verbose: bool,
    /// The container's stdin, stdout and stderr: descriptors of the caller
    /// that become its 0, 1 and 2 (the engine's shim gives pipes). `None`
    /// shares the caller's own, as the step binaries do.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// Give the container a terminal (`-t`): a pty made in its own devpts,
    /// whose master end goes to the parent (needs a root filesystem).
    pub terminal: bool,
    /// Kernel parameters of the container's namespaces, written under
    /// `/proc/sys` (`linux.sysctl` of a bundle, step 12; see [`crate::sysctl`]).
    pub sysctl: Vec<(String, String)>,
    /// A bundle's own mounts and masked and read-only paths, mounted
    /// instead of caixa's defaults and `mounts` (step 12).
    pub mount_table: Option<crate::rootfs::table::Table>,
    /// A cgroup namespace of its own (a bundle's, step 12): the init
    /// unshares it once it is in its cgroup, so `/proc/self/cgroup` reads
    /// `/` inside and a `cgroup` mount shows its own groups only.
    pub cgroup_ns: bool,
    /// Namespaces that exist already, entered by path instead of made (a
    /// bundle's `linux.namespaces[].path`, step 12; see
    /// [`crate::ns::enter`]): network, IPC and UTS only.
    pub entered: Vec<(Namespace, PathBuf)>,
    /// A bundle's hooks (step 12; see [`crate::hooks`]).
    pub hooks: Option<crate::hooks::Hooks>,
    /// Filesystems in memory, mounted after the binds (`--tmpfs`).
    pub tmpfs: Vec<crate::rootfs::tmpfs::Tmpfs>,
    /// Make the root read-only once everything is mounted (`--read-only`,
    /// a bundle's `root.readonly`): only volumes and tmpfs stay writable.
    pub readonly_root: bool,
    /// Keep a tiny init as pid 1 that reaps orphans and passes signals on,
    /// and run the command as its child (`--init`; see [`crate::reaper`]).
    pub init: bool,
    /// Sweep what dead starts left (`crate::leftovers`) before this one:
    /// each step binary and the OCI runtime are the only caixa on the host
    /// that would, so they do it first. The engine's shims do not: the
    /// daemon sweeps when it starts and when it finds a shim dead, so a
    /// start does not cost more with each container already up.
    pub sweep_leftovers: bool,
}
// ANCHOR_END: spec_struct

/// A plan that cannot be carried out, found before anything is created.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// No command at all.
    #[error("no command to run")]
    NoCommand,
    /// A NUL byte cannot pass through execve.
    #[error("{what} contains a NUL byte: {value:?}")]
    NulByte {
        /// Which part of the process.
        what: &'static str,
        /// The offending string.
        value: String,
    },
    /// Env entries must look like `KEY=VALUE`.
    #[error("environment entry {0:?} is not KEY=VALUE")]
    BadEnv(String),
    /// A feature asked for without the namespace that keeps it from the host.
    #[error("{feature} needs a new {namespace} namespace, or it would change the host's")]
    NeedsNamespace {
        /// The feature.
        feature: &'static str,
        /// The namespace it needs.
        namespace: Namespace,
    },
    /// The host name breaks the rules of `uts::is_valid_hostname`.
    #[error(
        "invalid host name {0:?}: use 1-64 letters, digits, '-' and '.', not starting with '-' or '.'"
    )]
    BadHostname(String),
    /// The root directory does not exist.
    #[error("root filesystem {0} does not exist: pass --rootfs with an existing directory")]
    RootMissing(PathBuf),
    /// The root is not a directory.
    #[error("root filesystem {0} is not a directory: pass --rootfs with a directory")]
    RootNotDirectory(PathBuf),
    /// The uid or gid map is malformed, overlaps, or is missing.
    #[error("{0}")]
    IdMap(String),
    /// The working directory must be absolute.
    #[error("working directory {0} is not an absolute path")]
    RelativeCwd(PathBuf),
    /// A kernel parameter the container may not set.
    #[error("linux.sysctl: {0}")]
    Sysctl(String),
    /// Networks joined later without a first network.
    #[error("{0}")]
    Networks(String),
}

impl Spec {
    /// A plan to run `args` with no new namespaces yet; the steps add them.
    pub fn new(args: Vec<String>) -> Self {
        Spec {
            id: ns::uts::short_random_id(),
            namespaces: Vec::new(),
            process: Process {
                args,
                env: vec![format!("PATH={DEFAULT_PATH}")],
                cwd: PathBuf::from("/"),
                user: None,
                umask: None,
                rlimits: Vec::new(),
                additional_gids: Vec::new(),
            },
            root: None,
            root_overlay: false,
            root_overlay_in_child: None,
            hostname: None,
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            capabilities: None,
            no_new_privs: false,
            seccomp: crate::seccomp::Confinement::Unconfined,
            limits: None,
            network: None,
            joined_networks: Vec::new(),
            user_network: None,
            mounts: Vec::new(),
            image: None,
            verbose: false,
            stdio: None,
            terminal: false,
            sysctl: Vec::new(),
            mount_table: None,
            cgroup_ns: false,
            entered: Vec::new(),
            hooks: None,
            tmpfs: Vec::new(),
            readonly_root: false,
            init: false,
            sweep_leftovers: true,
        }
    }

    /// The namespaces that are the container's own: those it makes, and
    /// those it enters by path (never the host's: [`crate::ns::enter`]
    /// refuses that).
    pub fn own_namespaces(&self) -> Vec<Namespace> {
        let entered = self.entered.iter().map(|(kind, _)| *kind);
        self.namespaces.iter().copied().chain(entered).collect()
    }

    /// Whether the plan creates a namespace of this kind.
    pub fn has(&self, namespace: Namespace) -> bool {
        self.namespaces.contains(&namespace)
    }

    /// Checks every field, so a bad plan fails with one clear line before any
    /// process or namespace exists.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.process.args.is_empty() {
            return Err(SpecError::NoCommand);
        }
        for arg in &self.process.args {
            no_nul("an argument", arg)?;
        }
        for entry in &self.process.env {
            no_nul("an environment entry", entry)?;
            if !entry.contains('=') || entry.starts_with('=') {
                return Err(SpecError::BadEnv(entry.clone()));
            }
        }
        if !self.process.cwd.is_absolute() {
            return Err(SpecError::RelativeCwd(self.process.cwd.clone()));
        }
        if let Some(name) = &self.hostname {
            // A UTS namespace entered by path is the container's too (never
            // the runtime's own: ns::enter refuses that), as runc allows.
            if !self.own_namespaces().contains(&Namespace::Uts) {
                return Err(SpecError::NeedsNamespace {
                    feature: "setting the host name",
                    namespace: Namespace::Uts,
                });
            }
            if !ns::uts::is_valid_hostname(name) {
                return Err(SpecError::BadHostname(name.clone()));
            }
        }
        if self.terminal && self.root.is_none() && self.image.is_none() {
            return Err(SpecError::NeedsNamespace {
                feature: "a terminal (its own devpts)",
                namespace: Namespace::Mount,
            });
        }
        if self.image.is_some() && !self.has(Namespace::Mount) {
            return Err(SpecError::NeedsNamespace {
                feature: "an image's root filesystem",
                namespace: Namespace::Mount,
            });
        }
        for (key, _) in &self.sysctl {
            if let Some(why) = crate::sysctl::refusal(key, &self.own_namespaces()) {
                return Err(SpecError::Sysctl(why));
            }
        }
        let has_root = self.root.is_some() || self.image.is_some();
        if (!self.tmpfs.is_empty() || self.readonly_root) && !has_root {
            return Err(SpecError::NeedsNamespace {
                feature: "--tmpfs and --read-only (a root filesystem)",
                namespace: Namespace::Mount,
            });
        }
        if self.init && !self.has(Namespace::Pid) {
            return Err(SpecError::NeedsNamespace {
                feature: "--init (pid 1 of a PID namespace)",
                namespace: Namespace::Pid,
            });
        }
        if self.mount_table.is_some() && self.root.is_none() && self.image.is_none() {
            return Err(SpecError::NeedsNamespace {
                feature: "a mount table (a root filesystem)",
                namespace: Namespace::Mount,
            });
        }
        if self.network.is_none() && !self.joined_networks.is_empty() {
            return Err(SpecError::Networks(
                "a container joins more networks only beside its first: it has none".into(),
            ));
        }
        if self.network.is_some() && self.user_network.is_some() {
            return Err(SpecError::Networks(
                "a container has a bridge network or a user-mode one, not both".into(),
            ));
        }
        if (self.network.is_some() || self.user_network.is_some()) && !self.has(Namespace::Net) {
            return Err(SpecError::NeedsNamespace {
                feature: "a network",
                namespace: Namespace::Net,
            });
        }
        if let Some(root) = &self.root {
            if !self.has(Namespace::Mount) {
                return Err(SpecError::NeedsNamespace {
                    feature: "a root filesystem",
                    namespace: Namespace::Mount,
                });
            }
            match std::fs::metadata(root) {
                Err(_) => return Err(SpecError::RootMissing(root.clone())),
                Ok(meta) if !meta.is_dir() => {
                    return Err(SpecError::RootNotDirectory(root.clone()));
                }
                Ok(_) => {}
            }
        }
        if (!self.uid_map.is_empty() || !self.gid_map.is_empty()) && !self.has(Namespace::User) {
            return Err(SpecError::NeedsNamespace {
                feature: "a uid/gid map",
                namespace: Namespace::User,
            });
        }
        if self.has(Namespace::User) {
            for (name, map) in [("uid", &self.uid_map), ("gid", &self.gid_map)] {
                if !map.iter().any(|m| m.container == 0) {
                    return Err(SpecError::IdMap(format!(
                        "the {name} map must map container id 0 (root), e.g. --{name}-map 0:100000:65536"
                    )));
                }
                crate::idmap::check(map)
                    .map_err(|e| SpecError::IdMap(format!("{name} map: {e}")))?;
            }
        }
        Ok(())
    }
}

/// Sets `KEY=VALUE` in `env`, replacing an earlier value of the same key.
pub fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or_default().to_string();
    env.retain(|e| e.split('=').next() != Some(key.as_str()));
    env.push(entry);
}

/// Refuses `value` if it holds a NUL byte: `execve` takes C strings, and a
/// NUL would end the string there (or, turned into one, drop it), so the
/// command run would not be the one asked for. Every path to an `execve`
/// checks its strings with this before anything starts.
pub fn no_nul(what: &'static str, value: &str) -> Result<(), SpecError> {
    if value.contains('\0') {
        return Err(SpecError::NulByte {
            what,
            value: value.replace('\0', "\\0"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec::new(vec!["true".into()])
    }

    #[test]
    fn a_plain_spec_is_valid() {
        assert_eq!(spec().validate(), Ok(()));
    }

    #[test]
    fn a_hostname_without_uts_would_rename_the_host() {
        let mut s = spec();
        s.hostname = Some("box".into());
        assert!(matches!(
            s.validate(),
            Err(SpecError::NeedsNamespace {
                namespace: Namespace::Uts,
                ..
            })
        ));
        s.namespaces.push(Namespace::Uts);
        assert_eq!(s.validate(), Ok(()));
        s.hostname = Some("bad name".into());
        assert!(matches!(s.validate(), Err(SpecError::BadHostname(_))));
    }

    /// runtime-tools' linux_ns_path: a host name with the UTS namespace
    /// given by path (a pod's shared one) is set there, as runc does.
    #[test]
    fn a_hostname_may_go_to_a_uts_namespace_entered_by_path() {
        let mut s = spec();
        s.hostname = Some("box".into());
        s.entered.push((Namespace::Uts, "/proc/1234/ns/uts".into()));
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn a_root_needs_the_mount_namespace_and_a_directory() {
        let mut s = spec();
        s.root = Some("/".into());
        assert!(matches!(
            s.validate(),
            Err(SpecError::NeedsNamespace { .. })
        ));
        s.namespaces.push(Namespace::Mount);
        assert_eq!(s.validate(), Ok(()));
        s.root = Some("/nonexistent/caixa".into());
        assert!(matches!(s.validate(), Err(SpecError::RootMissing(_))));
        s.root = Some("/proc/self/status".into());
        assert!(matches!(s.validate(), Err(SpecError::RootNotDirectory(_))));
    }

    #[test]
    fn bad_process_fields_are_refused() {
        let mut s = spec();
        s.process.args = vec![];
        assert_eq!(s.validate(), Err(SpecError::NoCommand));
        let mut s = spec();
        s.process.args.push("a\0b".into());
        assert!(matches!(s.validate(), Err(SpecError::NulByte { .. })));
        let mut s = spec();
        s.process.env.push("NOEQUALS".into());
        assert!(matches!(s.validate(), Err(SpecError::BadEnv(_))));
        let mut s = spec();
        s.process.cwd = "relative".into();
        assert!(matches!(s.validate(), Err(SpecError::RelativeCwd(_))));
    }
}
