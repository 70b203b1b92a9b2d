//! The veth pair: a virtual cable, one end on the bridge, the other in the
//! container's network namespace as `eth0`.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use nix::unistd::Pid;

use super::NetError;
use super::cmd::run;
use super::netlink::{self, Message, Route};
use crate::trace::{Side, Trace};

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
/// configures the container's end from inside its namespace
/// ([`configure_inside`]): addressed, up, and the default route through
/// its gateway. Two rtnetlink messages, what `ip` would send for
/// `ip link add HOST master BRIDGE up type veth peer name eth0 netns PID`
/// and `ip link set dev HOST type bridge_slave hairpin on`.
pub fn create(bridge: &str, link: &Link, pid: Pid, trace: &Trace) -> Result<Veth, NetError> {
    // EXERCISE(8): create the veth pair with its peer in the container's netns, plug the host end into the bridge; then configure the inside end (eth0) inside
    let Link { host, inside, .. } = link;
    let master = netlink::index_of(bridge)?;
    let mut route = Route::open()?;
    // The peer is born inside the container's namespace, already named eth0:
    // moving a device between namespaces later would cost an RCU grace period.
    let mut pair = Message::link(
        libc::RTM_NEWLINK,
        (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
        0,
        true,
        format!("ip link add {host} master {bridge} up type veth peer name {inside} netns {pid}"),
    );
    pair.text(libc::IFLA_IFNAME, host)
        .number(libc::IFLA_MASTER, master)
        .nest(libc::IFLA_LINKINFO, |info| {
            info.text(libc::IFLA_INFO_KIND, "veth")
                .nest(libc::IFLA_INFO_DATA, |data| {
                    data.nest(netlink::VETH_INFO_PEER, |peer| {
                        peer.interface(0, false)
                            .text(libc::IFLA_IFNAME, inside)
                            .number(libc::IFLA_NET_NS_PID, pid.as_raw() as u32);
                    });
                });
        });
    route.send(pair, trace)?;
    let veth = Veth { host: host.clone() };
    // A frame may go back out of the port it came in by (a bridge port's
    // setting, so the link must be a port of the bridge: its master).
    let mut hairpin = Message::link(
        libc::RTM_NEWLINK,
        0,
        0,
        false,
        format!("ip link set dev {host} type bridge_slave hairpin on"),
    );
    hairpin
        .text(libc::IFLA_IFNAME, host)
        .nest(libc::IFLA_LINKINFO, |info| {
            info.text(libc::IFLA_INFO_SLAVE_KIND, "bridge").nest(
                libc::IFLA_INFO_SLAVE_DATA,
                |port| {
                    port.attribute(netlink::IFLA_BRPORT_MODE, &[1]);
                },
            );
        });
    route.send(hairpin, trace)?;
    // Then the container's end, from inside its namespace.
    configure_inside(link, pid, trace)?;
    Ok(veth)
    // END EXERCISE
}
// ANCHOR_END: create_veth

// ANCHOR: configure_inside
/// Configures the container's end of the pair from inside its network
/// namespace: its address and prefix, up, and the default route.
///
/// `nsenter --net=/proc/PID/ns/net ip -batch -` does this with two
/// programs (about 2.4 ms on this machine). Without them: `nsenter` is
/// `setns(2)` and then `exec`, and a *thread* may enter another network
/// namespace on its own while the rest of the process stays where it is.
/// So a thread of ours enters the container's, opens a socket there, and
/// makes the calls `ifconfig` and `route` made before `ip` existed, on
/// that socket: the same `ioctl(2)`s as step 2's loopback, plus the
/// address, netmask and route ones (netdevice(7); `SIOCADDRT` takes the
/// `struct rtentry` of `<linux/route.h>`). The thread is joined before
/// this returns: a thread still alive when a container is cloned would be
/// missing from the child, which can deadlock it.
pub fn configure_inside(link: &Link, pid: Pid, trace: &Trace) -> Result<(), NetError> {
    let Link {
        inside,
        address,
        prefix,
        ..
    } = link;
    if trace.enabled() {
        let route = link
            .gateway
            .map(|gw| format!("; ioctl(SIOCADDRT, default via {gw})"))
            .unwrap_or_default();
        trace.step(
            Side::Parent,
            format_args!(
                "a thread of ours: setns(/proc/{pid}/ns/net); \
                 ioctl(SIOCSIFADDR, {inside}, {address}); \
                 ioctl(SIOCSIFNETMASK, /{prefix}); ioctl(SIOCSIFFLAGS, IFF_UP){route}"
            ),
        );
    }
    let path = format!("/proc/{pid}/ns/net");
    let netns: OwnedFd = std::fs::File::open(&path)
        .map_err(|e| {
            NetError::call(
                format!("open {path}"),
                Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            )
        })?
        .into();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(&netns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetError::call(format!("setns({path})"), e))?;
                let sock = socket(
                    AddressFamily::Inet,
                    SockType::Datagram,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                )
                .map_err(|e| NetError::call("socket", e))?;
                let name = &link.inside;
                let mask = Ipv4Addr::from(
                    u32::MAX
                        .checked_shl(32u32.saturating_sub(u32::from(link.prefix)))
                        .unwrap_or(0),
                );
                interface_ioctl(&sock, name, Request::Address(link.address))?;
                interface_ioctl(&sock, name, Request::Netmask(mask))?;
                interface_ioctl(&sock, name, Request::Up)?;
                if let Some(gateway) = link.gateway {
                    add_default_route(&sock, gateway)?;
                }
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetError::Command {
                    command: format!("configuring {} from inside {path}", link.inside),
                    stderr: "the thread doing it panicked".into(),
                })
            })
    })
}
// ANCHOR_END: configure_inside

/// What an interface ioctl sets.
#[derive(Clone, Copy)]
enum Request {
    /// Its IPv4 address (`SIOCSIFADDR`).
    Address(Ipv4Addr),
    /// Its netmask (`SIOCSIFNETMASK`).
    Netmask(Ipv4Addr),
    /// `IFF_UP` added to the flags the interface has (`SIOCSIFFLAGS`).
    Up,
}

impl Request {
    /// The ioctl, and its name for messages.
    fn call(self) -> (libc::c_ulong, &'static str) {
        match self {
            Request::Address(_) => (libc::SIOCSIFADDR, "SIOCSIFADDR"),
            Request::Netmask(_) => (libc::SIOCSIFNETMASK, "SIOCSIFNETMASK"),
            Request::Up => (libc::SIOCSIFFLAGS, "SIOCSIFFLAGS"),
        }
    }
}

/// `sockaddr_in` for `ip`, port 0, as the generic `sockaddr` the ioctls take.
fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: both are 16 bytes of plain data; the kernel reads the family
    // first and then the IPv4 fields, as sockaddr_in lays them out.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// One `SIOCSIF…` ioctl on interface `name`.
fn interface_ioctl(sock: &OwnedFd, name: &str, what: Request) -> Result<(), NetError> {
    let (call, label) = what.call();
    let fail = |e| match e {
        // The name is not in this namespace: the one mistake that gets here.
        Errno::ENODEV => NetError::Command {
            command: format!("ioctl({label}, {name})"),
            stderr: format!(
                "there is no {name} in the container's network namespace: create the pair \
                 with its peer there (IFLA_NET_NS_PID in the peer's description, as \
                 `peer name {name} netns PID` with ip)"
            ),
        },
        e => NetError::call(format!("ioctl({label}, {name})"), e),
    };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // At most 15 bytes and a NUL: interface names are checked to be that short.
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .take(libc::IFNAMSIZ - 1)
        .zip(name.bytes())
    {
        *dst = src as libc::c_char;
    }
    match what {
        Request::Address(ip) | Request::Netmask(ip) => req.ifr_ifru.ifru_addr = sockaddr(ip),
        Request::Up => {
            // SAFETY: SIOCGIFFLAGS fills `req`, a valid ifreq for this call.
            let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
            Errno::result(ret).map_err(fail)?;
            // SAFETY: the kernel filled ifru_flags for SIOCGIFFLAGS.
            unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        }
    }
    // SAFETY: the kernel reads `req`, filled above for this call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), call, &req) };
    Errno::result(ret).map(drop).map_err(fail)
}

/// `route add default gw GATEWAY`: destination and mask 0.0.0.0, through
/// `gateway`, which must be on a subnet the interface is on (and up).
fn add_default_route(sock: &OwnedFd, gateway: Ipv4Addr) -> Result<(), NetError> {
    // SAFETY: rtentry is plain old data (null pointers included); all
    // zeroes is a valid value.
    let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
    route.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_gateway = sockaddr(gateway);
    route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // SAFETY: SIOCADDRT reads a struct rtentry (`<linux/route.h>`).
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &route) };
    Errno::result(ret)
        .map(drop)
        .map_err(|e| NetError::call(format!("ioctl(SIOCADDRT, default via {gateway})"), e))
}

/// Deletes the pair from the host side. When the container's namespace has
/// died already, the kernel may have removed the pair with it: then there
/// is nothing to do.
pub fn delete(veth: &Veth, trace: &Trace) -> Result<(), NetError> {
    match run("ip", &["link", "del", &veth.host], "", trace) {
        Err(NetError::Command { stderr, .. }) if stderr.contains("Cannot find device") => Ok(()),
        other => other.map(drop),
    }
}
