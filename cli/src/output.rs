//! How results are printed: JSON for `--json`, plain lines otherwise.

use anyhow::Result;
use serde::Serialize;

/// Prints `value` as pretty JSON on standard output.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
