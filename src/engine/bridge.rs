//! Where the engine's synchronous code meets hyper's asynchronous HTTP.
//!
//! The daemon's handlers and the step 11 client read top to bottom, with
//! `Read` and `Write`; hyper moves bytes on tokio. Two bridges join them,
//! used by both ends of the socket:
//!
//! - [`Outgoing`]: a body that is either whole (sized with
//!   `Content-Length`) or fed chunk by chunk from a plain thread through a
//!   [`ChunkWriter`] (sent with `Transfer-Encoding: chunked`);
//! - [`splice`]: after a `101` upgrade, the connection is no longer HTTP;
//!   its bytes are copied both ways to one end of a socketpair, whose other
//!   end the synchronous code holds as an ordinary `UnixStream`.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// How many chunks may wait between a writing thread and the connection:
/// enough to keep the socket busy, few enough that a client which stops
/// reading stops the writer (back-pressure) instead of growing memory.
const CHUNKS_IN_FLIGHT: usize = 8;

/// A body hyper sends: whole, or chunks as a thread writes them.
#[derive(Debug)]
pub enum Outgoing {
    /// All of it now; hyper sends its `Content-Length`.
    Whole(Option<Bytes>),
    /// Chunks from a [`ChunkWriter`], until it is dropped; an `Err` chunk
    /// aborts the message (a truncated body must not look complete).
    Chunks(mpsc::Receiver<std::io::Result<Bytes>>),
}

impl Outgoing {
    /// A whole body.
    pub fn whole(bytes: impl Into<Bytes>) -> Outgoing {
        Outgoing::Whole(Some(bytes.into()))
    }

    /// A body fed by the returned writer, from any thread outside tokio.
    pub fn chunks() -> (ChunkWriter, Outgoing) {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        (ChunkWriter(tx), Outgoing::Chunks(rx))
    }
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Outgoing::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Outgoing::Chunks(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Outgoing::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Outgoing::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Outgoing::Chunks(_) => SizeHint::default(),
        }
    }
}

/// The writing end of an [`Outgoing::Chunks`] body. Each `write` is one
/// chunk, handed to the connection at once (so a progress line or an output
/// frame reaches the client when it is written); it blocks while the
/// client is behind, and fails with `BrokenPipe` once the client is gone.
/// Call it from a plain thread (a blocking task), never from async code.
#[derive(Debug)]
pub struct ChunkWriter(mpsc::Sender<std::io::Result<Bytes>>);

impl ChunkWriter {
    /// Ends the body with an error, so the peer sees it cut, not complete.
    pub fn fail(self, error: std::io::Error) {
        let _ = self.0.blocking_send(Err(error));
    }
}

/// A stream the daemon writes to for as long as something goes on (`logs
/// -f`, attach, `events`), which can tell that its client has gone although nothing
/// was written for a while: a quiet container must not keep a thread for
/// a client that left.
pub trait Outlet: Write {
    /// The client closed its connection.
    fn client_gone(&self) -> bool;
}

impl Outlet for ChunkWriter {
    /// hyper drops the body's receiving end with the connection.
    fn client_gone(&self) -> bool {
        self.0.is_closed()
    }
}

impl Outlet for Vec<u8> {
    /// A buffer in memory has no client to lose (what tests read back).
    fn client_gone(&self) -> bool {
        false
    }
}

impl Outlet for std::os::unix::net::UnixStream {
    /// The daemon's end of an upgraded connection's socketpair: `POLLHUP`
    /// once the splice let the other end go, which it does when the client
    /// hung up (see [`splice`]). A half-close (the client's input ended)
    /// is not a hang-up.
    fn client_gone(&self) -> bool {
        hung_up(self)
    }
}

/// Whether the peer of socket `fd` has closed it (`POLLHUP`, asked without
/// waiting).
pub fn hung_up(fd: &impl std::os::fd::AsFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the other end of the connection went away",
                )
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    /// One `write!`, one chunk. The default writes each piece the format
    /// makes as it comes, and a JSON value's `Display` makes one per token:
    /// `{"StatusCode":0}` went out as nine chunks of a byte or a word,
    /// each a hand-over to the connection's task and a frame on the wire.
    fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
        match args.as_str() {
            Some(text) => self.write_all(text.as_bytes()),
            None => self.write_all(args.to_string().as_bytes()),
        }
    }
}

// ANCHOR: splice
/// Copies an upgraded connection's bytes both ways, until `source` (the
/// side that carries the container's output: the daemon's end of a
/// socketpair on the server, the connection on the client) has nothing
/// more to say. The other direction (a terminal's keystrokes, later) may
/// end first: its end is passed on as a half-close, and the output goes on.
///
/// `hung_up`, when given, is asked every half second once the input has
/// ended: whether the client closed the connection for good. Then the
/// splice ends, and `source` with it, so the daemon's side learns it
/// ([`Outlet::client_gone`]) even if the container says nothing more.
pub async fn splice<A, B>(source: A, sink: B, hung_up: Option<&(dyn Fn() -> bool + Sync)>)
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut from_source, mut to_source) = tokio::io::split(source);
    let (mut from_sink, mut to_sink) = tokio::io::split(sink);
    let output = async {
        let _ = tokio::io::copy(&mut from_source, &mut to_sink).await;
        let _ = to_sink.shutdown().await;
    };
    let input = async {
        let mut buf = vec![0u8; 8192];
        loop {
            match from_sink.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_source.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_source.shutdown().await;
        // Its end is no reason to stop the output: wait for that, or for
        // the client to hang up.
        match hung_up {
            Some(hung_up) => {
                while !hung_up() {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = output => {}
        () = input => {}
    }
}
// ANCHOR_END: splice

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_formatted_line_is_one_chunk() {
        let (mut writer, body) = Outgoing::chunks();
        let Outgoing::Chunks(mut chunks) = body else {
            panic!("chunks() made a whole body");
        };
        writeln!(writer, "{}", serde_json::json!({ "StatusCode": 0 })).unwrap();
        write!(writer, "plain").unwrap();
        drop(writer);
        let mut sent = Vec::new();
        while let Ok(chunk) = chunks.try_recv() {
            sent.push(chunk.unwrap());
        }
        assert_eq!(
            sent,
            [
                Bytes::from_static(b"{\"StatusCode\":0}\n"),
                Bytes::from_static(b"plain")
            ]
        );
    }
}
