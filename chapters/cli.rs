//! The command line the step binaries share, modelled on `docker run`.
//!
//! It lives beside the step binaries, not in the library: a command line is
//! one way to describe a container (the engine's API is another), and the
//! library never ends the process. Each binary includes this file
//! (`#[path = "../cli.rs"] mod cli;`) and uses the part its step needs.
//!
//! `stepN [OPTIONS] [COMMAND [ARG...]]`: options come first; the first word
//! that is not an option is the command, and everything after it is the
//! command's, even words that start with `-`. With no command, an interactive
//! shell runs.

#![allow(dead_code, unused_imports)] // each step binary uses the part its step needs

use std::path::PathBuf;

use clap::Args;

use caixa::exit::codes;
use caixa::idmap::IdMap;
use caixa::ns::Namespace;
use caixa::rootfs::busybox;
use caixa::spec::Spec;

/// Options every step has.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Print each setup step as it happens, with its time since start.
    #[arg(short, long)]
    pub(crate) verbose: bool,

    /// Set an environment variable in the container (KEY=VALUE, or KEY to pass
    /// the host's value on). May be repeated.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub(crate) env: Vec<String>,

    /// Working directory inside the container (default: /, or the image's).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub(crate) workdir: Option<PathBuf>,

    /// The command to run and its arguments (default: an interactive shell).
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

/// `--rootfs` (step 4 and later).
#[derive(Debug, Args)]
pub(crate) struct RootfsArgs {
    /// The container's root filesystem: any directory. Default: a busybox
    /// rootfs built on first use from the host's static busybox.
    #[arg(long, value_name = "DIR")]
    pub(crate) rootfs: Option<PathBuf>,
    /// Host paths in the container.
    #[command(flatten)]
    pub(crate) volumes: VolumeArgs,
}

/// `--volume` (step 4 and later): host directories and files bind-mounted
/// into the container. The long form only: `-v` has meant `--verbose` since
/// step 1. Named volumes are the engine's (step 11, `step11 run -v`).
#[derive(Debug, Args)]
pub(crate) struct VolumeArgs {
    /// Bind-mount a host path into the container: HOST:PATH[:ro]
    /// (repeatable). The host path must exist.
    #[arg(long = "volume", value_name = "HOST:PATH[:ro]")]
    pub(crate) volume: Vec<caixa::rootfs::binds::VolumeArg>,
}

impl VolumeArgs {
    /// Adds the binds to `spec`; a named or anonymous volume is refused in
    /// one line: only the engine keeps volumes.
    pub(crate) fn apply(&self, program: &str, spec: &mut Spec) {
        use caixa::rootfs::binds::{Bind, VolumeSource};
        for v in &self.volume {
            let VolumeSource::Host(source) = &v.source else {
                eprintln!(
                    "{program}: --volume {}: named and anonymous volumes are kept by the engine (step11 run -v); here give a host path, e.g. --volume /srv/site:{}",
                    v.target.display(),
                    v.target.display()
                );
                std::process::exit(codes::SETUP_FAILED);
            };
            spec.mounts.push(Bind {
                source: source.clone(),
                target: v.target.clone(),
                read_only: v.read_only,
            });
        }
    }
}

/// `--hostname` (step 5 and later).
#[derive(Debug, Args)]
pub(crate) struct HostnameArgs {
    /// The container's host name (default: a random 12-digit id, as Docker).
    #[arg(long, short = 'H', value_name = "NAME")]
    pub(crate) hostname: Option<String>,
}

/// Options of the user namespace and privilege (step 6 and later).
#[derive(Debug, Args)]
pub(crate) struct PrivilegeArgs {
    /// A uid map range CONTAINER:HOST:COUNT (repeatable). Default 0:100000:65536.
    #[arg(long = "uid-map", value_name = "C:H:N")]
    pub(crate) uid_map: Vec<IdMap>,

    /// A gid map range CONTAINER:HOST:COUNT (repeatable). Default 0:100000:65536.
    #[arg(long = "gid-map", value_name = "C:H:N")]
    pub(crate) gid_map: Vec<IdMap>,

    /// Keep a capability beyond Docker's 14 defaults (e.g. NET_ADMIN, or ALL).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub(crate) cap_add: Vec<String>,

    /// Drop a capability of the defaults (e.g. NET_RAW, or ALL).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub(crate) cap_drop: Vec<String>,

    /// `seccomp=unconfined` turns the seccomp filter off;
    /// `no-new-privileges=false` turns no_new_privs off (needs seccomp=unconfined).
    #[arg(long = "security-opt", value_name = "OPT")]
    pub(crate) security_opt: Vec<String>,
}

impl PrivilegeArgs {
    /// Fills the user namespace, capability, no_new_privs and seccomp fields.
    pub(crate) fn apply(&self, spec: &mut Spec) -> Result<(), caixa::privilege::PrivilegeError> {
        caixa::privilege::Privilege {
            uid_map: &self.uid_map,
            gid_map: &self.gid_map,
            cap_add: &self.cap_add,
            cap_drop: &self.cap_drop,
            security_opt: &self.security_opt,
        }
        .apply(spec)
    }
}

/// Resource limits (step 7 and later), named like `docker run`'s.
#[derive(Debug, Args)]
pub(crate) struct CgroupArgs {
    /// Memory limit (e.g. 32m, 1g). A process going past it is OOM-killed.
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub(crate) memory: Option<u64>,
    /// Memory plus swap (e.g. 64m), or -1 for unlimited swap.
    #[arg(long = "memory-swap", value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_swap_arg)]
    pub(crate) memory_swap: Option<i64>,
    /// CPUs' worth of time (e.g. 0.5 for half a CPU).
    #[arg(long, value_name = "N")]
    pub(crate) cpus: Option<f64>,
    /// Relative CPU priority on the v1 scale (default 1024).
    #[arg(short = 'c', long = "cpu-shares", value_name = "N")]
    pub(crate) cpu_shares: Option<u64>,
    /// Relative CPU priority on the v2 scale (1-10000, default 100).
    #[arg(long = "cpu-weight", value_name = "N")]
    pub(crate) cpu_weight: Option<u64>,
    /// Most processes at once (0 or -1: unlimited).
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pub(crate) pids_limit: Option<i64>,
    /// Relative disk priority, 10-1000 (needs the BFQ I/O scheduler).
    #[arg(long = "blkio-weight", value_name = "N")]
    pub(crate) blkio_weight: Option<u16>,
    /// Read rate limit for a device, DEVICE:RATE (e.g. /dev/vda:1mb). Repeatable.
    #[arg(long = "device-read-bps", value_name = "DEV:RATE")]
    pub(crate) device_read_bps: Vec<String>,
    /// Write rate limit for a device, DEVICE:RATE. Repeatable.
    #[arg(long = "device-write-bps", value_name = "DEV:RATE")]
    pub(crate) device_write_bps: Vec<String>,
    /// Read operations per second for a device, DEVICE:N. Repeatable.
    #[arg(long = "device-read-iops", value_name = "DEV:N")]
    pub(crate) device_read_iops: Vec<String>,
    /// Write operations per second for a device, DEVICE:N. Repeatable.
    #[arg(long = "device-write-iops", value_name = "DEV:N")]
    pub(crate) device_write_iops: Vec<String>,
    /// CPUs the container may run on (e.g. 0-1, or 0,2).
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    pub(crate) cpuset_cpus: Option<String>,
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    caixa::units::parse_size(text).map_err(|e| e.to_string())
}

fn parse_swap_arg(text: &str) -> Result<i64, String> {
    if text == "-1" {
        return Ok(-1);
    }
    caixa::units::parse_size(text)
        .map(|n| n as i64)
        .map_err(|e| e.to_string())
}

impl CgroupArgs {
    /// The limits these options ask for (always `Some`: every step-7
    /// container gets a cgroup, so an OOM kill can be told apart even without limits).
    pub(crate) fn to_limits(&self) -> Result<caixa::cgroup::Limits, caixa::cgroup::CgroupError> {
        use caixa::cgroup::parse_device_rate;
        let rates = |list: &[String], iops: bool| -> Result<Vec<_>, _> {
            list.iter().map(|t| parse_device_rate(t, iops)).collect()
        };
        let limits = caixa::cgroup::Limits {
            memory: self.memory,
            memory_swap: self.memory_swap,
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            cpu_weight: self.cpu_weight,
            pids_limit: self.pids_limit,
            blkio_weight: self.blkio_weight,
            device_read_bps: rates(&self.device_read_bps, false)?,
            device_write_bps: rates(&self.device_write_bps, false)?,
            device_read_iops: rates(&self.device_read_iops, true)?,
            device_write_iops: rates(&self.device_write_iops, true)?,
            cpuset_cpus: self.cpuset_cpus.clone(),
            devices: None,
            group: None,
        };
        limits.validate()?;
        Ok(limits)
    }
}

/// The network (step 8 and later).
#[derive(Debug, Args)]
pub(crate) struct NetworkArgs {
    /// `bridge` (the default: an address on caixa's bridge, NAT, ports),
    /// `none` (a network namespace with only loopback), as `docker run
    /// --network`, or `pasta` (user-mode networking, without root, as podman).
    #[arg(long, value_name = "MODE", default_value = "bridge", value_parser = ["bridge", "none", "pasta"])]
    pub(crate) network: String,
    /// Publish a container port on the host: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]. Repeatable.
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub(crate) publish: Vec<String>,
    /// Limit the container's traffic in both directions (tc syntax, e.g. 10mbit).
    #[arg(long = "network-bandwidth", value_name = "RATE")]
    pub(crate) bandwidth: Option<String>,
    /// The host bridge to plug into (created on first use).
    #[arg(long, value_name = "NAME", default_value = caixa::net::DEFAULT_BRIDGE)]
    pub(crate) bridge: String,
    /// The bridge's subnet, used when the bridge is created.
    #[arg(long, value_name = "CIDR", default_value = caixa::net::DEFAULT_SUBNET)]
    pub(crate) subnet: String,
}

impl NetworkArgs {
    /// Gives `spec` the network these options describe: a bridge, a
    /// user-mode network (`pasta`), or none.
    pub(crate) fn apply(&self, spec: &mut Spec) -> Result<(), caixa::net::NetError> {
        let publish = self
            .publish
            .iter()
            .map(|p| p.parse().map_err(caixa::net::NetError::Invalid))
            .collect::<Result<Vec<caixa::net::Publish>, _>>()?;
        if self.network == "pasta" {
            spec.user_network = Some(caixa::net::usermode::UserModeNetwork::plan(
                publish,
                self.bandwidth.as_deref(),
            )?);
            return Ok(());
        }
        spec.network = caixa::net::NetworkSpec::plan(
            &self.network,
            publish,
            self.bandwidth.as_deref(),
            &self.bridge,
            &self.subnet,
        )?;
        Ok(())
    }
}

impl RunArgs {
    /// A spec for this command line with `namespaces` switched on.
    pub(crate) fn to_spec(&self, namespaces: &[Namespace]) -> Spec {
        let args = if self.command.is_empty() {
            vec!["/bin/sh".to_string()]
        } else {
            self.command.clone()
        };
        let mut spec = Spec::new(args);
        spec.namespaces = namespaces.to_vec();
        spec.verbose = self.verbose;
        spec.process.cwd = self.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
        spec.process.env.push("HOME=/root".into());
        if let Some(term) = std::env::var_os("TERM") {
            spec.process
                .env
                .push(format!("TERM={}", term.to_string_lossy()));
        }
        for entry in self.env_entries() {
            set_env(&mut spec.process.env, entry);
        }
        spec
    }

    /// The `-e` entries, `KEY` alone taking this process's value of KEY.
    pub(crate) fn env_entries(&self) -> Vec<String> {
        self.env
            .iter()
            .map(|e| match e.split_once('=') {
                Some(_) => e.clone(),
                None => format!("{e}={}", std::env::var(e).unwrap_or_default()),
            })
            .collect()
    }
}

use caixa::spec::set_env;

impl RootfsArgs {
    /// The rootfs to use: the one given, or the default busybox one.
    pub(crate) fn resolve(&self) -> Result<PathBuf, busybox::BusyboxError> {
        match &self.rootfs {
            Some(dir) => Ok(dir.clone()),
            None => busybox::default_rootfs(),
        }
    }
}

impl HostnameArgs {
    /// The host name to use: the one given, or a short random id.
    pub(crate) fn resolve(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(caixa::ns::uts::short_random_id)
    }

    /// Gives `spec` its host name, and `HOSTNAME` saying it (as Docker).
    pub(crate) fn apply(&self, spec: &mut Spec) {
        let name = self.resolve();
        set_env(&mut spec.process.env, format!("HOSTNAME={name}"));
        spec.hostname = Some(name);
    }
}

// ANCHOR: privileged_spec
/// The namespaces of step 6 onward: all of them, the user namespace first
/// (see [`caixa::ns::ALL`]).
pub(crate) const ALL_NAMESPACES: [Namespace; 6] = caixa::ns::ALL;

/// Step 6's plan, which steps 7 and 8 build on: every namespace and the
/// privilege options. Exits with one line when an option is refused.
pub(crate) fn privileged_spec(program: &str, run: &RunArgs, privilege: &PrivilegeArgs) -> Spec {
    let mut spec = run.to_spec(&ALL_NAMESPACES);
    if let Err(e) = privilege.apply(&mut spec) {
        fail_setup(program, &e);
    }
    spec
}

/// The end of a plan of step 6 onward: checked first, then the root (the
/// one given, or the default one owned by the mapped root, under an overlay
/// of the container's own) and the host name.
pub(crate) fn finish_spec(
    program: &str,
    spec: &mut Spec,
    rootfs: &RootfsArgs,
    hostname: &HostnameArgs,
) {
    if let Err(e) = spec.validate() {
        fail_setup(program, &e);
    }
    if caixa::rootless::active() {
        if let Err(e) = caixa::rootless::refusal(spec) {
            fail_setup(program, &e);
        }
    }
    let (uid, gid) = caixa::privilege::host_root(spec);
    // The user's own directory is written in place, as they asked; the
    // default one is shared by every container, so each gets an overlay.
    spec.root = Some(match &rootfs.rootfs {
        Some(dir) => dir.clone(),
        None => {
            spec.root_overlay = true;
            busybox::default_rootfs_owned_by(uid, gid).unwrap_or_else(|e| fail_setup(program, &e))
        }
    });
    rootfs.volumes.apply(program, spec);
    hostname.apply(spec);
}
// ANCHOR_END: privileged_spec

/// Parses the command line. A usage error exits 125, as `docker run` does,
/// so scripts can tell it from the command's own exit codes; `--help` exits 0.
pub(crate) fn parse<T: clap::Parser>() -> T {
    T::try_parse().unwrap_or_else(|error| {
        let code = if error.use_stderr() {
            codes::SETUP_FAILED
        } else {
            0
        };
        let _ = error.print();
        std::process::exit(code)
    })
}

/// Runs `spec` and exits the process with the container's exit code, or
/// prints one line (`stepN: what happened: what to do`) and exits 125/126/127.
pub(crate) fn run_and_exit(program: &str, spec: &Spec) -> ! {
    caixa::exit::one_line_panics();
    match std::panic::catch_unwind(|| caixa::parent::run(spec)) {
        Ok(Ok(ended)) => {
            for error in &ended.cleanup_errors {
                eprintln!("{program}: warning: after the container ended: {error}");
            }
            if let Some(upper) = &ended.kept {
                eprintln!(
                    "{program}: kept the container's changes in {}",
                    upper.display()
                );
            }
            if ended.oom_killed {
                eprintln!(
                    "{program}: the container was killed by the kernel's OOM killer: it needed more memory than --memory allows"
                );
            }
            std::process::exit(ended.exit.code())
        }
        Ok(Err(error)) => fail(program, &error, error.exit_code()),
        Err(panic) => {
            eprintln!("{program}: {}", caixa::exit::panic_line(&*panic));
            std::process::exit(codes::SETUP_FAILED)
        }
    }
}

/// Prints `program: error` on one line and exits with `code`.
pub(crate) fn fail(program: &str, error: &dyn std::error::Error, code: i32) -> ! {
    eprintln!("{program}: {error}");
    std::process::exit(code)
}

/// Exits with [`codes::SETUP_FAILED`] after printing `error`.
pub(crate) fn fail_setup(program: &str, error: &dyn std::error::Error) -> ! {
    fail(program, error, codes::SETUP_FAILED)
}

/// `run [OPTIONS] IMAGE [COMMAND...]` (step 9 and later): step 8's options
/// plus `--keep`.
#[derive(Debug, Args)]
pub(crate) struct ImageRunArgs {
    /// Keep the container's changes (its upper directory) after it ends.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Host paths in the container.
    #[command(flatten)]
    pub(crate) volumes: VolumeArgs,
    /// The network (step 8).
    #[command(flatten)]
    pub(crate) network: NetworkArgs,
    /// The cgroup limits (step 7).
    #[command(flatten)]
    pub(crate) limits: CgroupArgs,
    /// User namespace and privilege (step 6).
    #[command(flatten)]
    pub(crate) privilege: PrivilegeArgs,
    /// The host name (step 5).
    #[command(flatten)]
    pub(crate) hostname: HostnameArgs,
    /// Verbose, env, workdir, and IMAGE [COMMAND...].
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Runs a container of an image from `store`, as `docker run` does: the
/// image's config under the command line's choices, step 8's isolation.
pub(crate) fn run_image(
    program: &str,
    args: ImageRunArgs,
    store: &caixa::image::store::Store,
) -> ! {
    let Some((image, command)) = args.run.command.split_first() else {
        eprintln!(
            "{program}: which image? {program} run [OPTIONS] IMAGE [COMMAND...] (see {program} images)"
        );
        std::process::exit(125);
    };
    let image = caixa::registry::reference::store_name_of(image);
    let mut spec = args.run.to_spec(&ALL_NAMESPACES);
    // ANCHOR: image_spec
    // `-e` on top of the image's Env (`-e KEY` passes this shell's value on).
    let resolved_env = args.run.env_entries();
    let (manifest, _, image_config) =
        caixa::image::config::read(store, &image).unwrap_or_else(|e| fail_setup(program, &e));
    caixa::image::config::shape(
        &mut spec.process,
        &image_config,
        command,
        &resolved_env,
        args.run.workdir.clone(),
    )
    .unwrap_or_else(|e| fail_setup(program, &e));
    spec.image = Some(caixa::image::overlay::ImageRoot {
        store: store.root.clone(),
        manifest,
        keep: args.keep,
    });
    // ANCHOR_END: image_spec
    if let Err(e) = args.privilege.apply(&mut spec) {
        fail_setup(program, &e);
    }
    args.volumes.apply(program, &mut spec);
    spec.limits = Some(
        args.limits
            .to_limits()
            .unwrap_or_else(|e| fail_setup(program, &e)),
    );
    if let Err(e) = args.network.apply(&mut spec) {
        fail_setup(program, &e);
    }
    args.hostname.apply(&mut spec);
    run_and_exit(program, &spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn everything_after_the_command_is_the_commands() {
        let cli = Cli::try_parse_from(["step1", "-v", "ls", "-la", "-v", "/"]).unwrap();
        assert!(cli.run.verbose);
        assert_eq!(cli.run.command, ["ls", "-la", "-v", "/"]);
    }

    #[test]
    fn no_command_means_a_shell() {
        let cli = Cli::try_parse_from(["step1"]).unwrap();
        assert_eq!(cli.run.to_spec(&[]).process.args, ["/bin/sh"]);
    }

    #[test]
    fn env_entries_replace_earlier_ones() {
        let cli = Cli::try_parse_from(["step1", "-e", "PATH=/x", "-e", "A=1", "true"]).unwrap();
        let env = cli.run.to_spec(&[]).process.env;
        assert!(env.contains(&"PATH=/x".to_string()));
        assert!(env.contains(&"A=1".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    }
}
