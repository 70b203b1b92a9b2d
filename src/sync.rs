//! The parent↔child channel: how the two sides of a start wait for each other.
//!
//! Some steps need both sides in turn: the child must exist before the parent
//! can write its uid map (step 6) or create a veth end in its network namespace
//! (step 8), and the child must not run the user's command before that is done.
//! A `socketpair(2)` of type `SOCK_SEQPACKET` carries one message per `send`,
//! with its boundaries kept, so each message is one read. Both ends are
//! close-on-exec, and that gives one more signal for free: when the child's
//! `execve` succeeds, its end closes and the parent reads end-of-file.
//!
//! The protocol, in order:
//!
//! ```text
//! child                           parent
//!   ── Request(r) ──────────────▶  does r (e.g. writes the uid map)
//!   ◀──────────────────── Done ──
//!   ── Ready ───────────────────▶  (or Failed: the real cause)
//!   ◀─────────────────── Start ──
//!   execve … end-of-file ───────▶  (or Failed: exec failed)
//! ```

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, send,
    socketpair,
};

/// The longest message either side sends (a failure's reason is cut to fit).
const MAX_MESSAGE: usize = 4096;

// ANCHOR: messages
/// Something the child asks the parent to do from the host side, and waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Move me into my cgroup (step 7), before I run anything of the user's.
    EnterCgroup,
    /// Write `/proc/<child>/uid_map` and `gid_map` (step 6: the user namespace).
    WriteIdMaps,
    /// Plug a veth into my network namespace and configure it (step 8).
    ConfigureNetwork,
    /// Take my terminal (the engine's `-t`): the pty's master end travels
    /// with this message (`SCM_RIGHTS`); my 0, 1 and 2 are its other end.
    TakeTerminal,
    /// Run the createRuntime hooks (step 12): my namespaces exist and my
    /// root is not pivoted yet.
    RunCreateHooks,
}

/// One message on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Child → parent: do this for me before I go on.
    Request(Request),
    /// Parent → child: the request is done.
    Done,
    /// Child → parent: set-up finished; I am waiting for `Start`.
    Ready,
    /// Parent → child: exec the command now.
    Start,
    /// Child → parent: set-up or exec failed; `code` is the exit code to use.
    Failed {
        /// 125, 126 or 127, see [`crate::exit::codes`].
        code: u8,
        /// The real cause, one line.
        reason: String,
    },
}
// ANCHOR_END: messages

/// The requests a child of `spec` makes, in the order it makes them (see
/// `init::run`): the parent expects exactly these, in this order. A child
/// `born_in_cgroup` (clone3's `CLONE_INTO_CGROUP`) has no move to ask for.
pub fn requests_for(spec: &crate::Spec, born_in_cgroup: bool) -> Vec<Request> {
    let mut order = Vec::new();
    if spec.limits.is_some() && !born_in_cgroup {
        order.push(Request::EnterCgroup);
    }
    if spec.has(crate::Namespace::User) {
        order.push(Request::WriteIdMaps);
    }
    if spec.network.is_some() {
        order.push(Request::ConfigureNetwork);
    }
    if spec.root.is_some()
        && spec
            .hooks
            .as_ref()
            .is_some_and(|h| h.need_the_runtime_at_create())
    {
        order.push(Request::RunCreateHooks);
    }
    if spec.terminal {
        order.push(Request::TakeTerminal);
    }
    order
}

impl Message {
    fn encode(&self) -> Vec<u8> {
        match self {
            Message::Request(Request::WriteIdMaps) => vec![1, 1],
            Message::Request(Request::EnterCgroup) => vec![1, 2],
            Message::Request(Request::ConfigureNetwork) => vec![1, 3],
            Message::Request(Request::TakeTerminal) => vec![1, 4],
            Message::Request(Request::RunCreateHooks) => vec![1, 5],
            Message::Done => vec![2],
            Message::Ready => vec![3],
            Message::Start => vec![4],
            Message::Failed { code, reason } => {
                let mut out = vec![5, *code];
                let mut end = reason.len().min(MAX_MESSAGE - 2);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                out.extend_from_slice(&reason.as_bytes()[..end]);
                out
            }
        }
    }

    fn decode(bytes: &[u8]) -> Result<Message, SyncError> {
        match bytes {
            [1, 1] => Ok(Message::Request(Request::WriteIdMaps)),
            [1, 2] => Ok(Message::Request(Request::EnterCgroup)),
            [1, 3] => Ok(Message::Request(Request::ConfigureNetwork)),
            [1, 4] => Ok(Message::Request(Request::TakeTerminal)),
            [1, 5] => Ok(Message::Request(Request::RunCreateHooks)),
            [2] => Ok(Message::Done),
            [3] => Ok(Message::Ready),
            [4] => Ok(Message::Start),
            [5, code, reason @ ..] => Ok(Message::Failed {
                code: *code,
                reason: String::from_utf8_lossy(reason).into_owned(),
            }),
            other => Err(SyncError::Garbled(other.to_vec())),
        }
    }
}

/// What went wrong on the channel itself.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// `socketpair`, `send` or `recv` failed.
    #[error("parent/child channel: {call} failed: {errno}")]
    Io {
        /// The call that failed.
        call: &'static str,
        /// What the kernel answered.
        errno: Errno,
    },
    /// The other side closed its end before the expected message.
    #[error("parent/child channel: the other side closed it while we waited for {expected}")]
    Closed {
        /// What we were waiting for.
        expected: &'static str,
    },
    /// A message arrived out of protocol order.
    #[error("parent/child channel: expected {expected}, got {got:?}")]
    Unexpected {
        /// What the protocol says comes next.
        expected: &'static str,
        /// What came.
        got: Message,
    },
    /// Bytes that are no message.
    #[error("parent/child channel: garbled message {0:?}")]
    Garbled(Vec<u8>),
}

/// Creates the channel: the parent keeps the first end, the child the second.
pub fn channel() -> Result<(ParentEnd, ChildEnd), SyncError> {
    let (parent, child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|errno| SyncError::Io {
        call: "socketpair",
        errno,
    })?;
    Ok((ParentEnd(Endpoint(parent)), ChildEnd(Endpoint(child))))
}

/// One end of the socket pair, speaking whole messages.
#[derive(Debug)]
struct Endpoint(OwnedFd);

impl Endpoint {
    fn send(&self, message: &Message) -> Result<(), SyncError> {
        let bytes = message.encode();
        // MSG_NOSIGNAL: a closed peer is an error to report, not a SIGPIPE.
        send(self.0.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL)
            .map(drop)
            .map_err(|errno| SyncError::Io {
                call: "send",
                errno,
            })
    }

    /// The next message, or `None` when the other end is closed.
    fn recv(&self) -> Result<Option<Message>, SyncError> {
        // A descriptor sent with a message we did not expect one with is
        // closed here, as it drops.
        self.recv_with_fd().map(|(message, _)| message)
    }

    /// The next message and the descriptor that came with it, if any.
    fn recv_with_fd(&self) -> Result<(Option<Message>, Option<OwnedFd>), SyncError> {
        let mut buf = [0u8; MAX_MESSAGE];
        let (n, fd) = recv_with_fd(self.0.as_fd(), &mut buf).map_err(|errno| SyncError::Io {
            call: "recvmsg",
            errno,
        })?;
        if n == 0 {
            return Ok((None, fd));
        }
        Message::decode(&buf[..n]).map(|m| (Some(m), fd))
    }

    /// Sends `message` with the descriptor `fd` (`SCM_RIGHTS`: the receiver
    /// gets its own descriptor of the same open file).
    fn send_with_fd(&self, message: &Message, fd: BorrowedFd<'_>) -> Result<(), SyncError> {
        send_with_fd(self.0.as_fd(), &message.encode(), Some(fd)).map_err(|errno| SyncError::Io {
            call: "sendmsg",
            errno,
        })
    }
}

/// Sends `bytes` in one `sendmsg`, with `fd` if given (`SCM_RIGHTS`: the
/// receiver gets its own descriptor of the same open file, see
/// [`recv_with_fd`]). Also the engine's shim launcher's and shim's.
pub(crate) fn send_with_fd(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> Result<(), Errno> {
    let fds: Vec<std::os::fd::RawFd> = fd.iter().map(|fd| fd.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    nix::sys::socket::sendmsg::<()>(
        socket.as_raw_fd(),
        &[std::io::IoSlice::new(bytes)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
}

/// One message of a `SOCK_SEQPACKET` socket into `buf`: its length (0:
/// the other end has closed) and the first descriptor that came with it
/// (`SCM_RIGHTS`, received close-on-exec; any more are closed). Also the
/// engine's shim launcher's (`crate::engine::launcher`).
pub(crate) fn recv_with_fd(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<(usize, Option<OwnedFd>), Errno> {
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    loop {
        let mut iov = [std::io::IoSliceMut::new(buf)];
        match nix::sys::socket::recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fd = None;
                for cmsg in msg.cmsgs().into_iter().flatten() {
                    if let ControlMessageOwned::ScmRights(fds) = cmsg {
                        for raw in fds {
                            // SAFETY: the kernel just installed this
                            // descriptor in our table for us alone.
                            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                            fd.get_or_insert(owned);
                        }
                    }
                }
                return Ok((msg.bytes, fd));
            }
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno),
        }
    }
}

/// The parent's end: its methods are the parent's half of the protocol.
#[derive(Debug)]
pub struct ParentEnd(Endpoint);

/// What the child said while the parent waited for it to be ready.
#[derive(Debug, PartialEq, Eq)]
pub enum FromChild {
    /// It needs something done first; answer with [`ParentEnd::done`].
    Request(Request),
    /// It is ready and waits for `Start`.
    Ready,
    /// It failed; this is why.
    Failed {
        /// Exit code to report.
        code: u8,
        /// The real cause.
        reason: String,
    },
}

impl ParentEnd {
    /// Waits for the child's next request, its `Ready`, or its failure.
    pub fn next_from_child(&self) -> Result<FromChild, SyncError> {
        match self.0.recv()? {
            Some(Message::Request(r)) => Ok(FromChild::Request(r)),
            Some(Message::Ready) => Ok(FromChild::Ready),
            Some(Message::Failed { code, reason }) => Ok(FromChild::Failed { code, reason }),
            Some(got) => Err(SyncError::Unexpected {
                expected: "a request, Ready or Failed",
                got,
            }),
            None => Err(SyncError::Closed { expected: "Ready" }),
        }
    }

    /// Like [`ParentEnd::next_from_child`], with the descriptor that came
    /// with the message (the terminal's master end, see `Request::TakeTerminal`).
    pub fn next_from_child_with_fd(&self) -> Result<(FromChild, Option<OwnedFd>), SyncError> {
        let (message, fd) = self.0.recv_with_fd()?;
        let from_child = match message {
            Some(Message::Request(r)) => FromChild::Request(r),
            Some(Message::Ready) => FromChild::Ready,
            Some(Message::Failed { code, reason }) => FromChild::Failed { code, reason },
            Some(got) => {
                return Err(SyncError::Unexpected {
                    expected: "a request, Ready or Failed",
                    got,
                });
            }
            None => return Err(SyncError::Closed { expected: "Ready" }),
        };
        Ok((from_child, fd))
    }

    /// Tells the child its request is done.
    pub fn done(&self) -> Result<(), SyncError> {
        self.0.send(&Message::Done)
    }

    /// Lets the child exec the command.
    pub fn start(&self) -> Result<(), SyncError> {
        self.0.send(&Message::Start)
    }

    /// After `start`: `Ok(None)` when the exec succeeded (the child's end
    /// closed on exec), or the failure the child reported.
    pub fn wait_for_exec(&self) -> Result<Option<(u8, String)>, SyncError> {
        match self.0.recv()? {
            None => Ok(None),
            Some(Message::Failed { code, reason }) => Ok(Some((code, reason))),
            Some(got) => Err(SyncError::Unexpected {
                expected: "end-of-file or Failed",
                got,
            }),
        }
    }
}

/// The child's end: its methods are the child's half of the protocol.
#[derive(Debug)]
pub struct ChildEnd(Endpoint);

impl ChildEnd {
    /// The child's end, received by a process that did not fork from the
    /// parent: `step11 exec-in` gets it as a descriptor it inherited.
    pub fn from_fd(fd: OwnedFd) -> ChildEnd {
        ChildEnd(Endpoint(fd))
    }

    /// Its descriptor, to be passed to a process the parent spawns.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.0.as_fd()
    }

    /// Asks the parent to do `request` and waits until it is done.
    pub fn ask(&self, request: Request) -> Result<(), SyncError> {
        self.0.send(&Message::Request(request))?;
        self.expect(Message::Done, "Done")
    }

    /// Hands the terminal's master end to the parent and waits until it
    /// has taken it.
    pub fn give_terminal(&self, master: BorrowedFd<'_>) -> Result<(), SyncError> {
        self.0
            .send_with_fd(&Message::Request(Request::TakeTerminal), master)?;
        self.expect(Message::Done, "Done")
    }

    /// Says ready and nothing more: a container behind a start gate
    /// ([`crate::start_gate`]) waits for `start` there, not here, because
    /// its parent (`create`) exits without sending `Start`.
    pub fn ready(&self) -> Result<(), SyncError> {
        self.0.send(&Message::Ready)
    }

    /// Says set-up is finished, then waits for the parent's `Start`.
    pub fn ready_then_wait_for_start(&self) -> Result<(), SyncError> {
        self.0.send(&Message::Ready)?;
        self.expect(Message::Start, "Start")
    }

    /// Sends the real cause of a failure to the parent. Best effort: if this
    /// fails too, the parent still sees the channel close and our exit code.
    pub fn report_failure(&self, code: u8, reason: &str) {
        let _ = self.0.send(&Message::Failed {
            code,
            reason: reason.to_string(),
        });
    }

    fn expect(&self, want: Message, name: &'static str) -> Result<(), SyncError> {
        match self.0.recv()? {
            Some(got) if got == want => Ok(()),
            Some(got) => Err(SyncError::Unexpected {
                expected: name,
                got,
            }),
            None => Err(SyncError::Closed { expected: name }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_the_wire() {
        let all = [
            Message::Request(Request::WriteIdMaps),
            Message::Request(Request::EnterCgroup),
            Message::Request(Request::ConfigureNetwork),
            Message::Done,
            Message::Ready,
            Message::Start,
            Message::Failed {
                code: 127,
                reason: "no such command: nope".into(),
            },
        ];
        for m in all {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
        assert!(Message::decode(&[9]).is_err());
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let m = Message::Failed {
            code: 125,
            reason: "é".repeat(MAX_MESSAGE),
        };
        let bytes = m.encode();
        assert!(bytes.len() <= MAX_MESSAGE);
        assert!(matches!(
            Message::decode(&bytes),
            Ok(Message::Failed { .. })
        ));
    }

    #[test]
    fn the_protocol_runs_in_order_across_threads() {
        let (parent, child) = channel().unwrap();
        let child_side = std::thread::spawn(move || {
            child.ask(Request::WriteIdMaps).unwrap();
            child.ready_then_wait_for_start().unwrap();
            // Dropping the end stands in for a successful exec.
        });
        assert_eq!(
            parent.next_from_child().unwrap(),
            FromChild::Request(Request::WriteIdMaps)
        );
        parent.done().unwrap();
        assert_eq!(parent.next_from_child().unwrap(), FromChild::Ready);
        parent.start().unwrap();
        assert_eq!(parent.wait_for_exec().unwrap(), None);
        child_side.join().unwrap();
    }

    #[test]
    fn a_child_that_dies_early_is_a_closed_channel() {
        let (parent, child) = channel().unwrap();
        drop(child);
        assert!(matches!(
            parent.next_from_child(),
            Err(SyncError::Closed { .. })
        ));
    }
}
