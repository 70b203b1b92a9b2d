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

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

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
    frame: Option<StreamingDecoder<Shared<BufReader<R>>, FrameDecoder>>,
    /// The decoder of the last frame, for the next one.
    spare: Option<FrameDecoder>,
}

/// An empty zstd frame: magic, a single-segment header of content size 0,
/// one empty last block.
const EMPTY_FRAME: [u8; 9] = [0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00];

/// A decoder that has decoded [`EMPTY_FRAME`]: from then on, ruzstd checks
/// every frame's window against its limit (100 MiB), which it skips for a
/// decoder's very first frame. A frame claiming a window of gigabytes would
/// otherwise make it allocate that much: a decompression bomb of its own.
fn primed_decoder() -> std::io::Result<FrameDecoder> {
    let mut decoder = FrameDecoder::new();
    decoder
        .init(&EMPTY_FRAME[..])
        .map_err(|e| std::io::Error::other(format!("zstd: {e}")))?;
    Ok(decoder)
}

impl<R: Read> Zstd<R> {
    fn new(inner: R) -> Zstd<R> {
        Zstd {
            source: Rc::new(RefCell::new(BufReader::new(inner))),
            frame: None,
            spare: None,
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
                // This frame is done; another may follow.
                if let Some(done) = self.frame.take() {
                    self.spare = Some(done.into_frame_decoder());
                }
            }
            if self.source.borrow_mut().fill_buf()?.is_empty() {
                return Ok(0);
            }
            let decoder = match self.spare.take() {
                Some(d) => d,
                None => primed_decoder()?,
            };
            match StreamingDecoder::new_with_decoder(Shared(self.source.clone()), decoder) {
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
    fn a_frame_claiming_a_huge_window_is_refused() {
        // Magic, a header without single segment, window descriptor
        // exponent 21 (a 2 GiB window), then a raw last block of 1 byte.
        let bomb = [
            0x28,
            0xb5,
            0x2f,
            0xfd,
            0x00,
            21 << 3,
            0x09,
            0x00,
            0x00,
            b'x',
        ];
        let mut out = Vec::new();
        let result = tar_stream("application/vnd.oci.image.layer.v1.tar+zstd", &bomb[..])
            .unwrap()
            .read_to_end(&mut out);
        let error = result.unwrap_err().to_string();
        assert!(error.to_lowercase().contains("window"), "{error}");
        // Two frames in a row, the empty one first, decode as one stream.
        let mut two = EMPTY_FRAME.to_vec();
        two.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x01, 0x09, 0x00, 0x00, b'y']);
        out.clear();
        tar_stream("application/vnd.oci.image.layer.v1.tar+zstd", &two[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"y");
    }

    #[test]
    fn unknown_compression_is_refused() {
        assert!(tar_stream("application/vnd.oci.image.layer.v1.tar+lz4", &b""[..]).is_err());
    }
}
