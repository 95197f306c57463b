//! Catalog scale: listing, name lookup and one more layer in a store of many layers, as
//! whole processes, strata against containers-storage with the same layers and images.
//!
//! Both stores are built through their own CLIs, one `create-layer --parent` per layer, in
//! chains of 100 layers with an image on each chain's top. containers-storage rewrites its
//! whole `layers.json` on every change, so its per-layer cost grows with the store; the
//! peer comparison is made at the size both can reach in the run, and strata alone is
//! measured again at 10,000 layers.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::report::Table;
use super::{Options, Report, measure_processes, row, sh_output, strata, time_sh};

/// Layers per image chain.
const CHAIN: usize = 100;
/// Chains (images) in the store both tools build.
const PEER_CHAINS: usize = 10;
/// Chains strata is measured at alone.
const FULL_CHAINS: usize = 100;

fn st(dir: &str) -> String {
    format!(
        "{} --root {dir}/st --run-root {dir}/st-run",
        strata().display()
    )
}

fn cs(dir: &str) -> String {
    format!("containers-storage --graph {dir}/cs --run {dir}/cs-run --storage-driver overlay")
}

fn reset(dir: &str) -> Result<()> {
    time_sh(&format!(
        "{st} cleanup >/dev/null 2>&1; {cs} shutdown >/dev/null 2>&1; \
         umount -R {dir}/cs/overlay >/dev/null 2>&1; rm -rf {dir}/st {dir}/st-run {dir}/cs {dir}/cs-run; mkdir -p {dir}",
        st = st(dir),
        cs = cs(dir)
    ))?;
    Ok(())
}

/// Adds chains `from..to` of `CHAIN` layers (named `l<chain>-<n>`) with an image on
/// each top (`img<chain>`), through `tool`'s CLI (`parent` is how it is given a parent:
/// `--parent ` or nothing); returns the time per layer.
fn build(tool: &str, parent: &str, from: usize, to: usize) -> Result<Duration> {
    let mut script = String::from("set -e\n");
    for c in from..to {
        let _ = writeln!(script, "p=$({tool} create-layer -n l{c}-0 | head -1)");
        let _ = writeln!(
            script,
            "for n in $(seq 1 {}); do p=$({tool} create-layer -n l{c}-$n {parent}$p | head -1); done",
            CHAIN - 1
        );
        let _ = writeln!(script, "{tool} create-image -n img{c} $p >/dev/null");
    }
    let start = Instant::now();
    time_sh(&script).with_context(|| format!("build chains {from}..{to} with {tool}"))?;
    Ok(start.elapsed() / ((to - from) * CHAIN) as u32)
}

/// Each figure is a median of at least this many runs: they take milliseconds, and the
/// machine's speed drifts more than that between seconds.
const MIN_RUNS: usize = 21;

fn tables(opts: &Options, dir: &str, layers: usize, peer: bool) -> Vec<Table> {
    let (st, cs) = (st(dir), cs(dir));
    let runs = opts.runs.max(MIN_RUNS);
    let what = format!(
        "{layers} layers in {} chains of {CHAIN}, an image on each chain's top, on tmpfs. Each figure \
         is a whole process, started directly (no shell), its output discarded; the median of {runs} \
         runs, the tools taking turns run by run.",
        layers / CHAIN
    );
    let mid = format!("l{}-{}", layers / CHAIN / 2, CHAIN / 2);
    let top = format!("l{}-{}", layers / CHAIN - 1, CHAIN - 1);
    // (tool, command as shown, command as run) for each table.
    let mut list = vec![
        ("strata", "strata layers".to_owned(), format!("{st} layers")),
        (
            "strata (JSON)",
            "strata layers --json".to_owned(),
            format!("{st} layers --json"),
        ),
    ];
    let mut lookup = vec![(
        "strata",
        format!("strata layer {mid}"),
        format!("{st} layer {mid}"),
    )];
    let mut create = vec![(
        "strata",
        format!("strata create-layer --parent {top}"),
        format!("{st} create-layer --parent {top}"),
    )];
    if peer {
        let tool = "containers-storage 1.43";
        list.push((
            tool,
            "containers-storage layers".into(),
            format!("{cs} layers"),
        ));
        list.push((
            "containers-storage 1.43 (JSON)",
            "containers-storage layers --json".into(),
            format!("{cs} layers --json"),
        ));
        lookup.push((
            tool,
            format!("containers-storage layer {mid}"),
            format!("{cs} layer {mid}"),
        ));
        create.push((
            tool,
            format!("containers-storage create-layer {top}"),
            format!("{cs} create-layer {top}"),
        ));
    }
    let rows = |cmds: Vec<(&str, String, String)>| {
        let run: Vec<String> = cmds.iter().map(|(_, _, r)| r.clone()).collect();
        cmds.iter()
            .zip(measure_processes(runs, &run))
            .map(|((tool, shown, _), time)| row(tool, shown, time))
            .collect()
    };
    vec![
        Table {
            title: format!("Catalog: list {layers} layers"),
            input: what.clone(),
            rows: rows(list),
        },
        Table {
            title: format!("Catalog: look a layer up by name among {layers}"),
            input: format!("{what} Target: under 20 ms."),
            rows: rows(lookup),
        },
        Table {
            title: format!("Catalog: one more layer on a store of {layers}"),
            input: format!(
                "{what} Each run adds an empty layer on a chain's top. Target: under 20 ms."
            ),
            rows: rows(create),
        },
    ]
}

/// Runs the catalog-scale benchmarks.
pub fn run(opts: &Options, report: &mut Report, dir: &str) -> Result<()> {
    reset(dir)?;
    eprintln!(
        "bench: catalog: building {} layers in strata and in containers-storage",
        PEER_CHAINS * CHAIN
    );
    let st_each = build(&st(dir), "--parent ", 0, PEER_CHAINS)?;
    let cs_each = build(&cs(dir), "", 0, PEER_CHAINS)?;
    let cs_last = {
        let top = format!("l{}-{}", PEER_CHAINS - 1, CHAIN - 1);
        let start = Instant::now();
        let id = sh_output(&format!("{} create-layer {top} | head -1", cs(dir)))?;
        let t = start.elapsed();
        time_sh(&format!("{} delete-layer {id}", cs(dir)))?;
        t
    };
    let full = FULL_CHAINS * CHAIN;
    let n = PEER_CHAINS * CHAIN;
    // A linear fit of its per-layer cost (the mean over the build, and the last one)
    // estimates what building `full` layers the same way would take.
    let (mean, last) = (cs_each.as_secs_f64(), cs_last.as_secs_f64());
    let slope = (2.0 * (last - mean) / n as f64).max(0.0);
    let intercept = 2.0 * mean - last;
    let estimate = full as f64 * (intercept + slope * full as f64 / 2.0);
    report.note(format!(
        "Catalog: building {n} layers took {:.1} ms per layer in strata and {:.1} ms per layer in \
         containers-storage (its {n}th layer alone: {:.0} ms; it rewrites all of layers.json on each change, \
         so the cost grows with the store). By a linear fit of those figures, {full} layers would take it \
         about {:.0} minutes, so the peer comparison is at {n} layers and strata alone is measured at {full}.",
        st_each.as_secs_f64() * 1e3,
        mean * 1e3,
        last * 1e3,
        estimate / 60.0,
    ));
    for t in tables(opts, dir, n, true) {
        report.table(t);
    }
    // The extra layers the create measurement added hang off one top; the chains and
    // names the next tables use are unchanged.
    eprintln!("bench: catalog: growing strata's store to {full} layers");
    let st_more = build(&st(dir), "--parent ", PEER_CHAINS, FULL_CHAINS)?;
    report.note(format!(
        "Catalog: growing strata's store from {} to {full} layers took {:.1} ms per layer.",
        n,
        st_more.as_secs_f64() * 1e3
    ));
    for t in tables(opts, dir, full, false) {
        report.table(t);
    }
    reset(dir)?;
    Ok(())
}
