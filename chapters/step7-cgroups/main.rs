//! Step 7: cgroups.
//!
//! Step 6, plus a control group per container: limits on memory, CPU time
//! and priority, processes and disk I/O that the kernel enforces, on cgroup
//! v2 or v1 (hybrid hosts included). The group is created before the child
//! runs anything and removed after it ends.

#[path = "../cli.rs"]
mod cli;
use clap::Parser;
use cli::{CgroupArgs, HostnameArgs, PrivilegeArgs, RootfsArgs, RunArgs};

/// Step 6 + a cgroup with resource limits.
#[derive(Parser)]
#[command(
    name = "step7",
    about = "Step 7: step 6 + a cgroup: memory, CPU, pids and disk I/O limits",
    long_about = "Step 7: step 6 + a cgroup with resource limits.\n\n\
        Adds over step 6: the container runs in a cgroup of its own \
        (caixa/<id>, on cgroup v2 or v1) created before it starts and removed \
        after it ends. --memory, --memory-swap, --cpus, --cpu-shares, \
        --cpu-weight, --pids-limit, --blkio-weight, --device-{read,write}-{bps,iops} \
        and --cpuset-cpus set limits the kernel enforces; a container killed \
        for memory is reported as such (exit 137). Network bandwidth is not a \
        cgroup matter: step 8 shapes it with tc."
)]
struct Step7 {
    #[command(flatten)]
    limits: CgroupArgs,
    #[command(flatten)]
    privilege: PrivilegeArgs,
    #[command(flatten)]
    hostname: HostnameArgs,
    #[command(flatten)]
    rootfs: RootfsArgs,
    #[command(flatten)]
    run: RunArgs,
}

fn main() {
    let args: Step7 = cli::parse();
    // ANCHOR: spec
    let mut spec = cli::privileged_spec("step7", &args.run, &args.privilege);
    spec.limits = Some(
        args.limits
            .to_limits()
            .unwrap_or_else(|e| cli::fail_setup("step7", &e)),
    );
    // ANCHOR_END: spec
    cli::finish_spec("step7", &mut spec, &args.rootfs, &args.hostname);
    cli::run_and_exit("step7", &spec)
}
