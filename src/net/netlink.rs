//! rtnetlink: the kernel's own API for network links, as `ip` speaks it.
//!
//! `ip link add …` is a program that builds one message, sends it on a
//! netlink socket (`AF_NETLINK`, `NETLINK_ROUTE`) and waits for the
//! kernel's acknowledgement. Step 8 used to start `ip` for its veth pair;
//! this module sends the same messages from caixa itself, which saves a
//! `fork` and an `execve` at every start and shows what `ip` hides.
//! Hand-written on purpose: the layout is the lesson, and it is three
//! structures (rtnetlink(7), netlink(7)), and a fourth for the answer:
//!
//! ```text
//!   nlmsghdr   len u32 │ type u16 (RTM_NEWLINK) │ flags u16 │ seq u32 │ pid u32
//!   ifinfomsg  family u8 │ pad │ type u16 │ index i32 │ flags u32 │ change u32
//!   rtattr     len u16 │ type u16 │ payload, padded to 4 bytes   (repeated;
//!              a payload may itself be rtattrs: "nested")
//!   nlmsgerr   error i32 (0, or minus an errno) │ our nlmsghdr │ rtattrs
//! ```
//!
//! Every request asks for an acknowledgement (`NLM_F_ACK`): the kernel
//! answers `NLMSG_ERROR` with error 0 for success or minus an errno, and
//! with extended acks on (`NETLINK_EXT_ACK`) a sentence of its own, such
//! as "Master device not found".

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
    setsockopt, socket, sockopt,
};

use super::NetError;
use crate::trace::{Side, Trace};

/// `VETH_INFO_PEER` (`<linux/veth.h>`): the nested description of a
/// veth's other end: an `ifinfomsg`, then its attributes. (`ip` sends it
/// without `NLA_F_NESTED`; the kernel reads it the same with the flag.)
pub const VETH_INFO_PEER: u16 = 1;
/// `IFLA_BRPORT_MODE` (`<linux/if_link.h>`): a bridge port's hairpin mode.
pub const IFLA_BRPORT_MODE: u16 = 4;
/// `NLA_F_NESTED`: marks an attribute whose payload is attributes.
const NLA_F_NESTED: u16 = 1 << 15;
/// `SOL_NETLINK` and its options `NETLINK_CAP_ACK` (the acknowledgement
/// does not repeat our message) and `NETLINK_EXT_ACK` (it explains itself).
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
/// `NLMSGERR_ATTR_MSG`: the extended acknowledgement's sentence.
const NLMSGERR_ATTR_MSG: u16 = 1;

// ANCHOR: netlink_message
/// One rtnetlink request, built attribute by attribute.
#[derive(Debug)]
pub struct Message {
    bytes: Vec<u8>,
    /// What the request does, for `-v` and for errors: the `ip` command
    /// that sends the same message.
    what: String,
}

impl Message {
    /// A link request (`RTM_NEWLINK`, …) with `flags` besides
    /// `NLM_F_REQUEST | NLM_F_ACK`, on interface `index` (0: named by
    /// `IFLA_IFNAME` instead), raising `IFF_UP` when `up`.
    pub fn link(kind: u16, flags: u16, index: i32, up: bool, what: String) -> Message {
        let mut message = Message {
            bytes: Vec::with_capacity(256),
            what,
        };
        let flags = flags | (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        // nlmsghdr: the length and the sequence number are set by `send`.
        message.bytes.extend_from_slice(&0u32.to_ne_bytes());
        message.bytes.extend_from_slice(&kind.to_ne_bytes());
        message.bytes.extend_from_slice(&flags.to_ne_bytes());
        message.bytes.extend_from_slice(&[0; 8]);
        message.interface(index, up);
        message
    }

    /// An `ifinfomsg`: the link's family (any), index and flags. It opens
    /// every link message, and the description of a veth's peer.
    pub fn interface(&mut self, index: i32, up: bool) -> &mut Self {
        let up = if up { libc::IFF_UP as u32 } else { 0 };
        self.bytes
            .extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        self.bytes.extend_from_slice(&index.to_ne_bytes());
        self.bytes.extend_from_slice(&up.to_ne_bytes()); // flags
        self.bytes.extend_from_slice(&up.to_ne_bytes()); // which flags change
        self
    }

    /// An attribute of type `kind` carrying `payload`.
    pub fn attribute(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(payload);
        self.pad();
        self
    }

    /// A string attribute (NUL-terminated, as the kernel reads names).
    pub fn text(&mut self, kind: u16, text: &str) -> &mut Self {
        let mut payload = text.as_bytes().to_vec();
        payload.push(0);
        self.attribute(kind, &payload)
    }

    /// A 32-bit attribute (an index, a pid).
    pub fn number(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attribute(kind, &value.to_ne_bytes())
    }

    /// A nested attribute: what `inside` adds becomes its payload.
    pub fn nest(&mut self, kind: u16, inside: impl FnOnce(&mut Self)) -> &mut Self {
        let start = self.bytes.len();
        self.attribute(kind | NLA_F_NESTED, &[]);
        inside(self);
        let len = (self.bytes.len() - start) as u16;
        self.bytes[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// Pads to the next multiple of 4 (`NLA_ALIGN`, `NLMSG_ALIGN`).
    fn pad(&mut self) {
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
    }
}
// ANCHOR_END: netlink_message

// ANCHOR: netlink_socket
/// A `NETLINK_ROUTE` socket: requests go to the kernel one at a time,
/// each answered before the next.
#[derive(Debug)]
pub struct Route {
    socket: OwnedFd,
    seq: u32,
}

impl Route {
    /// Opens the socket, with short and explained acknowledgements.
    pub fn open() -> Result<Route, NetError> {
        let socket = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(|e| failed("socket(AF_NETLINK, NETLINK_ROUTE)", e))?;
        // Both options are best effort: an older kernel acknowledges
        // without a sentence, and errors still carry their errno.
        for option in [NETLINK_CAP_ACK, NETLINK_EXT_ACK] {
            let on: libc::c_int = 1;
            // SAFETY: setsockopt reads one int from a pointer to a live int.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    SOL_NETLINK,
                    option,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        // A request whose answer never comes would hang a start: 5 s.
        let timeout = nix::sys::time::TimeVal::new(5, 0);
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| failed("setsockopt(SO_RCVTIMEO)", e))?;
        Ok(Route { socket, seq: 0 })
    }

    /// Sends `message` to the kernel and waits for its acknowledgement;
    /// `-v` prints what it does first.
    pub fn send(&mut self, mut message: Message, trace: &Trace) -> Result<(), NetError> {
        let kind = u16::from_ne_bytes([message.bytes[4], message.bytes[5]]);
        trace.step(
            Side::Parent,
            format_args!("netlink: {}, as `{}`", name_of(kind), message.what),
        );
        self.seq = self.seq.wrapping_add(1);
        let len = message.bytes.len() as u32;
        message.bytes[0..4].copy_from_slice(&len.to_ne_bytes());
        message.bytes[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        let kernel = NetlinkAddr::new(0, 0);
        sendto(
            self.socket.as_raw_fd(),
            &message.bytes,
            &kernel,
            MsgFlags::empty(),
        )
        .map_err(|e| failed(&message.what, e))?;
        let refused = |stderr| NetError::Command {
            command: format!("netlink: {}", message.what),
            stderr,
        };
        let mut answer = [0u8; 4096];
        loop {
            let n = match recv(self.socket.as_raw_fd(), &mut answer, MsgFlags::empty()) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    return Err(refused("the kernel did not answer within 5 s".into()));
                }
                Err(e) => return Err(failed(&message.what, e)),
            };
            match acknowledgement(&answer[..n], self.seq) {
                Some(Ok(())) => return Ok(()),
                Some(Err((errno, said))) => {
                    let mut why = errno.desc().to_string();
                    if let Some(said) = said {
                        why = format!("{why} ({said})");
                    }
                    if let Some(hint) = hint(&message.what, errno) {
                        why = format!("{why}; {hint}");
                    }
                    return Err(refused(why));
                }
                // Not the answer to this request (a stale one): read on.
                None => continue,
            }
        }
    }
}

/// The name of a message type, for `-v`.
fn name_of(kind: u16) -> &'static str {
    match kind {
        libc::RTM_NEWLINK => "RTM_NEWLINK",
        _ => "a request",
    }
}

/// What to do about the refusals a learner meets, in one clause.
fn hint(what: &str, errno: Errno) -> Option<&'static str> {
    match errno {
        Errno::EOPNOTSUPP if what.contains("bridge_slave") => Some(
            "the link is no port of a bridge: the message that creates it needs IFLA_MASTER (ip's `master BRIDGE`)",
        ),
        Errno::EEXIST => Some(
            "a link of that name exists already: on the host (a leftover `cx…`), or where the peer is made (on the host too, without IFLA_NET_NS_PID)",
        ),
        _ => None,
    }
}
// ANCHOR_END: netlink_socket

/// The acknowledgement of request `seq` in `answer`: `Ok`, or the errno
/// and the kernel's sentence; `None` if `answer` is something else.
fn acknowledgement(answer: &[u8], seq: u32) -> Option<Result<(), (Errno, Option<String>)>> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(answer.get(at..at + 4)?.try_into().ok()?))
    };
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_ne_bytes(answer.get(at..at + 2)?.try_into().ok()?))
    };
    let len = u32_at(0)? as usize;
    let (kind, flags) = (u16_at(4)?, u16_at(6)?);
    if kind != libc::NLMSG_ERROR as u16 || u32_at(8)? != seq {
        return None;
    }
    let error = u32_at(16)? as i32;
    if error == 0 {
        return Some(Ok(()));
    }
    // After the error: our request's header (whole request unless capped),
    // then, with NLM_F_ACK_TLVS, attributes; NLMSGERR_ATTR_MSG is the sentence.
    let mut said = None;
    if flags & libc::NLM_F_ACK_TLVS as u16 != 0 {
        let capped = flags & libc::NLM_F_CAPPED as u16 != 0;
        let echoed = if capped { 16 } else { u32_at(20)? as usize };
        let mut at = 20 + echoed.div_ceil(4) * 4;
        while at + 4 <= len.min(answer.len()) {
            let (attr_len, attr_kind) = (u16_at(at)? as usize, u16_at(at + 2)?);
            if attr_len < 4 {
                break;
            }
            if attr_kind == NLMSGERR_ATTR_MSG {
                let Some(text) = answer.get(at + 4..at + attr_len) else {
                    break;
                };
                let text = text.split(|b| *b == 0).next().unwrap_or_default();
                said = Some(String::from_utf8_lossy(text).into_owned());
            }
            at += attr_len.div_ceil(4) * 4;
        }
    }
    Some(Err((Errno::from_raw(error.wrapping_neg()), said)))
}

/// A failed call on the netlink socket.
fn failed(call: &str, errno: Errno) -> NetError {
    NetError::call(format!("netlink: {call}"), errno)
}

/// The index of interface `name` in our network namespace
/// (`if_nametoindex(3)`).
pub fn index_of(name: &str) -> Result<u32, NetError> {
    let failed = |errno| NetError::call(format!("if_nametoindex({name})"), errno);
    let c_name = std::ffi::CString::new(name).map_err(|_| failed(Errno::EINVAL))?;
    // SAFETY: a NUL-terminated name that lives through the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(failed(Errno::last())),
        index => Ok(index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nests_measure_their_payload() {
        let mut m = Message::link(libc::RTM_NEWLINK, 0, 0, true, "test".into());
        assert_eq!(m.bytes.len(), 32, "nlmsghdr and ifinfomsg");
        m.text(libc::IFLA_IFNAME, "ab");
        // 4 bytes of header, "ab\0", one byte of padding.
        assert_eq!(m.bytes.len(), 40);
        assert_eq!(&m.bytes[32..34], &7u16.to_ne_bytes());
        m.nest(libc::IFLA_LINKINFO, |m| {
            m.text(libc::IFLA_INFO_KIND, "veth");
        });
        // The nest: its header (4) and "veth\0" (4 + 5, padded to 12).
        assert_eq!(&m.bytes[40..42], &16u16.to_ne_bytes());
        assert_eq!(
            u16::from_ne_bytes([m.bytes[42], m.bytes[43]]),
            libc::IFLA_LINKINFO | NLA_F_NESTED
        );
        assert_eq!(m.bytes.len(), 56);
    }

    #[test]
    fn an_acknowledgement_is_read_with_its_sentence() {
        let seq = 7u32;
        let mut answer = Vec::new();
        let text = b"Master device not found\0";
        let attr_len = 4 + text.len();
        let len = 16 + 4 + 16 + attr_len.div_ceil(4) * 4;
        answer.extend_from_slice(&(len as u32).to_ne_bytes());
        answer.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        let flags = (libc::NLM_F_ACK_TLVS | libc::NLM_F_CAPPED) as u16;
        answer.extend_from_slice(&flags.to_ne_bytes());
        answer.extend_from_slice(&seq.to_ne_bytes());
        answer.extend_from_slice(&0u32.to_ne_bytes());
        answer.extend_from_slice(&(-libc::ENODEV).to_ne_bytes());
        answer.extend_from_slice(&[0; 16]); // our header, capped
        answer.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        answer.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        answer.extend_from_slice(text);
        answer.resize(len, 0);
        let (errno, said) = acknowledgement(&answer, seq).unwrap().unwrap_err();
        assert_eq!(errno, Errno::ENODEV);
        assert_eq!(said.as_deref(), Some("Master device not found"));
        assert!(
            acknowledgement(&answer, seq + 1).is_none(),
            "another request's"
        );
        assert!(acknowledgement(&answer[..10], seq).is_none(), "too short");
        // An attribute longer than the answer: the errno still comes back.
        let mut lying = answer.clone();
        lying[36..38].copy_from_slice(&4000u16.to_ne_bytes());
        let (errno, said) = acknowledgement(&lying, seq).unwrap().unwrap_err();
        assert_eq!((errno, said), (Errno::ENODEV, None));
    }

    #[test]
    fn the_two_refusals_a_learner_meets_say_what_to_do() {
        let hairpin = "ip link set dev cx1 type bridge_slave hairpin on";
        assert!(hint(hairpin, Errno::EOPNOTSUPP).is_some_and(|h| h.contains("IFLA_MASTER")));
        assert!(hint("ip link add cx1 …", Errno::EEXIST).is_some());
        assert!(hint("ip link add cx1 …", Errno::EPERM).is_none());
    }
}
