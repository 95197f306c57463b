//! `cargo xtask bench`: comparisons against peer tools, written to `BENCHMARKS.md`.

use anyhow::{Result, bail};

/// Runs every benchmark and rewrites `BENCHMARKS.md`.
pub fn run(_args: &[String]) -> Result<()> {
    bail!("no benchmark is defined yet")
}
