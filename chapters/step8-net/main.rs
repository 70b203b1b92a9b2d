//! Step 8: container networking with netfilter.
//!
//! Step 7, plus a real network: a veth pair from the container to a host
//! bridge, an address from caixa's IPAM, outbound NAT (MASQUERADE), published
//! ports (`-p`, DNAT) and bandwidth shaping (`--network-bandwidth`, tc).

use caixa::Namespace;
use caixa::cli::{self, CgroupArgs, HostnameArgs, NetworkArgs, PrivilegeArgs, RootfsArgs, RunArgs};
use caixa::rootfs::busybox;
use clap::Parser;

/// Step 7 + a network: bridge, veth, NAT, published ports, bandwidth.
#[derive(Parser)]
#[command(
    name = "step8",
    about = "Step 8: step 7 + a network: bridge, veth, NAT, port forwarding (-p), bandwidth",
    long_about = "Step 8: step 7 + a network, as Docker's bridge network.\n\n\
        Adds over step 7: a veth pair from the container (eth0) to a host \
        bridge (--bridge, default caixa0, created on first use and removed \
        with its last container), an address from a small IPAM (--subnet, \
        default 10.89.0.0/24), MASQUERADE for outbound traffic, -p \
        [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp] to publish ports with \
        DNAT (also from the host itself and 127.0.0.1), /etc/hosts and \
        /etc/resolv.conf, and --network-bandwidth RATE shaped with tc. Every \
        rule lives in caixa's own chains and goes with the container."
)]
struct Step8 {
    #[command(flatten)]
    network: NetworkArgs,
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
    let args: Step8 = cli::parse();
    let mut spec = args.run.to_spec(&[
        Namespace::User,
        Namespace::Pid,
        Namespace::Net,
        Namespace::Ipc,
        Namespace::Mount,
        Namespace::Uts,
    ]);
    if let Err(e) = args.privilege.apply(&mut spec) {
        cli::fail_setup("step8", &e);
    }
    spec.limits = Some(
        args.limits
            .to_limits()
            .unwrap_or_else(|e| cli::fail_setup("step8", &e)),
    );
    // ANCHOR: spec
    spec.network = Some(
        args.network
            .to_network()
            .unwrap_or_else(|e| cli::fail_setup("step8", &e)),
    );
    // ANCHOR_END: spec
    if let Err(e) = spec.validate() {
        cli::fail_setup("step8", &e);
    }
    let (uid, gid) = PrivilegeArgs::host_root(&spec);
    spec.root = Some(match &args.rootfs.rootfs {
        Some(dir) => dir.clone(),
        None => busybox::default_rootfs_owned_by(uid, gid)
            .unwrap_or_else(|e| cli::fail_setup("step8", &e)),
    });
    let hostname = args.hostname.resolve();
    cli::set_env(&mut spec.process.env, format!("HOSTNAME={hostname}"));
    spec.hostname = Some(hostname);
    cli::run_and_exit("step8", &spec)
}
