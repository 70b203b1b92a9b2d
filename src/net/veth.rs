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

/// The host end's name for container `id`: `cx` and the id's first ten
/// characters (an interface name has at most 15).
pub fn host_name(id: &str) -> String {
    format!("cx{}", &id[..id.len().min(10)])
}

// ANCHOR: create_veth
/// Creates the pair with one end in `pid`'s network namespace (as `eth0`),
/// plugs the other into the bridge, and configures the container's end from
/// inside its namespace (`nsenter --net`): addressed, up, default route.
pub fn create(
    bridge: &str,
    id: &str,
    pid: Pid,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    trace: &Trace,
) -> Result<Veth, NetError> {
    // EXERCISE(8): create the veth pair with its peer in the container's netns, plug the host end into the bridge; then configure eth0 inside
    let host = host_name(id);
    // The peer is born inside the container's namespace, already named eth0:
    // moving a device between namespaces later would cost an RCU grace period.
    run(
        "ip",
        &["-batch", "-"],
        &format!(
            "link add {host} type veth peer name eth0 netns {pid}\n\
             link set {host} master {bridge}\n\
             link set dev {host} type bridge_slave hairpin on\n\
             link set {host} up\n"
        ),
        trace,
    )?;
    let veth = Veth { host };
    let netns = format!("--net=/proc/{pid}/ns/net");
    run(
        "nsenter",
        &[&netns, "--", "ip", "-batch", "-"],
        &format!(
            "addr add {address}/{prefix} dev eth0\n\
             link set eth0 up\n\
             route add default via {gateway}\n"
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
