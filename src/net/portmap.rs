//! Port forwarding: `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]`.
//!
//! A packet for a published host port has its destination rewritten (DNAT)
//! to the container's address and port. Packets from other machines pass
//! through PREROUTING; packets the host sends itself pass through OUTPUT
//! instead, so caixa's DNAT chain hangs off both. Two more rules make the
//! corner cases work: the host reaching its own published port at
//! 127.0.0.1 (MASQUERADE of 127.0.0.0/8 out of the bridge, with
//! `route_localnet`, in [`super::bridge`]) and a container reaching another
//! one, or itself, through a published port ("hairpin": MASQUERADE, so the
//! reply comes back the same way).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::str::FromStr;

use super::cmd::{restore, run};
use super::{NetError, NetworkSpec, bridge};
use crate::trace::Trace;

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One `-p` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// Only this host address, or all.
    pub host_ip: Option<Ipv4Addr>,
    /// The port on the host.
    pub host_port: u16,
    /// The port in the container.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl Publish {
    /// `tcp:8080`: what two containers may not both publish.
    pub fn key(&self) -> String {
        format!("{}:{}", self.protocol, self.host_port)
    }
}

/// The `-p` syntax [`Publish::from_str`] reads back: `[HOST_IP:]HOST:CONTAINER/PROTO`.
impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

impl FromStr for Publish {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "invalid -p {s:?}: {why}; use [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp], e.g. 8080:80"
            )
        };
        let (ports, protocol) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, Protocol::Tcp),
            Some((p, "udp")) => (p, Protocol::Udp),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
            None => (s, Protocol::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (host_ip, host, container) = match parts.as_slice() {
            [h, c] => (None, *h, *c),
            [ip, h, c] => (
                Some(
                    ip.parse::<Ipv4Addr>()
                        .map_err(|_| bad("the host address is not IPv4"))?,
                ),
                *h,
                *c,
            ),
            _ => return Err(bad("both ports are needed")),
        };
        let port = |p: &str| match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            _ => Err(bad(&format!("{p:?} is not a port from 1 to 65535"))),
        };
        Ok(Publish {
            host_ip,
            host_port: port(host)?,
            container_port: port(container)?,
            protocol,
        })
    }
}

/// One netfilter rule: table, chain and the rest of the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `nat` or `filter`.
    pub table: &'static str,
    /// The chain (one of caixa's).
    pub chain: String,
    /// Matches, target and the comment naming the container.
    pub spec: String,
}

// ANCHOR: rules
/// The rules for container `id` at `address`: a DNAT per published port and
/// a MASQUERADE for hairpin traffic to it.
pub fn rules(spec: &NetworkSpec, id: &str, address: Ipv4Addr) -> Vec<Rule> {
    let (dnat, post, _) = bridge::chains(&spec.bridge);
    let comment = format!("-m comment --comment caixa:{id}");
    let mut out = Vec::new();
    for p in &spec.publish {
        let to = p
            .host_ip
            .map(|ip| format!(" -d {ip}/32"))
            .unwrap_or_default();
        out.push(Rule {
            table: "nat",
            chain: dnat.clone(),
            spec: format!(
                "-p {proto}{to} -m {proto} --dport {hp} -j DNAT --to-destination {address}:{cp} {comment}",
                proto = p.protocol,
                hp = p.host_port,
                cp = p.container_port
            ),
        });
        out.push(Rule {
            table: "nat",
            chain: post.clone(),
            spec: format!(
                "-s {subnet} -d {address}/32 -p {proto} -m {proto} --dport {cp} -j MASQUERADE {comment}",
                subnet = spec.subnet,
                proto = p.protocol,
                cp = p.container_port
            ),
        });
    }
    out
}
// ANCHOR_END: rules

/// The `iptables-restore --noflush` input that adds (`-A`) or deletes
/// (`-D`) `rules`, all in one transaction.
pub fn restore_input(rules: &[Rule], action: &str) -> String {
    let mut text = String::new();
    for table in ["nat", "filter"] {
        let lines: Vec<String> = rules
            .iter()
            .filter(|r| r.table == table)
            .map(|r| format!("{action} {} {}\n", r.chain, r.spec))
            .collect();
        if !lines.is_empty() {
            text.push_str(&format!("*{table}\n{}COMMIT\n", lines.concat()));
        }
    }
    text
}

/// Adds or deletes `rules` in one `iptables-restore`.
pub fn apply(rules: &[Rule], action: &str, trace: &Trace) -> Result<(), NetError> {
    restore(&restore_input(rules, action), trace)
}

/// Deletes every rule whose comment names container `id` (left by a step
/// binary that was killed), read back from `iptables-save`.
pub fn remove_rules_of(id: &str, trace: &Trace) -> Result<(), NetError> {
    let saved = run("iptables-save", &[], "", trace)?;
    let marker = format!("caixa:{id}");
    let mut input = String::new();
    let mut table = String::new();
    let mut lines = Vec::new();
    let flush = |input: &mut String, table: &str, lines: &mut Vec<String>| {
        if !lines.is_empty() {
            input.push_str(&format!("{table}\n{}COMMIT\n", lines.concat()));
            lines.clear();
        }
    };
    for line in saved.lines() {
        if line.starts_with('*') {
            flush(&mut input, &table, &mut lines);
            table = line.to_string();
        } else if let Some(rule) = line.strip_prefix("-A ") {
            if line.contains(&marker) {
                lines.push(format!("-D {rule}\n"));
            }
        }
    }
    flush(&mut input, &table, &mut lines);
    if input.is_empty() {
        return Ok(());
    }
    restore(&input, trace)
}

/// Fails when another program already listens on the host port.
pub fn check_free(p: &Publish) -> Result<(), NetError> {
    let addr = SocketAddrV4::new(p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port);
    let taken = match p.protocol {
        Protocol::Tcp => TcpListener::bind(addr).err(),
        Protocol::Udp => UdpSocket::bind(addr).err(),
    };
    match taken {
        Some(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(NetError::PortTaken(format!(
            "host port {} {} is already in use by another program: choose another host port",
            p.protocol, p.host_port
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse() {
        let p: Publish = "8080:80".parse().unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.protocol),
            (None, 8080, 80, Protocol::Tcp)
        );
        let p: Publish = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert_eq!(
            (p.host_ip, p.protocol),
            (Some(Ipv4Addr::LOCALHOST), Protocol::Udp)
        );
        for bad in [
            "80",
            "0:80",
            "70000:80",
            "a:80",
            "80:80/sctp",
            "1.2.3:80:80",
            "1:2:3:4",
        ] {
            assert!(bad.parse::<Publish>().is_err(), "{bad}");
        }
    }

    #[test]
    fn publish_specs_print_as_they_parse() {
        for text in ["8080:80/tcp", "127.0.0.1:5353:53/udp"] {
            let p: Publish = text.parse().unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(p.to_string().parse::<Publish>(), Ok(p));
        }
    }

    #[test]
    fn the_rules_for_some_publish_specs() {
        let spec = NetworkSpec {
            bridge: "caixa0".into(),
            subnet: "10.89.0.0/24".parse().unwrap(),
            publish: ["8080:80", "127.0.0.1:5353:53/udp"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect(),
            bandwidth: None,
            state_dir: "/run/caixa".into(),
            names: Vec::new(),
            interface: 0,
        };
        let rules = rules(&spec, "0123456789ab", Ipv4Addr::new(10, 89, 0, 2));
        insta::assert_snapshot!(restore_input(&rules, "-A"));
    }
}
