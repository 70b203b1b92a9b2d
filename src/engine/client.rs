//! The client's end of the socket: one API call per request.
//!
//! A client names its daemon with `-H unix:///path/to/socket` (or
//! `CAIXA_HOST`), so one client drives as many daemons as there are
//! sockets, as the Docker CLI does with `-H` and contexts.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde_json::Value;

use super::EngineError;
use super::http;

/// Where a daemon listens when nobody says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/caixa/caixa.sock";

/// A connection plan to one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

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
        })
    }

    /// Sends one request; an error status becomes the daemon's message.
    /// An unsized answer (a pull's progress) goes to `on_chunk` as it comes.
    pub fn call(
        &self,
        method: &str,
        target: &str,
        body: Option<(&str, &mut dyn Read, u64)>,
        on_chunk: &mut dyn FnMut(&[u8]),
    ) -> Result<http::Response, EngineError> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| {
            EngineError::NoDaemon(format!("unix://{}", self.socket.display()), e.to_string())
        })?;
        let response = http::call(stream, method, target, body, on_chunk).map_err(|e| {
            EngineError::Daemon(format!(
                "the daemon's answer to {method} {target} broke off: {e}"
            ))
        })?;
        if response.status >= 400 {
            let message = serde_json::from_slice::<Value>(&response.body)
                .ok()
                .and_then(|v| v["message"].as_str().map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&response.body).into_owned());
            return Err(if response.status == 404 {
                EngineError::NotFound(message)
            } else {
                EngineError::Daemon(message)
            });
        }
        Ok(response)
    }

    /// A request with an optional JSON body, answered with JSON (or nothing).
    pub fn json(
        &self,
        method: &str,
        target: &str,
        body: Option<&Value>,
    ) -> Result<Value, EngineError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let mut reader = bytes.as_deref().unwrap_or(&[]);
        let len = reader.len() as u64;
        let body =
            bytes
                .is_some()
                .then_some(("application/json", &mut reader as &mut dyn Read, len));
        let response = self.call(method, target, body, &mut |_| {})?;
        if response.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&response.body)
            .map_err(|e| EngineError::Daemon(format!("the daemon's answer is not JSON: {e}")))
    }
}

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

// ANCHOR: demux
/// Splits Docker's multiplexed frames into stdout and stderr.
pub fn demux(
    mut framed: &[u8],
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> std::io::Result<()> {
    while framed.len() >= 8 {
        let len = u32::from_be_bytes([framed[4], framed[5], framed[6], framed[7]]) as usize;
        let end = (8 + len).min(framed.len());
        let data = &framed[8..end];
        match framed[0] {
            2 => stderr.write_all(data)?,
            _ => stdout.write_all(data)?,
        }
        framed = &framed[end..];
    }
    stdout.flush()?;
    stderr.flush()
}
// ANCHOR_END: demux

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut framed = super::super::daemon::frame(1, b"out\n");
        framed.extend(super::super::daemon::frame(2, b"err\n"));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        demux(&framed, &mut out, &mut err).unwrap();
        assert_eq!(
            (out.as_slice(), err.as_slice()),
            (&b"out\n"[..], &b"err\n"[..])
        );
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
