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

/// The line a failed command prints on standard error: `strata: ` and the error followed by
/// each of its causes. `{:#}` walks the chain, and no error of the workspace repeats its
/// source in its own message, so each cause appears once.
pub fn failure(e: &anyhow::Error) -> String {
    format!("strata: {e:#}")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const ENOSPC: i32 = 28;

    #[test]
    fn a_failure_caused_by_enospc_prints_the_cause_once() {
        let cause = std::io::Error::from_raw_os_error(ENOSPC).to_string();
        // As `diff` fails when standard output is full: the contract's I/O error, with the
        // command's context on top.
        let e = anyhow::Error::new(storage_core::Error::io(
            "write the tar stream",
            std::io::Error::from_raw_os_error(ENOSPC),
        ))
        .context("diff layer abc");
        let line = failure(&e);
        assert_eq!(
            line,
            format!("strata: diff layer abc: write the tar stream: {cause}")
        );
        assert_eq!(line.matches(&cause).count(), 1, "{line}");
    }

    #[test]
    fn a_failure_nested_through_wrapped_io_errors_prints_the_cause_once() {
        let cause = std::io::Error::from_raw_os_error(ENOSPC).to_string();
        let disk = storage_core::Error::io(
            "I/O error in /x/layer.vhd: writing block 3",
            std::io::Error::from_raw_os_error(ENOSPC),
        );
        let wrapped = storage_core::Error::io("apply layer abc", std::io::Error::other(disk));
        let line = failure(&anyhow::Error::new(wrapped).context("import layer abc"));
        assert_eq!(line.matches(&cause).count(), 1, "{line}");
        assert!(line.contains("/x/layer.vhd"), "{line}");
    }
}
