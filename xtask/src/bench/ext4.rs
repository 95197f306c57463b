//! tar -> ext4 image: `ext4-writer` against `tar -x` + `mkfs.ext4 -d`, and `cat` (the floor);
//! then tar -> ext4 in a VHDX disk: built straight into the disk through `disk-image`'s
//! `DiskFile`, against a raw build or `mkfs.ext4 -d` followed by `qemu-img convert`.

use anyhow::Result;

use super::report::Table;
use super::{Options, Report, measure, row, sh_output, target_bin};

/// Runs the ext4 image benchmark on tmpfs, on the layer benchmark's input tar.
pub fn run(opts: &Options, report: &mut Report, dir: &str) -> Result<()> {
    let tar = super::layers::input_tar(dir)?;
    let size = std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0);
    let files = sh_output(&format!("tar -tf {tar} | wc -l"))?;
    // mkfs.ext4 -d needs the image size up front; leave it room.
    let mkfs_mib = size / (1 << 20) * 2 + 256;
    let tar2ext4 = target_bin("examples/tar2ext4");
    eprintln!("bench: tar -> ext4");
    let clean =
        format!("rm -rf {dir}/x {dir}/out.img {dir}/out.raw {dir}/out.vhdx; mkdir -p {dir}/x");
    report.table(Table {
        title: "Build an ext4 image from a layer tar (tmpfs)".into(),
        input: format!(
            "Input: the same tar, {} MB and {files} entries, on tmpfs. Every image is written to tmpfs.",
            size / 1_000_000
        ),
        rows: vec![
            row(
                "strata (ext4-writer)",
                "tar2ext4 -i input.tar -o out.img",
                measure(
                    opts.runs,
                    &clean,
                    &format!("{} -i {tar} -o {dir}/out.img", tar2ext4.display()),
                ),
            ),
            row(
                "tar -x + mkfs.ext4 -d",
                &format!("tar -xf input.tar -C x && mkfs.ext4 -q -d x out.img {mkfs_mib}M"),
                measure(
                    opts.runs,
                    &clean,
                    &format!(
                        "tar -xf {tar} -C {dir}/x && mkfs.ext4 -q -F -d {dir}/x {dir}/out.img {mkfs_mib}M"
                    ),
                ),
            ),
            row(
                "cat (the floor)",
                "cat input.tar > out.raw",
                measure(opts.runs, &clean, &format!("cat {tar} > {dir}/out.raw")),
            ),
        ],
    });
    let t = tar2ext4.display();
    let convert = format!("qemu-img convert -f raw -O vhdx {dir}/out.img {dir}/out.vhdx");
    eprintln!("bench: tar -> ext4 in a vhdx");
    report.table(Table {
        title: "Build an ext4 image into a VHDX disk (tmpfs)".into(),
        input: format!(
            "Input: the same tar, {} MB and {files} entries, on tmpfs; every file is written \
             to tmpfs. strata builds through `disk_image::DiskFile` into a new dynamic VHDX \
             (virtual size: the builder's 128 GiB bound) and syncs it at the end (free on \
             tmpfs); `--unsynced` is qemu's cache=unsafe, which `qemu-img convert` uses. The \
             peers build a raw image, then convert it.",
            size / 1_000_000
        ),
        rows: vec![
            row(
                "strata (ext4-writer into disk-image)",
                "tar2ext4 -i input.tar -o out.vhdx --format vhdx",
                measure(
                    opts.runs,
                    &clean,
                    &format!("{t} -i {tar} -o {dir}/out.vhdx --format vhdx"),
                ),
            ),
            row(
                "strata, unsynced",
                "tar2ext4 -i input.tar -o out.vhdx --format vhdx --unsynced",
                measure(
                    opts.runs,
                    &clean,
                    &format!("{t} -i {tar} -o {dir}/out.vhdx --format vhdx --unsynced"),
                ),
            ),
            row(
                "strata raw + qemu-img convert (the path it replaces)",
                "tar2ext4 -i input.tar -o out.img && qemu-img convert -f raw -O vhdx out.img out.vhdx",
                measure(
                    opts.runs,
                    &clean,
                    &format!("{t} -i {tar} -o {dir}/out.img && {convert}"),
                ),
            ),
            row(
                "tar -x + mkfs.ext4 -d + qemu-img convert",
                &format!(
                    "tar -xf input.tar -C x && mkfs.ext4 -q -d x out.img {mkfs_mib}M && \
                     qemu-img convert -f raw -O vhdx out.img out.vhdx"
                ),
                measure(
                    opts.runs,
                    &clean,
                    &format!(
                        "tar -xf {tar} -C {dir}/x && mkfs.ext4 -q -F -d {dir}/x {dir}/out.img {mkfs_mib}M && {convert}"
                    ),
                ),
            ),
        ],
    });
    sh_output(&clean)?;
    Ok(())
}
