//! `cargo xtask ci`: everything CI runs, in the order a developer would.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{fuzz, nfs, setup};

/// Runs the whole suite, then replays every fuzz target's corpus once. `--no-lint` skips
/// the fmt/clippy pass and `--no-fuzz` the replay (for quick local runs); `--allow-skips`
/// runs the tests without `CI=true`, so a test whose requirement this machine lacks is
/// skipped (and counted) rather than failed.
pub fn run(args: &[String]) -> Result<()> {
    let lint = !args.iter().any(|a| a == "--no-lint");
    let replay = !args.iter().any(|a| a == "--no-fuzz");
    let allow_skips = args.iter().any(|a| a == "--allow-skips");
    let started = Instant::now();
    setup::ensure_packages(setup::TEST_PACKAGES)?;
    setup::ensure_fuse_device()?;
    if lint {
        step("cargo fmt --check", &["fmt", "--all", "--", "--check"])?;
        // The fuzz crates and fuzz-support are outside the workspace; `--all` misses them.
        for manifest in fuzz::manifests() {
            let manifest = manifest.display().to_string();
            step(
                &format!("cargo fmt --check ({manifest})"),
                &["fmt", "--manifest-path", &manifest, "--", "--check"],
            )?;
        }
        step(
            "cargo clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ],
        )?;
    }
    // Stopped when this goes out of scope, whether the tests pass or not.
    let nfs = if setup::is_root() {
        Some(nfs::Servers::start()?)
    } else {
        None
    };
    let totals = cargo_test(!allow_skips)?;
    drop(nfs);
    println!(
        "xtask ci: {} passed, {} failed, {} ignored, {} skipped in {:.0}s",
        totals.passed,
        totals.failed,
        totals.ignored,
        totals.skipped,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.skipped
    );
    if totals.failed > 0 || !totals.all_ok {
        bail!("tests failed");
    }
    if totals.skipped > 0 && !allow_skips {
        // `testkit::require` panics under CI=true; a skip here came some other way.
        bail!("{} test(s) skipped under CI=true", totals.skipped);
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    if replay {
        // Each target once over its seeds and saved corpus: seconds once the fuzz crates
        // are built; a crash fixed in the libraries must stay fixed.
        eprintln!("xtask ci: cargo xtask fuzz --replay");
        fuzz::run(&["--replay".to_string()])?;
    }
    Ok(())
}

fn step(what: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask ci: {what}");
    let status = Command::new(cargo())
        .args(args)
        .status()
        .with_context(|| format!("run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
    /// Tests that returned early for a missing requirement (`testkit::SKIPPED` lines).
    skipped: u64,
    all_ok: bool,
}

/// Runs `cargo test --workspace` (with `CI=true` when `ci`), echoing its output and adding
/// up the `test result:` lines of every test binary and the skip lines of `testkit`.
fn cargo_test(ci: bool) -> Result<Totals> {
    eprintln!("xtask ci: cargo test --workspace");
    let mut cmd = Command::new(cargo());
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if ci {
        cmd.env("CI", "true");
    } else {
        cmd.env_remove("CI");
    }
    let mut child = cmd.spawn().context("run cargo test")?;
    let stdout = child.stdout.take().context("capture cargo test output")?;
    let stderr = child.stderr.take().context("capture cargo test errors")?;
    // Standard error is echoed as it comes, on its own thread, counting skips.
    let skips = std::thread::spawn(move || {
        let mut skipped = 0u64;
        for line in BufReader::new(stderr)
            .lines()
            .map_while(std::io::Result::ok)
        {
            eprintln!("{line}");
            if is_skip(&line) {
                skipped += 1;
            }
        }
        skipped
    });
    let mut totals = Totals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("read cargo test output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            totals.passed += count(rest, "passed");
            totals.failed += count(rest, "failed");
            totals.ignored += count(rest, "ignored");
        }
    }
    totals.all_ok = child.wait().context("wait for cargo test")?.success();
    totals.skipped = skips
        .join()
        .map_err(|_| anyhow::anyhow!("the thread reading cargo test's errors panicked"))?;
    Ok(totals)
}

/// Whether `line` is the line `testkit::require` prints for a skipped test.
fn is_skip(line: &str) -> bool {
    line.strip_prefix(testkit::SKIPPED)
        .is_some_and(|rest| rest.starts_with(' '))
}

/// Extracts `N word` from `ok. 3 passed; 0 failed; ...`.
fn count(summary: &str, word: &str) -> u64 {
    summary
        .split(';')
        .filter_map(|part| {
            let mut it = part.split_whitespace().rev();
            let w = it.next()?;
            let n = it.next()?;
            (w == word).then(|| n.parse::<u64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::{count, is_skip};

    #[test]
    fn skip_lines_are_recognised_and_nothing_else() {
        assert!(is_skip("SKIPPED attaches_a_vhd: needs root"));
        assert!(!is_skip("SKIPPEDX"));
        assert!(!is_skip("test attaches_a_vhd ... ok"));
    }

    #[test]
    fn count_reads_cargo_test_summary() {
        let s = "ok. 12 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(count(s, "passed"), 12);
        assert_eq!(count(s, "failed"), 1);
        assert_eq!(count(s, "ignored"), 3);
    }
}
