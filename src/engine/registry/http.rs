//! The registry's HTTP: hyper's HTTP/1.1 on a TCP listener, in front of a
//! synchronous handler that returns a [`Reply`].
//!
//! Pushing is where a hand-written server stops being enough: a `PATCH`
//! from skopeo or the Docker CLI comes `Transfer-Encoding: chunked`, a
//! client may ask `Expect: 100-continue` before a large body, and a push is
//! dozens of requests that want one kept-alive connection. hyper does all
//! of that; this module keeps the knobs the pull-only registry had
//! ([`Limits`]: the time to send a head, the pause allowed in a body, the
//! cap on connections, `503` past it) and hands each request to the
//! handler on tokio's blocking pool, where it reads its body as a `Read`
//! and writes files with `std::fs`.
//!
//! The daemon's server ([`crate::engine::server`]) is the same design on a
//! unix socket, with Docker's error shape and `101` upgrades; the registry
//! answers in the distribution spec's shape and never upgrades, so it has
//! this smaller front of its own.

use std::convert::Infallible;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};

use crate::engine::server::{Limits, turn_away, whole_response};

/// How many pieces of a blob may wait between the thread reading its file
/// and the connection: a client that stops reading stops the reader.
const PIECES_IN_FLIGHT: usize = 8;
/// How large one piece of a blob sent is.
const PIECE: usize = 64 << 10;
/// How long a piece of a blob may wait for the client to take it: a
/// client that stops reading gives its place back after this (the answer
/// is cut, so it cannot pass for whole).
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// One request as a handler sees it: the head (its body comes apart).
#[derive(Debug)]
pub(super) struct Head {
    /// `GET`, `PUT`, `PATCH`…
    pub(super) method: String,
    /// The path as sent, not percent-decoded: the grammar refuses a `%`.
    pub(super) path: String,
    /// The query's pairs, percent-decoded (`from=team%2Fapp`).
    pub(super) query: Vec<(String, String)>,
    /// The request's headers.
    pub(super) headers: HeaderMap,
}

impl Head {
    /// The value of query parameter `key`.
    pub(super) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of header `name`, if it is text.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

// ANCHOR: registry_body
/// A request's body as a blocking `Read`: each `read` waits for hyper's
/// next piece (at most the body timeout: a stalled upload gives its
/// thread back). hyper has already undone the chunked encoding, and sends
/// `100 Continue` when the first read asks for the body.
#[derive(Debug)]
pub(super) struct Body {
    incoming: Incoming,
    runtime: Handle,
    pending: Bytes,
    timeout: Duration,
}

impl Body {
    /// The length the client declared (`Content-Length`), if it did.
    pub(super) fn declared(&self) -> Option<u64> {
        self.incoming.size_hint().exact()
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            let next = self
                .runtime
                .block_on(tokio::time::timeout(self.timeout, self.incoming.frame()));
            match next {
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body stalled: send it without pauses",
                    ));
                }
                Ok(None) => return Ok(0),
                Ok(Some(Err(e))) => return Err(std::io::Error::other(e)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending = data;
                    }
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}
// ANCHOR_END: registry_body

/// What a handler answers: a status, the API's headers, and a body.
#[derive(Debug)]
pub(super) struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Payload,
}

/// A reply's body: none, a few bytes, a blob's file sent in pieces, or
/// only a blob's size (a `HEAD`: its `Content-Length`, no bytes read).
#[derive(Debug)]
enum Payload {
    Bytes(Bytes),
    File(std::fs::File, u64),
    Size(u64),
}

impl Reply {
    /// A reply without a body (`201`, `202`, `204`).
    pub(super) fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Payload::Bytes(Bytes::new()),
        }
    }

    /// A reply of `body`, typed `content_type`.
    pub(super) fn bytes(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
        Reply::empty(status)
            .header("content-type", content_type)
            .with_body(Payload::Bytes(body.into()))
    }

    /// A JSON reply.
    pub(super) fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::bytes(status, "application/json", value.to_string())
    }

    /// A blob's file, `len` bytes, sent as it is read.
    pub(super) fn file(file: std::fs::File, len: u64) -> Reply {
        Reply::empty(200)
            .header("content-type", "application/octet-stream")
            .with_body(Payload::File(file, len))
    }

    /// A blob's headers without its bytes, for a `HEAD`: the size alone
    /// (a stat), so that asking whether a blob is there, which every push
    /// does for every layer, never opens or reads it.
    pub(super) fn size_only(len: u64) -> Reply {
        Reply::empty(200)
            .header("content-type", "application/octet-stream")
            .with_body(Payload::Size(len))
    }

    /// The spec's error: `{"errors": [{"code", "message", "detail"}]}`,
    /// the code one of the spec's own (`BLOB_UNKNOWN`, `DIGEST_INVALID`…),
    /// which clients show as they are.
    pub(super) fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::error_with(status, code, message, json!({}))
    }

    /// [`Reply::error`] with a `detail` (the digest, the range…).
    pub(super) fn error_with(
        status: u16,
        code: &str,
        message: &str,
        detail: serde_json::Value,
    ) -> Reply {
        let body = json!({ "errors": [{ "code": code, "message": message, "detail": detail }] });
        Reply::json(status, &body)
    }

    /// The same reply with one more header.
    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn with_body(mut self, body: Payload) -> Reply {
        self.body = body;
        self
    }

    /// The status (unit tests).
    #[cfg(test)]
    pub(super) fn status(&self) -> u16 {
        self.status
    }

    /// The body, if it is bytes (unit tests).
    #[cfg(test)]
    pub(super) fn body_text(&self) -> String {
        match &self.body {
            Payload::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Payload::File(..) | Payload::Size(_) => String::new(),
        }
    }
}

/// A handler: synchronous, on a blocking thread.
pub(super) type Handler = dyn Fn(&Head, &mut Body) -> Reply + Send + Sync;

// ANCHOR: registry_http_serve
/// Serves HTTP/1.1 on `listener` with `handler`, forever: at most
/// `limits.max_connections` connections at once, each kept alive between
/// requests; past the cap, a connection is answered `503` at once rather
/// than queued (a client told "busy" can try again; one queued behind
/// uploads that last minutes hears nothing).
pub(super) fn serve(
    listener: std::net::TcpListener,
    limits: Limits,
    handler: Arc<Handler>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A handler and a blob's reader per connection at most, and spare.
        .max_blocking_threads(2 * limits.max_connections + 8)
        .build()?;
    runtime.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let places = Arc::new(Semaphore::new(limits.max_connections));
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of file descriptors, most likely: wait for some to
                // close rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(place) = places.clone().try_acquire_owned() else {
                tokio::spawn(turn_away(stream, busy(limits.max_connections)));
                continue;
            };
            let mut http = http1::Builder::new();
            // The time to send a head, and to send the next one on a
            // kept-alive connection: a client that stalls is let go.
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let handler = handler.clone();
            let placed = Placed {
                place: Some(place),
                stream,
            };
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(request, handler.clone(), limits));
                let _ = http.serve_connection(TokioIo::new(placed), service).await;
            });
        }
    })
}
// ANCHOR_END: registry_http_serve

/// A connection's stream with its place under the cap, which is given back
/// *before* the connection closes: when hyper shuts the stream down, or
/// drops it (the place is the first field, so it is dropped first). A
/// client that saw its connection end and connects again then always
/// finds that place free; given back after the close (at the end of the
/// connection's task), it could still be taken for a moment, and the new
/// connection turned away for the old one's sake.
struct Placed {
    place: Option<tokio::sync::OwnedSemaphorePermit>,
    stream: tokio::net::TcpStream,
}

impl tokio::io::AsyncRead for Placed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Placed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let placed = self.get_mut();
        placed.place = None;
        Pin::new(&mut placed.stream).poll_shutdown(cx)
    }
}

/// The registry's `503` past the cap, whole, for [`turn_away`]: the spec's
/// error JSON, with the code `TOOMANYREQUESTS`.
fn busy(cap: usize) -> Vec<u8> {
    let message = format!(
        "the registry is serving {cap} connections, its limit: try again when one has ended"
    );
    let body =
        json!({ "errors": [{ "code": "TOOMANYREQUESTS", "message": message, "detail": {} }] });
    whole_response(
        "503 Service Unavailable",
        &[
            ("Docker-Distribution-Api-Version", "registry/2.0"),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    )
}

/// One request: the handler runs on a blocking thread; its reply becomes
/// hyper's response.
async fn answer(
    request: hyper::Request<Incoming>,
    handler: Arc<Handler>,
    limits: Limits,
) -> Result<hyper::Response<Sent>, Infallible> {
    let (parts, incoming) = request.into_parts();
    let head_only = parts.method == hyper::Method::HEAD;
    let head = Head {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parse_query(parts.uri.query().unwrap_or("")),
        headers: parts.headers,
    };
    let mut body = Body {
        incoming,
        runtime: Handle::current(),
        pending: Bytes::new(),
        timeout: limits.body_timeout,
    };
    let reply = tokio::task::spawn_blocking(move || handler(&head, &mut body))
        .await
        .unwrap_or_else(|_| {
            Reply::error(500, "UNKNOWN", "the registry failed to answer: see its log")
        });
    Ok(response(reply, head_only))
}

/// A reply as hyper's response, with the API's version header. A `HEAD`
/// gets the headers of the `GET`, its `Content-Length` included (clients
/// learn a blob's size that way), and no body.
fn response(reply: Reply, head_only: bool) -> hyper::Response<Sent> {
    // A HEAD's body is never made: a file's reader would read a piece of
    // the blob for no one.
    let (len, body) = match reply.body {
        Payload::Bytes(bytes) if head_only => (bytes.len() as u64, Sent::Whole(None)),
        Payload::Bytes(bytes) => (bytes.len() as u64, Sent::Whole(Some(bytes))),
        Payload::File(_, len) | Payload::Size(len) if head_only => (len, Sent::Whole(None)),
        Payload::File(file, len) => (len, Sent::file(file, len)),
        // A size without bytes is a HEAD's only; a GET never gets one.
        Payload::Size(_) => (0, Sent::Whole(None)),
    };
    let mut response = hyper::Response::new(body);
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    headers.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
    for (name, value) in reply.headers {
        // Values are the registry's own (digests, paths, ids): printable.
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
    response
}

/// A body hyper sends: whole, or a file's pieces as a blocking thread
/// reads them, with its exact length (so a blob has a `Content-Length`).
#[derive(Debug)]
enum Sent {
    Whole(Option<Bytes>),
    Pieces(mpsc::Receiver<std::io::Result<Bytes>>, u64),
}

impl Sent {
    /// Reads `file` on the blocking pool into a bounded channel.
    fn file(mut file: std::fs::File, len: u64) -> Sent {
        let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
        let runtime = Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut left = len;
            while left > 0 {
                let mut buf = vec![0; PIECE.min(usize::try_from(left).unwrap_or(PIECE))];
                let piece = match file.read(&mut buf) {
                    Ok(0) => Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the blob is shorter than its size",
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        left -= n as u64;
                        Ok(Bytes::from(buf))
                    }
                    Err(e) => Err(e),
                };
                let failed = piece.is_err();
                // The client went away, or stopped reading: stop, and
                // drop the sender, which cuts the answer short.
                let sent = runtime.block_on(tokio::time::timeout(WRITE_TIMEOUT, tx.send(piece)));
                if !matches!(sent, Ok(Ok(()))) || failed {
                    return;
                }
            }
        });
        Sent::Pieces(rx, len)
    }
}

impl hyper::body::Body for Sent {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Sent::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Sent::Pieces(rx, _) => rx
                .poll_recv(cx)
                .map(|piece| piece.map(|p| p.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Sent::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Sent::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Sent::Pieces(_, len) => SizeHint::with_exact(*len),
        }
    }
}

/// `a=1&from=team%2Fapp` → `[(a, 1), (from, "team/app")]`.
fn parse_query(query: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
