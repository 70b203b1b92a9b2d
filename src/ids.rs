//! Random ids, as Docker makes them: a container's id is 64 hexadecimal
//! digits, its default host name (and caixa's step binaries' id) the first 12.
//!
//! One generator for the whole crate, on the `getrandom` crate (getrandom(2),
//! or `/dev/urandom` on kernels without it).

use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// `bytes` random bytes from the kernel, as `2 * bytes` lower-case
/// hexadecimal digits.
///
/// The kernel's source only fails on a system without getrandom(2) and
/// without `/dev/urandom`; an id is still needed there, so the digits then
/// come from a hash of the time, the pid and a counter: unique, not secret.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        fill_from_clock(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fallback of [`random_hex`]: SHA-256 blocks of (time, pid, counter).
fn fill_from_clock(buf: &mut [u8]) {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    for (block, chunk) in buf.chunks_mut(32).enumerate() {
        let digest = Sha256::new()
            .chain_update(nanos.to_le_bytes())
            .chain_update(std::process::id().to_le_bytes())
            .chain_update(call.to_le_bytes())
            .chain_update(block.to_le_bytes())
            .finalize();
        chunk.copy_from_slice(&digest[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_of_the_length_asked() {
        for bytes in [6, 32] {
            let id = random_hex(bytes);
            assert_eq!(id.len(), 2 * bytes, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert_ne!(id, random_hex(bytes));
        }
    }

    #[test]
    fn the_fallback_differs_call_to_call_and_fills_long_buffers() {
        let (mut a, mut b) = ([0u8; 40], [0u8; 40]);
        fill_from_clock(&mut a);
        fill_from_clock(&mut b);
        assert_ne!(a, b);
        assert_ne!(a[32..], [0u8; 8]);
    }
}
