//! Step 4: the mount namespace and a root filesystem.
//!
//! Step 3, plus a mount table of the container's own: its root is a directory
//! of ours (`--rootfs`, by default a busybox rootfs built on first use), with
//! its own /proc, /dev and a read-only /sys, and the host's files are gone.

use caixa::Namespace;
#[path = "../cli.rs"]
mod cli;
use clap::Parser;
use cli::{RootfsArgs, RunArgs};

/// Step 3 + a new mount namespace on a root filesystem.
#[derive(Parser)]
#[command(
    name = "step4",
    about = "Step 4: step 3 + a new mount namespace and root filesystem (pivot_root)",
    long_about = "Step 4: step 3 + a new mount namespace and a root filesystem.\n\n\
        Adds over step 3: the container gets a mount table of its own. Its / \
        is --rootfs (pivot_root, the host's root detached), with a fresh /proc \
        (now `ps` shows only the container), a /dev with only safe devices, a \
        read-only /sys, and Docker's masked and read-only paths."
)]
struct Step4 {
    #[command(flatten)]
    rootfs: RootfsArgs,
    #[command(flatten)]
    run: RunArgs,
}

fn main() {
    let args: Step4 = cli::parse();
    // ANCHOR: spec
    let mut spec = args.run.to_spec(&[
        Namespace::Pid,
        Namespace::Net,
        Namespace::Ipc,
        Namespace::Mount,
    ]);
    spec.root = Some(
        args.rootfs
            .resolve()
            .unwrap_or_else(|e| cli::fail_setup("step4", &e)),
    );
    args.rootfs.volumes.apply("step4", &mut spec);
    // ANCHOR_END: spec
    cli::run_and_exit("step4", &spec)
}
