//! sha256 digests: the names of content-addressed blobs (`sha256:<hex>`).

use std::io::Read;

use sha2::{Digest as _, Sha256};

/// Checks `sha256:<64 hex>` and returns the hex part.
pub fn hex_of(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then_some(hex)
}

/// A reader that hashes what passes through it and counts the bytes.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    /// Bytes read so far.
    pub count: u64,
}

impl<R: Read> Hashing<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest (so the digest covers everything), then returns
    /// `sha256:<hex>`. The rest is read without a bound: a decompressed
    /// layer is drained through [`super::bounded`] first.
    pub fn finish(mut self) -> std::io::Result<String> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok(format!("sha256:{:x}", self.hasher.finalize()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let d = Hashing::new(&b"hello"[..]).finish().unwrap();
        assert_eq!(
            d,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(hex_of(&d).is_some());
        assert!(hex_of("sha256:abc").is_none());
        assert!(
            hex_of("md5:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
                .is_none()
        );
    }
}
