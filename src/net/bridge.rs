//! The host bridge: a virtual switch the containers' veths plug into, with
//! the gateway address, and the netfilter chains every container shares.

use super::cmd::{restore, run, sysctl};
use super::{NetError, NetworkSpec, Subnet};
use crate::trace::{Side, Trace};

/// Every caixa bridge, as iptables matches interfaces (`+`: any suffix):
/// `caixa0` and the engine's networks, `caixa-…`. Traffic from one to
/// another is dropped: a network is isolated from the others, as Docker's
/// are. Within a bridge, and out to the world, it flows.
pub const ISOLATED: &str = "caixa+";

/// caixa's own chains for this bridge (iptables allows 28 characters; a
/// bridge name has at most 15).
pub fn chains(bridge: &str) -> (String, String, String) {
    (
        format!("CX-{bridge}-DNAT"),
        format!("CX-{bridge}-POST"),
        format!("CX-{bridge}-FWD"),
    )
}

/// The file that marks a bridge as made by caixa (in the state directory):
/// caixa only ever removes or reuses bridges it made.
pub fn marker(spec: &NetworkSpec) -> std::path::PathBuf {
    spec.state_dir
        .join("networks")
        .join(format!("{}.bridge", spec.bridge))
}

/// The marker's second line when the bridge outlives its containers.
const KEPT: &str = "kept";

/// Whether the bridge of `spec` is kept: made for a network of the
/// engine's, which outlives its containers (see [`keep_up`]).
pub fn is_kept(spec: &NetworkSpec) -> bool {
    std::fs::read_to_string(marker(spec)).is_ok_and(|m| m.lines().nth(1) == Some(KEPT))
}

// ANCHOR: keep_up
/// Makes the bridge of `spec` the network's, not its containers': up (made,
/// remade after a crash, or its subnet checked, as [`bring_up`] does) and
/// marked kept, so the release of its last container leaves it, its
/// shared rules with it. Docker's `docker0` and its networks' bridges live
/// as long as the network does: the engine calls this before each start on
/// a network, and removes the bridge with the network ([`remove_kept`]).
/// Step 8 has no network object: its bridge goes with its last container.
pub fn keep_up(spec: &NetworkSpec, trace: &Trace) -> Result<(), NetError> {
    let leases = super::ipam::open(spec)?;
    if is_kept(spec) && exists(&spec.bridge) {
        return Ok(());
    }
    bring_up(spec, leases.is_empty(), trace)?;
    let marked = format!("{}\n{KEPT}\n", spec.subnet);
    std::fs::write(marker(spec), marked).map_err(|source| NetError::State {
        path: marker(spec),
        source,
    })
}
// ANCHOR_END: keep_up

/// Removes a kept bridge, its rules and its marker, when no container
/// holds an address on it (the engine's `network rm`); nothing when there
/// is no bridge of caixa's by that name.
pub fn remove_kept(spec: &NetworkSpec, trace: &Trace) -> Result<(), NetError> {
    let leases = super::ipam::open(spec)?;
    if !leases.is_empty() || !marker(spec).exists() {
        return Ok(());
    }
    if !exists(&spec.bridge) {
        let _ = std::fs::remove_file(marker(spec));
        return Ok(());
    }
    destroy(spec, trace)
}

/// Whether the bridge exists in this network namespace.
pub fn exists(bridge: &str) -> bool {
    super::link_exists(bridge)
}

/// The routes of this namespace that overlap `subnet`, as `ip route` shows them.
fn overlapping_routes(
    subnet: Subnet,
    bridge: &str,
    trace: &Trace,
) -> Result<Vec<String>, NetError> {
    let routes = run(
        "ip",
        &["-o", "-4", "route", "show", "table", "all"],
        "",
        trace,
    )?;
    Ok(routes
        .lines()
        .filter(|l| {
            !l.contains(&format!("dev {bridge} "))
                && !l.starts_with("default")
                && !l.starts_with("broadcast")
                && !l.starts_with("local")
        })
        .filter(|l| {
            let first = l.split_whitespace().next().unwrap_or("");
            let net = if first.contains('/') {
                first.parse::<Subnet>().ok()
            } else {
                format!("{first}/30").parse::<Subnet>().ok().or(None)
            };
            match (net, first.parse::<std::net::Ipv4Addr>()) {
                (Some(n), _) => n.overlaps(subnet),
                (None, Ok(addr)) => subnet.contains(addr),
                _ => false,
            }
        })
        .map(str::to_string)
        .collect())
}

// ANCHOR: bring_up
/// Makes sure the network's bridge is up for a new container: refuses a
/// bridge of that name caixa did not make; remakes one a crash left behind
/// (`first`: no live container holds an address); makes a missing one;
/// checks an existing one's subnet. Called under the leases' lock.
pub fn bring_up(spec: &NetworkSpec, first: bool, trace: &Trace) -> Result<(), NetError> {
    // The marker holds the subnet caixa made the bridge with.
    let made_with = std::fs::read_to_string(marker(spec)).ok();
    let mut up = exists(&spec.bridge);
    if up && made_with.is_none() {
        return Err(NetError::Invalid(format!(
            "a bridge named {} exists and was not made by caixa: choose another --bridge",
            spec.bridge
        )));
    }
    if first && up && !is_kept(spec) {
        // No live lease but a bridge: left by a start that was killed.
        // Start the network afresh. (A kept bridge has no lease between
        // its containers, and stays.)
        trace.step(
            Side::Parent,
            format_args!(
                "bridge: no live lease on {}: removing what a crash left",
                spec.bridge
            ),
        );
        let _ = destroy(spec, trace);
        up = exists(&spec.bridge);
    }
    if !up {
        return create(spec, trace);
    }
    // In use: its subnet must be this container's. The marker says so
    // without a process; `ip` is asked only when it does not agree.
    let made_with = made_with.as_deref().and_then(|m| m.lines().next());
    if made_with.map(str::trim) == Some(spec.subnet.to_string().as_str()) {
        return Ok(());
    }
    check_subnet(spec, trace)
}
// ANCHOR_END: bring_up

// ANCHOR: create_bridge
/// Creates the bridge with the gateway address, turns on forwarding and
/// `route_localnet` (so DNAT from 127.0.0.1 may leave through the bridge),
/// and adds caixa's chains with the rules every container shares: NAT,
/// and forwarding within the bridge and out, but not to another caixa
/// bridge ([`ISOLATED`]).
pub fn create(spec: &NetworkSpec, trace: &Trace) -> Result<(), NetError> {
    let (br, subnet, gw) = (&spec.bridge, spec.subnet, spec.subnet.gateway());
    if let Some(route) = overlapping_routes(subnet, br, trace)?.first() {
        return Err(NetError::Invalid(format!(
            "subnet {subnet} overlaps the existing route \"{route}\": choose another --subnet"
        )));
    }
    // The marker first: a start killed half-way through leaves a bridge
    // that is marked as caixa's, which the next start then removes and
    // makes again (no live lease holds it), instead of refusing it.
    std::fs::write(marker(spec), subnet.to_string()).map_err(|source| NetError::State {
        path: marker(spec),
        source,
    })?;
    if let Err(e) = run(
        "ip",
        &["-batch", "-"],
        &format!(
            "link add {br} type bridge\naddr add {gw}/{} dev {br}\nlink set {br} up\n",
            subnet.prefix
        ),
        trace,
    ) {
        let _ = run("ip", &["link", "del", br], "", trace);
        let _ = std::fs::remove_file(marker(spec));
        return Err(e);
    }
    sysctl("net/ipv4/ip_forward", "1", trace)?;
    sysctl(&format!("net/ipv4/conf/{br}/route_localnet"), "1", trace)?;
    let (dnat, post, fwd) = chains(br);
    let c = format!("-m comment --comment caixa:{br}");
    let rules = format!(
        "*nat\n:{dnat} - [0:0]\n:{post} - [0:0]\n\
         -A PREROUTING -m addrtype --dst-type LOCAL -j {dnat} {c}\n\
         -A OUTPUT -m addrtype --dst-type LOCAL -j {dnat} {c}\n\
         -A POSTROUTING -j {post} {c}\n\
         -A {post} -s {subnet} ! -o {br} -j MASQUERADE {c}\n\
         -A {post} -s 127.0.0.0/8 -o {br} -j MASQUERADE {c}\n\
         COMMIT\n\
         *filter\n:{fwd} - [0:0]\n\
         -A FORWARD -j {fwd} {c}\n\
         -A {fwd} -i {br} -o {br} -j ACCEPT {c}\n\
         -A {fwd} -i {br} -o {ISOLATED} -j DROP {c}\n\
         -A {fwd} -i {ISOLATED} -o {br} -j DROP {c}\n\
         -A {fwd} -i {br} -j ACCEPT {c}\n\
         -A {fwd} -o {br} -j ACCEPT {c}\n\
         COMMIT\n"
    );
    if let Err(e) = restore(&rules, trace) {
        let _ = run("ip", &["link", "del", br], "", trace);
        let _ = std::fs::remove_file(marker(spec));
        return Err(e);
    }
    Ok(())
}
// ANCHOR_END: create_bridge

/// Fails when the existing bridge has another subnet than `spec` asks for.
pub fn check_subnet(spec: &NetworkSpec, trace: &Trace) -> Result<(), NetError> {
    let want = format!("{}/{}", spec.subnet.gateway(), spec.subnet.prefix);
    let addrs = run(
        "ip",
        &["-o", "-4", "addr", "show", "dev", &spec.bridge],
        "",
        trace,
    )?;
    if addrs.split_whitespace().any(|w| w == want) {
        return Ok(());
    }
    let have = addrs
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or("no address");
    Err(NetError::Invalid(format!(
        "bridge {} already exists with {have}, not {want}: use its subnet, or another --bridge",
        spec.bridge
    )))
}

/// Removes the shared rules, the chains and the bridge.
pub fn destroy(spec: &NetworkSpec, trace: &Trace) -> Result<(), NetError> {
    let br = &spec.bridge;
    let (dnat, post, fwd) = chains(br);
    let c = format!("-m comment --comment caixa:{br}");
    let rules = format!(
        "*nat\n\
         -D PREROUTING -m addrtype --dst-type LOCAL -j {dnat} {c}\n\
         -D OUTPUT -m addrtype --dst-type LOCAL -j {dnat} {c}\n\
         -D POSTROUTING -j {post} {c}\n\
         -F {dnat}\n-X {dnat}\n-F {post}\n-X {post}\n\
         COMMIT\n\
         *filter\n-D FORWARD -j {fwd} {c}\n-F {fwd}\n-X {fwd}\nCOMMIT\n"
    );
    let rules_result = restore(&rules, trace);
    let link_result = run("ip", &["link", "del", br], "", trace);
    let _ = std::fs::remove_file(marker(spec));
    rules_result.and(link_result.map(drop))
}
