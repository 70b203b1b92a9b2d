//! Bandwidth: `tc` on the host end of the veth.
//!
//! cgroups do not shape network traffic (v1's `net_cls` only tags packets
//! for tc; v2 has no network controller): the traffic control layer does.
//! A token bucket filter (`tbf`) shapes what *leaves* an interface. What
//! leaves the host end of the veth enters the container: one tbf there
//! limits the container's downloads. What the container sends *enters* the
//! host end, where no qdisc can hold it back, so there are two ways to
//! limit uploads:
//!
//! - a second tbf on the container's `eth0`, set from the host through
//!   `nsenter --net` (the container cannot lift it: changing qdiscs needs
//!   CAP_NET_ADMIN, which step 6 dropped);
//! - step 8's harder exercise, [`on_host`]: the host end's incoming traffic
//!   redirected (tc's `mirred` action) to an `ifb` device on the host,
//!   whose outgoing side a tbf shapes. No process enters the container's
//!   namespace, and everything is the host's to see and remove.

use super::NetError;
use super::cmd::run;
use crate::trace::{Side, Trace};

/// Checks a rate in tc's syntax: a number and a unit (`bit`, `kbit`, `mbit`,
/// `gbit`, `bps`, `kbps`, `mbps`, `gbps`).
pub fn parse_rate(rate: &str) -> Result<String, NetError> {
    let units = ["gbit", "mbit", "kbit", "bit", "gbps", "mbps", "kbps", "bps"];
    let unit = units.iter().find(|u| rate.ends_with(*u));
    let ok = unit.is_some_and(|u| {
        let n = &rate[..rate.len() - u.len()];
        !n.is_empty() && n.parse::<f64>().is_ok_and(|v| v > 0.0)
    });
    if !ok {
        return Err(NetError::Invalid(format!(
            "invalid --network-bandwidth {rate:?}: use a number and a unit, e.g. 10mbit or 512kbit"
        )));
    }
    Ok(rate.to_string())
}

// ANCHOR: limit
/// How a container's bandwidth was limited, for its teardown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shaped {
    /// The upload tbf is on `eth0`, inside: it goes with the namespace.
    Inside,
    /// The upload tbf is on this ifb device of the host: delete it
    /// ([`remove`]) after the veth.
    OnHost {
        /// The ifb device ([`ifb_of`]).
        ifb: String,
    },
}

/// Limits traffic to `rate` in both directions: downloads with a tbf on
/// the host end `dev`, uploads on the host ([`on_host`]) when that is
/// written and the kernel has ifb devices, else with a tbf on the
/// container's `eth0` in `pid`'s namespace.
pub fn limit(
    dev: &str,
    pid: nix::unistd::Pid,
    rate: &str,
    trace: &Trace,
) -> Result<Shaped, NetError> {
    let ifb = ifb_of(dev);
    if let Some(host) = on_host(dev, &ifb, rate) {
        match run("ip", &["-batch", "-"], &host.links, trace) {
            Ok(_) => {
                // One tc for both directions; on failure the ifb goes again.
                let both = format!("{}{}", tbf(dev, rate), host.qdiscs);
                if let Err(e) = run("tc", &["-batch", "-"], &both, trace) {
                    let _ = remove(&ifb, trace);
                    return Err(e);
                }
                return Ok(Shaped::OnHost { ifb });
            }
            Err(NetError::Command { stderr, .. }) if stderr.contains("Unknown device type") => {
                trace.step(
                    Side::Parent,
                    format_args!("this kernel has no ifb device (CONFIG_IFB): uploads are shaped inside the container"),
                );
            }
            Err(e) => return Err(e),
        }
    }
    run("tc", &["-batch", "-"], &tbf(dev, rate), trace)?;
    let netns = format!("--net=/proc/{pid}/ns/net");
    run(
        "nsenter",
        &[&netns, "--", "tc", "-batch", "-"],
        &tbf("eth0", rate),
        trace,
    )?;
    Ok(Shaped::Inside)
}

/// A tbf of `rate` on what leaves `dev`, as a line of `tc -batch`.
fn tbf(dev: &str, rate: &str) -> String {
    format!("qdisc add dev {dev} root tbf rate {rate} burst 32kbit latency 100ms\n")
}
// ANCHOR_END: limit

/// The ifb device that holds the upload limit of the container whose host
/// end is `host_end`: the same name with `i` for its first letter (`cx…`
/// becomes `ix…`), so a crashed container's device is found from its id.
pub fn ifb_of(host_end: &str) -> String {
    format!("i{}", host_end.get(1..).unwrap_or_default())
}

/// What shaping uploads on the host takes: `ip -batch` lines that make the
/// ifb device, and `tc -batch` lines that redirect the host end's incoming
/// traffic to it and shape it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnHost {
    /// For `ip -batch`.
    pub links: String,
    /// For `tc -batch`, after the host end's own tbf.
    pub qdiscs: String,
}

// ANCHOR: on_host
/// The commands that limit what the container sends to `rate` without
/// entering its namespace: an ifb device `ifb`, up; an `ingress` qdisc on
/// the host end `dev`, with a filter that matches every packet and
/// redirects it (`mirred egress redirect`) to the ifb; a tbf on the ifb.
/// `None` until the harder exercise is done: [`limit`] then shapes the
/// container's `eth0` from inside, through `nsenter`.
pub fn on_host(dev: &str, ifb: &str, rate: &str) -> Option<OnHost> {
    // HARDER(8): shape uploads on the host: an ifb device, the host end's ingress redirected to it with tc's mirred action, a tbf on the ifb
    // STAND-IN: None
    Some(OnHost {
        links: format!("link add {ifb} type ifb\nlink set {ifb} up\n"),
        qdiscs: format!(
            "qdisc add dev {dev} handle ffff: ingress\n\
             filter add dev {dev} parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev {ifb}\n\
             {}",
            tbf(ifb, rate)
        ),
    })
    // END HARDER
}
// ANCHOR_END: on_host

/// Deletes the ifb device of a container's upload limit; one already gone
/// is no error.
pub fn remove(ifb: &str, trace: &Trace) -> Result<(), NetError> {
    match run("ip", &["link", "del", ifb], "", trace) {
        Err(NetError::Command { stderr, .. }) if stderr.contains("Cannot find device") => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates() {
        assert!(super::parse_rate("10mbit").is_ok());
        assert!(super::parse_rate("1.5gbit").is_ok());
        for bad in ["10", "mbit", "10mb", "-1mbit", "0kbit"] {
            assert!(super::parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_ifb_is_named_after_the_host_end() {
        assert_eq!(super::ifb_of("cxab12cd34ef"), "ixab12cd34ef");
        assert_eq!(super::ifb_of("c1ab12cd34ef"), "i1ab12cd34ef");
    }
}
