//! The input side of `attach`: the user's keys, from the client's
//! connection to the container's stdin.
//!
//! An attach is one connection taken over (`101`) that carries both ways:
//! the container's output to the client (`follow`, in [`super::daemon`])
//! and, with `stdin=1` on a container made with `-i`, the client's input
//! to the container. The input goes through the container's shim, which
//! holds its stdin ([`super::stdin`]): the daemon asks it for a client
//! connection (`stdin` on the shim's socket) and copies into it.
//!
//! On the way, for a container with a terminal, the daemon looks for the
//! detach keys ([`DetachKeys`]). When the user types them, the attach
//! ends and the container runs on: the keys never reach it, and `stop`
//! tells the output side to end too. Without a terminal the input is
//! data, not keys (a file piped to `docker run -i`), and goes on whole,
//! as Docker does.
//!
//! ```text
//!   client ══ attach (101) ══▶ daemon ── stdin ──▶ shim ──▶ container's stdin
//!      ◀══════════════════════ daemon ◀── container.log ◀── shim ◀── output
//! ```

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::shim;
use super::state::{Containers, Record, Status};
use super::terminal::DetachKeys;

// ANCHOR: forward_input
/// Copies what the client sends on `from` into container `record`'s
/// stdin, until the client's input ends, the user types the detach keys
/// (then sets `stop` and closes the connection: the attach is over), or
/// `stop` is set by the output side (the container ended).
pub fn forward_input(
    containers: &Containers,
    record: &Record,
    mut from: UnixStream,
    mut keys: DetachKeys,
    stop: &AtomicBool,
) {
    // 1. A client attaches before the start (`docker run -i`): wait for
    //    the shim. What it types meanwhile waits in the socket.
    let dir = containers.dir(&record.id);
    let mut to = loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let running = containers
            .state(&record.id)
            .is_ok_and(|s| s.status == Status::Running);
        if running {
            match shim::open_stdin(&dir) {
                Ok(Some(conn)) => break conn,
                Ok(None) => {}
                Err(e) => {
                    eprintln!("caixa daemon: attach to {}: {e}", record.name);
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // 2. The keys, as they come, minus the detach sequence (with a
    //    terminal; without one, every byte is data).
    let mut buf = [0u8; 8192];
    let mut keys_out = Vec::with_capacity(buf.len());
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                // A start of the sequence that the end cut short was typed.
                let _ = to.write_all(&keys.held_back());
                break;
            }
            Ok(n) => n,
        };
        keys_out.clear();
        let detach = match record.tty {
            true => keys.scan(&buf[..n], &mut keys_out),
            false => {
                keys_out.extend_from_slice(&buf[..n]);
                false
            }
        };
        if to.write_all(&keys_out).is_err() {
            break;
        }
        if detach {
            stop.store(true, Ordering::Relaxed);
            let _ = from.shutdown(Shutdown::Both);
            break;
        }
    }
    // 3. This client's input has ended: the shim sees its connection
    //    close (under StdinOnce, the container's stdin closes with it).
    let _ = to.shutdown(Shutdown::Both);
}
// ANCHOR_END: forward_input
