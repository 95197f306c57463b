//! Virtual disks: `disk-image` against qemu, writing and reading 1 GiB, directly and
//! through a loop-attached block view.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::report::Table;
use super::{Options, Report, measure, row, sh_output, target_bin, time_sh};

const FORMATS: &[&str] = &["vmdk", "vhdx"];

/// Runs the disk benchmarks in `dir` (on disk, as VM images usually are).
pub fn run(opts: &Options, report: &mut Report, dir: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {dir}"))?;
    let data = format!("{dir}/data.raw");
    if !std::path::Path::new(&data).exists() {
        time_sh(&format!(
            "yes 'strata disk image benchmark line' | head -c 1G > {data}.tmp && mv {data}.tmp {data}"
        ))?;
    }
    let diskimg = target_bin("diskimg");
    let d = diskimg.display();
    for fmt in FORMATS {
        eprintln!("bench: {fmt} through the crate");
        let clean = format!("rm -f {dir}/a.{fmt} {dir}/b.{fmt}; sync");
        let make = format!("{clean}; {d} create --format {fmt} --size 1073741824 {dir}/a.{fmt}");
        report.table(Table {
            title: format!("Write 1 GiB into a {fmt} disk"),
            input: format!(
                "1 GiB of text (`yes | head -c 1G`) on disk, into a new sparse {fmt} on disk. \
                 `diskimg write` ends with fdatasync (data, then metadata); `qemu-img convert` \
                 defaults to cache=unsafe and never syncs the data it wrote. So each is also \
                 measured the other way: `diskimg write --unsynced` (the crate's \
                 `Durability::Unsynced`, qemu's cache=unsafe) against qemu's default, and \
                 `qemu-img convert -t writeback`, which flushes at the end, against strata's \
                 default."
            ),
            rows: vec![
                row(
                    "strata (disk-image)",
                    &format!("diskimg write a.{fmt} --offset 0 < data.raw"),
                    measure(
                        opts.runs,
                        &make,
                        &format!("{d} write {dir}/a.{fmt} --offset 0 < {data}"),
                    ),
                ),
                row(
                    "strata (disk-image), unsynced",
                    &format!("diskimg write a.{fmt} --offset 0 --unsynced < data.raw"),
                    measure(
                        opts.runs,
                        &make,
                        &format!("{d} write {dir}/a.{fmt} --offset 0 --unsynced < {data}"),
                    ),
                ),
                row(
                    "qemu-img",
                    &format!("qemu-img convert -f raw -O {fmt} data.raw b.{fmt}"),
                    measure(
                        opts.runs,
                        &clean,
                        &format!("qemu-img convert -f raw -O {fmt} {data} {dir}/b.{fmt}"),
                    ),
                ),
                row(
                    "qemu-img, flushing",
                    &format!("qemu-img convert -t writeback -f raw -O {fmt} data.raw b.{fmt}"),
                    measure(
                        opts.runs,
                        &clean,
                        &format!(
                            "qemu-img convert -t writeback -f raw -O {fmt} {data} {dir}/b.{fmt}"
                        ),
                    ),
                ),
            ],
        });
        // Both images now hold the data: read them back.
        time_sh(&format!(
            "{d} create --format {fmt} --size 1073741824 {dir}/a.{fmt} && {d} write {dir}/a.{fmt} --offset 0 < {data} && \
             qemu-img convert -f raw -O {fmt} {data} {dir}/b.{fmt}"
        ))?;
        let drop_caches = "sync; echo 3 > /proc/sys/vm/drop_caches";
        report.table(Table {
            title: format!("Read 1 GiB from a {fmt} disk"),
            input: "The disks just written, page cache dropped before each run.".into(),
            rows: vec![
                row(
                    "strata (disk-image)",
                    &format!("diskimg read a.{fmt} --offset 0 --length 1073741824 > /dev/null"),
                    measure(
                        opts.runs,
                        drop_caches,
                        &format!(
                            "{d} read {dir}/a.{fmt} --offset 0 --length 1073741824 > /dev/null"
                        ),
                    ),
                ),
                row(
                    "qemu-io",
                    &format!("qemu-io -f {fmt} -c 'read 0 1G' b.{fmt}"),
                    measure(
                        opts.runs,
                        drop_caches,
                        &format!("qemu-io -f {fmt} -c 'read 0 1G' {dir}/b.{fmt} > /dev/null"),
                    ),
                ),
            ],
        });
        block_views(opts, report, dir, fmt, &data)?;
        time_sh(&format!("rm -f {dir}/a.{fmt} {dir}/b.{fmt}"))?;
    }
    Ok(())
}

/// A loop device over a block view, released on drop: qemu's by detaching the device and
/// stopping the daemon that serves it; ours by `diskimg detach`, which stops its server.
struct Held {
    device: String,
    release: Release,
}

enum Release {
    /// `diskimg detach --run-dir REGISTRY DISK`.
    Detach {
        diskimg: std::path::PathBuf,
        registry: String,
        disk: String,
    },
    /// `losetup -d` the device (when attached), then SIGTERM the serving process.
    Stop { child: Child, loop_attached: bool },
}

impl Drop for Held {
    fn drop(&mut self) {
        match &mut self.release {
            Release::Detach {
                diskimg,
                registry,
                disk,
            } => {
                let _ = Command::new(diskimg)
                    .args(["detach", "--run-dir", registry, disk])
                    .stdout(Stdio::null())
                    .status();
            }
            Release::Stop {
                child,
                loop_attached,
            } => {
                if *loop_attached {
                    let _ = Command::new("losetup").args(["-d", &self.device]).status();
                }
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let _ = child.wait();
            }
        }
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> Option<String>) -> Result<String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Some(v) = ready() {
            return Ok(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not come up within 20 s")
}

/// Our block view as a store gets it: `diskimg attach` starts a detached server, prints
/// the device and exits; the view outlives it until `diskimg detach`.
fn strata_view(dir: &str, fmt: &str) -> Result<Held> {
    let d = target_bin("diskimg");
    let disk = format!("{dir}/s.{fmt}");
    let registry = format!("{dir}/registry");
    time_sh(&format!(
        "rm -f {disk} && {} create --format {fmt} --size 2147483648 {disk}",
        d.display()
    ))?;
    let device = sh_output(&format!(
        "{} attach --run-dir {registry} {disk}",
        d.display()
    ))?;
    if !device.starts_with("/dev/") {
        bail!("diskimg attach printed {device:?}, not a device");
    }
    Ok(Held {
        device,
        release: Release::Detach {
            diskimg: d,
            registry,
            disk,
        },
    })
}

fn qemu_view(dir: &str, fmt: &str) -> Result<Held> {
    time_sh(&format!(
        "rm -f {dir}/q.{fmt} && qemu-img create -q -f {fmt} {dir}/q.{fmt} 2G && rm -f {dir}/export && touch {dir}/export"
    ))?;
    let mut child = Command::new("qemu-storage-daemon")
        .args([
            "--blockdev",
            &format!("driver=file,node-name=file,filename={dir}/q.{fmt}"),
            "--blockdev",
            &format!("driver={fmt},node-name=disk,file=file"),
            "--export",
            &format!("type=fuse,id=exp,node-name=disk,mountpoint={dir}/export,writable=on"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("start qemu-storage-daemon")?;
    let up = wait_for("qemu-storage-daemon's FUSE export", || {
        sh_output(&format!("grep -q ' {dir}/export ' /proc/mounts && echo up")).ok()
    })
    .and_then(|_| sh_output(&format!("losetup --find --show {dir}/export")));
    match up {
        Ok(device) => Ok(Held {
            device,
            release: Release::Stop {
                child,
                loop_attached: true,
            },
        }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// `dd` of 1 GiB in and out of a loop-attached block view: ours against qemu's.
fn block_views(
    opts: &Options,
    report: &mut Report,
    dir: &str,
    fmt: &str,
    data: &str,
) -> Result<()> {
    if !crate::setup::is_root() {
        report.note(format!(
            "The {fmt} block view was not measured: it needs root."
        ));
        return Ok(());
    }
    eprintln!("bench: {fmt} block views");
    let drop_caches = "sync; echo 3 > /proc/sys/vm/drop_caches";
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for (tool, view) in [
        (
            "strata (disk-image block view)",
            strata_view as fn(&str, &str) -> Result<Held>,
        ),
        ("qemu-storage-daemon --export type=fuse", qemu_view),
    ] {
        let held = view(dir, fmt)?;
        let dev = held.device.clone();
        writes.push(row(
            tool,
            "dd if=data.raw of=LOOPDEV bs=1M oflag=direct conv=fsync",
            measure(
                opts.runs,
                "true",
                &format!("dd if={data} of={dev} bs=1M oflag=direct conv=fsync"),
            ),
        ));
        reads.push(row(
            tool,
            "dd if=LOOPDEV of=/dev/null bs=1M count=1024 iflag=direct",
            measure(
                opts.runs,
                drop_caches,
                &format!("dd if={dev} of=/dev/null bs=1M count=1024 iflag=direct"),
            ),
        ));
        drop(held);
    }
    let input = format!(
        "A new 2 GiB sparse {fmt} served as a raw file over FUSE and loop-attached; 1 GiB written with direct I/O, then read back. Ours is served by the detached server a store's attachments use (`diskimg attach` exits once the device is up), qemu's by qemu-storage-daemon."
    );
    report.table(Table {
        title: format!("Write 1 GiB through a {fmt} block view"),
        input: input.clone(),
        rows: writes,
    });
    report.table(Table {
        title: format!("Read 1 GiB through a {fmt} block view"),
        input,
        rows: reads,
    });
    Ok(())
}
