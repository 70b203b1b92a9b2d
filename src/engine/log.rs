//! A container's output, kept as Docker's `json-file` log driver keeps it.
//!
//! One JSON object per line, per piece of output:
//!
//! ```text
//! {"log":"hello\n","stream":"stdout","time":"2026-12-02T10:00:00.123456789Z"}
//! ```
//!
//! The shim writes it (the only writer); the daemon reads it for `logs` and
//! `attach`, following it as it grows. Lines are split where the program
//! wrote a newline; a piece without one is kept until it has one, or until
//! 16 KiB of it pile up (Docker's limit too), or the stream ends. Why a
//! format and not raw files: each piece keeps which stream it came from and
//! when, so stdout and stderr interleave in the order they were written.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The longest piece kept waiting for its newline.
const MAX_PARTIAL: usize = 16 * 1024;

/// The most a reader takes from the file at once: room for a few lines of
/// the longest kind, and a bound on the daemon's memory per reader,
/// whatever the log's size (a client asks for more by asking again).
const READ_CHUNK: u64 = 1 << 20;

/// Which of the container's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
}

impl Stream {
    /// The stream's number in Docker's multiplexed frames.
    pub fn frame_id(self) -> u8 {
        match self {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The output (invalid UTF-8 replaced, as Docker does).
    pub log: String,
    /// Which stream.
    pub stream: Stream,
    /// When the shim read it, RFC 3339 with nanoseconds.
    pub time: String,
}

impl Entry {
    /// Its time in ns since the epoch (`logs --since`), if it reads as
    /// RFC 3339.
    pub fn nanos(&self) -> Option<u128> {
        let at = humantime::parse_rfc3339(&self.time).ok()?;
        Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos())
    }
}

// ANCHOR: log_writer
/// The shim's end: turns what the container writes into log lines.
#[derive(Debug)]
pub struct Writer {
    file: File,
    partial: [Vec<u8>; 2],
}

impl Writer {
    /// Appends to the log at `path` (created if missing).
    pub fn open(path: &Path) -> std::io::Result<Writer> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(Writer {
            file,
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Takes a piece of `stream`'s output, writing each line it completes.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) -> std::io::Result<()> {
        let i = usize::from(stream == Stream::Stderr);
        self.partial[i].extend_from_slice(bytes);
        while let Some(end) = self.partial[i].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[i].drain(..=end).collect();
            self.append(stream, &line)?;
        }
        if self.partial[i].len() >= MAX_PARTIAL {
            let piece = std::mem::take(&mut self.partial[i]);
            self.append(stream, &piece)?;
        }
        Ok(())
    }

    /// Writes what waits for a newline: the streams have ended.
    pub fn flush(&mut self) -> std::io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let i = usize::from(stream == Stream::Stderr);
            let piece = std::mem::take(&mut self.partial[i]);
            if !piece.is_empty() {
                self.append(stream, &piece)?;
            }
        }
        Ok(())
    }

    fn append(&mut self, stream: Stream, bytes: &[u8]) -> std::io::Result<()> {
        let entry = Entry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream,
            time: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        };
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write(2) per line on an O_APPEND file: a reader sees whole
        // lines or none of one.
        self.file.write_all(&line)
    }
}
// ANCHOR_END: log_writer

/// The daemon's end: reads complete lines from `offset` on, at most
/// [`READ_CHUNK`] bytes of them, and returns them with the offset after
/// the last one; call it again from there for more (no entries: the end,
/// for now). A line that does not parse is skipped (the log is ours; a
/// torn last line waits for its end).
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<Entry>, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(offset))?;
    (&mut file).take(READ_CHUNK).read_to_end(&mut bytes)?;
    let mut entries = Vec::new();
    let mut used = 0;
    while let Some(end) = bytes[used..].iter().position(|b| *b == b'\n') {
        let line = &bytes[used..used + end];
        used += end + 1;
        if let Ok(entry) = serde_json::from_slice::<Entry>(line) {
            entries.push(entry);
        }
    }
    if used == 0 && bytes.len() as u64 == READ_CHUNK {
        // A whole chunk without a line end is no line of ours: step over
        // it, so a reader is never stuck in front of it.
        used = bytes.len();
    }
    Ok((entries, offset + used as u64))
}

/// Where a reader of only what comes next starts (`attach`): just past the
/// log's last whole line, so a line being written now is read whole, as
/// one of the next ones. A missing log ends at 0.
pub fn end_of_lines(path: &Path) -> std::io::Result<u64> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    // A line of ours is far shorter than a chunk (the writer cuts long
    // output into pieces), so the last line end is in the last chunk.
    let tail = len.min(READ_CHUNK);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(len - tail))?;
    (&mut file).take(tail).read_to_end(&mut bytes)?;
    Ok(match bytes.iter().rposition(|b| *b == b'\n') {
        Some(at) => len - tail + at as u64 + 1,
        None => len - tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_stream_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = Writer::open(&path).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"lo\nwor").unwrap();
        let (first, offset) = read_from(&path, 0).unwrap();
        let logs: Vec<(&str, Stream)> = first.iter().map(|e| (&e.log[..], e.stream)).collect();
        assert_eq!(
            logs,
            [("oops\n", Stream::Stderr), ("hello\n", Stream::Stdout)]
        );
        w.flush().unwrap();
        let (rest, _) = read_from(&path, offset).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].log, "wor");
        assert!(rest[0].time.ends_with('Z'), "{}", rest[0].time);
    }

    #[test]
    fn a_long_line_is_cut_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = Writer::open(&path).unwrap();
        w.write(Stream::Stdout, &vec![b'x'; MAX_PARTIAL + 10])
            .unwrap();
        let (entries, _) = read_from(&path, 0).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].log.len(), MAX_PARTIAL + 10);
    }

    #[test]
    fn a_large_log_is_read_a_chunk_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = Writer::open(&path).unwrap();
        let line = [b'y'; 1000];
        for _ in 0..3000 {
            w.write(Stream::Stdout, &line).unwrap();
            w.write(Stream::Stdout, b"\n").unwrap();
        }
        let (mut offset, mut total) = (0, 0);
        loop {
            let (entries, next) = read_from(&path, offset).unwrap();
            assert!(next - offset <= READ_CHUNK);
            if entries.is_empty() {
                break;
            }
            total += entries.len();
            offset = next;
        }
        assert_eq!(total, 3000);
        // Garbage without a line end is stepped over, not stuck on.
        std::fs::write(&path, vec![b'z'; 3 * READ_CHUNK as usize]).unwrap();
        let (entries, next) = read_from(&path, 0).unwrap();
        assert!(entries.is_empty() && next == READ_CHUNK);
    }

    #[test]
    fn what_comes_next_starts_after_the_last_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        assert_eq!(end_of_lines(&path).unwrap(), 0);
        let mut w = Writer::open(&path).unwrap();
        w.write(Stream::Stdout, b"before\n").unwrap();
        let whole = std::fs::metadata(&path).unwrap().len();
        assert_eq!(end_of_lines(&path).unwrap(), whole);
        // A line caught half written is read whole, after the mark.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(br#"{"log":"after\n","stream":"#).unwrap();
        let mark = end_of_lines(&path).unwrap();
        assert_eq!(mark, whole);
        file.write_all(b"\"stdout\",\"time\":\"t\"}\n").unwrap();
        let (next, _) = read_from(&path, mark).unwrap();
        let logs: Vec<&str> = next.iter().map(|e| &e.log[..]).collect();
        assert_eq!(logs, ["after\n"]);
    }
}
