//! Progress of a pull or a push: one bar per blob on a terminal
//! (`indicatif`), plain lines otherwise (a pipe, a log, a test). The same
//! events either way, so what a test reads is what a terminal shows.

use std::io::{IsTerminal, Read};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Where progress goes.
pub enum Progress {
    /// One line per event on stderr.
    Lines,
    /// Bars on a terminal.
    Bars(MultiProgress),
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise.
    pub fn for_stderr() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Bars(MultiProgress::new())
        } else {
            Progress::Lines
        }
    }

    /// One event that is not a blob's (e.g. the platform chosen).
    pub fn line(&self, text: &str) {
        match self {
            Progress::Lines => eprintln!("{text}"),
            Progress::Bars(bars) => {
                let _ = bars.println(text);
            }
        }
    }

    /// The start of a blob's transfer of `size` bytes, named `what`.
    pub fn blob(&self, what: &str, size: u64) -> Blob {
        let bar = match self {
            Progress::Lines => None,
            Progress::Bars(bars) => {
                let bar = bars.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:<20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_prefix(what.chars().take(20).collect::<String>());
                Some((bar, bars.clone()))
            }
        };
        Blob { bar }
    }
}

/// One blob's transfer.
pub struct Blob {
    bar: Option<(ProgressBar, MultiProgress)>,
}

impl Blob {
    /// `n` more bytes went through.
    pub fn advance(&self, n: u64) {
        if let Some((bar, _)) = &self.bar {
            bar.inc(n);
        }
    }

    /// The transfer ended; `text` says how. On a terminal the bar gives
    /// way to that same line.
    pub fn done(self, text: &str) {
        match self.bar {
            None => eprintln!("{text}"),
            Some((bar, bars)) => {
                bar.finish_and_clear();
                let _ = bars.println(text);
            }
        }
    }

    /// A reader that advances this blob's progress as `inner` is read.
    pub fn reader<R: Read>(&self, inner: R) -> Counting<'_, R> {
        Counting { inner, blob: self }
    }
}

/// See [`Blob::reader`].
pub struct Counting<'a, R> {
    inner: R,
    blob: &'a Blob,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.blob.advance(n as u64);
        Ok(n)
    }
}
