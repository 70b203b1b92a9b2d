//! Step 11: the engine.
//!
//! Everything before, behind a daemon: `step11 daemon` owns an image store
//! and its containers and answers a subset of the Docker Engine API on a
//! unix socket; every other subcommand is a client of it (`-H` picks the
//! daemon). Each container runs under a shim process of its own, its
//! parent, so containers outlive the daemon; `shim` is the daemon's own
//! subcommand.
//! `registry` serves a store's images to registry clients, and takes their
//! pushes: your own registry.

use std::path::PathBuf;
use std::time::Duration;

#[path = "../cli.rs"]
mod cli;
mod host;
use caixa::engine::EngineError;
use caixa::engine::client::{Client, Demuxer, Payload, default_socket};
use caixa::engine::daemon::{self, Daemon};
use caixa::engine::server::Limits;
use caixa::engine::session::{Ended, Session, Wants};
use caixa::registry::client::Options;
use caixa::registry::client::percent_encode;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

/// Step 10 behind a daemon: an engine with a Docker-style API.
#[derive(Parser)]
#[command(
    name = "step11",
    about = "Step 11: the engine: a daemon with a Docker-style API on a unix socket, and its client",
    long_about = "Step 11: the engine.\n\n\
        `step11 daemon` owns an image store and its containers and answers a \
        subset of the Docker Engine API (v1.41) on a unix socket. The other \
        subcommands are its client: pull, load, images, run (-d), ps, logs, \
        wait, stop, rm. -H (or CAIXA_HOST) says which daemon, so one client \
        drives several. Each container runs under a shim process of its \
        own (its shim), so containers outlive the daemon. `step11 registry` serves a \
        store's images over the distribution API, and takes pushes into it: a \
        registry of your own."
)]
struct Step11 {
    /// The daemon to talk to: unix:///path/to/socket (default: $CAIXA_HOST,
    /// else unix:///run/caixa/caixa.sock, or $XDG_RUNTIME_DIR/caixa/caixa.sock
    /// for a user).
    #[arg(short = 'H', long)]
    host: Option<String>,
    /// The daemon's image store and state (daemon and shim only).
    #[arg(long, value_name = "DIR", default_value_os_t = caixa::image::store::default_root(), global = true)]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Daemon {
        /// The socket to listen on.
        #[arg(long, default_value_os_t = default_socket())]
        socket: PathBuf,
        /// A registry that may be spoken to over plain HTTP. Repeatable.
        #[arg(long = "insecure-registry", value_name = "HOST")]
        insecure: Vec<String>,
        /// Seconds a created container's start is kept made up to its exec,
        /// waiting for `start`; 0: it is made at `start`.
        #[arg(long = "park-seconds", value_name = "SECONDS", default_value_t = daemon::PARK.as_secs())]
        park_seconds: u64,
        /// Seconds a client may take to send a request's head (tests).
        #[arg(long, hide = true, default_value_t = Limits::default().header_timeout.as_secs_f64())]
        header_timeout: f64,
        /// Connections served at once; more are answered 503 (tests).
        #[arg(long, hide = true, default_value_t = Limits::default().max_connections)]
        max_connections: usize,
    },
    /// Serve the images of a store (--root) to registry clients: pull and push.
    Registry {
        /// Where to listen: loopback unless clients are told it is insecure.
        #[arg(long, default_value = "127.0.0.1:5000")]
        listen: String,
        /// Seconds a client may take to send its request (tests).
        #[arg(long, hide = true, default_value_t = Limits::default().header_timeout.as_secs_f64())]
        header_timeout: f64,
        /// Connections served at once; more are answered 503 (tests).
        #[arg(long, hide = true, default_value_t = Limits::default().max_connections)]
        max_connections: usize,
        /// Serve only the users of this htpasswd file (bcrypt entries,
        /// `htpasswd -B`), asked with HTTP Basic auth.
        #[arg(long, value_name = "FILE")]
        htpasswd: Option<PathBuf>,
        /// Token mode: who may pull and push which repository, one rule a
        /// line (`USER REPOSITORY[/*] pull[,push]`, `*` for everyone);
        /// clients get tokens from this registry's /token.
        #[arg(long, value_name = "FILE", requires = "htpasswd")]
        token_access: Option<PathBuf>,
        /// Seconds a token lives (tests).
        #[arg(long, hide = true)]
        token_ttl_secs: Option<u64>,
    },
    /// The daemon's version.
    Version,
    /// List the daemon's images.
    Images,
    /// Pull an image into the daemon's store.
    Pull {
        /// [REGISTRY/]NAME[:TAG|@DIGEST]
        reference: String,
    },
    /// Give an image another name.
    Tag {
        /// The image.
        source: String,
        /// Its new name, [REGISTRY/]NAME[:TAG].
        target: String,
    },
    /// Remove an image's name (its blobs stay for other images).
    Rmi {
        /// Remove it even if a container was made from it.
        #[arg(short, long)]
        force: bool,
        /// The image.
        image: String,
    },
    /// Push an image to the registry its name starts with, with the
    /// credentials `step10 login` saved for that registry.
    Push {
        /// REGISTRY/NAME[:TAG]
        image: String,
    },
    /// Show the steps an image was made of, newest first.
    History {
        /// The image.
        image: String,
    },
    /// Write images to an archive (an OCI layout with Docker's manifest.json).
    Save {
        /// The archive to write.
        #[arg(short, long)]
        output: PathBuf,
        /// The images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Load a docker save tarball or an OCI archive into the daemon's store.
    Load {
        /// The archive.
        path: PathBuf,
        /// The name to give it.
        #[arg(long)]
        name: Option<String>,
    },
    /// Create and start a container (pulling its image when missing).
    Run(Box<RunOptions>),
    /// Create a container from an image, with run's options; print its id.
    Create(Box<RunOptions>),
    /// Start containers; with -a, one, attached: its output and exit code.
    Start {
        /// Attach its output (and exit with its code).
        #[arg(short, long)]
        attach: bool,
        /// With -a: send this terminal's input to it (created with -i).
        #[arg(short, long)]
        interactive: bool,
        /// The keys that detach from it, leaving it running.
        #[arg(long, value_name = "KEYS", default_value = "ctrl-p,ctrl-q")]
        detach_keys: String,
        /// CONTAINER...
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps {
        /// All of them, not only running ones.
        #[arg(short, long)]
        all: bool,
        /// Only their ids.
        #[arg(short, long)]
        quiet: bool,
        /// Only the N newest (stopped ones too).
        #[arg(short = 'n', long, value_name = "N")]
        last: Option<u32>,
        /// Only those that match KEY=VALUE (status, name, id, ancestor,
        /// exited, network, volume, before, since). Repeatable.
        #[arg(short, long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// Print each with a template: {{.Field}} and text (`table` first: a header).
        #[arg(long, value_name = "TEMPLATE")]
        format: Option<String>,
    },
    /// Print what happens to containers, images, volumes and networks.
    Events {
        /// From this time on (seconds since the epoch, RFC 3339, or 10m ago).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Until this time (past: print what was, and end).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only events that match KEY=VALUE (type, event, container,
        /// image, volume, network). Repeatable.
        #[arg(short, long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
    /// What the daemon says of itself and its host.
    Info,
    /// The engine's use of the host.
    #[command(subcommand)]
    System(SystemCommand),
    /// Attach this terminal to a running container: its output, and with
    /// -i at its creation, its input. Ctrl-P Ctrl-Q detaches.
    Attach {
        /// Do not send this terminal's input.
        #[arg(long)]
        no_stdin: bool,
        /// The keys that detach from it, leaving it running.
        #[arg(long, value_name = "KEYS", default_value = "ctrl-p,ctrl-q")]
        detach_keys: String,
        /// Name or id (prefix).
        container: String,
    },
    /// Copy files between a container and the host: one side is
    /// CONTAINER:PATH; `-` is a tar on stdin or stdout.
    Cp {
        /// Where from.
        src: String,
        /// Where to.
        dst: String,
    },
    /// Show a container's processes (from its cgroup).
    Top {
        /// Name or id (prefix).
        container: String,
    },
    /// Show what containers use: CPU, memory and its limit, processes.
    Stats {
        /// Once, not every second.
        #[arg(long)]
        no_stream: bool,
        /// Names or ids (prefixes).
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show a container's published ports.
    Port {
        /// Name or id (prefix).
        container: String,
    },
    /// Print a container's output.
    Logs {
        /// Name or id (prefix).
        container: String,
        /// Only what it wrote from this time on (seconds since the epoch,
        /// RFC 3339, or 10m ago).
        #[arg(long)]
        since: Option<String>,
        /// Only what it wrote up to this time (the same forms).
        #[arg(long)]
        until: Option<String>,
        /// Each line after the time it was written.
        #[arg(short = 't', long)]
        timestamps: bool,
        /// Then what it writes, until it ends.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Wait for a container to end; print its exit code.
    Wait {
        /// Name or id (prefix).
        container: String,
    },
    /// Stop a container: SIGTERM, then SIGKILL after a grace period.
    Stop {
        /// Seconds of grace.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// Name or id (prefix).
        container: String,
    },
    /// Remove a container.
    Rm {
        /// Stop it first if it runs.
        #[arg(short, long)]
        force: bool,
        /// Remove its anonymous volumes too (named ones stay).
        #[arg(short, long)]
        volumes: bool,
        /// Names or ids (prefixes).
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop a container if it runs, then start it.
    Restart {
        /// Seconds of grace before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// Name or id (prefix).
        container: String,
    },
    /// Send a signal to a running container.
    Kill {
        /// The signal: a name (TERM, SIGHUP) or a number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// Name or id (prefix).
        container: String,
    },
    /// Give a container another name.
    Rename {
        /// Name or id (prefix).
        container: String,
        /// The new name.
        name: String,
    },
    /// Manage containers as a group.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage volumes: data that outlives containers.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Run a command in a running container; exit with its code.
    Exec(Box<ExecOptions>),
    /// (daemon's) Join container ID and become exec EID's command in it.
    #[command(hide = true, name = "exec-in")]
    ExecIn {
        /// The container id.
        id: String,
        /// The exec id.
        exec: String,
    },
    /// (daemon's) Be container ID's shim: its parent, from start to end.
    #[command(hide = true)]
    Shim {
        /// The container id.
        id: String,
    },
    /// (daemon's) Fork a shim for each container id the daemon sends on stdin.
    #[command(hide = true)]
    ShimLauncher {
        /// Room for each shim's command line (a forked shim writes its own
        /// over the launcher's).
        #[arg(long)]
        title_room: Option<String>,
    },
    // Images you make (build, commit): the library's build module does the work.
    /// Build an image from a Dockerfile and a context directory.
    Build(caixa::engine::build::client::BuildOptions),
    /// Make an image of a container's changes: commit CONTAINER REPO[:TAG].
    Commit {
        /// The container.
        container: String,
        /// The new image's name.
        repository: String,
    },
    /// (daemon's) Run one RUN step's container from the bundle in DIR.
    #[command(hide = true, name = "build-run")]
    BuildRun {
        /// The bundle directory.
        dir: PathBuf,
        /// The container id.
        id: String,
    },
}

/// `docker exec`'s options that caixa's engine knows.
#[derive(clap::Args)]
struct ExecOptions {
    /// Start it and return at once.
    #[arg(short, long)]
    detach: bool,
    /// Send this terminal's input to it.
    #[arg(short, long)]
    interactive: bool,
    /// Give it a terminal of its own (in the container's devpts).
    #[arg(short, long)]
    tty: bool,
    /// KEY=VALUE, or KEY for this shell's value of KEY. Repeatable.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// The user (NAME, UID, or UID:GID), else the container's.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// CONTAINER COMMAND [ARG...]
    #[arg(trailing_var_arg = true, required = true, num_args = 2.., value_name = "CONTAINER")]
    container_and_command: Vec<String>,
}

/// `docker container`'s subcommands that caixa adds to the top-level ones.
#[derive(Subcommand)]
enum ContainerCommand {
    /// Remove every container that is not running.
    Prune,
}

/// `docker system`'s subcommands.
#[derive(Subcommand)]
enum SystemCommand {
    /// The disk the images, containers and volumes use.
    Df {
        /// Each image, container and volume too.
        #[arg(short, long)]
        verbose: bool,
    },
}

/// `docker network`'s subcommands.
#[derive(Subcommand)]
enum NetworkCommand {
    /// Make a network: a bridge and a subnet of its own.
    Create {
        /// Its subnet (else the first free 10.90.N.0/24).
        #[arg(long)]
        subnet: Option<String>,
        /// KEY=VALUE. Repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Its name.
        name: String,
    },
    /// List the networks.
    Ls,
    /// Show a network as JSON, with the containers on it.
    Inspect {
        /// Its name or id.
        name: String,
    },
    /// Remove networks no container is on.
    Rm {
        /// Their names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every network no container is on.
    Prune,
    /// Put a container on one more network (its next interface, eth1…),
    /// also while it runs.
    Connect {
        /// Another name the container answers to on it. Repeatable.
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// Take a container off a network it joined with connect.
    Disconnect {
        /// Accepted for Docker's sake: a disconnect is never refused for
        /// a running container.
        #[arg(short, long)]
        force: bool,
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
}

/// `docker volume`'s subcommands.
#[derive(Subcommand)]
enum VolumeCommand {
    /// Make a volume (a random name when none is given).
    Create {
        /// Its name.
        name: Option<String>,
        /// KEY=VALUE. Repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// List the volumes.
    Ls,
    /// Show a volume as JSON.
    Inspect {
        /// Its name.
        name: String,
    },
    /// Remove volumes no container uses.
    Rm {
        /// Their names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every volume no container uses.
    Prune,
}

/// `docker run`'s options that caixa's engine knows.
#[derive(clap::Args)]
struct RunOptions {
    /// Run in the background and print the container's id.
    #[arg(short, long)]
    detach: bool,
    /// Give the container a terminal: its output is one raw stream.
    #[arg(short, long)]
    tty: bool,
    /// Keep its stdin open and send this terminal's input to it.
    #[arg(short, long)]
    interactive: bool,
    /// The keys that detach from it, leaving it running.
    #[arg(long, value_name = "KEYS", default_value = "ctrl-p,ctrl-q")]
    detach_keys: String,
    /// Remove the container when it ends.
    #[arg(long)]
    rm: bool,
    /// The container's name.
    #[arg(long)]
    name: Option<String>,
    /// KEY=VALUE, or KEY for this shell's value of KEY. Repeatable.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]. Repeatable.
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// default (the daemon's: bridge, or pasta when it runs rootless),
    /// bridge, none, pasta (user-mode, no root), or the name of a network
    /// (step11 network create).
    #[arg(long, default_value = "default")]
    network: String,
    /// Another name the container answers to on its network. Repeatable.
    #[arg(long = "network-alias")]
    network_aliases: Vec<String>,
    /// Memory limit, e.g. 64m.
    #[arg(long)]
    memory: Option<String>,
    /// CPUs, e.g. 0.5.
    #[arg(long)]
    cpus: Option<f64>,
    /// The container's host name.
    #[arg(long)]
    hostname: Option<String>,
    /// When its shim starts it again: no, on-failure[:N], always, unless-stopped.
    #[arg(long, default_value = "no")]
    restart: String,
    /// A volume: NAME:PATH[:ro] (named, kept), HOST_PATH:PATH[:ro] (a bind),
    /// or PATH (anonymous, removed with the container by --rm). Repeatable.
    #[arg(short = 'v', long = "volume", value_name = "[SOURCE:]PATH[:ro]")]
    volumes: Vec<String>,
    /// A directory in memory only: PATH[:OPTIONS] (size=64m, mode=1777, exec…). Repeatable.
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    tmpfs: Vec<String>,
    /// Make the container's root read-only (volumes and tmpfs stay writable).
    #[arg(long)]
    read_only: bool,
    /// Run a tiny init as pid 1 that reaps orphans and passes signals on.
    #[arg(long)]
    init: bool,
    /// The program to run instead of the image's entrypoint ("" clears it).
    #[arg(long)]
    entrypoint: Option<String>,
    /// A file of KEY=VALUE lines (# comments); -e comes after it. Repeatable.
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// The user (NAME, UID, or UID:GID), else the image's.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Memory plus swap, e.g. 128m; -1 for unlimited swap.
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Relative CPU weight (2-262144; 1024 is the default).
    #[arg(long)]
    cpu_shares: Option<u64>,
    /// The most processes the container may hold.
    #[arg(long)]
    pids_limit: Option<i64>,
    /// A per-process limit: NAME=SOFT[:HARD], e.g. nofile=1024:2048. Repeatable.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    ulimits: Vec<String>,
    /// Write at most RATE bytes a second to DEVICE, e.g. /dev/vda:1mb. Repeatable.
    #[arg(long = "device-write-bps", value_name = "DEVICE:RATE")]
    device_write_bps: Vec<String>,
    /// Read at most RATE bytes a second from DEVICE. Repeatable.
    #[arg(long = "device-read-bps", value_name = "DEVICE:RATE")]
    device_read_bps: Vec<String>,
    /// Add a capability to Docker's default set (e.g. NET_ADMIN). Repeatable.
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability (or ALL). Repeatable.
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// seccomp=unconfined|FILE, no-new-privileges. Repeatable.
    #[arg(long = "security-opt", value_name = "OPT")]
    security_opt: Vec<String>,
    /// IMAGE [COMMAND [ARG...]]
    #[arg(trailing_var_arg = true, required = true, value_name = "IMAGE")]
    image_and_command: Vec<String>,
}

fn main() {
    let args: Step11 = cli::parse();
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let host = args
        .host
        .clone()
        .or_else(|| std::env::var("CAIXA_HOST").ok())
        .unwrap_or_else(|| format!("unix://{}", default_socket().display()));
    let client = || Client::new(&host).unwrap_or_else(|e| cli::fail_setup("step11", &e));
    let result = match args.command {
        Command::Daemon {
            socket,
            insecure,
            header_timeout,
            max_connections,
            park_seconds,
        } => daemon::serve(
            Daemon::new(
                absolute(&args.root),
                exe,
                Options {
                    insecure,
                    ..Options::default()
                },
            )
            .parking_for(std::time::Duration::from_secs(park_seconds)),
            &socket,
            limits(header_timeout, max_connections),
        ),
        Command::Registry {
            listen,
            header_timeout,
            max_connections,
            htpasswd,
            token_access,
            token_ttl_secs,
        } => caixa::engine::registry::serve(
            &absolute(&args.root),
            &listen,
            limits(header_timeout, max_connections),
            caixa::engine::registry::Access {
                htpasswd: htpasswd.as_deref(),
                token_access: token_access.as_deref(),
                token_ttl: token_ttl_secs.map(std::time::Duration::from_secs),
            },
        ),
        Command::Shim { id } => match caixa::engine::shim::run(&absolute(&args.root), &id) {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(e),
        },
        Command::ShimLauncher { title_room: _ } => {
            caixa::engine::launcher::serve(&absolute(&args.root), "step11")
        }
        Command::Version => client().json("GET", "/version", None).map(|v| {
            println!(
                "caixa {} (API {}, {}/{})",
                v["Version"].as_str().unwrap_or("?"),
                v["ApiVersion"].as_str().unwrap_or("?"),
                v["Os"].as_str().unwrap_or("?"),
                v["Arch"].as_str().unwrap_or("?")
            );
        }),
        Command::Images => client().json("GET", "/images/json", None).map(|v| {
            for image in v.as_array().into_iter().flatten() {
                let id = image["Id"].as_str().unwrap_or("");
                let tags = image["RepoTags"]
                    .as_array()
                    .map_or(&[][..], |t| t.as_slice());
                if tags.is_empty() {
                    // No name (a build without -t): Docker's `<none>`.
                    println!("<none>\t{}", short(id));
                }
                for tag in tags {
                    println!("{}\t{}", tag.as_str().unwrap_or(""), short(id));
                }
            }
        }),
        Command::Pull { reference } => pull(&client(), &reference),
        Command::Load { path, name } => load(&client(), &path, name.as_deref()),
        Command::Tag { source, target } => {
            let (repo, tag) = match target.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                Some((repo, tag)) => (repo, tag),
                None => (target.as_str(), "latest"),
            };
            let path = format!(
                "/images/{}/tag?repo={}&tag={}",
                source,
                percent_encode(repo),
                percent_encode(tag)
            );
            client().json("POST", &path, None).map(drop)
        }
        Command::Rmi { force, image } => client()
            .json(
                "DELETE",
                &format!("/images/{image}?force={}", u8::from(force)),
                None,
            )
            .map(|answer| {
                for entry in answer.as_array().into_iter().flatten() {
                    for (what, name) in entry.as_object().into_iter().flatten() {
                        println!("{what}: {}", name.as_str().unwrap_or_default());
                    }
                }
            }),
        Command::Push { image } => push(&client(), &image),
        Command::History { image } => client()
            .json("GET", &format!("/images/{image}/history"), None)
            .map(|steps| {
                println!("IMAGE\tCREATED BY");
                for step in steps.as_array().into_iter().flatten() {
                    let id = step["Id"].as_str().unwrap_or_default();
                    let short = id.trim_start_matches("sha256:");
                    println!(
                        "{}\t{}",
                        &short[..short.len().min(12)],
                        step["CreatedBy"].as_str().unwrap_or_default()
                    );
                }
            }),
        Command::Save { output, images } => save(&client(), &output, &images),
        Command::Run(options) => run(&client(), &options),
        Command::Create(options) => create(&client(), &options).map(|id| println!("{id}")),
        Command::Start {
            attach,
            interactive,
            detach_keys,
            containers,
        } => start(&client(), &containers, attach, interactive, &detach_keys),
        Command::Ps {
            all,
            quiet,
            last,
            filter,
            format,
        } => host::ps(&client(), all, quiet, last, &filter, format.as_deref()),
        Command::Events {
            since,
            until,
            filter,
        } => host::events(&client(), since.as_deref(), until.as_deref(), &filter),
        Command::Info => host::info(&client()),
        Command::System(SystemCommand::Df { verbose }) => host::system_df(&client(), verbose),
        Command::Logs {
            container,
            since,
            until,
            timestamps,
            follow,
        } => logs(
            &client(),
            &container,
            [since.as_deref(), until.as_deref()],
            timestamps,
            follow,
        ),
        Command::Cp { src, dst } => caixa::engine::outside::cp(&client(), &src, &dst),
        Command::Top { container } => caixa::engine::outside::top(&client(), &container),
        Command::Stats {
            no_stream,
            containers,
        } => caixa::engine::outside::stats(&client(), &containers, !no_stream),
        Command::Port { container } => caixa::engine::outside::port(&client(), &container),
        Command::Attach {
            no_stdin,
            detach_keys,
            container,
        } => attach(&client(), &container, !no_stdin, &detach_keys),
        Command::Wait { container } => client()
            .json(
                "POST",
                &format!("/containers/{}/wait", percent_encode(&container)),
                None,
            )
            .map(|v| println!("{}", v["StatusCode"])),
        Command::Stop { time, container } => client()
            .json(
                "POST",
                &format!("/containers/{}/stop?t={time}", percent_encode(&container)),
                None,
            )
            .map(|_| println!("{container}")),
        Command::Rm {
            force,
            volumes,
            containers,
        } => each(&containers, |container| {
            client()
                .json(
                    "DELETE",
                    &format!(
                        "/containers/{}?force={}&v={}",
                        percent_encode(container),
                        u8::from(force),
                        u8::from(volumes)
                    ),
                    None,
                )
                .map(|_| println!("{container}"))
        }),
        Command::Volume(command) => volume(&client(), command),
        Command::Network(command) => network(&client(), command),
        Command::Restart { time, container } => client()
            .json(
                "POST",
                &format!(
                    "/containers/{}/restart?t={time}",
                    percent_encode(&container)
                ),
                None,
            )
            .map(|_| println!("{container}")),
        Command::Kill { signal, container } => client()
            .json(
                "POST",
                &format!(
                    "/containers/{}/kill?signal={}",
                    percent_encode(&container),
                    percent_encode(&signal)
                ),
                None,
            )
            .map(|_| println!("{container}")),
        Command::Rename { container, name } => client()
            .json(
                "POST",
                &format!(
                    "/containers/{}/rename?name={}",
                    percent_encode(&container),
                    percent_encode(&name)
                ),
                None,
            )
            .map(drop),
        Command::Container(ContainerCommand::Prune) => {
            client().json("POST", "/containers/prune", None).map(|v| {
                for id in v["ContainersDeleted"].as_array().into_iter().flatten() {
                    println!("{}", id.as_str().unwrap_or_default());
                }
            })
        }
        Command::Exec(options) => exec(&client(), &options),
        Command::ExecIn { id, exec } => {
            std::process::exit(caixa::engine::exec::join(&absolute(&args.root), &id, &exec))
        }
        Command::Build(options) => caixa::engine::build::client::build(&client(), &options),
        Command::Commit {
            container,
            repository,
        } => caixa::engine::build::client::commit(&client(), &container, &repository),
        Command::BuildRun { dir, id } => {
            std::process::exit(caixa::engine::build::run::helper(&dir, &id))
        }
    };
    if let Err(e) = result {
        cli::fail_setup("step11", &e);
    }
}

/// Runs `one` for every name of `rm a b c`, as Docker's client does: a
/// failure is said on its line and the others still go; the exit status is
/// then the last failure's (printed by `main`, as every error is).
fn each(
    names: &[String],
    mut one: impl FnMut(&str) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    let mut last = None;
    for name in names {
        if let Err(e) = one(name) {
            if let Some(earlier) = last.replace(e) {
                eprintln!("step11: {earlier}");
            }
        }
    }
    last.map_or(Ok(()), Err)
}

/// `network rm` and `volume rm`: `DELETE {collection}/{name}` for every
/// name (see [`each`]), each name printed once it is gone.
fn delete_each(client: &Client, collection: &str, names: &[String]) -> Result<(), EngineError> {
    each(names, |name| {
        let path = format!("{collection}/{}", percent_encode(name));
        client.json("DELETE", &path, None)?;
        println!("{name}");
        Ok(())
    })
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..12.min(hex.len())]
}

/// Pulls through the daemon, printing its progress lines.
fn pull(client: &Client, reference: &str) -> Result<(), EngineError> {
    let target = format!("/images/create?fromImage={}", percent_encode(reference));
    progress_lines(client, &target)
}

/// `POST target`, whose answer is Docker's progress: one JSON object a
/// line, each `status` printed as it comes, an `error` line the failure
/// (the head said 200 long before it was known).
fn progress_lines(client: &Client, target: &str) -> Result<(), EngineError> {
    let mut failed = None;
    let mut pending = Vec::new();
    client.call("POST", target, None, &mut |chunk| {
        pending.extend_from_slice(chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                if let Some(e) = v["error"].as_str() {
                    failed = Some(e.to_string());
                } else if let Some(s) = v["status"].as_str() {
                    println!("{s}");
                }
            }
        }
    })?;
    failed.map_or(Ok(()), |e| Err(EngineError::Daemon(e)))
}

// ANCHOR: client_push
/// `docker push`: the daemon pushes; the client lends it the credentials
/// `step10 login` saved for that registry (`X-Registry-Auth`).
fn push(client: &Client, image: &str) -> Result<(), EngineError> {
    let reference = caixa::registry::reference::Reference::parse(image)
        .map_err(|e| EngineError::BadRequest(format!("{image}: {e}")))?;
    let client = match caixa::registry::auth::credentials(reference.api_host()) {
        Some((user, password)) => client.clone().with_registry_credentials(&user, &password),
        None => client.clone(),
    };
    let (name, tag) = match image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        Some((name, tag)) => (name, tag),
        None => (image, "latest"),
    };
    progress_lines(
        &client,
        &format!("/images/{name}/push?tag={}", percent_encode(tag)),
    )
}
// ANCHOR_END: client_push

/// `docker save -o FILE IMAGE…`: the daemon's archive, into a file.
fn save(client: &Client, output: &std::path::Path, images: &[String]) -> Result<(), EngineError> {
    use std::io::Write;
    let names: Vec<String> = images
        .iter()
        .map(|i| format!("names={}", percent_encode(i)))
        .collect();
    let partial = output.with_extension("partial");
    let mut file = std::fs::File::create(&partial)
        .map_err(|e| EngineError::Daemon(format!("cannot write {}: {e}", partial.display())))?;
    let mut failed = None;
    client.call(
        "GET",
        &format!("/images/get?{}", names.join("&")),
        None,
        &mut |chunk| {
            if failed.is_none() {
                failed = file.write_all(chunk).err();
            }
        },
    )?;
    if let Some(e) = failed {
        let _ = std::fs::remove_file(&partial);
        return Err(EngineError::Daemon(format!(
            "writing {}: {e}",
            output.display()
        )));
    }
    std::fs::rename(&partial, output)
        .map_err(|e| EngineError::Daemon(format!("cannot write {}: {e}", output.display())))
}

fn load(client: &Client, path: &std::path::Path, name: Option<&str>) -> Result<(), EngineError> {
    let file = std::fs::File::open(path)
        .map_err(|e| EngineError::BadRequest(format!("{}: {e}", path.display())))?;
    // Sized when the file says its length; chunked when it cannot (a pipe).
    let len = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let target = match name {
        Some(n) => format!("/images/load?name={}", percent_encode(n)),
        None => "/images/load".to_string(),
    };
    let response = client.call(
        "POST",
        &target,
        Some(Payload::reader("application/x-tar", file, len)),
        &mut |_| {},
    )?;
    let v: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    print!("{}", v["stream"].as_str().unwrap_or(""));
    Ok(())
}

/// The container's output, taken apart as it comes (a log may be far
/// larger than any answer the client keeps whole). A container with a
/// terminal has one raw stream, no frames: inspect says which (as the
/// Docker CLI asks `Config.Tty`).
fn logs(
    client: &Client,
    container: &str,
    [since, until]: [Option<&str>; 2],
    timestamps: bool,
    follow: bool,
) -> Result<(), EngineError> {
    use std::io::Write;
    let mut query = String::from("stdout=1&stderr=1");
    for (key, value) in [("since", since), ("until", until)] {
        if let Some(text) = value {
            query.push_str(&format!("&{key}={}", host::api_time(text)?));
        }
    }
    for (key, on) in [("timestamps", timestamps), ("follow", follow)] {
        if on {
            query.push_str(&format!("&{key}=1"));
        }
    }
    let target = percent_encode(container);
    let tty = client.json("GET", &format!("/containers/{target}/json"), None)?["Config"]["Tty"]
        .as_bool()
        .unwrap_or(false);
    let mut demuxer = Demuxer::default();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    client.call(
        "GET",
        &format!("/containers/{target}/logs?{query}"),
        None,
        &mut |chunk| {
            if tty {
                let _ = out.write_all(chunk).and_then(|()| out.flush());
            } else {
                demuxer.push(chunk, &mut out, &mut err);
            }
        },
    )?;
    Ok(())
}

/// The server limits the hidden test options set (the defaults otherwise).
fn limits(header_timeout: f64, max_connections: usize) -> Limits {
    Limits {
        header_timeout: Duration::try_from_secs_f64(header_timeout)
            .unwrap_or(Limits::default().header_timeout),
        max_connections: max_connections.max(1),
        ..Limits::default()
    }
}

// ANCHOR: resolve_env
/// `-e KEY` means this client's value of KEY, so the client resolves it:
/// the daemon runs elsewhere, with an environment (and secrets) of its
/// own, which it never lends. KEY unset here stays bare, and the daemon
/// takes it as "unset KEY" (as the Docker CLI and daemon do).
fn resolve_env(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            let value = (!e.is_empty() && !e.contains(['=', '\0']))
                .then(|| std::env::var_os(e))
                .flatten();
            match value {
                Some(value) => format!("{e}={}", value.to_string_lossy()),
                None => e.clone(),
            }
        })
        .collect()
}
// ANCHOR_END: resolve_env

/// `--env-file`: `KEY=VALUE` lines, blank lines and `#` comments skipped;
/// a bare `KEY` takes this shell's value (as `-e KEY` does).
fn read_env_file(path: &std::path::Path) -> Result<Vec<String>, EngineError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::BadRequest(format!("--env-file {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// `--device-write-bps /dev/vda:1mb` → `{"Path": "/dev/vda", "Rate": 1048576}`.
fn device_rates(list: &[String]) -> Result<Vec<Value>, EngineError> {
    list.iter()
        .map(|text| {
            let bad = || {
                EngineError::BadRequest(format!(
                    "invalid device rate {text:?}: use DEVICE:RATE, e.g. /dev/vda:1mb"
                ))
            };
            let (path, rate) = text.rsplit_once(':').ok_or_else(bad)?;
            let rate = caixa::units::parse_size(rate).map_err(|_| bad())?;
            Ok(json!({ "Path": path, "Rate": rate }))
        })
        .collect()
}

// ANCHOR: client_run
/// `docker run`: create (pulling when the image is missing), start, and
/// unless detached wait, print the output and exit with its code.
fn run(client: &Client, o: &RunOptions) -> Result<(), EngineError> {
    let id = create(client, o)?;
    if o.detach {
        client.json("POST", &format!("/containers/{id}/start"), None)?;
        println!("{id}");
        return Ok(());
    }
    let wants = Wants {
        stdin: o.interactive,
        tty: o.tty,
    };
    start_attached(client, &id, wants, &o.detach_keys, o.rm)
}

/// `docker create`: the container, made from the image (pulled when
/// missing) with `run`'s options; its id.
fn create(client: &Client, o: &RunOptions) -> Result<String, EngineError> {
    let (image, command) = o
        .image_and_command
        .split_first()
        .ok_or_else(|| EngineError::BadRequest("which image?".into()))?;
    let mut ports = serde_json::Map::new();
    for p in &o.publish {
        // [IP:]HOST:CONTAINER[/proto] → "CONTAINER/proto": [{HostIp, HostPort}]
        let (spec, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        let (container_port, host_port, ip) = match parts.as_slice() {
            [c, h] => (*c, *h, ""),
            [c, h, ip] => (*c, *h, *ip),
            _ => {
                return Err(EngineError::BadRequest(format!(
                    "invalid -p {p:?}: use [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]"
                )));
            }
        };
        let key = format!("{container_port}/{proto}");
        let entry = ports.entry(key).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({ "HostIp": ip, "HostPort": host_port }));
        }
    }
    // `-v SOURCE:PATH` is a bind or a named volume (Docker's `Binds`);
    // `-v PATH` alone is an anonymous volume (Docker's `Volumes`).
    let mut binds = Vec::new();
    let mut anonymous = serde_json::Map::new();
    for v in &o.volumes {
        let parsed: caixa::rootfs::binds::VolumeArg =
            v.parse()
                .map_err(|e: caixa::rootfs::binds::VolumeArgError| {
                    EngineError::BadRequest(e.to_string())
                })?;
        match parsed.source {
            caixa::rootfs::binds::VolumeSource::Anonymous => {
                anonymous.insert(parsed.target.to_string_lossy().into_owned(), json!({}));
            }
            _ => binds.push(v.clone()),
        }
    }
    if o.rm && !matches!(o.restart.as_str(), "no" | "") {
        return Err(EngineError::BadRequest(
            "--rm and --restart conflict: a container cannot both be removed and restarted".into(),
        ));
    }
    let memory = match &o.memory {
        Some(m) => {
            caixa::units::parse_size(m).map_err(|e| EngineError::BadRequest(e.to_string()))?
        }
        None => 0,
    };
    let mut env = Vec::new();
    for file in &o.env_files {
        env.extend(read_env_file(file)?);
    }
    env.extend(o.env.iter().cloned());
    let memory_swap = match o.memory_swap.as_deref() {
        Some("-1") => -1,
        Some(m) => {
            caixa::units::parse_size(m).map_err(|e| EngineError::BadRequest(e.to_string()))? as i64
        }
        None => 0,
    };
    let tmpfs: serde_json::Map<String, Value> = o
        .tmpfs
        .iter()
        .map(|t| {
            let (path, options) = t.split_once(':').unwrap_or((t, ""));
            (path.to_string(), json!(options))
        })
        .collect();
    let ulimits = o
        .ulimits
        .iter()
        .map(|u| {
            let limit = caixa::rlimit::parse_ulimit(u).map_err(EngineError::BadRequest)?;
            let name = u.split('=').next().unwrap_or_default();
            // u64::MAX (unlimited) travels as Docker's -1.
            let number = |n: u64| if n == u64::MAX { json!(-1) } else { json!(n) };
            Ok(json!({ "Name": name, "Soft": number(limit.soft), "Hard": number(limit.hard) }))
        })
        .collect::<Result<Vec<Value>, EngineError>>()?;
    let body = json!({
        "Image": image, "Cmd": if command.is_empty() { Value::Null } else { json!(command) },
        "Entrypoint": match &o.entrypoint {
            // `--entrypoint ""` clears the image's; a word replaces it.
            Some(e) if e.is_empty() => json!([]),
            Some(e) => json!([e]),
            None => Value::Null,
        },
        "User": o.user.clone().unwrap_or_default(),
        "Tty": o.tty,
        "OpenStdin": o.interactive, "StdinOnce": o.interactive, "AttachStdin": o.interactive,
        "Env": resolve_env(&env), "WorkingDir": o.workdir.clone().unwrap_or_default(),
        "Hostname": o.hostname.clone().unwrap_or_default(),
        "Volumes": anonymous,
        "HostConfig": {
            "Binds": binds, "Tmpfs": tmpfs, "ReadonlyRootfs": o.read_only, "Init": o.init,
            "NetworkMode": o.network, "PortBindings": ports, "Memory": memory,
            "MemorySwap": memory_swap,
            // Its shim removes it at its end, attached or not (the client
            // learns the exit code from a wait for `removed`).
            "AutoRemove": o.rm,
            "RestartPolicy": restart_policy(&o.restart)?,
            "NanoCpus": o.cpus.map_or(0, |c| (c * 1e9) as u64),
            "CpuShares": o.cpu_shares.unwrap_or(0),
            "PidsLimit": o.pids_limit.unwrap_or(0),
            "Ulimits": ulimits,
            "BlkioDeviceWriteBps": device_rates(&o.device_write_bps)?,
            "BlkioDeviceReadBps": device_rates(&o.device_read_bps)?,
            "CapAdd": o.cap_add, "CapDrop": o.cap_drop, "SecurityOpt": o.security_opt,
        },
        "NetworkingConfig": { "EndpointsConfig": {
            o.network.clone(): { "Aliases": o.network_aliases },
        }},
    });
    let target = match &o.name {
        Some(n) => format!("/containers/create?name={}", percent_encode(n)),
        None => "/containers/create".to_string(),
    };
    let created = match client.json("POST", &target, Some(&body)) {
        Err(EngineError::NotFound(m)) if m.starts_with("No such image") => {
            eprintln!("Unable to find image '{image}' locally: pulling it");
            pull(client, image)?;
            client.json("POST", &target, Some(&body))?
        }
        other => other?,
    };
    Ok(created["Id"].as_str().unwrap_or("").to_string())
}

/// Starts container `id` attached (`run` without `-d`, `start -a`): the
/// output as it comes (Docker's attach: a connection of its own, upgraded
/// before the start, so nothing is missed), printed by a thread while this
/// one starts the container and waits for it; exits with its code.
fn start_attached(
    client: &Client,
    id: &str,
    wants: Wants,
    keys: &str,
    rm: bool,
) -> Result<(), EngineError> {
    let mut session = Session::attach(client, id, wants, Some(keys))?;
    // The wait before the start, as Docker's CLI sends it: with --rm the
    // shim removes the container as it ends, and only a wait that was
    // already there gets its exit code.
    let waited = client.wait_ahead(id, if rm { "removed" } else { "next-exit" })?;
    if let Err(e) = client
        .json("POST", &format!("/containers/{id}/start"), None)
        .and_then(|_| session.start_input(client))
    {
        // It did not run: the daemon says why, its state says the code
        // (with --rm, the wait's, once it is removed).
        session.restore_terminal();
        eprintln!("step11: {e}");
        let code = if rm {
            match waited.code(Some(Duration::from_secs(10))) {
                Some(Ok(code)) => code,
                _ => {
                    let _ = client.json("DELETE", &format!("/containers/{id}?force=1&v=1"), None);
                    125
                }
            }
        } else {
            client.json("GET", &format!("/containers/{id}/json"), None)?["State"]["ExitCode"]
                .as_i64()
                .unwrap_or(125) as i32
        };
        std::process::exit(if code == 0 { 125 } else { code })
    }
    if session.finish(client)? == Ended::Detached {
        // Ctrl-P Ctrl-Q: it runs on, and is ours to attach to again.
        return Ok(());
    }
    match waited.code(None) {
        Some(code) => std::process::exit(code?),
        None => Err(EngineError::Connection(std::io::Error::other(
            "the wait's connection ended without the exit code",
        ))),
    }
}
// ANCHOR_END: client_run

/// `--restart on-failure:3` as Docker's `RestartPolicy` (the daemon
/// checks the name; the client only splits off the count).
fn restart_policy(flag: &str) -> Result<Value, EngineError> {
    let (name, count) = match flag.split_once(':') {
        Some((name, count)) => {
            let count: u32 = count.parse().map_err(|_| {
                EngineError::BadRequest(format!(
                    "invalid --restart {flag:?}: the count after ':' must be a number"
                ))
            })?;
            (name, count)
        }
        None => (flag, 0),
    };
    Ok(json!({ "Name": name, "MaximumRetryCount": count }))
}

// ANCHOR: client_attach
/// `docker attach`: this terminal on a running container, until it ends
/// (its exit code is ours) or the detach keys are typed (we exit 0).
fn attach(client: &Client, container: &str, stdin: bool, keys: &str) -> Result<(), EngineError> {
    let target = percent_encode(container);
    let about = client.json("GET", &format!("/containers/{target}/json"), None)?;
    if about["State"]["Running"].as_bool() != Some(true) {
        return Err(EngineError::Conflict(format!(
            "container {container} is not running: start it with step11 start -a"
        )));
    }
    let id = about["Id"].as_str().unwrap_or(container).to_string();
    let wants = Wants {
        stdin: stdin && about["Config"]["OpenStdin"].as_bool() == Some(true),
        tty: about["Config"]["Tty"].as_bool() == Some(true),
    };
    let mut session = Session::attach(client, &id, wants, Some(keys))?;
    session.start_input(client)?;
    if session.finish(client)? == Ended::Detached {
        return Ok(());
    }
    let code = client.json("POST", &format!("/containers/{id}/wait"), None)?["StatusCode"]
        .as_i64()
        .unwrap_or(125) as i32;
    std::process::exit(code)
}
// ANCHOR_END: client_attach

/// `docker start [-a [-i]] CONTAINER…`: each started (its name printed),
/// or one started attached, as `run` without `-d` does.
fn start(
    client: &Client,
    containers: &[String],
    attach: bool,
    interactive: bool,
    keys: &str,
) -> Result<(), EngineError> {
    if !attach {
        for c in containers {
            client.json(
                "POST",
                &format!("/containers/{}/start", percent_encode(c)),
                None,
            )?;
            println!("{c}");
        }
        return Ok(());
    }
    let [container] = containers else {
        return Err(EngineError::BadRequest(
            "start -a takes one container: its output and exit code are what you get".into(),
        ));
    };
    let about = client.json(
        "GET",
        &format!("/containers/{}/json", percent_encode(container)),
        None,
    )?;
    let id = about["Id"].as_str().unwrap_or(container).to_string();
    let wants = Wants {
        stdin: interactive && about["Config"]["OpenStdin"].as_bool() == Some(true),
        tty: about["Config"]["Tty"].as_bool() == Some(true),
    };
    // Created with --rm: its end is its removal, as after `run --rm`.
    let removed = about["HostConfig"]["AutoRemove"].as_bool() == Some(true);
    start_attached(client, &id, wants, keys, removed)
}

/// `docker network …`: one API call each.
fn network(client: &Client, command: NetworkCommand) -> Result<(), EngineError> {
    match command {
        NetworkCommand::Create {
            subnet,
            labels,
            name,
        } => {
            let labels: serde_json::Map<String, Value> = labels
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), json!(v))
                })
                .collect();
            let mut body = json!({ "Name": name, "Driver": "bridge", "Labels": labels });
            if let Some(subnet) = subnet {
                body["IPAM"] = json!({ "Config": [{ "Subnet": subnet }] });
            }
            let made = client.json("POST", "/networks/create", Some(&body))?;
            println!("{}", made["Id"].as_str().unwrap_or_default());
        }
        NetworkCommand::Ls => {
            println!("NETWORK ID\tNAME\tDRIVER\tSUBNET");
            for n in client
                .json("GET", "/networks", None)?
                .as_array()
                .into_iter()
                .flatten()
            {
                let id = n["Id"].as_str().unwrap_or_default();
                println!(
                    "{}\t{}\tbridge\t{}",
                    &id[..id.len().min(12)],
                    n["Name"].as_str().unwrap_or_default(),
                    n["IPAM"]["Config"][0]["Subnet"]
                        .as_str()
                        .unwrap_or_default()
                );
            }
        }
        NetworkCommand::Inspect { name } => {
            let n = client.json("GET", &format!("/networks/{}", percent_encode(&name)), None)?;
            println!("{}", serde_json::to_string_pretty(&n).unwrap_or_default());
        }
        NetworkCommand::Rm { names } => delete_each(client, "/networks", &names)?,
        NetworkCommand::Prune => {
            let gone = client.json("POST", "/networks/prune", None)?;
            for name in gone["NetworksDeleted"].as_array().into_iter().flatten() {
                println!("Deleted Network: {}", name.as_str().unwrap_or_default());
            }
        }
        NetworkCommand::Connect {
            aliases,
            network,
            container,
        } => {
            let body = json!({
                "Container": container,
                "EndpointConfig": { "Aliases": aliases },
            });
            let target = format!("/networks/{}/connect", percent_encode(&network));
            client.json("POST", &target, Some(&body))?;
        }
        NetworkCommand::Disconnect {
            force,
            network,
            container,
        } => {
            let body = json!({ "Container": container, "Force": force });
            let target = format!("/networks/{}/disconnect", percent_encode(&network));
            client.json("POST", &target, Some(&body))?;
        }
    }
    Ok(())
}

// ANCHOR: client_volume
/// `docker volume …`: one API call each.
fn volume(client: &Client, command: VolumeCommand) -> Result<(), EngineError> {
    match command {
        VolumeCommand::Create { name, labels } => {
            let mut map = serde_json::Map::new();
            for label in labels {
                let (k, v) = label.split_once('=').unwrap_or((&label, ""));
                map.insert(k.to_string(), json!(v));
            }
            let body = json!({ "Name": name.unwrap_or_default(), "Labels": map });
            let made = client.json("POST", "/volumes/create", Some(&body))?;
            println!("{}", made["Name"].as_str().unwrap_or_default());
        }
        VolumeCommand::Ls => {
            let all = client.json("GET", "/volumes", None)?;
            println!("DRIVER\tVOLUME NAME");
            for v in all["Volumes"].as_array().into_iter().flatten() {
                let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                println!("{}\t{}", field("Driver"), field("Name"));
            }
        }
        VolumeCommand::Inspect { name } => {
            let v = client.json("GET", &format!("/volumes/{}", percent_encode(&name)), None)?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        VolumeCommand::Rm { names } => delete_each(client, "/volumes", &names)?,
        VolumeCommand::Prune => {
            let gone = client.json("POST", "/volumes/prune", None)?;
            for name in gone["VolumesDeleted"].as_array().into_iter().flatten() {
                println!("{}", name.as_str().unwrap_or_default());
            }
            println!("Total reclaimed space: {} B", gone["SpaceReclaimed"]);
        }
    }
    Ok(())
}
// ANCHOR_END: client_volume

// ANCHOR: client_exec
/// `docker exec`: create the exec, start it on a hijacked connection (its
/// output as frames until it ends), then ask for its exit code.
fn exec(client: &Client, o: &ExecOptions) -> Result<(), EngineError> {
    let (container, command) = o
        .container_and_command
        .split_first()
        .ok_or_else(|| EngineError::BadRequest("which container?".into()))?;
    let body = json!({
        "Cmd": command, "Env": resolve_env(&o.env), "AttachStdout": true, "AttachStderr": true,
        "AttachStdin": o.interactive, "Tty": o.tty,
        "WorkingDir": o.workdir.clone().unwrap_or_default(),
        "User": o.user.clone().unwrap_or_default(),
    });
    let target = format!("/containers/{}/exec", percent_encode(container));
    let id = client.json("POST", &target, Some(&body))?["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if o.detach {
        let start = json!({ "Detach": true });
        client.json("POST", &format!("/exec/{id}/start"), Some(&start))?;
        return Ok(());
    }
    let wants = Wants {
        stdin: o.interactive,
        tty: o.tty,
    };
    let mut session = Session::exec(client, &id, wants)?;
    session.start_input(client)?;
    session.finish(client)?;
    let code = client.json("GET", &format!("/exec/{id}/json"), None)?["ExitCode"]
        .as_i64()
        .unwrap_or(125) as i32;
    std::process::exit(code)
}
// ANCHOR_END: client_exec
