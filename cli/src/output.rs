//! How results are printed: JSON for `--json`, plain lines otherwise. Both go through
//! one buffer, so a listing of thousands of rows costs a few `write`s, not one a line.

use std::io::{BufWriter, StdoutLock, Write};

use anyhow::{Context as _, Result};
use serde::Serialize;

/// Standard output behind a buffer; call [`finish`] when done to see write errors.
pub fn buffered() -> BufWriter<StdoutLock<'static>> {
    BufWriter::with_capacity(1 << 16, std::io::stdout().lock())
}

/// Flushes what [`buffered`] holds.
pub fn finish(mut out: BufWriter<StdoutLock<'static>>) -> Result<()> {
    out.flush().context("write standard output")
}

/// Prints `value` as compact JSON on standard output, one line, as containers-storage
/// does (`jq` makes it pretty).
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = buffered();
    serde_json::to_writer(&mut out, value).context("write standard output")?;
    out.write_all(b"\n").context("write standard output")?;
    finish(out)
}
