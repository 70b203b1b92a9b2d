//! The Docker CLI's own floor for `docker run --rm IMAGE true`: a stand-in
//! daemon that answers each request of that run at once, with no container
//! behind it, so that what the CLI takes against it is the CLI's alone (its
//! start, its four connections, the handler it installs for every signal to
//! forward and takes back, its end). `bench-engine` times it beside the
//! real runs: the Docker CLI's row minus this one is what caixa's daemon
//! costs it, and issue 19's 0.25× podman minus this one is what the goal
//! leaves the engine. A measuring instrument, not a test: nothing graded
//! talks to it.
//!
//! It speaks only what that run asks, in the order the CLI asks it (ping,
//! create, attach, wait, start): HTTP/1.1 over a Unix socket, a thread a
//! connection, keep-alive. The attach and the wait are answered at once and
//! end when the start has come, as a container of `true` would make them.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{Context, Result};

/// The stand-in, serving until it is dropped.
pub struct StandIn {
    socket: PathBuf,
}

/// The containers whose start has come, and a wake-up for the attach and the
/// wait that hold for it.
#[derive(Default)]
struct Started {
    ids: Mutex<HashSet<String>>,
    came: Condvar,
}

impl StandIn {
    /// Listens at `socket` (replacing a stale one) and serves in threads.
    pub fn serve(socket: &Path) -> Result<StandIn> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("bind the stand-in's socket {}", socket.display()))?;
        let started = Arc::new(Started::default());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let started = started.clone();
                std::thread::spawn(move || {
                    let _ = answer(conn, &started);
                });
            }
        });
        Ok(StandIn {
            socket: socket.to_path_buf(),
        })
    }

    /// The `-H` value that reaches it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // Its thread waits in `accept` until the process ends; nothing
        // connects once the socket is gone.
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Answers the requests of one connection, until the client closes it.
fn answer(conn: UnixStream, started: &Started) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let (method, target) = (
            words.next().unwrap_or_default().to_string(),
            words.next().unwrap_or_default().to_string(),
        );
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        // A run's create body is a few KiB; more is no run's.
        let mut body = vec![0u8; length.min(1 << 20)];
        reader.read_exact(&mut body)?;
        let path = target.split('?').next().unwrap_or_default();
        // `/v1.41/containers/…` and `/containers/…` alike.
        let path = match path.strip_prefix("/v1.") {
            Some(rest) => rest.find('/').map_or(path, |i| &rest[i..]),
            None => path,
        };
        let head = "Api-Version: 1.41\r\nServer: caixa-stand-in\r\n";
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("HEAD" | "GET", ["_ping"]) => {
                let body = if method == "GET" { "OK" } else { "" };
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\n{head}Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{body}"
                )?;
            }
            ("POST", ["containers", "create"]) => {
                // One count for every connection: each run's id is new, so
                // its attach and wait hold for its own start.
                static CREATED: AtomicU64 = AtomicU64::new(0);
                let n = CREATED.fetch_add(1, Ordering::Relaxed) + 1;
                let id = format!("{:064x}", (std::process::id() as u64) << 32 | n);
                let json = format!("{{\"Id\":\"{id}\",\"Warnings\":[]}}");
                write!(
                    out,
                    "HTTP/1.1 201 Created\r\n{head}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                    json.len()
                )?;
            }
            ("POST", ["containers", id, "start"]) => {
                if let Ok(mut ids) = started.ids.lock() {
                    ids.insert(id.to_string());
                }
                started.came.notify_all();
                write!(out, "HTTP/1.1 204 No Content\r\n{head}\r\n")?;
            }
            ("POST", ["containers", id, "attach"]) => {
                write!(
                    out,
                    "HTTP/1.1 101 UPGRADED\r\n{head}Content-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                )?;
                out.flush()?;
                wait_for_start(started, id);
                // `true` wrote nothing and ended: the stream ends.
                return Ok(out.shutdown(std::net::Shutdown::Both)?);
            }
            ("POST", ["containers", id, "wait"]) => {
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\n{head}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                )?;
                out.flush()?;
                wait_for_start(started, id);
                let json = "{\"StatusCode\":0}\n";
                write!(out, "{:x}\r\n{json}\r\n0\r\n\r\n", json.len())?;
            }
            _ => {
                let json =
                    format!("{{\"message\":\"the stand-in answers only a run: {method} {path}\"}}");
                write!(
                    out,
                    "HTTP/1.1 404 Not Found\r\n{head}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                    json.len()
                )?;
            }
        }
        out.flush()?;
    }
}

/// Holds until `id`'s start has come (or 10 s, so that a CLI that never
/// starts does not keep a thread for ever).
fn wait_for_start(started: &Started, id: &str) {
    let Ok(ids) = started.ids.lock() else {
        return;
    };
    let _ = started
        .came
        .wait_timeout_while(ids, std::time::Duration::from_secs(10), |ids| {
            !ids.contains(id)
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one request and reads until `until` is in what came back.
    fn ask(conn: &mut UnixStream, request: &str, until: &str) -> String {
        conn.write_all(request.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains(until) {
            let n = conn.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "closed before {until:?}: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    #[test]
    fn a_run_is_answered_in_the_order_the_cli_asks_it() {
        let dir = std::env::temp_dir().join(format!("caixa-stand-in-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stand_in = StandIn::serve(&dir.join("s.sock")).unwrap();
        let path = stand_in.host().trim_start_matches("unix://").to_string();
        let mut main = UnixStream::connect(&path).unwrap();
        let ping = ask(
            &mut main,
            "HEAD /_ping HTTP/1.1\r\nHost: d\r\n\r\n",
            "\r\n\r\n",
        );
        assert!(ping.starts_with("HTTP/1.1 200") && ping.contains("Api-Version: 1.41"));
        let body = "{\"Image\":\"bb:1\"}";
        let created = ask(
            &mut main,
            &format!(
                "POST /v1.41/containers/create HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            "Warnings",
        );
        let id = created.split("\"Id\":\"").nth(1).unwrap()[..64].to_string();
        let mut attach = UnixStream::connect(&path).unwrap();
        let up = ask(
            &mut attach,
            &format!("POST /v1.41/containers/{id}/attach?stream=1 HTTP/1.1\r\n\r\n"),
            "\r\n\r\n",
        );
        assert!(up.starts_with("HTTP/1.1 101"), "{up}");
        let head = ask(
            &mut main,
            &format!("POST /v1.41/containers/{id}/wait?condition=removed HTTP/1.1\r\n\r\n"),
            "\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut other = UnixStream::connect(&path).unwrap();
        let start = ask(
            &mut other,
            &format!("POST /v1.41/containers/{id}/start HTTP/1.1\r\n\r\n"),
            "\r\n\r\n",
        );
        assert!(start.starts_with("HTTP/1.1 204"), "{start}");
        // The wait's body and the attach's end come once the start has.
        let mut rest = String::new();
        let mut buf = [0u8; 256];
        while !rest.contains("0\r\n\r\n") {
            let n = main.read(&mut buf).unwrap();
            assert!(n > 0);
            rest.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(rest.contains("{\"StatusCode\":0}"), "{rest}");
        assert_eq!(attach.read(&mut buf).unwrap(), 0);
        drop(stand_in);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
