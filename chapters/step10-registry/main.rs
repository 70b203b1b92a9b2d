//! Step 10: the registry client.
//!
//! Step 9, plus the network's way to get images: `pull` and `push` over the
//! OCI distribution API, `login` for registries that want credentials, and
//! `run` that pulls what is missing first.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

#[path = "../cli.rs"]
mod cli;
use caixa::image::store::Store;
use caixa::registry::client::Options;
use caixa::registry::progress::Progress;
use caixa::registry::{auth, pull, push, reference::Reference};
use clap::{Parser, Subcommand};

/// Step 9 + a registry client: pull, push, login, run.
#[derive(Parser)]
#[command(
    name = "step10",
    about = "Step 10: step 9 + a registry client: pull, push, login (OCI distribution API)",
    long_about = "Step 10: step 9 + a registry client.\n\n\
        Adds over step 9: `pull REF` resolves a tag to a manifest (choosing \
        this machine's platform from an index), fetches config and layers \
        a few at a time and verifies every digest, within bounds of time \
        (--timeout), size (--max-pull-size) and free space; `push` uploads what the \
        registry lacks, then the manifest; `login` saves credentials as \
        Docker's config.json does (Basic, and the Bearer token flow); `run \
        REF` pulls when the image is missing. Plain HTTP only to loopback or \
        --insecure-registry hosts."
)]
struct Step10 {
    /// The image store.
    #[arg(long, value_name = "DIR", default_value_os_t = caixa::image::store::default_root(), global = true)]
    root: PathBuf,
    /// A registry (HOST[:PORT]) that may be spoken to over plain HTTP. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST", global = true)]
    insecure: Vec<String>,
    /// Seconds to wait for a registry to connect, begin an answer or send
    /// its next bytes; each answer must also be complete within this plus
    /// 1 s per 64 KiB it carries.
    #[arg(long, value_name = "SECS", default_value_t = 30, global = true)]
    timeout: u64,
    /// The most one pull (or run) may download, e.g. 16g.
    #[arg(long, value_name = "SIZE", default_value = "16g", global = true)]
    max_pull_size: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image: [REGISTRY/]NAME[:TAG|@DIGEST].
    Pull {
        /// The reference.
        reference: String,
        /// The platform to pick from a multi-platform image.
        #[arg(long, default_value_t = pull::this_platform())]
        platform: String,
    },
    /// Push a local image to the registry its name (or --to) points at.
    Push {
        /// The local image, e.g. 127.0.0.1:5000/team/app:1.
        name: String,
        /// Where to push, when not the name itself.
        #[arg(long)]
        to: Option<String>,
        /// Upload blobs larger than this in chunks (PATCH), e.g. 8m.
        #[arg(long, value_name = "SIZE", default_value = "8m")]
        chunk_size: String,
    },
    /// Save credentials for a registry (the password is read from stdin).
    Login {
        /// The registry host, e.g. 127.0.0.1:5000.
        registry: String,
        /// The user name.
        #[arg(short, long)]
        username: String,
    },
    /// List the images in the store.
    Images,
    /// Run an image, pulling it first when it is missing.
    Run(Box<cli::ImageRunArgs>),
}

fn main() {
    let args: Step10 = cli::parse();
    let store = Store::open(&args.root).unwrap_or_else(|e| cli::fail_setup("step10", &e));
    let progress = Progress::for_stderr();
    let max_pull_size = caixa::units::parse_size(&args.max_pull_size)
        .unwrap_or_else(|e| cli::fail_setup("step10", &e));
    let mut options = Options {
        insecure: args.insecure,
        timeout: Duration::from_secs(args.timeout.max(1)),
        max_pull_size,
        ..Options::default()
    };
    match args.command {
        Command::Pull {
            reference,
            platform,
        } => {
            let reference =
                Reference::parse(&reference).unwrap_or_else(|e| cli::fail_setup("step10", &e));
            match pull::pull(&store, &reference, &platform, &options, &progress) {
                Ok(name) => println!("pulled {name}"),
                Err(e) => cli::fail_setup("step10", &e),
            }
        }
        Command::Push {
            name,
            to,
            chunk_size,
        } => {
            options.chunk_size = caixa::units::parse_size(&chunk_size)
                .unwrap_or_else(|e| cli::fail_setup("step10", &e));
            let target = Reference::parse(to.as_deref().unwrap_or(&name))
                .unwrap_or_else(|e| cli::fail_setup("step10", &e));
            match push::push(&store, &name, &target, &options, &progress) {
                Ok(digest) => println!("pushed {target} {digest}"),
                Err(e) => cli::fail_setup("step10", &e),
            }
        }
        Command::Login { registry, username } => {
            let mut password = String::new();
            let _ = std::io::stdin().lock().read_line(&mut password);
            let password = password.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                eprintln!(
                    "step10: no password on stdin: echo PASSWORD | step10 login {registry} -u {username}"
                );
                std::process::exit(125);
            }
            match auth::save_credentials(&registry, &username, password) {
                Ok(path) => println!("credentials for {registry} saved in {}", path.display()),
                Err(e) => cli::fail_setup("step10", &e),
            }
        }
        Command::Images => {
            for (name, digest) in store
                .images()
                .unwrap_or_else(|e| cli::fail_setup("step10", &e))
            {
                println!("{name}\t{digest}");
            }
        }
        Command::Run(run) => {
            // ANCHOR: spec
            // Pull first when the image is not in the store, then run as step 9.
            if let Some(first) = run.run.command.first() {
                let reference =
                    Reference::parse(first).unwrap_or_else(|e| cli::fail_setup("step10", &e));
                if store.resolve(&reference.store_name()).is_err() {
                    if let Err(e) = pull::pull(
                        &store,
                        &reference,
                        &pull::this_platform(),
                        &options,
                        &progress,
                    ) {
                        cli::fail_setup("step10", &e);
                    }
                }
                let mut run = run;
                run.run.command[0] = reference.store_name();
                cli::run_image("step10", *run, &store)
            }
            cli::run_image("step10", *run, &store)
            // ANCHOR_END: spec
        }
    }
}
