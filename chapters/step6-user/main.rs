//! Step 6: the user namespace, capabilities and seccomp.
//!
//! Step 5, plus a user namespace: root in the container is an unprivileged
//! uid on the host (0:100000:65536 by default). It keeps only Docker's 14
//! default capabilities, runs with no_new_privs, and behind a seccomp filter
//! that refuses the system calls a container has no business making.

use caixa::Namespace;
use caixa::cli::{self, HostnameArgs, PrivilegeArgs, RootfsArgs, RunArgs};
use caixa::rootfs::busybox;
use clap::Parser;

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
    let mut spec = args.run.to_spec(&[
        Namespace::User, // first: the others are then owned by it
        Namespace::Pid,
        Namespace::Net,
        Namespace::Ipc,
        Namespace::Mount,
        Namespace::Uts,
    ]);
    if let Err(e) = args.privilege.apply(&mut spec) {
        cli::fail_setup("step6", &e);
    }
    // Check the plan before building a rootfs for its id map.
    if let Err(e) = spec.validate() {
        cli::fail_setup("step6", &e);
    }
    // The default rootfs, owned by the host ids container root maps to.
    let (uid, gid) = PrivilegeArgs::host_root(&spec);
    spec.root = Some(match &args.rootfs.rootfs {
        Some(dir) => dir.clone(),
        None => busybox::default_rootfs_owned_by(uid, gid)
            .unwrap_or_else(|e| cli::fail_setup("step6", &e)),
    });
    let hostname = args.hostname.resolve();
    cli::set_env(&mut spec.process.env, format!("HOSTNAME={hostname}"));
    spec.hostname = Some(hostname);
    // ANCHOR_END: spec
    cli::run_and_exit("step6", &spec)
}
