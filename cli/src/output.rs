//! How results are printed: JSON for `--json`, plain lines otherwise. Both go through
//! one buffer, so a listing of thousands of rows costs a few `write`s, not one a line.
//!
//! A reader that closes standard output early (`strata layers | head`) is not a failure:
//! writes then fail with [`Closed`], which `main` turns into a quiet success, as the
//! tools that die of `SIGPIPE` there end quietly.

use std::io::{BufWriter, StdoutLock, Write};

use anyhow::{Context as _, Result};
use serde::Serialize;

/// Standard output was closed by its reader.
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed by its reader")
    }
}

impl std::error::Error for Closed {}

/// Whether `e` is, or was caused by, [`Closed`].
pub fn closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Closed>())
}

/// The error of a failed write to standard output: [`Closed`] for a broken pipe.
pub fn write_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(Closed)
    } else {
        anyhow::Error::new(e).context("write standard output")
    }
}

/// Standard output behind a buffer; call [`finish`] when done to see write errors.
pub fn buffered() -> BufWriter<StdoutLock<'static>> {
    BufWriter::with_capacity(1 << 16, std::io::stdout().lock())
}

/// Flushes what [`buffered`] holds.
pub fn finish(mut out: BufWriter<StdoutLock<'static>>) -> Result<()> {
    out.flush().map_err(write_error)
}

/// Prints `value` as compact JSON on standard output, one line, as containers-storage
/// does (`jq` makes it pretty).
///
/// The JSON is made in memory and written at once: serde writes each key and value as
/// several small pieces, which a `Vec` takes for far less than a buffered writer does.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut text = Vec::with_capacity(1 << 16);
    serde_json::to_writer(&mut text, value).context("serialise the output as JSON")?;
    text.push(b'\n');
    let mut out = std::io::stdout().lock();
    out.write_all(&text)
        .and_then(|()| out.flush())
        .map_err(write_error)
}
