//! Step 3: the IPC namespace.
//!
//! Step 2, plus System V IPC objects (shared memory, semaphores, message
//! queues) and POSIX message queues of the container's own: the host's are
//! invisible, and the container's vanish with it.

use caixa::Namespace;
#[path = "../cli.rs"]
mod cli;
use clap::Parser;
use cli::RunArgs;

/// Step 2 + a new IPC namespace.
#[derive(Parser)]
#[command(
    name = "step3",
    about = "Step 3: step 2 + a new IPC namespace",
    long_about = "Step 3: step 2 + a new IPC namespace.\n\n\
        Adds over step 2: System V shared memory, semaphores and message \
        queues, and POSIX message queues, are the container's own: `ipcs` \
        inside shows none of the host's."
)]
struct Step3 {
    #[command(flatten)]
    run: RunArgs,
}

fn main() {
    let args: Step3 = cli::parse();
    // ANCHOR: spec
    let spec = args
        .run
        .to_spec(&[Namespace::Pid, Namespace::Net, Namespace::Ipc]);
    // ANCHOR_END: spec
    cli::run_and_exit("step3", &spec)
}
