//! Step 8: container networking with netfilter.
//!
//! Step 7, plus a real network: a veth pair from the container to a host
//! bridge, an address from caixa's IPAM, outbound NAT (MASQUERADE), published
//! ports (`-p`, DNAT) and bandwidth shaping (`--network-bandwidth`, tc).
//! Without root, `--network pasta` gives a user-mode network instead.

#[path = "../cli.rs"]
mod cli;
use clap::Parser;
use cli::{CgroupArgs, HostnameArgs, NetworkArgs, PrivilegeArgs, RootfsArgs, RunArgs};

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
        rule lives in caixa's own chains and goes with the container. \
        As an ordinary user, --network pasta gives a user-mode network \
        instead (pasta, as podman): a way out and -p, no root needed."
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
    let mut spec = cli::privileged_spec("step8", &args.run, &args.privilege);
    spec.limits = Some(
        args.limits
            .to_limits()
            .unwrap_or_else(|e| cli::fail_setup("step8", &e)),
    );
    // ANCHOR: spec
    if let Err(e) = args.network.apply(&mut spec) {
        cli::fail_setup("step8", &e);
    }
    // ANCHOR_END: spec
    cli::finish_spec("step8", &mut spec, &args.rootfs, &args.hostname);
    cli::run_and_exit("step8", &spec)
}
