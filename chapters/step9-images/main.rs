//! Step 9: images.
//!
//! Step 8, plus images: `load` an OCI layout, OCI archive or `docker save`
//! tarball into a content-addressed store, and `run` a container whose root
//! is an overlay of the image's read-only layers under a fresh upper
//! directory, shaped by the image's config (Entrypoint, Cmd, Env,
//! WorkingDir, User). The container's changes vanish with it.

use std::path::PathBuf;

#[path = "../cli.rs"]
mod cli;
use caixa::image::{load, store::Store};
use clap::{Parser, Subcommand};

/// Step 8 + images: load, run, images, rmi.
#[derive(Parser)]
#[command(
    name = "step9",
    about = "Step 9: step 8 + images: OCI layers on overlayfs, a content-addressed store",
    long_about = "Step 9: step 8 + images.\n\n\
        Adds over step 8: an image store (--root, default /var/lib/caixa) of \
        sha256-verified blobs and layers unpacked once per diff_id; `load` for \
        OCI layouts, OCI archives and docker-save tarballs; `run IMAGE` gives \
        the container an overlayfs root of the image's layers under its own \
        upper directory (deleted with it, or kept with --keep), and the \
        image's Entrypoint/Cmd/Env/WorkingDir/User, which the command line \
        overrides as docker run does."
)]
struct Step9 {
    /// The image store.
    #[arg(long, value_name = "DIR", default_value_os_t = caixa::image::store::default_root(), global = true)]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load an OCI layout directory, an OCI archive or a docker save tarball.
    Load {
        /// The directory or file.
        path: PathBuf,
        /// The name to give it (default: the one it carries).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the images in the store.
    Images,
    /// Forget an image's name (its blobs and layers stay for others).
    Rmi {
        /// The image name, e.g. busybox:latest.
        name: String,
    },
    /// Run a container of an image: step9 run [OPTIONS] IMAGE [COMMAND [ARG...]].
    Run(Box<cli::ImageRunArgs>),
}

fn main() {
    let args: Step9 = cli::parse();
    let store = Store::open(&args.root).unwrap_or_else(|e| cli::fail_setup("step9", &e));
    match args.command {
        Command::Load { path, name } => match load::load(&store, &path, name.as_deref()) {
            Ok(names) => names.iter().for_each(|n| println!("loaded {n}")),
            Err(e) => cli::fail_setup("step9", &e),
        },
        Command::Images => {
            for (name, digest) in store
                .images()
                .unwrap_or_else(|e| cli::fail_setup("step9", &e))
            {
                println!("{name}\t{digest}");
            }
        }
        Command::Rmi { name } => {
            let name = caixa::registry::reference::store_name_of(&name);
            if let Err(e) = store.untag(&name) {
                cli::fail_setup("step9", &e);
            }
            println!("untagged {name}");
        }
        // ANCHOR: spec
        // The image's config and root go into the spec (see cli::run_image).
        Command::Run(run) => cli::run_image("step9", *run, &store),
        // ANCHOR_END: spec
    }
}
