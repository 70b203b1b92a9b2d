//! Step 5: the UTS namespace.
//!
//! Step 4, plus a host name of the container's own (`--hostname`, by default a
//! short random id as Docker gives).

use caixa::Namespace;
#[path = "../cli.rs"]
mod cli;
use clap::Parser;
use cli::{HostnameArgs, RootfsArgs, RunArgs};

/// Step 4 + a new UTS namespace with its own host name.
#[derive(Parser)]
#[command(
    name = "step5",
    about = "Step 5: step 4 + a new UTS namespace with its own host name",
    long_about = "Step 5: step 4 + a new UTS namespace.\n\n\
        Adds over step 4: the container has a host name of its own \
        (--hostname, default a random 12-digit id as Docker uses); `hostname` \
        on the host is unchanged."
)]
struct Step5 {
    #[command(flatten)]
    hostname: HostnameArgs,
    #[command(flatten)]
    rootfs: RootfsArgs,
    #[command(flatten)]
    run: RunArgs,
}

fn main() {
    let args: Step5 = cli::parse();
    // ANCHOR: spec
    let mut spec = args.run.to_spec(&[
        Namespace::Pid,
        Namespace::Net,
        Namespace::Ipc,
        Namespace::Mount,
        Namespace::Uts,
    ]);
    spec.root = Some(
        args.rootfs
            .resolve()
            .unwrap_or_else(|e| cli::fail_setup("step5", &e)),
    );
    args.rootfs.volumes.apply("step5", &mut spec);
    let hostname = args.hostname.resolve();
    caixa::spec::set_env(&mut spec.process.env, format!("HOSTNAME={hostname}"));
    spec.hostname = Some(hostname);
    // ANCHOR_END: spec
    cli::run_and_exit("step5", &spec)
}
