//! The vmdk store: writing a layer onto scratch against the pipeline a user would build
//! from qemu's tools (a delta made by `qemu-img create -b`, served by
//! qemu-storage-daemon's FUSE export, loop-attached, mounted, `tar -x`, unmounted) and
//! against `tar -x` into a plain directory; and mounting a container on images of 1, 10
//! and 100 layers.

use anyhow::Result;

use super::layers::PLACES;
use super::report::Table;
use super::{Options, Report, container_mounts, measure, row, sh_output, strata};

/// A `strata` command line on the vmdk store under `dir`.
fn vmdk(dir: &str) -> String {
    format!(
        "{} --root {dir}/vmdk --run-root {dir}/vmdk-run --store vmdk://{dir}/vmdk",
        strata().display()
    )
}

/// The qemu pipeline as one shell script: a delta on `pipe/scratch.vmdk`, served raw
/// over FUSE, on a loop device, its ext4 mounted and the tar extracted into it, then all
/// of it taken down (the unmount writes the file system back through the export).
fn pipeline_script(dir: &str, tar: &str) -> String {
    let p = format!("{dir}/pipe");
    format!(
        "set -e
qemu-img create -q -f vmdk -o subformat=monolithicSparse -b {p}/scratch.vmdk -F vmdk {p}/delta.vmdk
touch {p}/view
qemu-storage-daemon --daemonize --pidfile {p}/qsd.pid \
  --blockdev driver=file,node-name=file,filename={p}/delta.vmdk \
  --blockdev driver=vmdk,node-name=disk,file=file \
  --export type=fuse,id=exp,node-name=disk,mountpoint={p}/view,writable=on
dev=$(losetup --find --show {p}/view)
mount $dev {p}/mnt
tar -xf {tar} -C {p}/mnt
umount {p}/mnt
losetup -d $dev
pid=$(cat {p}/qsd.pid)
kill $pid
while kill -0 $pid 2>/dev/null; do sleep 0.01; done
"
    )
}

/// Runs the vmdk benchmarks: the layer write on tmpfs and on disk, the mounts on tmpfs.
pub fn run(opts: &Options, report: &mut Report) -> Result<()> {
    for (place, dir) in PLACES {
        layer_write(opts, report, place, dir)?;
    }
    container_mount_table(opts, report, PLACES[0].1)
}

/// One layer written onto scratch by strata, by the qemu pipeline and by `tar -x` into a
/// directory, all in `dir` (on `place`).
fn layer_write(opts: &Options, report: &mut Report, place: &str, dir: &str) -> Result<()> {
    let tar = super::layers::input_tar(dir)?;
    let size = std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0);
    let files = sh_output(&format!("tar -tf {tar} | wc -l"))?;
    let st = vmdk(dir);
    let p = format!("{dir}/pipe");
    // Whatever a failed run left: the pipeline's mount, loop device and server, and the
    // store's attachments.
    let take_down = format!(
        "{st} cleanup >/dev/null 2>&1; umount {p}/mnt >/dev/null 2>&1; \
         for d in $(losetup -j {p}/view -O NAME -n 2>/dev/null); do losetup -d $d; done; \
         test -f {p}/qsd.pid && kill $(cat {p}/qsd.pid) >/dev/null 2>&1; sleep 0.1; true"
    );
    let reset = format!("{take_down}; rm -rf {dir}/vmdk {dir}/vmdk-run {dir}/x; mkdir -p {dir}/x");
    eprintln!("bench: vmdk layer write on {place}");
    // Both scratch disks exist before the clock starts: the store's (made at its first
    // layer) and the pipeline's (mkfs.ext4 on a raw image of the same 8 GiB, converted).
    let store_ready =
        format!("{reset} && {st} delete-layer $({st} create-layer) >/dev/null && sync");
    sh_output(&format!(
        "{take_down}; rm -rf {p} && mkdir -p {p}/mnt && \
         truncate -s 8G {p}/scratch.raw && mkfs.ext4 -q -F -L scratch {p}/scratch.raw && \
         qemu-img convert -O vmdk -o subformat=monolithicSparse {p}/scratch.raw {p}/scratch.vmdk && \
         rm {p}/scratch.raw"
    ))?;
    std::fs::write(format!("{p}/pipeline.sh"), pipeline_script(dir, &tar))?;
    let pipe_ready = format!("{take_down}; rm -f {p}/delta.vmdk {p}/view {p}/qsd.pid");
    report.table(Table {
        title: format!("Write a layer onto a VMDK chain ({place})"),
        input: format!(
            "Input: the same tar, {} MB and {files} entries, on {place}; every disk and directory there too. Each run writes one layer as a new sparse delta on an 8 GiB scratch VMDK holding an empty ext4, made before the clock starts. strata's import attaches the chain through its block view, applies the tar, checks the digest, detaches and records the layer. The qemu pipeline is the same steps by hand: `qemu-img create -b scratch.vmdk delta.vmdk`, `qemu-storage-daemon --export type=fuse`, `losetup`, `mount`, `tar -x`, `umount`, `losetup -d`, stop the daemon.",
            size / 1_000_000
        ),
        rows: vec![
            row(
                "strata (vmdk store)",
                "strata --store vmdk:///DIR import-layer input.tar",
                measure(
                    opts.runs,
                    &store_ready,
                    &format!("{st} import-layer {tar} >/dev/null"),
                ),
            ),
            row(
                "qemu-img + qemu-storage-daemon + loop + mount + tar -x",
                "sh pipeline.sh (see the text above)",
                measure(opts.runs, &pipe_ready, &format!("sh {p}/pipeline.sh")),
            ),
            row(
                "tar -x into a directory",
                "tar -xf input.tar -C x",
                measure(
                    opts.runs,
                    &format!("rm -rf {dir}/x && mkdir -p {dir}/x"),
                    &format!("tar -xf {tar} -C {dir}/x"),
                ),
            ),
        ],
    });
    sh_output(&format!("{reset}; rm -rf {p}")).map(drop)
}

/// Container mounts on 1, 10 and 100 layers of a vmdk store in `dir`.
fn container_mount_table(opts: &Options, report: &mut Report, dir: &str) -> Result<()> {
    let st = vmdk(dir);
    let reset = format!("{st} cleanup >/dev/null 2>&1; rm -rf {dir}/vmdk {dir}/vmdk-run");
    sh_output(&reset)?;
    eprintln!("bench: vmdk container mounts");
    let rows = container_mounts(opts, &st, "vmdk")?;
    sh_output(&reset)?;
    report.table(Table {
        title: "Mount a container of a vmdk store (tmpfs)".into(),
        input: "Images of 1, 10 and 100 empty layers, each a delta VMDK on its parent's down to scratch; the container's delta on the top layer's, attached read-write through one block view serving the whole chain, its ext4 mounted. Here the ratio column is each row's time over the first row's.".into(),
        rows,
    });
    Ok(())
}
