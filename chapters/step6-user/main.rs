//! Step 6: the user namespace, capabilities and seccomp.
//!
//! Step 5, plus a user namespace: root in the container is an unprivileged
//! uid on the host (0:100000:65536 by default). It keeps only Docker's 14
//! default capabilities, runs with no_new_privs, and behind a seccomp filter
//! that refuses the system calls a container has no business making.

#[path = "../cli.rs"]
mod cli;
use clap::Parser;
use cli::{HostnameArgs, PrivilegeArgs, RootfsArgs, RunArgs};

/// Step 5 + a user namespace, capabilities, no_new_privs and seccomp.
#[derive(Parser)]
#[command(
    name = "step6",
    about = "Step 6: step 5 + a user namespace (root inside is not root outside), capabilities, seccomp",
    long_about = "Step 6: step 5 + a user namespace, capabilities and seccomp.\n\n\
        Adds over step 5: container root is mapped to an unprivileged host \
        range (--uid-map/--gid-map, default 0:100000:65536); only Docker's 14 \
        default capabilities are kept (--cap-add/--cap-drop); no_new_privs is \
        set; a seccomp filter denies kernel-wide calls such as mount, kexec, \
        bpf and new user namespaces (--security-opt seccomp=unconfined turns \
        it off); only file descriptors 0-2 reach the command."
)]
struct Step6 {
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
    let args: Step6 = cli::parse();
    // ANCHOR: spec
    // Every namespace, the user namespace first; the privilege options; then
    // the checks, the rootfs owned by the mapped root, and the host name.
    // Steps 7 and 8 start from the same two calls (see src/cli.rs).
    let mut spec = cli::privileged_spec("step6", &args.run, &args.privilege);
    cli::finish_spec("step6", &mut spec, &args.rootfs, &args.hostname);
    // ANCHOR_END: spec
    cli::run_and_exit("step6", &spec)
}
