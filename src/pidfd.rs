//! Process descriptors: a handle on a process that never means another.
//!
//! A pid is a number the kernel hands out again once its process is reaped,
//! so "signal pid 1234" can reach a stranger if 1234 ended a moment ago. A
//! pidfd (Linux 5.3) names one process for as long as the descriptor is
//! open: a signal through it reaches that process or fails with `ESRCH`.
//! The engine's `exec` and the runtime's `kill` and `delete` go through one.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// pidfd_open(2): a descriptor for process `pid`.
pub fn open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// pidfd_send_signal(2); signal 0 checks that the process is alive.
pub fn signal(pidfd: &OwnedFd, signal: i32) -> Result<(), Errno> {
    // SAFETY: a signal through a pidfd we own, with no siginfo.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// Which of `pidfds` name a process that has ended, in one `poll(2)` that
/// does not wait: a pidfd turns readable when its process exits, so a
/// thousand can be checked for the price of one call. `None` if the poll
/// failed (the caller then knows nothing; ask each process another way).
pub fn ended(pidfds: &[std::os::fd::BorrowedFd<'_>]) -> Option<Vec<bool>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    if pidfds.is_empty() {
        return Some(Vec::new());
    }
    let mut fds: Vec<PollFd> = pidfds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    loop {
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => break,
            Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
    Some(
        fds.iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect(),
    )
}

/// The descriptors (their numbers, as added with them as the events'
/// data) of the pidfds in `set` whose process has ended, asked without
/// waiting; `None` if the kernel refused.
pub fn ended_in(set: &nix::sys::epoll::Epoll) -> Option<std::collections::HashSet<i32>> {
    use nix::sys::epoll::{EpollEvent, EpollTimeout};
    let mut ended = std::collections::HashSet::new();
    let mut events = [EpollEvent::empty(); 64];
    loop {
        let n = match set.wait(&mut events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
        };
        // Level-triggered: an ended pidfd stays ready until it is closed,
        // so a full batch may hold some seen already; a short one is all.
        let before = ended.len();
        ended.extend(events[..n].iter().map(|e| e.data() as i32));
        if n < events.len() || ended.len() == before {
            return Some(ended);
        }
    }
}

/// Waits up to `timeout` for the process to end (its pidfd turns readable
/// when it exits, reaped or not); whether it did.
pub fn wait_gone(pidfd: &OwnedFd, timeout: std::time::Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Err(Errno::EINTR) => {}
            _ if left.is_zero() => return false,
            _ => {}
        }
    }
}
