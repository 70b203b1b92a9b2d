//! The daemon's HTTP server: hyper's HTTP/1.1 on a unix socket, in front of
//! synchronous handlers.
//!
//! HTTP/1.1 looks small, and the protocol details are where a hand-written
//! server goes wrong: a client that sends half a header and waits, ten
//! thousand of those at once, a body larger than memory, chunked bodies,
//! keep-alive, the `101` upgrade that Docker's `attach` uses. hyper gets
//! them right; this module sets its knobs, each with its reason, and hands
//! every request to a handler that reads like ordinary blocking code: a
//! [`Request`], its [`RequestBody`] as a `Read`, and a [`Responder`].
//!
//! Each connection is a tokio task; each request runs its handler on
//! tokio's blocking pool (`spawn_blocking`), where it may take as long as a
//! container runs (`wait`, `attach`, `logs?follow=1`).

use std::convert::Infallible;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::bridge::Outgoing;
pub use super::responder::Responder;

/// The largest request body accepted: an image archive for `load`.
pub const MAX_BODY: u64 = 4 << 30;
/// The largest JSON body read into memory: a create request is a few KiB,
/// so 16 MiB is room for any honest one and a bound on a dishonest one.
pub const MAX_JSON: u64 = 16 << 20;

/// The server's knobs, and why each exists.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's head, and how long an
    /// idle kept-alive connection stays open. Without it, a client that
    /// sends half a header and stalls holds its connection (and a place
    /// under `max_connections`) for ever: the "slowloris" attack. A local
    /// client writes its head in one go, so 10 s is generous.
    pub header_timeout: Duration,
    /// How long a request body may pause between two pieces. A stalled
    /// upload would otherwise pin a blocking thread for ever.
    pub body_timeout: Duration,
    /// How many connections are served at once. Each may hold a blocking
    /// thread for as long as a container runs; past the cap a connection
    /// is answered `503` at once (see [`serve`] for why not queued).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: 256,
        }
    }
}

/// One request, as a handler sees it: the head only (the body is the
/// handler's second argument, so the two can be borrowed apart).
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`, `DELETE`…
    pub method: String,
    /// The path, percent-decoded, without a `/v1.xx` version prefix.
    pub path: String,
    /// The query's `key=value` pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The request's headers.
    pub headers: HeaderMap,
}

impl Request {
    /// The value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether query parameter `key` is set to a true value (`1`, `true`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("1" | "true" | "True"))
    }
}

// ANCHOR: request_body
/// A request's body as a blocking `Read`: each `read` waits (at most the
/// body timeout) for hyper's next piece, on the runtime that owns the
/// connection. Read it through [`RequestBody::limit`].
#[derive(Debug)]
pub struct RequestBody {
    incoming: Incoming,
    runtime: Handle,
    pending: Bytes,
    timeout: Duration,
}

impl Read for RequestBody {
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
// ANCHOR_END: request_body

impl RequestBody {
    /// The body, failing with `FileTooLarge` past `max` bytes, never cut
    /// silently. A declared `Content-Length` over `max` fails at the first
    /// read, before anything is received.
    pub fn limit(&mut self, max: u64) -> impl Read + '_ {
        let declared = self.incoming.size_hint().exact();
        Limited {
            body: self,
            left: max,
            max,
            declared_too_large: declared.is_some_and(|d| d > max),
        }
    }
}

struct Limited<'a> {
    body: &'a mut RequestBody,
    left: u64,
    max: u64,
    declared_too_large: bool,
}

impl Read for Limited<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let too_large = || {
            std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "the request body is larger than {} MiB: send less",
                    self.max >> 20
                ),
            )
        };
        if self.declared_too_large {
            return Err(too_large());
        }
        let n = self.body.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(too_large)?;
        Ok(n)
    }
}

/// What the daemon does with a request: synchronous, on a blocking thread.
pub type Handler = dyn Fn(&Request, &mut RequestBody, &mut Responder) + Send + Sync;

// ANCHOR: server_serve
/// Serves HTTP/1.1 on `listener` (already bound, with its mode set) with
/// `handler`, forever.
///
/// Over `max_connections`, a connection is answered `503` with Docker's
/// `{"message": …}` rather than queued: the connections that hold places
/// are often `wait`s, `attach`es and followed logs that last as long as a
/// container, so a queued client could wait for ever without a word; a
/// `503` tells it now, and it may try again.
pub fn serve(
    listener: std::os::unix::net::UnixListener,
    limits: Limits,
    handler: Arc<Handler>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Two blocking threads per connection at most (its handler, and the
        // copy of an attach whose client did not upgrade), plus a few spare.
        .max_blocking_threads(2 * limits.max_connections + 8)
        .build()?;
    runtime.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let places = Arc::new(Semaphore::new(limits.max_connections));
        // Once no request has begun or ended for a second, the daemon
        // gives back the pages only its requests needed (`engine::shed`).
        let activity = super::shed::Activity::new();
        tokio::spawn(activity.clone().shed_when_quiet());
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
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let handler = handler.clone();
            let place = Arc::new(place);
            let activity = activity.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    answer(
                        request,
                        handler.clone(),
                        limits,
                        place.clone(),
                        activity.clone(),
                    )
                });
                let _ = http
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    })
}
// ANCHOR_END: server_serve

// ANCHOR: answer
/// One request: its head parsed, its handler run on a blocking thread, its
/// response the first thing the handler sends through the [`Responder`].
async fn answer(
    request: hyper::Request<Incoming>,
    handler: Arc<Handler>,
    limits: Limits,
    place: Arc<OwnedSemaphorePermit>,
    activity: Arc<super::shed::Activity>,
) -> Result<hyper::Response<Outgoing>, Infallible> {
    activity.touch();
    let (mut parts, incoming) = request.into_parts();
    // Present only when the client asked to upgrade (`Connection: Upgrade`).
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let head = Request {
        method: parts.method.to_string(),
        path: percent_decode(strip_version(parts.uri.path())),
        query: parse_query(parts.uri.query().unwrap_or("")),
        headers: parts.headers,
    };
    let runtime = Handle::current();
    let mut body = RequestBody {
        incoming,
        runtime: runtime.clone(),
        pending: Bytes::new(),
        timeout: limits.body_timeout,
    };
    let (tx, rx) = oneshot::channel();
    let mut responder = Responder::new(tx, upgrade, runtime, place);
    tokio::task::spawn_blocking(move || {
        handler(&head, &mut body, &mut responder);
        activity.touch();
    });
    // The handler dropped its responder without answering (it panicked).
    Ok(rx
        .await
        .unwrap_or_else(|_| message(500, "the daemon failed to answer: see its log")))
}
// ANCHOR_END: answer

/// A response with the engine's own headers: `Api-Version`, which the
/// Docker CLI reads to choose the API version it speaks, and `Server`.
pub(crate) fn response(
    status: u16,
    content_type: &str,
    body: Outgoing,
) -> hyper::Response<Outgoing> {
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::SERVER, HeaderValue::from_static("caixa"));
    headers.insert("api-version", HeaderValue::from_static("1.41"));
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    response
}

/// Docker's error shape: `{"message": …}`.
pub(crate) fn message(status: u16, text: &str) -> hyper::Response<Outgoing> {
    let body = serde_json::json!({ "message": text }).to_string();
    response(status, "application/json", Outgoing::whole(body))
}

/// The daemon's `503` past the cap, whole, for [`turn_away`].
fn busy(cap: usize) -> Vec<u8> {
    let text =
        format!("the daemon is serving {cap} connections, its limit: try again when one has ended");
    let body = serde_json::json!({ "message": text }).to_string();
    whole_response(
        "503 Service Unavailable",
        &[
            ("Server", "caixa"),
            ("Api-Version", "1.41"),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
}

/// How long a connection past the cap may take to send its request head
/// before it is answered all the same.
const HEAD_WAIT: Duration = Duration::from_secs(1);
/// How long a turned-away connection is still read after its answer.
const LINGER: Duration = Duration::from_secs(2);
/// How much of a turned-away request is looked through for its head's end.
const HEAD_MAX: usize = 16 << 10;

// ANCHOR: turn_away
/// Answers a connection past the cap with `busy` (a whole response), then
/// closes it, without hyper.
///
/// Why not let hyper answer it: hyper answers once a whole request head has
/// come, however long that takes (up to the header timeout), so a client
/// past the cap that sends half a head would hear nothing for that long,
/// holding a socket. Why not answer before reading anything: an HTTP
/// client that has not sent its request yet takes an answer for an
/// unsolicited message and drops it (hyper's client then reports its
/// request "canceled"). So the head is awaited, but for a second at most.
///
/// The close is a "lingering" one: the write side is shut, then what the
/// client still sends is read and dropped for a moment. Closing a socket
/// with bytes unread makes the kernel send a reset, and a reset can reach
/// the client before the answer does and erase it from its buffer.
pub(crate) async fn turn_away<S>(mut stream: S, busy: Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let until_head_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => return false, // closed: nobody to answer
            }
            if head.len() >= HEAD_MAX || head.windows(4).any(|w| w == b"\r\n\r\n") {
                return true;
            }
        }
    };
    if let Ok(false) = tokio::time::timeout(HEAD_WAIT, until_head_end).await {
        return;
    }
    if stream.write_all(&busy).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let drain = async { while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
// ANCHOR_END: turn_away

/// A whole HTTP/1.1 response, written by hand for [`turn_away`]: `status`
/// (`"503 Service Unavailable"`), `headers`, and `body`, its length said
/// and the connection's close announced.
pub(crate) fn whole_response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut whole = head.into_bytes();
    whole.extend_from_slice(body.as_bytes());
    whole
}

/// The Docker CLI prefixes every path with its API version: `/v1.41/…`.
fn strip_version(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v") else {
        return path;
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    let numeric = version.split_once('.').is_some_and(|(major, minor)| {
        [major, minor]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if numeric { &rest[end..] } else { path }
}

/// `a=1&b=x%20y&c` → `[(a, 1), (b, "x y"), (c, "")]`.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `%41` → `A`; `+` stays `+` (Docker's clients encode a space as `%20`);
/// a `%` not followed by two hex digits stays as it is.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::client::percent_encode;

    #[test]
    fn the_version_prefix_goes() {
        assert_eq!(strip_version("/v1.41/containers/json"), "/containers/json");
        assert_eq!(strip_version("/v1.49/_ping"), "/_ping");
        assert_eq!(strip_version("/v1.41"), "");
        assert_eq!(strip_version("/version"), "/version");
        assert_eq!(strip_version("/v2/"), "/v2/");
        assert_eq!(strip_version("/vx.1/a"), "/vx.1/a");
        assert_eq!(strip_version("/containers/v1.41"), "/containers/v1.41");
    }

    #[test]
    fn the_query_is_decoded() {
        assert_eq!(
            parse_query("name=web%201&all=1&x&=v&&t=a+b"),
            [
                ("name".into(), "web 1".into()),
                ("all".into(), "1".into()),
                ("x".into(), String::new()),
                (String::new(), "v".into()),
                ("t".into(), "a+b".into()),
            ]
        );
        assert_eq!(percent_decode(&percent_encode("a b/c:d")), "a b/c:d");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41%zz"), "A%zz");
        let request = Request {
            method: "GET".into(),
            path: "/containers/json".into(),
            query: parse_query("all=true&size=0"),
            headers: HeaderMap::new(),
        };
        assert!(request.flag("all") && !request.flag("size") && !request.flag("no"));
    }
}
