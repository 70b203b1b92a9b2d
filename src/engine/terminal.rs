//! A container's terminal, from the three places that touch it.
//!
//! With `-t` the container's pid 1 gets a pseudo-terminal of its own
//! devpts (its child side, made by `init`); the shim holds the master
//! side. Three things make it feel like a terminal from far away:
//!
//! - **raw mode** on the user's own terminal ([`RawMode`]): every key goes
//!   to the container as typed, Ctrl-C included, and the container's
//!   terminal does the echoing and the line editing, as with `ssh`;
//! - **the window's size** ([`size_of`], [`set_size`]): the client reads
//!   its window's rows and columns and sends them (`/containers/ID/resize`);
//!   the shim sets them on the master with `TIOCSWINSZ`, and the kernel
//!   sends `SIGWINCH` to the container's foreground process group;
//! - **detach keys** ([`DetachKeys`]): Ctrl-P Ctrl-Q (or the user's
//!   choice) leaves the container running and gives the terminal back.
//!   The daemon looks for them in what the client sends, so every client
//!   gets them, the Docker CLI's and caixa's alike.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::termios::{self, SetArg, Termios};

use super::EngineError;

// ANCHOR: set_size
/// Sets the size of the terminal whose master is `master`: the kernel
/// then signals `SIGWINCH` to the processes in its foreground, which ask
/// the size again and redraw (a shell's line, `top`, an editor).
pub fn set_size(master: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), EngineError> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `size` is a valid winsize for the ioctl to read; the fd is
    // borrowed, so it stays open for the call.
    let done = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if done < 0 {
        return Err(EngineError::Sys {
            call: "ioctl(TIOCSWINSZ)",
            source: nix::errno::Errno::last(),
        });
    }
    Ok(())
}
// ANCHOR_END: set_size

/// The rows and columns of the terminal `fd` is (the user's window), or
/// `None` when it is not a terminal.
pub fn size_of(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the ioctl writes one winsize into `size`, which outlives it.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } < 0 {
        return None;
    }
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

/// The user's terminal in raw mode for as long as this lives; put back as
/// it was when dropped (also when the client fails or panics).
#[derive(Debug)]
pub struct RawMode {
    fd: std::os::fd::RawFd,
    saved: Termios,
}

impl RawMode {
    // ANCHOR: raw_mode
    /// Puts terminal `fd` in raw mode: no echo, no line buffering, no
    /// signals from keys (Ctrl-C becomes byte 3, for the container's own
    /// terminal to turn into SIGINT), no output processing.
    pub fn enter(fd: BorrowedFd<'_>) -> Result<RawMode, EngineError> {
        let sys = |call| move |source| EngineError::Sys { call, source };
        let saved = termios::tcgetattr(fd).map_err(sys("tcgetattr"))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).map_err(sys("tcsetattr"))?;
        Ok(RawMode {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
    // ANCHOR_END: raw_mode
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: the fd was open when we entered raw mode; it is the
        // process's own stdin, which stays open while it runs.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &self.saved);
    }
}

// ANCHOR: detach_keys
/// The key sequence that detaches a client (Docker's `--detach-keys`,
/// `ctrl-p,ctrl-q` by default), and how far into it the input is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys {
    keys: Vec<u8>,
    /// How many of `keys` the input has just typed, held back until we
    /// know whether they are the sequence or ordinary keys.
    matched: usize,
}

impl DetachKeys {
    /// Parses `ctrl-p,ctrl-q`, `ctrl-x`, `a,ctrl-@`: keys separated by
    /// commas, each a single character or `ctrl-` and one of `a-z @ [ \ ] ^ _`.
    pub fn parse(text: &str) -> Result<DetachKeys, EngineError> {
        let bad = |key: &str| {
            EngineError::BadRequest(format!(
                "invalid detach key {key:?}: use keys like ctrl-p,ctrl-q (a single character, or ctrl- and a-z @ [ \\ ] ^ _)"
            ))
        };
        let mut keys = Vec::new();
        for key in text.split(',') {
            let byte = match key.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => match c.as_bytes()[0].to_ascii_lowercase() {
                    b @ b'a'..=b'z' => b - b'a' + 1,
                    b'@' => 0,
                    b @ (b'[' | b'\\' | b']' | b'^' | b'_') => b - b'@',
                    _ => return Err(bad(key)),
                },
                None if key.len() == 1 && key.as_bytes()[0].is_ascii_graphic() => key.as_bytes()[0],
                _ => return Err(bad(key)),
            };
            keys.push(byte);
        }
        Ok(DetachKeys { keys, matched: 0 })
    }

    /// The keys held back as a possible start of the sequence, given up:
    /// when the input ends, they were ordinary keys after all.
    pub fn held_back(&mut self) -> Vec<u8> {
        let held = self.keys[..self.matched].to_vec();
        self.matched = 0;
        held
    }

    /// Passes `input` on to `out`, except the detach sequence: `true` when
    /// it has been typed (what came before it is in `out`, nothing after).
    /// Keys that start the sequence are held back across calls, and given
    /// on if what follows turns out not to be the sequence.
    pub fn scan(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &byte in input {
            if byte == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return true;
                }
                continue;
            }
            // Not the sequence after all: what was held back was typed.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if byte == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return true;
                }
            } else {
                out.push(byte);
            }
        }
        false
    }
}
// ANCHOR_END: detach_keys

impl Default for DetachKeys {
    fn default() -> DetachKeys {
        DetachKeys {
            keys: vec![0x10, 0x11],
            matched: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(keys: &mut DetachKeys, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        for chunk in chunks {
            if keys.scan(chunk, &mut out) {
                return (out, true);
            }
        }
        (out, false)
    }

    #[test]
    fn the_default_is_ctrl_p_ctrl_q() {
        assert_eq!(
            DetachKeys::parse("ctrl-p,ctrl-q").unwrap(),
            DetachKeys::default()
        );
        assert_eq!(
            DetachKeys::parse("ctrl-@,a,ctrl-[").unwrap().keys,
            [0, b'a', 27]
        );
        for bad in ["", "ctrl-", "ctrl-1", "ab", "ctrl-pp", "é", " "] {
            assert!(DetachKeys::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_sequence_detaches_and_is_not_passed_on() {
        let mut keys = DetachKeys::default();
        assert_eq!(
            run(&mut keys, &[b"ls\r\x10", b"\x11after"]),
            (b"ls\r".to_vec(), true)
        );
    }

    #[test]
    fn a_start_of_the_sequence_that_goes_elsewhere_is_typed() {
        let mut keys = DetachKeys::default();
        assert_eq!(
            run(&mut keys, &[b"a\x10", b"b\x10\x10\x11"]),
            (b"a\x10b\x10".to_vec(), true)
        );
        let mut keys = DetachKeys::default();
        assert_eq!(run(&mut keys, &[b"\x10x"]), (b"\x10x".to_vec(), false));
        let mut single = DetachKeys::parse("ctrl-x").unwrap();
        assert_eq!(run(&mut single, &[b"ab\x18c"]), (b"ab".to_vec(), true));
    }
}
