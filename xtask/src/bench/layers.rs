//! Layer import, diff and deep-chain mounts: strata against GNU tar and containers-storage.

use std::path::Path;

use anyhow::{Context, Result};

use super::report::Table;
use super::{Options, Report, measure, row, sh_output, strata, time_sh};

/// Where each place's scratch files go: tmpfs, then the disk.
pub const PLACES: &[(&str, &str)] = &[
    ("tmpfs", "/dev/shm/strata-bench"),
    ("disk (ext4)", "/var/tmp/strata-bench"),
];

/// containers-storage on the overlay store under `dir`.
pub(super) fn cs(dir: &str) -> String {
    format!("containers-storage --graph {dir}/cs --run {dir}/cs-run --storage-driver overlay")
}

/// strata on the store under `dir`.
pub(super) fn st(dir: &str) -> String {
    format!(
        "{} --root {dir}/st --run-root {dir}/st-run",
        strata().display()
    )
}

/// Removes every store and extraction under `dir`, unmounting what the tools left mounted.
fn reset_cmd(dir: &str) -> String {
    format!(
        "{st} cleanup >/dev/null 2>&1; {cs} shutdown >/dev/null 2>&1; \
         umount -R {dir}/cs/overlay >/dev/null 2>&1; rm -rf {dir}/st {dir}/st-run {dir}/cs {dir}/cs-run {dir}/x; \
         mkdir -p {dir}/x",
        st = st(dir),
        cs = cs(dir)
    )
}

/// The input every layer benchmark reads, `dir/input.tar`: a tar of /usr/share and
/// /usr/include, made when it is not there yet.
pub fn input_tar(dir: &str) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {dir}"))?;
    let tar = format!("{dir}/input.tar");
    if !Path::new(&tar).exists() {
        eprintln!("bench: making {tar} from /usr/share and /usr/include");
        time_sh(&format!(
            "tar -cf {tar}.tmp -C / usr/share usr/include 2>/dev/null; mv {tar}.tmp {tar}"
        ))?;
    }
    Ok(tar)
}

/// Runs the layer benchmarks.
pub fn run(opts: &Options, report: &mut Report) -> Result<()> {
    for (place, dir) in PLACES {
        let tar = input_tar(dir)?;
        let size = std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0);
        let files = sh_output(&format!("tar -tf {tar} | wc -l"))?;
        let input = format!(
            "Input: an uncompressed tar of /usr/share and /usr/include, {} MB and {files} entries, on {place}.",
            size / 1_000_000
        );
        let reset = reset_cmd(dir);
        eprintln!("bench: import on {place}");
        let import = Table {
            title: format!("Import a layer ({place})"),
            input: format!(
                "{input} Each run starts from an empty store. strata's import ends with syncfs (the layer is durable when it is listed); the others do not sync."
            ),
            rows: vec![
                row(
                    "strata",
                    &format!("strata import-layer {tar}"),
                    measure(
                        opts.runs,
                        &reset,
                        &format!("{} import-layer {tar} >/dev/null", st(dir)),
                    ),
                ),
                row(
                    "GNU tar",
                    &format!("tar -xf {tar} -C DIR"),
                    measure(opts.runs, &reset, &format!("tar -xf {tar} -C {dir}/x")),
                ),
                row(
                    "containers-storage 1.43",
                    &format!("containers-storage --storage-driver overlay import-layer < {tar}"),
                    measure(
                        opts.runs,
                        &reset,
                        &format!("{} import-layer < {tar} >/dev/null", cs(dir)),
                    ),
                ),
            ],
        };
        report.table(import);

        eprintln!("bench: diff on {place}");
        time_sh(&reset)?;
        let st_id = sh_output(&format!("{} import-layer {tar}", st(dir)))?;
        let cs_id = sh_output(&format!("{} import-layer < {tar}", cs(dir)))?;
        time_sh(&format!("tar -xf {tar} -C {dir}/x"))?;
        let diff = Table {
            title: format!("Export a layer as a tar ({place})"),
            input: format!("{input} The layer imported from it, written to a pipe."),
            rows: vec![
                row(
                    "strata",
                    "strata diff ID | cat > /dev/null",
                    measure(
                        opts.runs,
                        "true",
                        &format!("{} diff {st_id} | cat >/dev/null", st(dir)),
                    ),
                ),
                row(
                    "GNU tar",
                    "tar -cf - -C DIR . | cat > /dev/null",
                    measure(
                        opts.runs,
                        "true",
                        &format!("tar -cf - -C {dir}/x . | cat >/dev/null"),
                    ),
                ),
                row(
                    "containers-storage 1.43",
                    "containers-storage diff -u ID | cat > /dev/null",
                    measure(
                        opts.runs,
                        "true",
                        &format!("{} diff -u {cs_id} | cat >/dev/null", cs(dir)),
                    ),
                ),
            ],
        };
        report.table(diff);
        time_sh(&reset)?;
    }
    deep_chains(opts, report)?;
    Ok(())
}

/// Mount time of deep chains of empty layers, with a read-write layer on top.
fn deep_chains(opts: &Options, report: &mut Report) -> Result<()> {
    let dir = PLACES[0].1;
    let reset = reset_cmd(dir);
    time_sh(&reset)?;
    let mut parent: Option<String> = None;
    let mut cs_parent: Option<String> = None;
    let mut depth = 0;
    for target in [500usize, 1000] {
        eprintln!("bench: building a {target}-layer chain");
        while depth < target {
            let p = parent
                .as_ref()
                .map(|p| format!("--parent {p}"))
                .unwrap_or_default();
            parent = Some(sh_output(&format!("{} create-layer {p}", st(dir)))?);
            if target == 500 {
                let p = cs_parent.clone().unwrap_or_default();
                cs_parent = Some(sh_output(&format!("{} create-layer {p}", cs(dir)))?);
            }
            depth += 1;
        }
        let top = sh_output(&format!(
            "{} create-layer --rw --parent {}",
            st(dir),
            parent.as_deref().unwrap_or_default()
        ))?;
        let mut rows = vec![row(
            "strata",
            &format!("strata mount ID (a {target}-layer chain plus a read-write layer)"),
            measure(
                opts.runs,
                &format!("{} unmount {top} >/dev/null 2>&1; true", st(dir)),
                &format!("{} mount {top} >/dev/null", st(dir)),
            ),
        )];
        time_sh(&format!("{} unmount {top}", st(dir)))?;
        if target == 500 {
            let top = sh_output(&format!(
                "{} create-layer {}",
                cs(dir),
                cs_parent.as_deref().unwrap_or_default()
            ))?;
            rows.push(row(
                "containers-storage 1.43",
                "containers-storage mount ID (the same chain)",
                measure(
                    opts.runs,
                    &format!("{} unmount {top} >/dev/null 2>&1; true", cs(dir)),
                    &format!("{} mount {top} >/dev/null", cs(dir)),
                ),
            ));
        }
        report.table(Table {
            title: format!("Mount a {target}-layer chain (tmpfs)"),
            input: "Chains of empty layers made with `create-layer --parent`, with a read-write layer on \
                    top. Past 500 lowers (the kernel's limit for one overlay) strata nests groups of 500 as \
                    read-only overlays."
                .into(),
            rows,
        });
    }
    time_sh(&reset)?;
    Ok(())
}
