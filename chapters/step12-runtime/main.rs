//! Step 12: caixa as an OCI runtime.
//!
//! The command line of runc, as containerd's shim and podman's conmon call
//! it: `step12 [--root DIR] [--log FILE --log-format json] create --bundle
//! DIR --pid-file FILE ID`, then `start ID`, `state ID`, `kill ID SIGNAL`,
//! `delete ID`, and `exec` for one more process. Put it under podman with `podman --runtime
//! target/debug/step12 run …`, or under containerd with `ctr run
//! --runc-binary target/debug/step12 …`. The library does the work
//! ([`caixa::runtime`]); this file is the contract's words.

use std::io::Write;
use std::path::PathBuf;

use caixa::runtime::{self, CreateOptions, ExecOptions, Runtime, RuntimeError};
use clap::{Parser, Subcommand, ValueEnum};

/// An OCI runtime: containerd and podman drive it as they drive runc.
#[derive(Parser)]
#[command(
    name = "step12",
    about = "Step 12: caixa as an OCI runtime, with runc's command line",
    long_about = "Step 12: caixa as an OCI runtime.\n\n\
        The runc command line that containerd's shim and podman's conmon \
        use: create (everything but execve), start, state, kill, delete, \
        exec, run, list, features, spec. The container is made by the same code as \
        every step's, from a bundle's config.json; what caixa does not \
        implement is refused, naming the field."
)]
struct Step12 {
    /// Where the runtime keeps its containers' state.
    #[arg(long, value_name = "DIR", default_value = runtime::DEFAULT_ROOT, global = true)]
    root: PathBuf,
    /// Also write errors to this file (containerd reads it).
    #[arg(long, value_name = "FILE", global = true)]
    log: Option<PathBuf>,
    /// The log's format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    /// Let systemd manage the cgroup: refused (caixa writes cgroupfs itself).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The flags `create` and `run` share.
#[derive(clap::Args)]
struct CreateArgs {
    /// The bundle: a directory with config.json (default: here).
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    bundle: PathBuf,
    /// Write the container's pid (as the host sees it) here.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Send the terminal's master end to this unix socket (process.terminal).
    #[arg(long, value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    /// Keep descriptors 3 to 3+N-1 open in the container.
    #[arg(long, value_name = "N", default_value_t = 0)]
    preserve_fds: u32,
    /// Do not use pivot_root: refused (caixa always pivots; chroot can be escaped).
    #[arg(long)]
    no_pivot: bool,
    /// Do not make a new session keyring: caixa never makes one.
    #[arg(long)]
    no_new_keyring: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Make a container from a bundle; it waits for `start` before its command.
    Create {
        #[command(flatten)]
        args: CreateArgs,
        /// The container's id.
        id: String,
    },
    /// Let a created container run its command.
    Start {
        /// The container's id.
        id: String,
    },
    /// Print a container's state as JSON.
    State {
        /// The container's id.
        id: String,
    },
    /// Send a signal to a container (default TERM).
    Kill {
        /// Signal every process of the container's cgroup.
        #[arg(short, long)]
        all: bool,
        /// The container's id.
        id: String,
        /// A number or a name: 9, KILL, SIGKILL.
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// Remove a stopped or created container (--force: a running one too).
    Delete {
        /// Kill it first if it runs.
        #[arg(short, long)]
        force: bool,
        /// The container's id.
        id: String,
    },
    /// Run one more process in a created or running container.
    Exec {
        /// The process, as config.json's "process" object (what containerd
        /// and conmon pass), instead of a command.
        #[arg(short, long, value_name = "FILE")]
        process: Option<PathBuf>,
        /// Return once the process runs; it is left to the caller's
        /// subreaper (conmon, containerd's shim).
        #[arg(short, long)]
        detach: bool,
        /// Write the process's pid (as the host sees it) here.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// Send the terminal's master end to this unix socket.
        #[arg(long, value_name = "SOCKET")]
        console_socket: Option<PathBuf>,
        /// Give the command a terminal (with a command line).
        #[arg(short, long)]
        tty: bool,
        /// The working directory (with a command line).
        #[arg(long, value_name = "DIR")]
        cwd: Option<PathBuf>,
        /// KEY=VALUE over the container's environment (with a command line).
        #[arg(short, long, value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// UID[:GID] (with a command line).
        #[arg(short, long, value_name = "UID[:GID]")]
        user: Option<String>,
        /// Keep descriptors 3 to 3+N-1 open in the process.
        #[arg(long, value_name = "N", default_value_t = 0)]
        preserve_fds: u32,
        /// The container's id.
        id: String,
        /// The command and its arguments (without --process).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// create, start and wait: the runtime stays the container's parent.
    Run {
        #[command(flatten)]
        args: CreateArgs,
        /// Return once it runs, leaving it to run.
        #[arg(short, long)]
        detach: bool,
        /// The container's id.
        id: String,
    },
    /// List the containers.
    List {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print what this runtime supports, as JSON (runtime-spec features.md).
    Features,
    /// Write an example config.json (a shell, runc's example).
    Spec {
        /// Where to write it (default: here).
        #[arg(short, long, value_name = "DIR", default_value = ".")]
        bundle: PathBuf,
    },
    /// Any other command of runc (pause, update, checkpoint…): refused.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

fn main() {
    caixa::exit::one_line_panics();
    let args = Step12::parse();
    let code = match run(&args) {
        Ok(code) => code,
        Err(e) => {
            report(&args, &e);
            1
        }
    };
    std::process::exit(code);
}

/// An error on stderr, and in the log file when there is one: containerd's
/// shim reads the last JSON line of `--log` to say why a command failed.
fn report(args: &Step12, error: &RuntimeError) {
    eprintln!("step12: {error}");
    let Some(path) = &args.log else { return };
    let line = match args.log_format {
        LogFormat::Json => serde_json::json!({
            "level": "error",
            "msg": error.to_string(),
            "time": humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        })
        .to_string(),
        LogFormat::Text => format!("error: {error}"),
    };
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

fn create_options(args: &CreateArgs) -> Result<CreateOptions, RuntimeError> {
    if args.no_pivot {
        return Err(RuntimeError::Unsupported(
            "--no-pivot (chroot instead of pivot_root can be escaped; caixa always pivots)".into(),
        ));
    }
    Ok(CreateOptions {
        bundle: args.bundle.clone(),
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        preserve_fds: args.preserve_fds,
    })
}

fn print_json(value: &impl serde::Serialize) -> Result<(), RuntimeError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| RuntimeError::Usage(format!("cannot print JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn run(args: &Step12) -> Result<i32, RuntimeError> {
    if args.systemd_cgroup {
        return Err(RuntimeError::Unsupported(
            "--systemd-cgroup (caixa writes the cgroup filesystem itself; configure your engine's cgroup manager as cgroupfs)".into(),
        ));
    }
    let runtime = Runtime::new(&args.root);
    match &args.command {
        Command::Create { args, id } => {
            runtime.create(id, &create_options(args)?)?;
        }
        Command::Start { id } => {
            for line in runtime.start(id)? {
                eprintln!("step12: {line}");
            }
        }
        Command::State { id } => {
            let saved = runtime.load(id)?;
            print_json(&saved.report(&args.root.join(id)))?;
        }
        Command::Kill { all, id, signal } => {
            runtime.kill(id, runtime::parse_signal(signal)?, *all)?;
        }
        Command::Delete { force, id } => {
            for line in runtime.delete(id, *force)? {
                eprintln!("step12: {line}");
            }
        }
        Command::Exec {
            process,
            detach,
            pid_file,
            console_socket,
            tty,
            cwd,
            env,
            user,
            preserve_fds,
            id,
            command,
        } => {
            let options = ExecOptions {
                process: process.clone(),
                args: command.clone(),
                env: env.clone(),
                cwd: cwd.clone(),
                user: user.clone(),
                tty: *tty,
                console_socket: console_socket.clone(),
                pid_file: pid_file.clone(),
                detach: *detach,
                preserve_fds: *preserve_fds,
            };
            return runtime.exec(id, &options);
        }
        Command::Run { args, detach, id } => {
            return runtime.run(id, &create_options(args)?, *detach);
        }
        Command::List { format, quiet } => {
            let all = runtime.list()?;
            match (format.as_str(), quiet) {
                (_, true) => all.iter().for_each(|c| println!("{}", c.id)),
                ("json", _) => print_json(&all)?,
                ("table", _) => {
                    println!(
                        "{:<24} {:<8} {:<8} {:<40} CREATED",
                        "ID", "PID", "STATUS", "BUNDLE"
                    );
                    for c in &all {
                        println!(
                            "{:<24} {:<8} {:<8} {:<40} {}",
                            c.id,
                            c.pid,
                            c.status.as_str(),
                            c.bundle.display(),
                            c.created
                        );
                    }
                }
                (other, _) => {
                    return Err(RuntimeError::Usage(format!(
                        "--format {other}: use table or json"
                    )));
                }
            }
        }
        Command::Features => print_json(&runtime::features::features())?,
        Command::Spec { bundle } => {
            let path = bundle.join(caixa::bundle::CONFIG_FILE);
            if path.exists() {
                return Err(RuntimeError::Usage(format!(
                    "{} exists already: remove it, or choose another --bundle",
                    path.display()
                )));
            }
            caixa::bundle::write(bundle, &runtime::features::example_config()?)?;
        }
        Command::Other(words) => {
            let name = words.first().map_or("", String::as_str);
            return Err(RuntimeError::Unsupported(format!("the command {name:?}")));
        }
    }
    Ok(0)
}
