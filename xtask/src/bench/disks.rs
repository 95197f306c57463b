//! Virtual disks: `disk-image` against qemu, writing and reading 1 GiB, directly and
//! through a loop-attached block view.

use std::io::{BufRead, BufReader};
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
    let diskimg = target_bin("examples/diskimg");
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

/// A process that holds a loop device until it is told to stop.
struct Held {
    child: Child,
    device: String,
    loop_to_detach: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.loop_to_detach {
            let _ = Command::new("losetup").args(["-d", &self.device]).status();
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
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

fn strata_view(dir: &str, fmt: &str) -> Result<Held> {
    let d = target_bin("examples/diskimg");
    time_sh(&format!(
        "rm -f {dir}/s.{fmt} && {} create --format {fmt} --size 2147483648 {dir}/s.{fmt}",
        d.display()
    ))?;
    // The device is read from the attach's own standard output. (It used to be read from a
    // file the shell redirected into, which the bench could read before the new attach had
    // truncated it: a stale device from an earlier attach, not yet bound, on which the first
    // dd failed with ENOSPC.)
    let mut child = Command::new(&d)
        .args(["attach", &format!("{dir}/s.{fmt}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("start diskimg attach")?;
    let stdout = child
        .stdout
        .take()
        .context("diskimg attach's standard output")?;
    let mut held = Held {
        child,
        device: String::new(),
        loop_to_detach: false,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = tx.send(reader.read_line(&mut line).map(|_| line));
        // Keep reading until the attach exits, so that it never writes into a closed pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    // On failure `held` is dropped, which stops the attach.
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .context("diskimg attach did not print a device within 20 s")?
        .context("read diskimg attach's output")?;
    held.device = line.trim().to_owned();
    if held.device.is_empty() {
        bail!("diskimg attach exited without printing a device");
    }
    Ok(held)
}

fn qemu_view(dir: &str, fmt: &str) -> Result<Held> {
    time_sh(&format!(
        "rm -f {dir}/q.{fmt} && qemu-img create -q -f {fmt} {dir}/q.{fmt} 2G && rm -f {dir}/export && touch {dir}/export"
    ))?;
    let child = Command::new("qemu-storage-daemon")
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
    let mut held = Held {
        child,
        device: String::new(),
        loop_to_detach: false,
    };
    wait_for("qemu-storage-daemon's FUSE export", || {
        sh_output(&format!("grep -q ' {dir}/export ' /proc/mounts && echo up")).ok()
    })?;
    held.device = sh_output(&format!("losetup --find --show {dir}/export"))?;
    held.loop_to_detach = true;
    Ok(held)
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
        "A new 2 GiB sparse {fmt} served as a raw file over FUSE and loop-attached; 1 GiB written with direct I/O, then read back."
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
