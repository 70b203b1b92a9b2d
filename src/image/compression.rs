//! A layer's bytes as a tar stream: plain, gzip or zstd.
//!
//! The media type says which (`…tar`, `…tar+gzip`, `…tar+zstd`). Both
//! decoders are pure Rust (`flate2` with its Rust backend, `ruzstd`), so the
//! step binaries stay easy to build statically and nothing of C parses what
//! came from elsewhere. A zstd layer may hold several frames one after the
//! other, and *skippable* frames (metadata other tools ignore, e.g. the
//! table of contents of `zstd:chunked`); all are read here in order.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read};
use std::rc::Rc;

use ruzstd::decoding::StreamingDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};

use super::ImageError;

// ANCHOR: tar_stream
/// The tar stream inside `file`, a layer of media type `media_type`.
pub fn tar_stream<'a>(
    media_type: &str,
    file: impl Read + 'a,
) -> Result<Box<dyn Read + 'a>, ImageError> {
    if media_type.ends_with("gzip") {
        Ok(Box::new(flate2::read::GzDecoder::new(file)))
    } else if media_type.ends_with("zstd") {
        Ok(Box::new(Zstd::new(file)))
    } else if media_type.ends_with("tar") {
        Ok(Box::new(file))
    } else {
        Err(ImageError::MediaType(media_type.to_string()))
    }
}
// ANCHOR_END: tar_stream

/// The source, shared between successive frame decoders (each owns its
/// reader, and a failed start must not lose it).
struct Shared<R>(Rc<RefCell<R>>);

impl<R: Read> Read for Shared<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

/// A zstd stream of any number of frames, decoded.
struct Zstd<R: Read> {
    source: Rc<RefCell<BufReader<R>>>,
    frame: Option<StreamingDecoder<Shared<BufReader<R>>, ruzstd::decoding::FrameDecoder>>,
}

impl<R: Read> Zstd<R> {
    fn new(inner: R) -> Zstd<R> {
        Zstd {
            source: Rc::new(RefCell::new(BufReader::new(inner))),
            frame: None,
        }
    }
}

impl<R: Read> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(frame) = &mut self.frame {
                let n = frame.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.frame = None; // this frame is done; another may follow
            }
            if self.source.borrow_mut().fill_buf()?.is_empty() {
                return Ok(0);
            }
            match StreamingDecoder::new(Shared(self.source.clone())) {
                Ok(frame) => self.frame = Some(frame),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let mut source = self.source.borrow_mut();
                    let skipped = std::io::copy(
                        &mut (&mut *source).take(u64::from(length)),
                        &mut std::io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("zstd: {e}"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_compression_is_refused() {
        assert!(tar_stream("application/vnd.oci.image.layer.v1.tar+lz4", &b""[..]).is_err());
    }
}
