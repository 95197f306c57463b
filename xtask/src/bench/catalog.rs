//! Catalog scale: listing, name lookup and one more layer in a store of many layers, as
//! whole processes, strata against containers-storage with the same layers and images.
//!
//! Both stores are built through their own CLIs, one `create-layer --parent` per layer, in
//! chains of 100 layers with an image on each chain's top, at 1,000 and at 10,000 layers.
//! containers-storage rewrites its whole `layers.json` on every change, so its 10,000-layer
//! store takes most of an hour to build: it is built once per machine and kept (see
//! [`PEER_CACHE`]).

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

/// The tables at `layers` layers, for strata's store in `dir` and, when `peer` names one,
/// containers-storage's store in that directory.
fn tables(opts: &Options, dir: &str, peer: Option<&str>, layers: usize) -> Vec<Table> {
    let st = st(dir);
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
    let mut lookup = vec![
        (
            "strata",
            format!("strata layer {mid}"),
            format!("{st} layer {mid}"),
        ),
        (
            "strata (JSON)",
            format!("strata layer -j {mid}"),
            format!("{st} layer -j {mid}"),
        ),
    ];
    let mut create = vec![(
        "strata",
        format!("strata create-layer --parent {top}"),
        format!("{st} create-layer --parent {top}"),
    )];
    if let Some(peer) = peer {
        let cs = cs(peer);
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
        lookup.push((
            "containers-storage 1.43 (JSON)",
            format!("containers-storage layer -j {mid}"),
            format!("{cs} layer -j {mid}"),
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

/// Where a containers-storage store of `FULL_CHAINS` chains is kept between bench runs:
/// containers-storage takes most of an hour to build it (it rewrites all of `layers.json`
/// for every layer), so it is built once per machine, through its own CLI as the smaller
/// store is, and copied to tmpfs for each run.
const PEER_CACHE: &str = "/var/tmp/strata-bench/catalog-cs-10000";

/// Copies the kept containers-storage store of `FULL_CHAINS` chains into `dir`, building
/// and keeping it first if there is none. A build that was interrupted goes on from its
/// last whole chain.
fn full_peer_store(dir: &str) -> Result<()> {
    let done = format!("{PEER_CACHE}/complete");
    if !std::path::Path::new(&done).exists() {
        let kept = chains_kept()?;
        eprintln!(
            "bench: catalog: building {} layers in containers-storage, once for this machine \
             (most of an hour), kept in {PEER_CACHE}; {} chains of {CHAIN} are there",
            FULL_CHAINS * CHAIN,
            kept
        );
        if kept == 0 {
            time_sh(&format!("rm -rf {PEER_CACHE}; mkdir -p {PEER_CACHE}"))?;
        } else {
            drop_partial_chains(kept)?;
        }
        let mut c = kept;
        while c < FULL_CHAINS {
            let to = (c + 10).min(FULL_CHAINS);
            build(&cs(PEER_CACHE), "", c, to)?;
            eprintln!(
                "bench: catalog: containers-storage holds {} layers",
                to * CHAIN
            );
            c = to;
        }
        time_sh(&format!(
            "{} shutdown >/dev/null; touch {done}",
            cs(PEER_CACHE)
        ))?;
    }
    time_sh(&format!(
        "rm -rf {dir}; mkdir -p {dir}; cp -a {PEER_CACHE}/cs {dir}/cs"
    ))?;
    Ok(())
}

/// The whole chains (`img0`, `img1`, … on their tops) the kept store holds.
fn chains_kept() -> Result<usize> {
    if !std::path::Path::new(PEER_CACHE).join("cs").exists() {
        return Ok(0);
    }
    let images = sh_output(&format!("{} images", cs(PEER_CACHE)))?;
    let names: std::collections::HashSet<&str> = images
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name: "))
        .collect();
    Ok((0..FULL_CHAINS)
        .take_while(|c| names.contains(format!("img{c}").as_str()))
        .count())
}

/// Deletes, top first, the layers an interrupted build made of chains `from` and on.
fn drop_partial_chains(from: usize) -> Result<()> {
    let layers = sh_output(&format!("{} layers", cs(PEER_CACHE)))?;
    let mut partial: Vec<(usize, usize, &str)> = layers
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name: "))
        .filter_map(|name| {
            let (c, n) = name.strip_prefix('l')?.split_once('-')?;
            Some((c.parse().ok()?, n.parse().ok()?, name))
        })
        .filter(|(c, _, _)| *c >= from)
        .collect();
    partial.sort_unstable_by(|a, b| b.cmp(a));
    for (_, _, name) in partial {
        time_sh(&format!(
            "{} delete-layer {name} >/dev/null",
            cs(PEER_CACHE)
        ))?;
    }
    Ok(())
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
    let n = PEER_CHAINS * CHAIN;
    let full = FULL_CHAINS * CHAIN;
    report.note(format!(
        "Catalog: building {n} layers took {:.1} ms per layer in strata and {:.1} ms per layer in \
         containers-storage, whose cost grows with the store: it rewrites all of layers.json on each \
         change. Its {full}-layer store is therefore built once per machine (same commands, same \
         names) and kept in {PEER_CACHE}; each run copies it to tmpfs.",
        st_each.as_secs_f64() * 1e3,
        cs_each.as_secs_f64() * 1e3,
    ));
    for t in tables(opts, dir, Some(dir), n) {
        report.table(t);
    }
    // The extra layers the create measurement added hang off one top; the chains and
    // names the next tables use are unchanged.
    eprintln!("bench: catalog: growing strata's store to {full} layers");
    let st_more = build(&st(dir), "--parent ", PEER_CHAINS, FULL_CHAINS)?;
    report.note(format!(
        "Catalog: growing strata's store from {n} to {full} layers took {:.1} ms per layer. It also \
         holds the layers its {n}-layer create runs added (one a run); the kept containers-storage \
         store holds exactly {full}.",
        st_more.as_secs_f64() * 1e3
    ));
    let peer = format!("{dir}/full");
    full_peer_store(&peer)?;
    for t in tables(opts, dir, Some(&peer), full) {
        report.table(t);
    }
    time_sh(&format!(
        "{} shutdown >/dev/null 2>&1; rm -rf {peer}",
        cs(&peer)
    ))?;
    reset(dir)?;
    Ok(())
}
