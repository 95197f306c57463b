//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask ci`: installs what the tests need (Debian packages, when root and missing),
//!   checks formatting and lints, builds, and runs every test with `CI=true`, so that a test
//!   whose requirement is missing fails instead of skipping (`--allow-skips` lets them skip,
//!   and the summary counts them).
//! - `cargo xtask bench`: runs the comparisons against peer tools and rewrites `BENCHMARKS.md`.
//! - `cargo xtask demo`: imports a small three-layer image into the default store and mounts it.
#![forbid(unsafe_code)]

mod bench;
mod ci;
mod demo;
mod nfs;
mod setup;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("setup") => setup::ensure_packages(setup::TEST_PACKAGES),
        Some("bench") => bench::run(&args[1..]),
        Some("demo") => demo::run_demo(),
        _ => bail!(
            "usage: cargo xtask demo | ci [--no-lint] [--allow-skips] | setup | bench [--runs N]"
        ),
    }
}
