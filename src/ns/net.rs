//! The network namespace (step 2): a new, empty network stack.
//!
//! A new network namespace has one interface, the loopback `lo`, and it is
//! down: even `127.0.0.1` does not answer until it is brought up. Bringing an
//! interface up is one `ioctl(2)` on any socket of the namespace, the same call
//! `ip link set lo up` makes through netlink; see netdevice(7).

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

/// Why the loopback interface could not be brought up.
#[derive(Debug, thiserror::Error)]
#[error("cannot bring up the loopback interface: {call} failed: {errno}")]
pub struct LoopbackError {
    /// The call that failed.
    pub call: &'static str,
    /// What the kernel answered.
    pub errno: Errno,
}

// ANCHOR: bring_up_loopback
/// Sets `IFF_UP` on `lo` in the caller's network namespace.
pub fn bring_up_loopback() -> Result<(), LoopbackError> {
    // EXERCISE(2): bring the loopback interface up: read its flags, add IFF_UP, write them back
    let fail = |call| move |errno| LoopbackError { call, errno };
    // Any socket will do: the ioctl acts on the namespace the socket lives in.
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(fail("socket"))?;

    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into `req`, a valid ifreq for this call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    Errno::result(ret).map_err(fail("ioctl(SIOCGIFFLAGS)"))?;
    // SAFETY: the kernel filled ifru_flags for SIOCGIFFLAGS.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `req`, filled above.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    Errno::result(ret).map_err(fail("ioctl(SIOCSIFFLAGS)"))?;
    Ok(())
    // END EXERCISE
}
// ANCHOR_END: bring_up_loopback
