//! The veth pair: a virtual cable, one end on the bridge, the other in the
//! container's network namespace as `eth0`.

use std::net::Ipv4Addr;

use nix::unistd::Pid;

use super::NetError;
use super::cmd::run;
use crate::trace::Trace;

/// A container's veth pair, by its host-side name.
#[derive(Debug)]
pub struct Veth {
    /// The end that stays on the host, on the bridge.
    pub host: String,
}

/// The host end's name for interface `index` of container `id`: `cx`
/// and the id's first ten characters for its first interface (`eth0`),
/// `c1`…`c9` instead of `cx` for the networks it joins later (`eth1`…):
/// an interface name has at most 15 bytes, and each end on the host
/// needs a name of its own.
pub fn host_name(id: &str, index: u8) -> String {
    let id = &id[..id.len().min(10)];
    match index {
        0 => format!("cx{id}"),
        n => format!("c{}{id}", n.min(9)),
    }
}

/// One end of a container's network: the pair's two names and what the
/// container's end is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The host end's name ([`host_name`]).
    pub host: String,
    /// The container's end: `eth0`, or `eth1`… for a network joined later.
    pub inside: String,
    /// Its address and the subnet's prefix length.
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The default route's gateway: the first network's only (a container
    /// has one way out to the world; a network joined later reaches its
    /// own subnet, as in Docker).
    pub gateway: Option<Ipv4Addr>,
}

// ANCHOR: create_veth
/// Creates the pair with one end in `pid`'s network namespace (named
/// `link.inside`, e.g. `eth0`), plugs the other into the bridge, and
/// configures the container's end from inside its namespace (`nsenter
/// --net`): addressed, up, and the default route through its gateway.
pub fn create(bridge: &str, link: &Link, pid: Pid, trace: &Trace) -> Result<Veth, NetError> {
    // EXERCISE(8): create the veth pair with its peer in the container's netns, plug the host end into the bridge; then configure the inside end (eth0) inside
    let Link {
        host,
        inside,
        address,
        prefix,
        ..
    } = link;
    // The peer is born inside the container's namespace, already named eth0:
    // moving a device between namespaces later would cost an RCU grace period.
    run(
        "ip",
        &["-batch", "-"],
        &format!(
            "link add {host} type veth peer name {inside} netns {pid}\n\
             link set {host} master {bridge}\n\
             link set dev {host} type bridge_slave hairpin on\n\
             link set {host} up\n"
        ),
        trace,
    )?;
    let veth = Veth { host: host.clone() };
    let route = match link.gateway {
        Some(gateway) => format!("route add default via {gateway}\n"),
        None => String::new(),
    };
    let netns = format!("--net=/proc/{pid}/ns/net");
    run(
        "nsenter",
        &[&netns, "--", "ip", "-batch", "-"],
        &format!(
            "addr add {address}/{prefix} dev {inside}\n\
             link set {inside} up\n\
             {route}"
        ),
        trace,
    )?;
    Ok(veth)
    // END EXERCISE
}
// ANCHOR_END: create_veth

/// Deletes the pair from the host side. When the container's namespace has
/// died already, the kernel may have removed the pair with it: then there
/// is nothing to do.
pub fn delete(veth: &Veth, trace: &Trace) -> Result<(), NetError> {
    match run("ip", &["link", "del", &veth.host], "", trace) {
        Err(NetError::Command { stderr, .. }) if stderr.contains("Cannot find device") => Ok(()),
        other => other.map(drop),
    }
}
