//! `cargo xtask bench`: every comparison against the tools users would pick instead, in
//! one run on the same input, written to `BENCHMARKS.md` with medians, commands and ratios.

mod catalog;
mod disks;
mod ext4;
mod images;
mod layers;
mod nfs;
mod report;
mod vhd;
mod vmdk;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::setup;
pub use report::Report;

/// Options of a bench run.
pub struct Options {
    /// Runs per measurement (the median is reported).
    pub runs: usize,
    /// Run only this section; its tables are printed and replace theirs in `BENCHMARKS.md`.
    pub only: Option<String>,
}

/// The sections of the bench, in the order they run.
const SECTIONS: &[&str] = &[
    "layers", "ext4", "disks", "catalog", "nfs", "vhd", "vmdk", "images",
];

/// Runs every benchmark and rewrites `BENCHMARKS.md`.
pub fn run(args: &[String]) -> Result<()> {
    let mut opts = Options {
        runs: 3,
        only: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                opts.runs = it
                    .next()
                    .context("--runs takes a number")?
                    .parse()
                    .context("--runs takes a number")?
            }
            "--only" => {
                let section = it.next().context("--only takes a section")?;
                if !SECTIONS.contains(&section.as_str()) {
                    bail!(
                        "unknown bench section {section}; sections: {}",
                        SECTIONS.join(", ")
                    );
                }
                opts.only = Some(section.clone());
            }
            other => bail!(
                "unknown bench option {other}; usage: cargo xtask bench [--runs N] [--only {}]",
                SECTIONS.join("|")
            ),
        }
    }
    setup::ensure_packages(setup::BENCH_PACKAGES)?;
    let examples: &[&[&str]] = match opts.only.as_deref() {
        Some("layers" | "catalog" | "nfs" | "vhd" | "vmdk" | "images") => &[],
        _ => &[
            &["-p", "ext4-writer", "--example", "tar2ext4"],
            &["-p", "disk-image", "--bin", "diskimg"],
        ],
    };
    for args in std::iter::once(&["-p", "cli"][..]).chain(examples.iter().copied()) {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--quiet"])
            .args(args)
            .status()
            .context("build in release")?;
        if !status.success() {
            bail!("release build of {args:?} failed");
        }
    }
    let mut report = Report::new()?;
    report.set_runs(opts.runs);
    let wanted = |section: &str| opts.only.as_deref().is_none_or(|o| o == section);
    if wanted("layers") {
        layers::run(&opts, &mut report)?;
    }
    if wanted("ext4") {
        ext4::run(&opts, &mut report, layers::PLACES[0].1)?;
    }
    if wanted("disks") {
        disks::run(
            &opts,
            &mut report,
            &format!("{}/disks", layers::PLACES[1].1),
        )?;
    }
    if wanted("catalog") {
        catalog::run(
            &opts,
            &mut report,
            &format!("{}/catalog", layers::PLACES[0].1),
        )?;
    }
    if wanted("nfs") {
        nfs::run(&opts, &mut report)?;
    }
    if wanted("vhd") {
        vhd::run(&opts, &mut report, layers::PLACES[0].1)?;
    }
    if wanted("vmdk") {
        vmdk::run(&opts, &mut report)?;
    }
    if wanted("images") {
        images::run(&opts, &mut report, layers::PLACES[1].1)?;
    }
    let path = workspace_root().join("BENCHMARKS.md");
    if let Some(section) = &opts.only {
        print!("{}", report.render());
        // A section measured again replaces its own tables; the rest stay as measured.
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, report.merge_into(&existing, section))
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!(
            "bench: ran only {section}; its tables in {} are replaced",
            path.display()
        );
        return Ok(());
    }
    report.note(format!(
        "Reproduce with `cargo xtask bench --runs {}`; the input tars are made once per place and kept.",
        opts.runs
    ));
    std::fs::write(&path, report.render()).with_context(|| format!("write {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// The workspace root. `cargo run` names xtask's manifest directory in the environment;
/// that is read first, because a binary built in another worktree sharing the target
/// directory carries that worktree's path in `env!`.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The release `strata` binary.
pub fn strata() -> PathBuf {
    target_bin("strata")
}

/// A release binary (`strata`, `diskimg`, `examples/tar2ext4`, …), where cargo built it: under
/// `$CARGO_TARGET_DIR` when that is set (as the builds above honour it), else `target/`.
pub fn target_bin(name: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("release")
        .join(name)
}

/// Runs `cmd` `runs` times, each after `setup` (not timed), and returns the median, or the
/// failing command's own message.
pub fn measure(runs: usize, setup: &str, cmd: &str) -> Result<Duration, String> {
    let mut times = Vec::new();
    for _ in 0..runs {
        time_sh(setup).map_err(|e| format!("{e:#}"))?;
        times.push(time_sh(cmd).map_err(|e| e.root_cause().to_string())?);
    }
    Ok(median(times))
}

/// Runs each of `cmdlines` `runs` times, one after the other in turn so that a slow
/// moment of the machine falls on all of them alike, and returns each one's median (or
/// its failure).
///
/// For commands that take milliseconds: each is started directly, without a shell (whose
/// own start, about a millisecond here, would be added to every figure), its words split
/// on spaces and its output discarded.
pub fn measure_processes(runs: usize, cmdlines: &[String]) -> Vec<Result<Duration, String>> {
    let mut times: Vec<Result<Vec<Duration>, String>> =
        cmdlines.iter().map(|_| Ok(Vec::new())).collect();
    for _ in 0..runs {
        for (cmdline, times) in cmdlines.iter().zip(times.iter_mut()) {
            if let Ok(t) = times {
                match time_process(cmdline) {
                    Ok(d) => t.push(d),
                    Err(e) => *times = Err(e.root_cause().to_string()),
                }
            }
        }
    }
    times.into_iter().map(|t| t.map(median)).collect()
}

/// Runs one command without a shell (see [`measure_processes`]), failing on a non-zero
/// exit, and returns its wall time.
fn time_process(cmdline: &str) -> Result<Duration> {
    let mut words = cmdline.split_whitespace();
    let program = words.next().context("an empty command")?;
    let mut cmd = Command::new(program);
    cmd.args(words)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    timed(&mut cmd, cmdline)
}

/// Runs `cmd` (typed as `cmdline`), failing on a non-zero exit with its standard error,
/// and returns its wall time.
fn timed(cmd: &mut Command, cmdline: &str) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd.output().with_context(|| format!("run {cmdline}"))?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(anyhow::anyhow!("{stderr} ({})", out.status))
            .with_context(|| format!("`{cmdline}` failed"));
    }
    Ok(elapsed)
}

/// A table row.
pub fn row(tool: &str, command: &str, time: Result<Duration, String>) -> report::Row {
    report::Row {
        tool: tool.into(),
        command: command.into(),
        time,
    }
}

/// Runs a shell command line, failing on a non-zero exit, and returns its wall time.
pub fn time_sh(cmdline: &str) -> Result<Duration> {
    timed(Command::new("sh").args(["-c", cmdline]), cmdline)
}

/// Runs a shell command line and returns its trimmed standard output.
pub fn sh_output(cmdline: &str) -> Result<String> {
    let out = Command::new("sh")
        .args(["-c", cmdline])
        .output()
        .with_context(|| format!("run {cmdline}"))?;
    if !out.status.success() {
        bail!(
            "`{cmdline}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The median of some durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Mount times of a container on images of 1, 10 and 100 empty layers of the store that
/// the command line `st` (with the scheme `scheme`, for the table) opens: cold (after
/// `cleanup`) and with another container of the same image mounted.
pub fn container_mounts(opts: &Options, st: &str, scheme: &str) -> Result<Vec<report::Row>> {
    let mut rows = Vec::new();
    let mut parent: Option<String> = None;
    let mut depth = 0;
    for want in [1usize, 10, 100] {
        while depth < want {
            let id = match &parent {
                Some(p) => sh_output(&format!("{st} create-layer --parent {p}"))?,
                None => sh_output(&format!("{st} create-layer"))?,
            };
            parent = Some(id);
            depth += 1;
        }
        let top = parent.clone().context("no layer was made")?;
        let image = sh_output(&format!("{st} create-image {top}"))?;
        let layer_of = |container: &str| {
            sh_output(&format!(
                "{st} containers --json | python3 -c \"import json,sys; print([c['layer'] for c in json.load(sys.stdin) if c['id']=='{container}'][0])\""
            ))
        };
        let first = layer_of(&sh_output(&format!("{st} create-container {image}"))?)?;
        let second = layer_of(&sh_output(&format!("{st} create-container {image}"))?)?;
        let cleanup = format!("{st} cleanup >/dev/null");
        rows.push(row(
            &format!("{want} layer(s), cold"),
            &format!("strata --store {scheme}:///DIR mount LAYER"),
            measure(
                opts.runs,
                &cleanup,
                &format!("{st} mount {first} >/dev/null"),
            ),
        ));
        rows.push(row(
            &format!("{want} layer(s), layers already mounted"),
            &format!(
                "strata --store {scheme}:///DIR mount LAYER (another container of the image mounted)"
            ),
            measure(
                opts.runs,
                &format!("{cleanup} && {st} mount {first} >/dev/null"),
                &format!("{st} mount {second} >/dev/null"),
            ),
        ));
    }
    Ok(rows)
}
