//! Bandwidth: `tc` on the host end of the veth.
//!
//! cgroups do not shape network traffic (v1's `net_cls` only tags packets
//! for tc; v2 has no network controller): the traffic control layer does.
//! A token bucket filter (`tbf`) shapes what *leaves* an interface. What
//! leaves the host end of the veth enters the container: one tbf there
//! limits the container's downloads. What the container sends leaves its
//! `eth0`: a second tbf there, set from the host through `nsenter --net`,
//! limits its uploads. (The container cannot lift it: changing qdiscs needs
//! CAP_NET_ADMIN, which step 6 dropped. Production setups often use an
//! `ingress` policer or an `ifb` device on the host side instead.)

use super::NetError;
use super::cmd::run;
use crate::trace::Trace;

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
/// Limits traffic to `rate` in both directions: the host end `dev` (into the
/// container) and the container's `eth0` in `pid`'s namespace (out of it).
pub fn limit(dev: &str, pid: nix::unistd::Pid, rate: &str, trace: &Trace) -> Result<(), NetError> {
    let tbf = |dev: &str| {
        format!("qdisc add dev {dev} root tbf rate {rate} burst 32kbit latency 100ms\n")
    };
    run("tc", &["-batch", "-"], &tbf(dev), trace)?;
    let netns = format!("--net=/proc/{pid}/ns/net");
    run(
        "nsenter",
        &[&netns, "--", "tc", "-batch", "-"],
        &tbf("eth0"),
        trace,
    )
    .map(drop)
}
// ANCHOR_END: limit

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
}
