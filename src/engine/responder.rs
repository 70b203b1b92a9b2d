//! How a synchronous handler answers a request: whole, streamed, or by
//! taking over the connection (`101`).
//!
//! A response's head can go out only once, and what a handler may do
//! after depends on whether it has: an error found before the head becomes
//! an error status (Docker's `{"message": …}`), one found after can only
//! travel in the body, as a line the client understands. The [`Responder`]
//! remembers which ([`Responder::sent`]).

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use hyper::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::bridge::{ChunkWriter, Outgoing, splice};
use super::server::response;

/// A handler's way to answer one request.
#[derive(Debug)]
pub struct Responder {
    head: Option<oneshot::Sender<hyper::Response<Outgoing>>>,
    upgrade: Option<OnUpgrade>,
    runtime: Handle,
    /// The connection's place under the server's cap, held for as long as
    /// this answer (or its upgraded connection) lasts.
    place: Arc<OwnedSemaphorePermit>,
}

impl Responder {
    pub(crate) fn new(
        head: oneshot::Sender<hyper::Response<Outgoing>>,
        upgrade: Option<OnUpgrade>,
        runtime: Handle,
        place: Arc<OwnedSemaphorePermit>,
    ) -> Responder {
        Responder {
            head: Some(head),
            upgrade,
            runtime,
            place,
        }
    }

    /// Whether the head went out: past that, an error cannot change the
    /// status any more.
    pub fn sent(&self) -> bool {
        self.head.is_none()
    }

    /// A whole response, sized with `Content-Length`.
    pub fn respond(&mut self, status: u16, content_type: &str, body: &[u8]) -> std::io::Result<()> {
        let body = Outgoing::whole(bytes::Bytes::copy_from_slice(body));
        self.send(response(status, content_type, body))
    }

    /// A whole response with more headers (`docker cp`'s path stat).
    pub fn respond_with(
        &mut self,
        status: u16,
        content_type: &str,
        headers: &[(&'static str, &str)],
        body: &[u8],
    ) -> std::io::Result<()> {
        let body = Outgoing::whole(bytes::Bytes::copy_from_slice(body));
        self.send(with_headers(response(status, content_type, body), headers)?)
    }

    /// [`Responder::stream`] with more headers.
    pub fn stream_with(
        &mut self,
        status: u16,
        content_type: &str,
        headers: &[(&'static str, &str)],
    ) -> std::io::Result<ChunkWriter> {
        let (writer, body) = Outgoing::chunks();
        self.send(with_headers(response(status, content_type, body), headers)?)?;
        Ok(writer)
    }

    /// A whole JSON response.
    pub fn json(&mut self, status: u16, value: &Value) -> std::io::Result<()> {
        let body = Outgoing::whole(value.to_string());
        self.send(response(status, "application/json", body))
    }

    // ANCHOR: stream
    /// Sends the head now and returns the body's writer: each write is one
    /// chunk (`Transfer-Encoding: chunked`), on its way at once. A pull's
    /// progress, a `wait` (whose head the Docker CLI waits for before it
    /// starts the container) and followed logs answer this way.
    pub fn stream(&mut self, status: u16, content_type: &str) -> std::io::Result<ChunkWriter> {
        let (writer, body) = Outgoing::chunks();
        self.send(response(status, content_type, body))?;
        Ok(writer)
    }
    // ANCHOR_END: stream

    // ANCHOR: upgrade
    /// Answers `101 UPGRADED` (`Connection: Upgrade`, `Upgrade: tcp`, as
    /// Docker's attach does) and returns the connection, from now on raw
    /// bytes both ways, as a blocking `UnixStream`: one end of a
    /// socketpair whose other end a tokio task splices to the client.
    /// A client that did not ask to upgrade gets the same bytes as the
    /// streamed body of a `200`.
    pub fn upgrade(&mut self, content_type: &str) -> std::io::Result<UnixStream> {
        let (ours, theirs) = UnixStream::pair()?;
        let place = self.place.clone();
        match self.upgrade.take() {
            Some(on_upgrade) => {
                let mut switching = response(101, content_type, Outgoing::Whole(None));
                let headers = switching.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                headers.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
                // Docker's words for it; clients read the status, not these.
                switching
                    .extensions_mut()
                    .insert(hyper::ext::ReasonPhrase::from_static(b"UPGRADED"));
                // Before the answer goes: a failure now can still be a 500.
                theirs.set_nonblocking(true)?;
                self.send(switching)?;
                self.runtime.spawn(async move {
                    let _place = place;
                    let (Ok(upgraded), Ok(mut theirs)) =
                        (on_upgrade.await, tokio::net::UnixStream::from_std(theirs))
                    else {
                        return;
                    };
                    // The client's own socket, to hear it hang up; what
                    // hyper read past the request head is its first input.
                    match upgraded.downcast::<TokioIo<tokio::net::UnixStream>>() {
                        Ok(parts) => {
                            use tokio::io::AsyncWriteExt;
                            if theirs.write_all(&parts.read_buf).await.is_err() {
                                return;
                            }
                            let client = parts.io.into_inner();
                            let fd = client.as_fd().try_clone_to_owned();
                            let hung_up = move || fd.as_ref().is_ok_and(super::bridge::hung_up);
                            splice(theirs, client, Some(&hung_up)).await;
                        }
                        Err(upgraded) => splice(theirs, TokioIo::new(upgraded), None).await,
                    }
                });
            }
            None => {
                let mut body = self.stream(200, content_type)?;
                let mut theirs = theirs;
                self.runtime.spawn_blocking(move || {
                    let _place = place;
                    std::io::copy(&mut theirs, &mut body)
                });
            }
        }
        Ok(ours)
    }
    // ANCHOR_END: upgrade

    fn send(&mut self, response: hyper::Response<Outgoing>) -> std::io::Result<()> {
        let head = self
            .head
            .take()
            .ok_or_else(|| std::io::Error::other("this response's head was already sent"))?;
        head.send(response).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client went away before its answer",
            )
        })
    }
}

/// `response` with `headers` added; a value that is no valid header is an
/// error, not a panic.
fn with_headers(
    mut response: hyper::Response<Outgoing>,
    headers: &[(&'static str, &str)],
) -> std::io::Result<hyper::Response<Outgoing>> {
    for (name, value) in headers {
        let name =
            header::HeaderName::from_bytes(name.as_bytes()).map_err(std::io::Error::other)?;
        let value = HeaderValue::from_str(value).map_err(std::io::Error::other)?;
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}
