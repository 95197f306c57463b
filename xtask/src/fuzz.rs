//! `cargo xtask fuzz [--time SECONDS] [--replay] [TARGET…]`: every fuzz target (or the
//! named ones) on the stable toolchain, each over seed corpora made from real inputs.
//!
//! The fuzz crates (`disk-image/fuzz`, `ext4-writer/fuzz`, `tar-engine/fuzz`) are
//! cargo-fuzz crates outside the workspace. They build on stable with `-s none`: without a
//! sanitizer cargo-fuzz passes only stable `-C` flags (sancov instrumentation, debug
//! assertions), so no nightly and no `RUSTC_BOOTSTRAP` is needed; overflow checks and
//! `fuzz-support`'s cap on single allocations stand in for what ASan would catch here.
//!
//! Each target runs as `cargo fuzz run -s none TARGET CORPUS SEEDS -- -max_total_time=N`:
//! `CORPUS` is the crate's `fuzz/corpus/TARGET` (gitignored; new inputs go there and are
//! kept across runs), `SEEDS` is `target/fuzz-seeds/TARGET`, regenerated on every run by
//! [`seeds`] from qemu-img, mkfs.ext4, GNU tar, layercheck.py and the project's own
//! writers. `--replay` runs each target once over both (`-runs=0`): quick, for CI.
//!
//! Per target it prints executions, coverage (`cov`, `ft` of libFuzzer's last stats line),
//! corpus size and crashes; a crash (or timeout, or allocation over the cap) makes the
//! command fail and names the saved input. Full output is in `target/fuzz-logs/TARGET.log`.

mod seeds;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::bench::workspace_root;
use crate::setup;

/// The crates with a `fuzz/` directory, relative to the workspace root.
pub const CRATES: &[&str] = &["disk-image", "ext4-writer", "tar-engine"];

/// Seconds each target runs when `--time` is not given.
const DEFAULT_SECONDS: u64 = 60;
/// libFuzzer's limit for one input, seconds: a slower one is reported as a hang.
const INPUT_TIMEOUT: u64 = 25;
/// Debian packages the seeds are made with.
const SEED_PACKAGES: &[&str] = &["e2fsprogs", "qemu-utils", "tar", "zstd", "libclang-dev"];

const USAGE: &str = "usage: cargo xtask fuzz [--time SECONDS] [--replay] [TARGET…]\n\
    TARGET is a target name or CRATE/NAME; no TARGET runs them all";

/// One fuzz target of one crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The crate directory name (`disk-image`).
    pub krate: &'static str,
    /// The target (`open_image`).
    pub name: String,
}

impl Target {
    fn id(&self) -> String {
        format!("{}/{}", self.krate, self.name)
    }
}

/// What one run of a target showed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Inputs executed (`stat::number_of_executed_units`).
    pub execs: Option<u64>,
    /// Coverage: `cov` and `ft` of the last stats line.
    pub cov: Option<u64>,
    /// Features.
    pub ft: Option<u64>,
    /// Corpus as libFuzzer reports it (`inputs/size`).
    pub corpus: Option<String>,
    /// Inputs libFuzzer saved as crashes, hangs or out-of-memory.
    pub artifacts: Vec<String>,
    /// The panic message or libFuzzer error, when there is one.
    pub cause: Option<String>,
}

/// Runs the command.
pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut replay = false;
    let mut wanted = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                let v = it.next().context("--time needs a number of seconds")?;
                seconds = v
                    .parse()
                    .with_context(|| format!("--time {v}: not a number of seconds"))?;
            }
            "--replay" => replay = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other if other.starts_with('-') => bail!("unknown option {other}\n{USAGE}"),
            other => wanted.push(other.to_string()),
        }
    }
    let started = Instant::now();
    ensure_cargo_fuzz()?;
    let all = list_targets()?;
    let targets = select(&all, &wanted)?;
    setup::ensure_packages(SEED_PACKAGES)?;
    let mut crates: Vec<&str> = targets.iter().map(|t| t.krate).collect();
    crates.dedup();
    for krate in &crates {
        build(krate)?;
    }
    let seed_root = target_dir().join("fuzz-seeds");
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    seeds::generate(&seed_root, &names)?;
    let logs = target_dir().join("fuzz-logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let mut results = Vec::new();
    for t in &targets {
        let outcome = run_target(t, &seed_root, &logs, seconds, replay)?;
        results.push((t.clone(), outcome));
    }
    print_table(&results);
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, o)| !o.artifacts.is_empty() || o.cause.is_some())
        .map(|(t, o)| {
            let mut what = vec![t.id()];
            what.extend(o.cause.iter().cloned());
            what.extend(o.artifacts.iter().map(|a| format!("input saved as {a}")));
            what.join("\n  ")
        })
        .collect();
    println!(
        "xtask fuzz: {} target(s) {} in {:.0}s",
        results.len(),
        if replay { "replayed" } else { "fuzzed" },
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!("fuzz targets failed:\n{}", failed.join("\n"));
    }
    Ok(())
}

/// The manifests outside the workspace that fuzzing adds: each fuzz crate's and
/// `fuzz-support`'s.
pub fn manifests() -> Vec<PathBuf> {
    let root = workspace_root();
    CRATES
        .iter()
        .map(|c| root.join(c).join("fuzz").join("Cargo.toml"))
        .chain(std::iter::once(
            root.join("fuzz-support").join("Cargo.toml"),
        ))
        .collect()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Where cargo puts build output: `$CARGO_TARGET_DIR`, else `target/` of the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Installs cargo-fuzz unless `cargo fuzz` already runs.
fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new(cargo())
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask fuzz: installing cargo-fuzz");
    let status = Command::new(cargo())
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("run cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz --locked failed ({status})");
    }
    Ok(())
}

/// `cargo fuzz list` of every fuzz crate.
fn list_targets() -> Result<Vec<Target>> {
    let mut all = Vec::new();
    for krate in CRATES {
        let dir = workspace_root().join(krate);
        let out = Command::new(cargo())
            .args(["fuzz", "list"])
            .current_dir(&dir)
            .output()
            .with_context(|| format!("run cargo fuzz list in {}", dir.display()))?;
        if !out.status.success() {
            bail!(
                "cargo fuzz list in {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            all.push(Target {
                krate,
                name: name.to_string(),
            });
        }
    }
    Ok(all)
}

/// The targets named in `wanted` (by name or `crate/name`), all of them when none is.
fn select(all: &[Target], wanted: &[String]) -> Result<Vec<Target>> {
    if wanted.is_empty() {
        return Ok(all.to_vec());
    }
    let mut out = Vec::new();
    for w in wanted {
        let hits: Vec<&Target> = all
            .iter()
            .filter(|t| t.name == *w || t.id() == *w)
            .collect();
        match hits.as_slice() {
            [] => bail!(
                "no fuzz target {w}; there are: {}",
                all.iter().map(Target::id).collect::<Vec<_>>().join(" ")
            ),
            [one] => {
                if !out.contains(*one) {
                    out.push((*one).clone());
                }
            }
            many => bail!(
                "{w} names several targets ({}); say which as CRATE/NAME",
                many.iter().map(|t| t.id()).collect::<Vec<_>>().join(" ")
            ),
        }
    }
    // Keep each crate's targets together, so builds and runs follow one order.
    out.sort_by_key(|t| CRATES.iter().position(|c| *c == t.krate));
    Ok(out)
}

/// Builds every target of a crate once, so the runs that follow do not each build.
fn build(krate: &str) -> Result<()> {
    eprintln!("xtask fuzz: cargo fuzz build -s none ({krate})");
    let status = Command::new(cargo())
        .args(["fuzz", "build", "-s", "none"])
        .current_dir(workspace_root().join(krate))
        .status()
        .with_context(|| format!("run cargo fuzz build in {krate}"))?;
    if !status.success() {
        bail!("cargo fuzz build -s none in {krate} failed ({status})");
    }
    Ok(())
}

/// Runs one target, its output into `logs/NAME.log`, and reads what it showed.
fn run_target(
    t: &Target,
    seed_root: &Path,
    logs: &Path,
    seconds: u64,
    replay: bool,
) -> Result<Outcome> {
    let dir = workspace_root().join(t.krate);
    let corpus = dir.join("fuzz").join("corpus").join(&t.name);
    std::fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
    let seeds = seed_root.join(&t.name);
    let log_path = logs.join(format!("{}.log", t.name));
    let log = File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .with_context(|| format!("reopen {}", log_path.display()))?;
    let mut cmd = Command::new(cargo());
    cmd.args(["fuzz", "run", "-s", "none", &t.name])
        .arg(&corpus)
        .current_dir(&dir)
        .stdout(log)
        .stderr(log2);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--")
        .arg(format!("-timeout={INPUT_TIMEOUT}"))
        .arg("-print_final_stats=1");
    if replay {
        cmd.arg("-runs=0");
    } else {
        cmd.arg(format!("-max_total_time={seconds}"));
    }
    eprintln!(
        "xtask fuzz: {} {}",
        t.id(),
        if replay {
            "replaying its corpus".to_string()
        } else {
            format!("for {seconds}s")
        }
    );
    let status = cmd
        .status()
        .with_context(|| format!("run cargo fuzz run {}", t.name))?;
    let text = std::fs::read_to_string(&log_path)
        .with_context(|| format!("read {}", log_path.display()))?;
    let mut outcome = parse_log(&text);
    if !status.success() && outcome.cause.is_none() {
        outcome.cause = Some(format!(
            "cargo fuzz run exited with {status}; see {}",
            log_path.display()
        ));
    }
    for a in &outcome.artifacts {
        eprintln!(
            "xtask fuzz: {} saved {a}\n  reproduce (in {}): cargo fuzz run -s none {} {a}",
            t.id(),
            t.krate,
            t.name
        );
    }
    if let Some(cause) = &outcome.cause {
        eprintln!("xtask fuzz: {} failed: {cause}", t.id());
    }
    Ok(outcome)
}

/// Reads libFuzzer's output: the last stats line, the final stats, saved inputs and why.
pub fn parse_log(text: &str) -> Outcome {
    let mut o = Outcome::default();
    for line in text.lines() {
        if line.starts_with('#') && line.contains(" cov: ") {
            let field = |name: &str| -> Option<&str> {
                let mut words = line.split_whitespace();
                words.find(|w| *w == name)?;
                words.next()
            };
            o.cov = field("cov:").and_then(|v| v.parse().ok()).or(o.cov);
            o.ft = field("ft:").and_then(|v| v.parse().ok()).or(o.ft);
            o.corpus = field("corp:").map(str::to_string).or(o.corpus.take());
        } else if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            o.execs = n.trim().parse().ok();
        } else if let Some((_, path)) = line.split_once("Test unit written to ") {
            o.artifacts.push(path.trim().to_string());
        } else if o.cause.is_none() {
            if line.contains("panicked at") || line.starts_with("memory allocation of") {
                o.cause = Some(line.trim().to_string());
            } else if let Some(e) = line.split_once("ERROR: libFuzzer: ") {
                o.cause = Some(format!("libFuzzer: {}", e.1.trim()));
            } else if line.starts_with("ERROR: ") {
                o.cause = Some(line.trim().to_string());
            }
        } else if let Some(cause) = &mut o.cause
            && cause.ends_with(':')
            && !line.trim().is_empty()
        {
            // A panic's message is on the line after "panicked at FILE:LINE:COL:".
            cause.push(' ');
            cause.push_str(line.trim());
        }
    }
    o
}

fn print_table(results: &[(Target, Outcome)]) {
    let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    println!(
        "{:<34} {:>10} {:>6} {:>7} {:>16} {:>7}",
        "target", "execs", "cov", "ft", "corpus", "crashes"
    );
    for (t, o) in results {
        println!(
            "{:<34} {:>10} {:>6} {:>7} {:>16} {:>7}",
            t.id(),
            show(o.execs),
            show(o.cov),
            show(o.ft),
            o.corpus.as_deref().unwrap_or("-"),
            o.artifacts.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_log_reads_stats_and_a_panic_with_its_artifact() {
        let log = "INFO: Seed: 1\n\
            #2\tINITED cov: 10 ft: 12 corp: 1/1b exec/s: 0 rss: 30Mb\n\
            #900\tNEW    cov: 847 ft: 1537 corp: 125/5542Kb lim: 4 exec/s: 0 rss: 46Mb\n\
            thread '<unnamed>' panicked at src/reader.rs:323:18:\n\
            attempt to multiply with overflow\n\
            artifact_prefix='/x/'; Test unit written to /x/crash-abc\n\
            stat::number_of_executed_units: 901\n";
        let o = parse_log(log);
        assert_eq!(o.cov, Some(847));
        assert_eq!(o.ft, Some(1537));
        assert_eq!(o.corpus.as_deref(), Some("125/5542Kb"));
        assert_eq!(o.execs, Some(901));
        assert_eq!(o.artifacts, vec!["/x/crash-abc".to_string()]);
        assert_eq!(
            o.cause.as_deref(),
            Some(
                "thread '<unnamed>' panicked at src/reader.rs:323:18: attempt to multiply with overflow"
            )
        );
    }

    #[test]
    fn select_takes_names_and_crate_slash_names_and_refuses_unknown_ones() {
        let all = vec![
            Target {
                krate: "disk-image",
                name: "open_image".into(),
            },
            Target {
                krate: "tar-engine",
                name: "ingest".into(),
            },
        ];
        let picked = select(&all, &["tar-engine/ingest".into(), "open_image".into()]).unwrap();
        assert_eq!(picked[0].name, "open_image");
        assert_eq!(picked[1].name, "ingest");
        assert!(select(&all, &["nope".into()]).is_err());
        assert_eq!(select(&all, &[]).unwrap(), all);
    }
}
