//! Step 1: the PID namespace.
//!
//! The command becomes pid 1 of a new PID namespace: it sees itself as the
//! first process of a machine of its own. Everything else is still the host's,
//! including /proc, which is why `ps` still lists the host's processes (step 4
//! mounts a /proc of the container's own).

use caixa::Namespace;
#[path = "../cli.rs"]
mod cli;
use clap::Parser;
use cli::RunArgs;

/// Run a command as pid 1 of a new PID namespace.
#[derive(Parser)]
#[command(
    name = "step1",
    about = "Step 1: run a command as pid 1 of a new PID namespace",
    long_about = "Step 1: run a command as pid 1 of a new PID namespace.\n\n\
        This is the first step: the command gets process ids of its own and is \
        pid 1 among them. Nothing else is isolated yet; `ps` still shows the \
        host's processes because /proc is still the host's (step 4 fixes that)."
)]
struct Step1 {
    #[command(flatten)]
    run: RunArgs,
}

fn main() {
    let args: Step1 = cli::parse();
    // ANCHOR: spec
    let spec = args.run.to_spec(&[Namespace::Pid]);
    // ANCHOR_END: spec
    cli::run_and_exit("step1", &spec)
}
