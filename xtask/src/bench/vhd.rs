//! The vhd store: importing a layer as a `layer.vhd` against `cat` (the floor) and the
//! tools it replaces (`tar -x`, `mkfs.ext4 -d`, `qemu-img convert -O vpc`), and mounting
//! a container on images of 1, 10 and 100 layers, cold and with the layers already
//! mounted for another container.

use anyhow::Result;

use super::report::Table;
use super::{Options, Report, container_mounts, measure, row, sh_output, strata};

/// A `strata` command line on the vhd store under `dir`.
fn vhd(dir: &str) -> String {
    format!(
        "{} --root {dir}/vhd --run-root {dir}/vhd-run --store vhd://{dir}/vhd",
        strata().display()
    )
}

/// Runs the vhd benchmarks on tmpfs, on the layer benchmark's input tar in `dir`.
pub fn run(opts: &Options, report: &mut Report, dir: &str) -> Result<()> {
    let tar = super::layers::input_tar(dir)?;
    let size = std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0);
    let files = sh_output(&format!("tar -tf {tar} | wc -l"))?;
    let st = vhd(dir);
    let reset = format!(
        "{st} cleanup >/dev/null 2>&1; rm -rf {dir}/vhd {dir}/vhd-run {dir}/x {dir}/p.img {dir}/p.vhd {dir}/out.raw; mkdir -p {dir}/x"
    );
    // mkfs.ext4 -d needs the image size up front; leave it room.
    let mkfs_mib = size / (1 << 20) * 2 + 256;
    eprintln!("bench: vhd import");
    let load = sh_output("cut -d' ' -f1 /proc/loadavg").unwrap_or_else(|_| "?".into());
    let rows = vec![
        row(
            "strata (vhd store)",
            "strata --store vhd:///DIR import-layer input.tar",
            measure(
                opts.runs,
                &reset,
                &format!("{st} import-layer {tar} >/dev/null"),
            ),
        ),
        row(
            "cat (the floor)",
            "cat input.tar > out.raw",
            measure(opts.runs, &reset, &format!("cat {tar} > {dir}/out.raw")),
        ),
        row(
            "sha256 of the input (the digest alone)",
            "openssl dgst -sha256 input.tar",
            measure(
                opts.runs,
                "true",
                &format!("openssl dgst -sha256 {tar} >/dev/null"),
            ),
        ),
        row(
            "tar -x + mkfs.ext4 -d + qemu-img convert -O vpc",
            &format!(
                "tar -xf input.tar -C x && mkfs.ext4 -q -d x p.img {mkfs_mib}M && qemu-img convert -O vpc p.img p.vhd"
            ),
            measure(
                opts.runs,
                &reset,
                &format!(
                    "tar -xf {tar} -C {dir}/x && mkfs.ext4 -q -F -d {dir}/x {dir}/p.img {mkfs_mib}M && qemu-img convert -O vpc {dir}/p.img {dir}/p.vhd"
                ),
            ),
        ),
    ];
    let verdict = match (&rows[0].time, &rows[1].time, &rows[2].time, &rows[3].time) {
        (Ok(strata), Ok(cat), Ok(digest), Ok(tools)) => {
            let over_cat = |d: &std::time::Duration| d.as_secs_f64() / cat.as_secs_f64().max(1e-9);
            let faster = tools.as_secs_f64() / strata.as_secs_f64().max(1e-9);
            format!(
                " strata took {:.2}x cat (target 1.3x: {}) and was {faster:.0}x faster than the tools it replaces (target 20x: {}); the digest alone took {:.2}x cat.",
                over_cat(strata),
                if over_cat(strata) <= 1.3 {
                    "met"
                } else {
                    "NOT met"
                },
                if faster >= 20.0 { "met" } else { "NOT met" },
                over_cat(digest),
            )
        }
        _ => String::new(),
    };
    report.table(Table {
        title: "Import a layer as a layer.vhd (tmpfs)".into(),
        input: format!(
            "Input: the same tar, {} MB and {files} entries, on tmpfs; every output on tmpfs. strata's import checks the digest, records the layer in the catalog and syncs it. `cat` copies inside the kernel (copy_file_range); an import must also bring every byte to user space to hash it, so the sha256 of the input alone (openssl, SHA-NI) is shown too: no import that checks a digest is faster than it.{verdict} Load average when the section started: {load} (the machine may be shared).",
            size / 1_000_000
        ),
        rows,
    });
    sh_output(&reset)?;

    eprintln!("bench: vhd container mounts");
    let rows = container_mounts(opts, &st, "vhd")?;
    sh_output(&reset)?;
    // The 100-layer cold row is the one with a target.
    let deep = match rows.get(4).map(|r| &r.time) {
        Some(Ok(t)) => format!(
            " A 100-layer container mounted cold in {:.1} ms (target under 1 s: {}).",
            t.as_secs_f64() * 1000.0,
            if t.as_secs_f64() < 1.0 {
                "met"
            } else {
                "NOT met"
            }
        ),
        _ => String::new(),
    };
    report.table(Table {
        title: "Mount a container of a vhd store (tmpfs)".into(),
        input: format!("Images of 1, 10 and 100 empty layers, each a layer.vhd attached on its own loop device and mounted once (up to four at a time); the container's sandbox.vhdx behind a block view, its ext4 the overlay's upper. Here the ratio column is each row's time over the first row's.{deep} Load average when the section started: {load} (the machine may be shared)."),
        rows,
    });
    Ok(())
}
