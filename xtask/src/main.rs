//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask ci`: installs what the tests need (Debian packages, when root and missing),
//!   checks formatting and lints, builds, and runs every test with `CI=true`, so that a test
//!   whose requirement is missing fails instead of skipping (`--allow-skips` lets them skip,
//!   and the summary counts them); then replays every fuzz target's corpus once.
//! - `cargo xtask bench`: runs the comparisons against peer tools and rewrites `BENCHMARKS.md`.
//! - `cargo xtask demo`: imports a small three-layer image into the default store and mounts it.
//! - `cargo xtask fuzz [--time SECONDS] [--replay] [TARGET…]`: runs the fuzz targets on the
//!   stable toolchain over seed corpora made from real inputs; `--replay` only replays them.
#![forbid(unsafe_code)]

mod bench;
mod ci;
mod demo;
mod fuzz;
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
        Some("fuzz") => fuzz::run(&args[1..]),
        _ => bail!(
            "usage: cargo xtask demo | ci [--no-lint] [--no-fuzz] [--allow-skips] | setup | \
             bench [--runs N] | fuzz [--time SECONDS] [--replay] [TARGET…]"
        ),
    }
}
