//! The client's end of the socket: one API call per request, on hyper's
//! HTTP/1.1 client.
//!
//! A client names its daemon with `-H unix:///path/to/socket` (or
//! `CAIXA_HOST`), so one client drives as many daemons as there are
//! sockets, as the Docker CLI does with `-H` and contexts. The step's
//! commands are plain sequential code, so this is a blocking facade: each
//! call runs hyper on a small single-threaded tokio runtime of its own and
//! returns when the answer is in (its pieces handed over as they come).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderValue};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::EngineError;
use super::bridge::{Outgoing, splice};
use super::server::MAX_JSON;

/// Where a daemon run by root listens when nobody says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/caixa/caixa.sock";

/// Where a daemon listens, and its clients call, when nobody says
/// otherwise: [`DEFAULT_SOCKET`] for root, the user's runtime directory
/// (`$XDG_RUNTIME_DIR/caixa/caixa.sock`) for a rootless daemon, as rootless
/// Docker and Podman keep theirs there.
pub fn default_socket() -> PathBuf {
    if crate::rootless::active() {
        crate::rootless::user_dir("runtime").join("caixa.sock")
    } else {
        PathBuf::from(DEFAULT_SOCKET)
    }
}

/// A connection plan to one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    /// Sent as `X-Registry-Auth` (a push's or a pull's credentials).
    registry_auth: Option<String>,
}

/// A response, as the client reads it.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (its first 16 MiB: more is only ever streamed).
    pub body: Vec<u8>,
    /// The headers (`docker cp`'s path stat travels in one).
    pub headers: hyper::HeaderMap,
}

/// A request's body: JSON in memory, or a reader (an archive to load)
/// streamed from a thread of its own, sized when its length is known and
/// chunked when not.
pub struct Payload {
    content_type: &'static str,
    source: Source,
}

enum Source {
    Bytes(Bytes),
    Reader(Box<dyn Read + Send>, Option<u64>),
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl Payload {
    /// A JSON body.
    pub fn json(value: &Value) -> Payload {
        Payload {
            content_type: "application/json",
            source: Source::Bytes(Bytes::from(value.to_string())),
        }
    }

    /// A body read from `reader`: `length` bytes, or chunked when `None`.
    pub fn reader(
        content_type: &'static str,
        reader: impl Read + Send + 'static,
        length: Option<u64>,
    ) -> Payload {
        Payload {
            content_type,
            source: Source::Reader(Box::new(reader), length),
        }
    }
}

/// A transport failure: its cause, and whether the daemon was not reached
/// at all (no socket, nobody listening).
type Broken = (String, bool);

impl Client {
    /// A client for `host`: `unix:///path` or a plain path.
    pub fn new(host: &str) -> Result<Client, EngineError> {
        let path = host.strip_prefix("unix://").unwrap_or(host);
        if host.contains("://") && !host.starts_with("unix://") || path.is_empty() {
            return Err(EngineError::BadRequest(format!(
                "unsupported host {host:?}: use unix:///path/to/socket"
            )));
        }
        Ok(Client {
            socket: PathBuf::from(path),
            registry_auth: None,
        })
    }

    /// This client, sending `user`'s credentials for a registry with its
    /// requests (`X-Registry-Auth`, base64url JSON, as the Docker CLI
    /// sends them): the daemon uses them for that push or pull only.
    pub fn with_registry_credentials(mut self, user: &str, password: &str) -> Client {
        use base64::Engine as _;
        let json = serde_json::json!({ "username": user, "password": password });
        self.registry_auth =
            Some(base64::engine::general_purpose::URL_SAFE.encode(json.to_string()));
        self
    }

    // ANCHOR: client_call
    /// Sends one request; an error status becomes the daemon's message.
    /// A successful answer's body goes to `on_chunk` piece by piece as it
    /// comes (a pull's progress), and is also returned (its first 16 MiB).
    pub fn call(
        &self,
        method: &str,
        target: &str,
        body: Option<Payload>,
        on_chunk: &mut dyn FnMut(&[u8]),
    ) -> Result<Response, EngineError> {
        let response = runtime()?
            .block_on(async {
                let mut sender = self.connect().await?;
                let request = self.request(method, target, body)?;
                let answer = sender.send_request(request).await.map_err(broken)?;
                let status = answer.status().as_u16();
                let headers = answer.headers().clone();
                let mut incoming = answer.into_body();
                let mut body = Vec::new();
                while let Some(frame) = incoming.frame().await {
                    let Ok(data) = frame.map_err(broken)?.into_data() else {
                        continue;
                    };
                    if status < 400 {
                        on_chunk(&data);
                    }
                    if body.len() < MAX_JSON as usize {
                        body.extend_from_slice(&data);
                    }
                }
                Ok(Response {
                    status,
                    body,
                    headers,
                })
            })
            .map_err(|e| self.error(method, target, e))?;
        if response.status >= 400 {
            return Err(refusal(response.status, &response.body));
        }
        Ok(response)
    }
    // ANCHOR_END: client_call

    /// A request with an optional JSON body, answered with JSON (or nothing).
    pub fn json(
        &self,
        method: &str,
        target: &str,
        body: Option<&Value>,
    ) -> Result<Value, EngineError> {
        let response = self.call(method, target, body.map(Payload::json), &mut |_| {})?;
        if response.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&response.body)
            .map_err(|e| EngineError::Daemon(format!("the daemon's answer is not JSON: {e}")))
    }

    /// Like [`Client::json`], parsed straight into `T`: for an answer of
    /// many lines of which the caller reads a few fields (`ps`). An empty
    /// body reads as `null`, as in [`Client::json`].
    pub fn json_as<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        target: &str,
    ) -> Result<T, EngineError> {
        let response = self.call(method, target, None, &mut |_| {})?;
        let body: &[u8] = if response.body.is_empty() {
            b"null"
        } else {
            &response.body
        };
        serde_json::from_slice(body).map_err(|e| {
            EngineError::Daemon(format!("the daemon's answer is not what was asked: {e}"))
        })
    }

    // ANCHOR: client_upgrade
    /// Asks to take over a connection (Docker's attach) and returns it,
    /// once the daemon has answered `101`, as a blocking `UnixStream`: read
    /// the daemon's bytes from it until it ends (and, later, write to it).
    /// A thread of its own runs hyper and splices the connection to it.
    pub fn upgrade(&self, method: &str, target: &str) -> Result<UnixStream, EngineError> {
        let (ours, theirs) = UnixStream::pair()
            .and_then(|pair| pair.1.set_nonblocking(true).map(|()| pair))
            .map_err(EngineError::Connection)?;
        let (ready, answered) = std::sync::mpsc::channel();
        let (client, method, target) = (self.clone(), method.to_string(), target.to_string());
        std::thread::spawn(move || {
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async {
                match client.open_upgraded(&method, &target).await {
                    Ok(upgraded) => {
                        let _ = ready.send(Ok(()));
                        if let Ok(theirs) = tokio::net::UnixStream::from_std(theirs) {
                            splice(TokioIo::new(upgraded), theirs, None).await;
                        }
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            });
        });
        match answered.recv() {
            Ok(Ok(())) => Ok(ours),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(EngineError::Connection(std::io::Error::other(
                "the attach thread ended before it connected",
            ))),
        }
    }
    // ANCHOR_END: client_upgrade

    async fn open_upgraded(
        &self,
        method: &str,
        target: &str,
    ) -> Result<hyper::upgrade::Upgraded, EngineError> {
        let attempt = async {
            let mut sender = self.connect().await?;
            let mut request = self.request(method, target, None)?;
            let headers = request.headers_mut();
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
            let answer = sender.send_request(request).await.map_err(broken)?;
            if answer.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
                // The daemon said no (no such container, …): its words.
                let status = answer.status().as_u16();
                let body = answer
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                return Ok(Err(refusal(status, &body)));
            }
            hyper::upgrade::on(answer).await.map(Ok).map_err(broken)
        };
        attempt.await.map_err(|e| self.error(method, target, e))?
    }

    /// Connects and does the HTTP/1.1 handshake; the connection is driven
    /// by a task of the current runtime (upgrades allowed).
    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Outgoing>, Broken> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| (e.to_string(), true))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(broken)?;
        tokio::spawn(connection.with_upgrades());
        Ok(sender)
    }

    fn request(
        &self,
        method: &str,
        target: &str,
        body: Option<Payload>,
    ) -> Result<hyper::Request<Outgoing>, Broken> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, "caixa");
        if let Some(auth) = &self.registry_auth {
            builder = builder.header("X-Registry-Auth", auth);
        }
        let body = match body {
            None => Outgoing::Whole(None),
            Some(payload) => {
                builder = builder.header(header::CONTENT_TYPE, payload.content_type);
                match payload.source {
                    Source::Bytes(bytes) => Outgoing::whole(bytes),
                    Source::Reader(mut reader, length) => {
                        if let Some(length) = length {
                            builder = builder.header(header::CONTENT_LENGTH, length);
                        }
                        let (mut writer, body) = Outgoing::chunks();
                        tokio::task::spawn_blocking(move || {
                            if let Err(e) = std::io::copy(&mut reader, &mut writer) {
                                writer.fail(e);
                            }
                        });
                        body
                    }
                }
            }
        };
        builder
            .body(body)
            .map_err(|e| (format!("invalid request {method} {target}: {e}"), false))
    }

    fn error(&self, method: &str, target: &str, (cause, unreachable): Broken) -> EngineError {
        if unreachable {
            EngineError::NoDaemon(format!("unix://{}", self.socket.display()), cause)
        } else {
            EngineError::Daemon(format!(
                "the daemon's answer to {method} {target} broke off: {cause}: see the daemon's log"
            ))
        }
    }
}

// ANCHOR: client_wait_ahead
/// A `wait` sent ahead of what it waits for, as the Docker CLI sends its
/// wait before the start: no end (and with `--rm`, no removal) can come
/// before the daemon has the request. [`Client::wait_ahead`] returns once
/// the daemon has answered the head; [`WaitAhead::code`] reads the body.
pub struct WaitAhead {
    body: std::sync::mpsc::Receiver<Result<i32, EngineError>>,
}

impl Client {
    /// `POST /containers/ID/wait?condition=C` on a thread of its own;
    /// returns when its head is in (the daemon has found the container and
    /// waits), or with the daemon's refusal.
    pub fn wait_ahead(&self, id: &str, condition: &str) -> Result<WaitAhead, EngineError> {
        let (head_tx, head_rx) = std::sync::mpsc::channel();
        let (body_tx, body_rx) = std::sync::mpsc::channel();
        let client = self.clone();
        let target = format!("/containers/{id}/wait?condition={condition}");
        std::thread::spawn(move || {
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = head_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async {
                let answer = async {
                    let mut sender = client.connect().await?;
                    let request = client.request("POST", &target, None)?;
                    sender.send_request(request).await.map_err(broken)
                };
                let answer = match answer.await {
                    Ok(answer) => answer,
                    Err(e) => {
                        let _ = head_tx.send(Err(client.error("POST", &target, e)));
                        return;
                    }
                };
                let status = answer.status().as_u16();
                let whole = answer.into_body().collect();
                if status >= 400 {
                    let body = whole.await.map(|b| b.to_bytes()).unwrap_or_default();
                    let _ = head_tx.send(Err(refusal(status, &body)));
                    return;
                }
                let _ = head_tx.send(Ok(()));
                let code = match whole.await {
                    Ok(body) => exit_code_of(&body.to_bytes()),
                    Err(e) => Err(client.error("POST", &target, broken(e))),
                };
                let _ = body_tx.send(code);
            });
        });
        match head_rx.recv() {
            Ok(Ok(())) => Ok(WaitAhead { body: body_rx }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(EngineError::Connection(std::io::Error::other(
                "the wait's thread ended before the daemon answered",
            ))),
        }
    }
}

impl WaitAhead {
    /// The container's exit code, once the condition holds (at most
    /// `limit`: None when it did not come by then).
    pub fn code(&self, limit: Option<std::time::Duration>) -> Option<Result<i32, EngineError>> {
        match limit {
            Some(limit) => self.body.recv_timeout(limit).ok(),
            None => self.body.recv().ok(),
        }
    }
}

/// `{"StatusCode": N}`, or the error a wait's body carries once its head
/// has gone (`{"StatusCode": 125, "Error": {"Message": …}}`).
fn exit_code_of(body: &[u8]) -> Result<i32, EngineError> {
    let answer: Value = serde_json::from_slice(body)
        .map_err(|e| EngineError::Daemon(format!("the wait's answer is not JSON: {e}")))?;
    if let Some(message) = answer["Error"]["Message"]
        .as_str()
        .filter(|m| !m.is_empty())
    {
        return Err(EngineError::Daemon(message.to_string()));
    }
    answer["StatusCode"]
        .as_i64()
        .map(|code| code as i32)
        .ok_or_else(|| {
            EngineError::Daemon(format!("the wait's answer has no StatusCode: {answer}"))
        })
}
// ANCHOR_END: client_wait_ahead

/// A single-threaded tokio runtime: each call runs hyper on one of its own.
fn runtime() -> Result<tokio::runtime::Runtime, EngineError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| EngineError::Spawn {
            what: "the client's runtime",
            source,
        })
}

/// The daemon's refusal, in its own words (Docker's `{"message": …}`);
/// 404 stays `NotFound`, so a caller can tell a missing container or image.
fn refusal(status: u16, body: &[u8]) -> EngineError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    if status == 404 {
        EngineError::NotFound(message)
    } else {
        EngineError::Daemon(message)
    }
}

fn broken(e: impl std::fmt::Display) -> Broken {
    (e.to_string(), false)
}

// ANCHOR: demux
/// Splits a stream of Docker's frames as it comes, in pieces of any size.
#[derive(Debug, Default)]
pub struct Demuxer {
    pending: Vec<u8>,
}

impl Demuxer {
    /// Takes `chunk`; writes every frame it completes.
    pub fn push(&mut self, chunk: &[u8], stdout: &mut impl Write, stderr: &mut impl Write) {
        self.pending.extend_from_slice(chunk);
        let mut used = 0;
        while self.pending.len() - used >= 8 {
            let head = &self.pending[used..used + 8];
            let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
            if self.pending.len() - used - 8 < len {
                break;
            }
            let data = &self.pending[used + 8..used + 8 + len];
            let _ = match head[0] {
                2 => stderr.write_all(data).and_then(|()| stderr.flush()),
                _ => stdout.write_all(data).and_then(|()| stdout.flush()),
            };
            used += 8 + len;
        }
        self.pending.drain(..used);
    }
}
// ANCHOR_END: demux

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut framed = super::super::daemon::frame(1, b"out\n");
        framed.extend(super::super::daemon::frame(2, b"err\n"));
        assert!(Client::new("tcp://1.2.3.4:2375").is_err());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut demuxer = Demuxer::default();
        for piece in framed.chunks(3) {
            demuxer.push(piece, &mut out, &mut err);
        }
        assert_eq!(
            (out.as_slice(), err.as_slice()),
            (&b"out\n"[..], &b"err\n"[..])
        );
    }
}
