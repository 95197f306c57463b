//! Pulling a whole image from an OCI layout: strata's `pull` against `skopeo copy` into a
//! containers-storage overlay store and `umoci unpack`, on the same layout, and what
//! byte-exact layers cost (tar-split records against layer sizes, a diff with and without
//! them).

use std::path::Path;

use anyhow::{Context, Result};

use super::layers::{cs, st};
use super::report::Table;
use super::{Options, Report, measure, row, sh_output, time_sh};

/// The five layers of the image: parts of `/usr`, about 700 MB in all.
const LAYERS: &[&str] = &[
    "usr/bin",
    "usr/include",
    "usr/sbin usr/libexec",
    "usr/local",
    "usr/share/man",
];

/// Builds the image once with umoci (kept between runs): one `repack` per layer.
fn make_layout(dir: &str) -> Result<()> {
    let layout = format!("{dir}/layout");
    if Path::new(&layout).join("index.json").exists() {
        return Ok(());
    }
    eprintln!(
        "bench: building a {}-layer image from /usr with umoci",
        LAYERS.len()
    );
    time_sh(&format!(
        "rm -rf {layout} {dir}/build && umoci init --layout {layout} && umoci new --image {layout}:v1 \
         && umoci unpack --image {layout}:v1 {dir}/build >/dev/null"
    ))?;
    for parts in LAYERS {
        time_sh(&format!(
            "tar -cf - -C / {parts} 2>/dev/null | tar -xf - -C {dir}/build/rootfs \
             && umoci repack --refresh-bundle --image {layout}:v1 {dir}/build"
        ))?;
    }
    time_sh(&format!("rm -rf {dir}/build"))?;
    Ok(())
}

/// Runs the image benchmarks on the disk place of the layer benchmarks.
pub fn run(opts: &Options, report: &mut Report, dir: &str) -> Result<()> {
    let dir = format!("{dir}/images");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {dir}"))?;
    make_layout(&dir)?;
    let layout = format!("{dir}/layout");
    let blobs = sh_output(&format!("du -sm {layout}/blobs | cut -f1"))?;
    let reset = format!(
        "{st} cleanup >/dev/null 2>&1; {cs} shutdown >/dev/null 2>&1; umount -R {dir}/cs/overlay >/dev/null 2>&1; \
         rm -rf {dir}/st {dir}/st-run {dir}/cs {dir}/cs-run {dir}/bundle; \
         sync; echo 3 > /proc/sys/vm/drop_caches; cat {layout}/blobs/sha256/* > /dev/null",
        st = st(&dir),
        cs = cs(&dir)
    );
    eprintln!("bench: pull an image");
    report.table(Table {
        title: "Pull a 5-layer image from an OCI layout (disk)".into(),
        input: format!(
            "Input: an OCI layout umoci built from /usr ({}), 5 gzip layers, {blobs} MB of blobs, on ext4. Each run starts from an empty store; every blob's digest is checked by all three. strata and containers-storage record the image (strata syncs each layer before it is listed); umoci only extracts a root filesystem. Between runs the page cache is dropped and the blobs read back in: on a file system without a journal, ext4 passes over inodes deleted in the last minute one by one while their table blocks are cached, so without it each run paid for the previous run's deletions, more every time (strata's pull went from 2.5 s to 8.4 s over four runs).",
            LAYERS.join(", ")
        ),
        rows: vec![
            row(
                "strata pull",
                "strata pull oci:layout:v1",
                measure(
                    opts.runs,
                    &reset,
                    &format!("{} pull oci:{layout}:v1 >/dev/null", st(&dir)),
                ),
            ),
            row(
                "skopeo copy into containers-storage (overlay)",
                "skopeo copy oci:layout:v1 containers-storage:[overlay@…]bench:v1",
                measure(
                    opts.runs,
                    &reset,
                    &format!(
                        "skopeo copy -q oci:{layout}:v1 'containers-storage:[overlay@{dir}/cs+{dir}/cs-run]bench:v1'"
                    ),
                ),
            ),
            row(
                "umoci unpack",
                "umoci unpack --image layout:v1 bundle",
                measure(
                    opts.runs,
                    &reset,
                    &format!("umoci unpack --image {layout}:v1 {dir}/bundle >/dev/null"),
                ),
            ),
        ],
    });

    eprintln!("bench: byte-exact diffs");
    sh_output(&reset)?;
    sh_output(&format!("{} pull oci:{layout}:v1", st(&dir)))?;
    let layers = sh_output(&format!(
        "{} layers --json | tr ',' '\\n' | grep '\"id\"' | cut -d'\"' -f4",
        st(&dir)
    ))?;
    let mut split_bytes = 0u64;
    let mut tar_bytes = 0u64;
    let mut biggest = (0u64, String::new());
    for id in layers.lines() {
        let split = std::fs::metadata(format!("{dir}/st/overlay/{id}/tar-split"))
            .map(|m| m.len())
            .unwrap_or(0);
        let size: u64 = sh_output(&format!(
            "{} layer --json {id} | tr ',' '\\n' | grep '\"diff-size\"' | cut -d: -f2 | tr -d '}}]'",
            st(&dir)
        ))?
        .parse()
        .unwrap_or(0);
        split_bytes += split;
        tar_bytes += size;
        if size > biggest.0 {
            biggest = (size, id.to_owned());
        }
    }
    let id = biggest.1;
    let overlay = format!("{dir}/st/overlay/{id}");
    report.table(Table {
        title: "Diff of an unchanged layer (disk)".into(),
        input: format!(
            "The image's biggest layer, {} MB. tar-split records for all 5 layers: {split_bytes} bytes for {tar_bytes} bytes of tar ({:.4}%). Byte-exact: the records replayed after a first pass that checks every file's size and CRC-32 and the sha256 of the whole result; deterministic: the same layer with its records set aside (the writer strata used before).",
            biggest.0 / 1_000_000,
            split_bytes as f64 * 100.0 / tar_bytes.max(1) as f64
        ),
        rows: vec![
            row(
                "strata diff, byte-exact",
                "strata diff LAYER > /dev/null",
                measure(
                    opts.runs,
                    "true",
                    &format!("{} diff {id} > /dev/null", st(&dir)),
                ),
            ),
            row(
                "strata diff, deterministic writer",
                "strata diff LAYER > /dev/null (tar-split moved away)",
                measure(
                    opts.runs,
                    "true",
                    &format!(
                        "mv {overlay}/tar-split {overlay}/ts.away && {} diff {id} > /dev/null; mv {overlay}/ts.away {overlay}/tar-split",
                        st(&dir)
                    ),
                ),
            ),
        ],
    });

    eprintln!("bench: diff against an ancestor");
    // strata's store holds the image from the byte-exact section; containers-storage's
    // was emptied by the pulls' last reset.
    sh_output(&format!(
        "skopeo copy -q oci:{layout}:v1 'containers-storage:[overlay@{dir}/cs+{dir}/cs-run]bench:v1'"
    ))?;
    // Both list layers and images in containers-storage's JSON: the base is the layer
    // without a parent, the top the image's `layer`.
    let base_of = |tool: &str| {
        sh_output(&format!(
            "{tool} layers -j | tr '{{' '\\n' | grep '\"id\"' | grep -v '\"parent\"' | cut -d'\"' -f4"
        ))
    };
    let top_of = |tool: &str| {
        sh_output(&format!(
            "{tool} images -j | tr ',' '\\n' | grep '\"layer\"' | cut -d'\"' -f4"
        ))
    };
    let (st_base, st_top) = (base_of(&st(&dir))?, top_of(&st(&dir))?);
    let (cs_base, cs_top) = (base_of(&cs(&dir))?, top_of(&cs(&dir))?);
    let tar_mb = sh_output(&format!(
        "{} diff --from {st_base} {st_top} | wc -c",
        st(&dir)
    ))?
    .parse::<u64>()
    .unwrap_or(0)
        / 1_000_000;
    report.table(Table {
        title: "Diff of an image's top layer against its base layer (disk)".into(),
        input: format!("The image pulled above, in each store: the changes of layers 2 to 5 over layer 1, {tar_mb} MB of tar. strata reads the four diff directories above the base, merged as overlayfs would merge them, without mounting anything; containers-storage mounts both layers and compares the two trees. Page cache warm."),
        rows: vec![
            row(
                "strata diff --from",
                "strata diff --from BASE TOP > /dev/null",
                measure(
                    opts.runs,
                    "true",
                    &format!("{} diff --from {st_base} {st_top} > /dev/null", st(&dir)),
                ),
            ),
            row(
                "containers-storage diff",
                "containers-storage diff -u TOP BASE > /dev/null",
                measure(
                    opts.runs,
                    "true",
                    &format!("{} diff -u {cs_top} {cs_base} > /dev/null", cs(&dir)),
                ),
            ),
        ],
    });
    sh_output(&reset)?;
    Ok(())
}
