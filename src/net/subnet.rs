//! IPv4 subnets: `10.89.0.0/24`, the addresses in it, and overlaps.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub network: Ipv4Addr,
    /// The prefix length, 8–30.
    pub prefix: u8,
}

impl Subnet {
    fn mask(self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// The `n`th address of the subnet (0 is the network address).
    pub fn nth(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }

    /// The gateway: the first host address, given to the bridge.
    pub fn gateway(self) -> Ipv4Addr {
        self.nth(1)
    }

    /// How many addresses, network and broadcast included.
    pub fn size(self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// Whether `addr` is inside.
    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network)
    }

    /// Whether the two networks share any address.
    pub fn overlaps(self, other: Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The special range this subnet overlaps, if any: no bridge can give
    /// addresses there (this host's own `0.0.0.0/8`, loopback, link-local,
    /// multicast, the reserved range and broadcast): the kernel refuses
    /// them, or takes them for something else.
    pub fn special(self) -> Option<&'static str> {
        const SPECIAL: [(&str, [u8; 4], u8); 5] = [
            ("\"this host\" (0.0.0.0/8)", [0, 0, 0, 0], 8),
            ("loopback (127.0.0.0/8)", [127, 0, 0, 0], 8),
            ("link-local (169.254.0.0/16)", [169, 254, 0, 0], 16),
            ("multicast (224.0.0.0/4)", [224, 0, 0, 0], 4),
            ("reserved and broadcast (240.0.0.0/4)", [240, 0, 0, 0], 4),
        ];
        SPECIAL
            .iter()
            .find(|(_, network, prefix)| {
                self.overlaps(Subnet {
                    network: Ipv4Addr::from(*network),
                    prefix: *prefix,
                })
            })
            .map(|(what, _, _)| *what)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("invalid subnet {s:?}: use A.B.C.D/N with N from 8 to 30, e.g. 10.89.0.0/24")
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let subnet = Subnet {
            network: addr,
            prefix,
        };
        let network = Ipv4Addr::from(u32::from(addr) & subnet.mask());
        if network != addr {
            return Err(format!(
                "invalid subnet {s:?}: host bits are set; did you mean {network}/{prefix}?"
            ));
        }
        Ok(subnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_ranges_are_named() {
        for (text, what) in [
            ("0.0.0.0/8", "this host"),
            ("127.0.0.0/24", "loopback"),
            ("169.254.1.0/24", "link-local"),
            ("224.0.0.0/24", "multicast"),
            ("255.255.255.0/29", "broadcast"),
            ("96.0.0.0/8", ""),
            ("64.0.0.0/8", ""),
        ] {
            let s: Subnet = text.parse().unwrap();
            match s.special() {
                Some(said) => assert!(!what.is_empty() && said.contains(what), "{text}: {said}"),
                None => assert!(what.is_empty(), "{text} is {what}"),
            }
        }
        for fine in ["10.90.0.0/24", "192.168.5.0/24", "172.18.0.0/16"] {
            assert_eq!(fine.parse::<Subnet>().unwrap().special(), None, "{fine}");
        }
    }

    #[test]
    fn parse_contain_overlap() {
        let s: Subnet = "10.89.0.0/24".parse().unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 89, 0, 1));
        assert_eq!(s.size(), 256);
        assert!(s.contains(Ipv4Addr::new(10, 89, 0, 200)));
        assert!(!s.contains(Ipv4Addr::new(10, 89, 1, 1)));
        assert!(s.overlaps("10.0.0.0/8".parse().unwrap()));
        assert!(!s.overlaps("10.90.0.0/16".parse().unwrap()));
        for bad in ["10.89.0.0", "10.89.0.1/24", "10.89.0.0/31", "300.1.1.0/24"] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }
}
