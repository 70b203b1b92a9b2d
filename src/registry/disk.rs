//! Disk space for a pull: how many bytes it may write, and whether the
//! store's filesystem has room for them (statvfs(3)).
//!
//! A manifest says how big its blobs are, and the store refuses a blob of
//! another size; but a hostile manifest may simply claim terabytes. So a
//! pull adds up what it will download before the first byte, refuses more
//! than `--max-pull-size`, and refuses what would leave the filesystem
//! (which the store shares with everything else under `/var/lib`) nearly
//! full. While blobs come in, something else may fill the disk too: every
//! [`CHECK_EVERY`] bytes the free space is looked at again.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::RegistryError;

/// `--max-pull-size` when not given: more than any common image.
pub const DEFAULT_MAX_PULL: u64 = 16 << 30;

/// What must stay free on the store's filesystem: 64 MiB, or a twentieth
/// of a small filesystem.
pub const KEEP_FREE: u64 = 64 << 20;

/// How many bytes pass between two looks at the free space.
pub const CHECK_EVERY: u64 = 1 << 20;

/// Bytes as a person reads them: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let (mut value, mut unit) = (bytes as f64, 0);
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// (free bytes, bytes to keep free) on the filesystem of `dir`.
fn free_space(dir: &Path) -> Result<(u64, u64), RegistryError> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|e| RegistryError::Disk {
        dir: dir.display().to_string(),
        why: format!("statvfs: {e}"),
    })?;
    let block = stat.fragment_size() as u64;
    // f_bavail: what an unprivileged user may still use; root's reserve
    // (ext4's 5 %) stays for root.
    let free = (stat.blocks_available() as u64).saturating_mul(block);
    let size = (stat.blocks() as u64).saturating_mul(block);
    Ok((free, KEEP_FREE.min(size / 20)))
}

// ANCHOR: room
/// The bytes a pull is about to write under `dir`.
pub struct Room {
    dir: PathBuf,
    /// Bytes still to come.
    left: AtomicU64,
}

impl Room {
    /// Checks `needs` bytes against `max` (`--max-pull-size`) and against
    /// the free space under `dir`, before any is downloaded.
    pub fn claim(dir: &Path, needs: u64, max: u64) -> Result<Room, RegistryError> {
        if needs > max {
            return Err(RegistryError::TooBig {
                needs: human(needs),
                max: human(max),
            });
        }
        // Nothing to download (a second pull): nothing to make room for.
        let (free, keep) = if needs == 0 { (0, 0) } else { free_space(dir)? };
        if free < needs.saturating_add(keep) {
            return Err(RegistryError::Disk {
                dir: dir.display().to_string(),
                why: format!(
                    "not enough free space: the pull needs {}, {} are free and {} must stay free; free some, or pull into a --root on another disk",
                    human(needs),
                    human(free),
                    human(keep)
                ),
            });
        }
        Ok(Room {
            dir: dir.to_path_buf(),
            left: AtomicU64::new(needs),
        })
    }

    /// `body`, whose bytes count against the room claimed; it fails when
    /// the filesystem no longer has room for what is still to come.
    pub fn guard<R: Read>(&self, body: R) -> Guarded<'_, R> {
        Guarded {
            room: self,
            body,
            since_check: 0,
        }
    }

    fn check(&self) -> std::io::Result<()> {
        let left = self.left.load(Ordering::Relaxed);
        let (free, keep) = free_space(&self.dir).map_err(std::io::Error::other)?;
        // Half the reserve may go to the filesystem's own overhead.
        if free < left.saturating_add(keep / 2) {
            return Err(std::io::Error::other(NoRoom(format!(
                "free space fell to {} while {} were still to come: something else is filling the disk; free some and pull again",
                human(free),
                human(left)
            ))));
        }
        Ok(())
    }
}
// ANCHOR_END: room

/// The filesystem filled up during a pull.
#[derive(Debug)]
pub struct NoRoom(pub String);

impl std::fmt::Display for NoRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoRoom {}

/// See [`Room::guard`].
pub struct Guarded<'a, R> {
    room: &'a Room,
    body: R,
    since_check: u64,
}

impl<R: Read> Read for Guarded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.body.read(buf)?;
        let _ = self
            .room
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                Some(l.saturating_sub(n as u64))
            });
        self.since_check += n as u64;
        if self.since_check >= CHECK_EVERY {
            self.since_check = 0;
            self.room.check()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_bounded_and_checked() {
        let dir = std::env::temp_dir();
        assert!(matches!(
            Room::claim(&dir, 2 << 20, 1 << 20),
            Err(RegistryError::TooBig { .. })
        ));
        let err = Room::claim(&dir, 1 << 60, u64::MAX).err().unwrap();
        assert!(err.to_string().contains("not enough free space"), "{err}");
        let room = Room::claim(&dir, 1 << 20, u64::MAX).unwrap();
        // Pretend far more is still to come than the disk holds.
        room.left.store(1 << 60, Ordering::Relaxed);
        let big = vec![0u8; 2 << 20];
        let err = std::io::copy(&mut room.guard(&big[..]), &mut std::io::sink()).unwrap_err();
        assert!(err.to_string().contains("fell to"), "{err}");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
