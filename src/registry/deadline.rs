//! Time bounds of one request to a registry.
//!
//! Two clocks, because a hostile server can beat either alone. **A pause**:
//! the answer must begin (status and headers) within `--timeout`, and never
//! pause longer than that between bytes. **A deadline**: the whole answer
//! must have arrived within `--timeout` plus one second per [`MIN_RATE`]
//! bytes it is expected to carry, so a server that sends one byte every
//! few seconds, never pausing long enough for the first clock, still
//! cannot hold a pull forever.
//!
//! ureq enforces the deadline on the socket itself (`Request::timeout`),
//! and then no longer enforces a per-read timeout. So the waiting happens
//! on a helper thread, and the caller watches the pause: it waits for each
//! piece at most `--timeout` (plus [`HOLD`], for a body's pieces). A helper
//! given up on ends at the deadline at the latest, when ureq closes its
//! socket.

use std::io::Read;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// The slowest transfer accepted, in bytes per second (512 kbit/s): what
/// turns a size into a deadline.
pub const MIN_RATE: u64 = 64 << 10;

/// How much a helper thread hands over at a time, at most.
const PIECE: usize = 256 << 10;

/// A read at least this long says the body is streaming, not dripping.
const STREAMING: usize = 4 << 10;

/// A read that returns sooner found its bytes waiting: the next one goes
/// into the same piece. One that took longer waited for the server, and
/// its piece goes at once.
const QUICK: Duration = Duration::from_millis(1);

/// The longest a piece gathers quick reads. With the one read that may
/// follow them, the longest the reader waits beyond the server's own
/// silence, so its pause clock waits this much more than `--timeout`.
const HOLD: Duration = Duration::from_millis(50);

/// The time one request may take.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The longest pause: `--timeout`.
    pub pause: Duration,
    /// When the request started.
    pub started: Instant,
    /// The bytes the answer is expected to carry (at most).
    pub size: u64,
}

impl Budget {
    /// A budget for an answer of at most `size` bytes, starting now.
    pub fn new(pause: Duration, size: u64) -> Budget {
        Budget {
            pause,
            started: Instant::now(),
            size,
        }
    }

    /// The whole time allowed: the pause, plus a second per `MIN_RATE`.
    pub fn total(&self) -> Duration {
        self.pause + Duration::from_secs(self.size.div_ceil(MIN_RATE))
    }

    /// When the answer must be complete.
    pub fn deadline(&self) -> Instant {
        self.started + self.total()
    }

    /// The same budget for a smaller answer, once its length is known.
    pub fn narrowed_to(self, length: Option<u64>) -> Budget {
        Budget {
            size: length.map_or(self.size, |l| l.min(self.size)),
            ..self
        }
    }

    /// How long to wait for what comes next (a piece may come up to `held`
    /// after its first byte), or which clock ran out.
    fn wait(&self, held: Duration) -> Result<Duration, Late> {
        let left = self.deadline().saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(Late::Deadline(*self))
        } else {
            Ok(left.min(self.pause + held))
        }
    }

    /// Which clock ran out, when `waited` ended without an answer.
    fn late(&self, waited: Duration) -> Late {
        if waited < self.pause {
            Late::Deadline(*self)
        } else {
            Late::Paused(self.pause)
        }
    }
}

/// A clock that ran out.
#[derive(Debug, Clone, Copy)]
pub enum Late {
    /// Nothing came for this long.
    Paused(Duration),
    /// The answer was not complete within its budget.
    Deadline(Budget),
}

impl std::fmt::Display for Late {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Late::Paused(pause) => write!(
                f,
                "no answer within {} s (the registry stalled; --timeout SECS waits longer)",
                pause.as_secs()
            ),
            Late::Deadline(budget) => write!(
                f,
                "the answer was not complete within {} s, the most {} bytes may take (--timeout {} s, plus 1 s per {} KiB): the registry is too slow, or drips bytes to hold the connection",
                budget.total().as_secs(),
                budget.size,
                budget.pause.as_secs(),
                MIN_RATE >> 10
            ),
        }
    }
}

impl std::error::Error for Late {}

// ANCHOR: within
/// Runs `call` (a request, up to its status and headers) on a helper
/// thread, and waits for it as long as `budget` allows.
pub fn within<T: Send + 'static>(
    budget: &Budget,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, std::io::Error> {
    let wait = budget.wait(Duration::ZERO).map_err(std::io::Error::other)?;
    let (tx, rx) = sync_channel(1);
    std::thread::Builder::new()
        .name("registry-call".into())
        .spawn(move || {
            let _ = tx.send(call());
        })?;
    rx.recv_timeout(wait).map_err(|e| match e {
        RecvTimeoutError::Timeout => {
            std::io::Error::new(std::io::ErrorKind::TimedOut, budget.late(wait))
        }
        RecvTimeoutError::Disconnected => std::io::Error::other("the request's thread ended"),
    })
}
// ANCHOR_END: within

/// An answer's body, read on a helper thread and handed over piece by
/// piece under both clocks.
pub struct Watched {
    pieces: Receiver<std::io::Result<Vec<u8>>>,
    piece: Vec<u8>,
    at: usize,
    ended: bool,
    budget: Budget,
}

/// Starts reading `body` on a helper thread.
pub fn watch(body: impl Read + Send + 'static, budget: Budget) -> std::io::Result<Watched> {
    // Two pieces in flight at most: the helper waits for the reader.
    let (tx, rx) = sync_channel(2);
    std::thread::Builder::new()
        .name("registry-body".into())
        .spawn(move || pump(body, &tx))?;
    Ok(Watched {
        pieces: rx,
        piece: Vec::new(),
        at: 0,
        ended: false,
        budget,
    })
}

/// The helper: reads pieces until the end, an error, or nobody listens.
/// Each piece costs the reader a wake-up, so while the body streams (a
/// read brings a [`STREAMING`] chunk or more, as an HTTP client's buffer
/// gives them, and brings it at once) the next read goes into the same
/// piece, up to [`PIECE`] or for [`HOLD`] at most. A short read, as from a
/// server that drips, or one that had to wait for the server, is handed
/// over at once: no byte is held while the server is silent for longer
/// than one read.
fn pump(mut body: impl Read, tx: &SyncSender<std::io::Result<Vec<u8>>>) {
    let mut buf = vec![0; PIECE];
    let mut failed = None;
    loop {
        let mut filled = 0;
        let mut first = None;
        let read = match failed.take() {
            Some(e) => Err(e),
            None => loop {
                let asked = Instant::now();
                match body.read(&mut buf[filled..]) {
                    Ok(n) => {
                        filled += n;
                        let gathered = *first.get_or_insert(asked);
                        if n < STREAMING
                            || filled == PIECE
                            || asked.elapsed() >= QUICK
                            || gathered.elapsed() >= HOLD
                        {
                            break Ok(buf[..filled].to_vec());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // What came before the error goes first, then the error.
                    Err(e) if filled > 0 => {
                        failed = Some(e);
                        break Ok(buf[..filled].to_vec());
                    }
                    Err(e) => break Err(e),
                }
            },
        };
        let last = !matches!(&read, Ok(p) if !p.is_empty());
        if tx.send(read).is_err() || last {
            return;
        }
    }
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.piece.len() {
            if self.ended {
                return Ok(0);
            }
            let wait = self.budget.wait(HOLD).map_err(std::io::Error::other)?;
            match self.pieces.recv_timeout(wait) {
                Ok(Ok(piece)) if piece.is_empty() => {
                    self.ended = true;
                    return Ok(0);
                }
                Ok(Ok(piece)) => (self.piece, self.at) = (piece, 0),
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        self.budget.late(wait),
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(std::io::Error::other("the body's reader ended"));
                }
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The clock that ran out inside `error`, if one did.
pub fn late_in(error: &(dyn std::error::Error + 'static)) -> Option<Late> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(late) = e.downcast_ref::<Late>() {
            return Some(*late);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(late) = io.get_ref().and_then(|i| late_in(i)) {
                return Some(late);
            }
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that sends a byte, then waits `every`, forever.
    struct Drip(Duration);

    impl Read for Drip {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.0);
            buf[0] = b'x';
            Ok(1)
        }
    }

    /// A body that gives `left` bytes in reads of at most `chunk`, each
    /// after `gap`, then fails with `error` if given, else ends.
    struct Chunks {
        left: usize,
        chunk: usize,
        gap: Duration,
        error: Option<std::io::ErrorKind>,
    }

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return match self.error {
                    Some(kind) => Err(kind.into()),
                    None => Ok(0),
                };
            }
            std::thread::sleep(self.gap);
            let n = buf.len().min(self.chunk).min(self.left);
            buf[..n].fill(b'x');
            self.left -= n;
            Ok(n)
        }
    }

    fn pieces(body: Chunks) -> Vec<std::io::Result<usize>> {
        let (tx, rx) = sync_channel(1000);
        pump(body, &tx);
        drop(tx);
        rx.iter().map(|r| r.map(|p| p.len())).collect()
    }

    #[test]
    fn a_streaming_body_goes_in_large_pieces_and_a_drip_byte_by_byte() {
        let sizes = |body| -> Vec<String> {
            pieces(body)
                .into_iter()
                .map(|r| r.map_or_else(|e| format!("{:?}", e.kind()), |n| n.to_string()))
                .collect()
        };
        let body = |left, chunk, gap, error| Chunks {
            left,
            chunk,
            gap,
            error,
        };
        let at_once = Duration::ZERO;
        // 75 reads in a few pieces (a preempted read may end one early).
        let streamed = sizes(body(600 << 10, 8 << 10, at_once, None));
        let bytes: Vec<usize> = streamed.iter().filter_map(|s| s.parse().ok()).collect();
        assert_eq!(bytes.iter().sum::<usize>(), 600 << 10, "{streamed:?}");
        assert!(
            bytes.len() <= 10 && bytes.iter().all(|&n| n <= PIECE),
            "{streamed:?}"
        );
        assert_eq!(bytes.last(), Some(&0), "{streamed:?}");
        assert_eq!(sizes(body(3, 1, at_once, None)), ["1", "1", "1", "0"]);
        // Full reads that each wait for the server (bursts with gaps
        // shorter than --timeout) go one by one: none is held in a gap.
        let bursts = body(24 << 10, 8 << 10, Duration::from_millis(20), None);
        assert_eq!(sizes(bursts), ["8192", "8192", "8192", "0"]);
        // The bytes before an error are handed over, then the error.
        let reset = Some(std::io::ErrorKind::ConnectionReset);
        let broken = sizes(body(40 << 10, 8 << 10, at_once, reset));
        let bytes: usize = broken.iter().filter_map(|s| s.parse::<usize>().ok()).sum();
        assert!(
            bytes == 40 << 10 && broken.last().map(String::as_str) == Some("ConnectionReset"),
            "{broken:?}"
        );
    }

    #[test]
    fn a_drip_meets_the_deadline_and_a_silence_the_pause() {
        let budget = Budget::new(Duration::from_millis(300), 0);
        let mut drip = watch(Drip(Duration::from_millis(20)), budget).unwrap();
        let err = std::io::copy(&mut drip, &mut std::io::sink()).unwrap_err();
        assert!(matches!(late_in(&err), Some(Late::Deadline(_))), "{err}");
        let budget = Budget::new(Duration::from_millis(100), 10 << 20);
        let mut silent = watch(Drip(Duration::from_secs(5)), budget).unwrap();
        let err = std::io::copy(&mut silent, &mut std::io::sink()).unwrap_err();
        assert!(matches!(late_in(&err), Some(Late::Paused(_))), "{err}");
        let whole = watch(&b"hello"[..], budget).unwrap();
        let mut text = String::new();
        { whole }.read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello");
    }
}
