//! Bounds on decompressing one layer, in bytes and in time.
//!
//! A layer is a compressed tar stream, and its diff_id is the digest of the
//! whole decompressed stream, so checking it means reading the stream to its
//! very end, past the tar archive's end-of-archive marker. A hostile (or
//! broken) layer can end its tar early and go on with gigabytes of zeros,
//! which compress to almost nothing (zstd stores 128 KiB of one byte in 4).
//! Bounding file contents (see [`super::unpack::Bounds`]) does not stop that
//! drain. So every decompressed byte of a layer passes through [`Bounded`],
//! which counts them and watches the clock, and what follows the archive's
//! end is bounded much more tightly ([`MAX_AFTER_END`]): a tar writer pads
//! its last record to 10 KiB, nothing more.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;
use std::time::{Duration, Instant};

// ANCHOR: layer_limits
/// At most this many decompressed bytes after the tar's end-of-archive
/// marker (GNU tar pads to a 10 KiB record; 1 MiB leaves room for odd
/// blocking factors).
pub const MAX_AFTER_END: u64 = 1 << 20;

/// At most this long to decompress, unpack and hash one layer.
pub const MAX_TIME: Duration = Duration::from_secs(10 * 60);
// ANCHOR_END: layer_limits

/// Which bound a layer broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// More decompressed bytes than the bound in all.
    Bytes(u64),
    /// More decompressed bytes after the archive's end than the bound.
    AfterEnd(u64),
    /// Longer than the bound.
    Time(Duration),
}

impl std::fmt::Display for Hit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hit::Bytes(max) => write!(
                f,
                "it decompresses to more than {} MiB (a decompression bomb?)",
                max >> 20
            ),
            Hit::AfterEnd(max) => write!(
                f,
                "its stream goes on for more than {} KiB after the end of its tar archive",
                max >> 10
            ),
            Hit::Time(max) => write!(f, "decompressing it took longer than {} s", max.as_secs()),
        }
    }
}

// ANCHOR: bounded
/// A decompressed layer stream that fails once it has given more than
/// `max_bytes` bytes or run longer than `max_time`, and remembers which
/// bound it hit (the error itself may be wrapped by the tar reader).
pub struct Bounded<R> {
    inner: R,
    read: u64,
    max_bytes: u64,
    started: Instant,
    max_time: Duration,
    hit: Rc<Cell<Option<Hit>>>,
}

impl<R: Read> Bounded<R> {
    /// Wraps `inner`; the clock starts now.
    pub fn new(inner: R, max_bytes: u64, max_time: Duration) -> Bounded<R> {
        Bounded {
            inner,
            read: 0,
            max_bytes,
            started: Instant::now(),
            max_time,
            hit: Rc::new(Cell::new(None)),
        }
    }

    /// Where the bound that was hit, if any, can be read later.
    pub fn hit(&self) -> Rc<Cell<Option<Hit>>> {
        self.hit.clone()
    }

    fn fail(&self, hit: Hit) -> std::io::Error {
        self.hit.set(Some(hit));
        std::io::Error::other(hit.to_string())
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.started.elapsed() > self.max_time {
            return Err(self.fail(Hit::Time(self.max_time)));
        }
        // Never ask for more than one byte past the bound.
        let room = self.max_bytes.saturating_sub(self.read).saturating_add(1);
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n as u64;
        if self.read > self.max_bytes {
            return Err(self.fail(Hit::Bytes(self.max_bytes)));
        }
        Ok(n)
    }
}

/// Reads what follows the archive's end from `stream` (so a digest over it
/// covers the whole stream), refusing more than [`MAX_AFTER_END`] bytes.
pub fn drain_after_end(stream: &mut impl Read, hit: &Cell<Option<Hit>>) -> std::io::Result<()> {
    let drained = std::io::copy(&mut stream.take(MAX_AFTER_END + 1), &mut std::io::sink())?;
    if drained > MAX_AFTER_END {
        hit.set(Some(Hit::AfterEnd(MAX_AFTER_END)));
        return Err(std::io::Error::other(
            Hit::AfterEnd(MAX_AFTER_END).to_string(),
        ));
    }
    Ok(())
}
// ANCHOR_END: bounded

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bytes_than_the_bound_fail_and_say_so() {
        let zeros = std::io::repeat(0).take(10_000);
        let mut bounded = Bounded::new(zeros, 4096, MAX_TIME);
        let hit = bounded.hit();
        let err = std::io::copy(&mut bounded, &mut std::io::sink()).unwrap_err();
        assert_eq!(hit.get(), Some(Hit::Bytes(4096)));
        assert!(
            err.to_string().contains("decompresses to more than"),
            "{err}"
        );
        let mut exact = Bounded::new(std::io::repeat(0).take(4096), 4096, MAX_TIME);
        assert_eq!(
            std::io::copy(&mut exact, &mut std::io::sink()).unwrap(),
            4096
        );
    }

    #[test]
    fn a_spent_time_bound_fails_the_next_read() {
        let mut bounded = Bounded::new(&b"data"[..], 4096, Duration::ZERO);
        let hit = bounded.hit();
        std::thread::sleep(Duration::from_millis(2));
        assert!(bounded.read(&mut [0; 4]).is_err());
        assert_eq!(hit.get(), Some(Hit::Time(Duration::ZERO)));
    }

    #[test]
    fn only_a_little_may_follow_the_archive() {
        let hit = Cell::new(None);
        drain_after_end(&mut std::io::repeat(0).take(10_240), &hit).unwrap();
        assert_eq!(hit.get(), None);
        let mut endless = std::io::repeat(0);
        assert!(drain_after_end(&mut endless, &hit).is_err());
        assert_eq!(hit.get(), Some(Hit::AfterEnd(MAX_AFTER_END)));
    }
}
