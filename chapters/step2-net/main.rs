//! Step 2: the network namespace.
//!
//! Step 1, plus a network stack of the container's own: only a loopback
//! interface, brought up, no route out. The host's interfaces, addresses and
//! ports are out of reach.

use caixa::Namespace;
#[path = "../cli.rs"]
mod cli;
use clap::Parser;
use cli::RunArgs;

/// Step 1 + a new network namespace.
#[derive(Parser)]
#[command(
    name = "step2",
    about = "Step 2: step 1 + a new network namespace with only `lo`",
    long_about = "Step 2: step 1 + a new network namespace.\n\n\
        Adds over step 1: the command gets a network stack of its own with \
        only the loopback interface `lo`, brought up. The host's interfaces, \
        routes and listening ports are invisible."
)]
struct Step2 {
    #[command(flatten)]
    run: RunArgs,
}

fn main() {
    let args: Step2 = cli::parse();
    // ANCHOR: spec
    let spec = args.run.to_spec(&[Namespace::Pid, Namespace::Net]);
    // ANCHOR_END: spec
    cli::run_and_exit("step2", &spec)
}
