//! Attachments that outlive the process that made them, through the real `diskimg`
//! binary: chains attached by one process are mounted, read and written by another and
//! detached by a third; servers and attaching processes killed at any moment leave
//! nothing the next command does not find and clean; eight processes mounting one chain
//! at once leak nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use disk_image::{Format, create_child};

const DISKIMG: &str = env!("CARGO_BIN_EXE_diskimg");
const SIZE: &str = "64M";

/// A registry directory and the disks of one test, torn down whatever happens.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        Scene {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn registry(&self) -> PathBuf {
        self.path("registry")
    }

    /// Runs `diskimg COMMAND --run-dir REGISTRY ARGS…`.
    fn diskimg(&self, command: &str, args: &[&str]) -> Output {
        Command::new(DISKIMG)
            .arg(command)
            .arg("--run-dir")
            .arg(self.registry())
            .args(args)
            .output()
            .unwrap()
    }

    /// [`Scene::diskimg`], which must succeed; returns its standard output.
    fn ok(&self, command: &str, args: &[&str]) -> String {
        let out = self.diskimg(command, args);
        assert!(
            out.status.success(),
            "diskimg {command} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The directory of the one attachment in the registry.
    fn only_entry(&self) -> PathBuf {
        let dirs: Vec<PathBuf> = std::fs::read_dir(self.registry())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs.into_iter().next().unwrap()
    }

    /// The attachments the registry lists, as JSON values.
    fn listed(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok("attachments", &["--json"])).unwrap()
    }

    /// Everything of the registry that is still in the system: its entries, loop devices
    /// reading a file in the test's directory, mounts below it.
    fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir(self.registry())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lock")
                    .collect()
            })
            .unwrap_or_default();
        let base = self.dir.path().to_string_lossy().into_owned();
        let loops = run("losetup", &["-a"]);
        left.extend(
            loops
                .lines()
                .filter(|l| l.contains(&base))
                .map(String::from),
        );
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        left.extend(
            mounts
                .lines()
                .filter(|l| l.contains(&base))
                .map(String::from),
        );
        left
    }
}

impl Drop for Scene {
    /// Whatever a failed test left: its mounts, every reference on every attachment, and
    /// what the registry's own repair finds.
    fn drop(&mut self) {
        let base = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|p| p.starts_with(&base) && !p.starts_with(&s(&self.registry())))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
        let listed = self.diskimg("attachments", &["--json"]).stdout;
        let listed: Vec<serde_json::Value> = serde_json::from_slice(&listed).unwrap_or_default();
        for a in listed {
            let top = a["top"].as_str().unwrap_or_default().to_string();
            for _ in 0..a["refs"].as_u64().unwrap_or(1) {
                let _ = self.diskimg("detach", &[&top]);
            }
        }
        let _ = self.diskimg("check", &["--repair"]);
    }
}

/// An ext4 filesystem image holding `files` (made by `mkfs.ext4 -d`), as raw bytes.
fn ext4_with(scene: &Scene, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let tree = scene.path(&format!("{name}-tree"));
    for (path, data) in files {
        let p = tree.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let raw = scene.path(&format!("{name}.raw"));
    run("truncate", &["-s", SIZE, &s(&raw)]);
    run("mkfs.ext4", &["-q", "-d", &s(&tree), &s(&raw)]);
    raw
}

/// A fixed VHD (raw-addressable) holding an ext4 with `files`, made by qemu-img.
fn fixed_vhd(scene: &Scene, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let raw = ext4_with(scene, name, files);
    let vhd = scene.path(&format!("{name}.vhd"));
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vpc",
        "-o",
        "subformat=fixed",
        &s(&raw),
        &s(&vhd),
    ]);
    vhd
}

/// A chain of `depth` disks of `format`'s family whose base holds an ext4 with a file
/// `base.txt`; returns the top.
fn chain(scene: &Scene, format: &str, depth: usize) -> PathBuf {
    let raw = ext4_with(scene, format, &[("base.txt", b"from the base\n")]);
    let mut top = scene.path(&format!("{format}-0.{format}"));
    qemu_img(&["convert", "-f", "raw", "-O", format, &s(&raw), &s(&top)]);
    for level in 1..depth {
        let child = scene.path(&format!("{format}-{level}.{format}"));
        drop(create_child(&child, &top).unwrap());
        top = child;
    }
    top
}

/// Mounts `device` at `mnt` (read-only when asked).
fn mount(device: &str, mnt: &Path, read_only: bool) {
    std::fs::create_dir_all(mnt).unwrap();
    let mut args = vec![];
    if read_only {
        args.extend(["-o", "ro"]);
    }
    let mnt_arg = s(mnt);
    args.extend([device, mnt_arg.as_str()]);
    run("mount", &args);
}

#[test]
fn chains_attached_by_one_process_are_used_by_another_and_detached_by_a_third_needs_root_fuse_loop()
{
    if !testkit::require(
        "chains_attached_by_one_process_are_used_by_another_and_detached_by_a_third_needs_root_fuse_loop",
        NEEDS,
    ) {
        return;
    }
    let scene = Scene::new();
    let vmdk = chain(&scene, "vmdk", 3);
    let vhdx = chain(&scene, "vhdx", 2);
    assert_eq!(
        disk_image::open_chain(&vhdx, true).unwrap().format(),
        Format::VhdxDifferencing
    );

    // One process attaches both and exits.
    let devices: Vec<String> = scene
        .ok("attach", &[&s(&vmdk), &s(&vhdx)])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(devices.len(), 2, "{devices:?}");
    let listed = scene.listed();
    assert_eq!(listed.len(), 2);
    for a in &listed {
        assert!(a["server"]["pid"].as_u64().is_some(), "{a}");
        assert_eq!(a["refs"], 1);
        assert!(a["problem"].is_null(), "{a}");
    }
    let vmdk_chain = listed.iter().find(|a| a["format"] == "vmdk").unwrap()["chain"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(vmdk_chain, 3);

    // This process mounts what they serve, reads through the chains and writes.
    for (i, device) in devices.iter().enumerate() {
        let mnt = scene.path(&format!("mnt{i}"));
        mount(device, &mnt, false);
        assert_eq!(
            std::fs::read(mnt.join("base.txt")).unwrap(),
            b"from the base\n"
        );
        std::fs::write(mnt.join("written.bin"), pattern(3 << 20, i as u8)).unwrap();
        unmount(&mnt);
    }

    // A third detaches both: the servers flush and stop, nothing is left.
    let out = scene.ok("detach", &[&s(&vmdk), &s(&vhdx)]);
    assert_eq!(out.matches("detached").count(), 2, "{out}");
    assert_eq!(scene.leftovers(), Vec::<String>::new());
    assert_qemu_check("vmdk", &vmdk);
    // qemu opens no differencing VHDX: its base is checked, the child read back below.
    assert_qemu_check("vhdx", &scene.path("vhdx-0.vhdx"));

    // What was written is in the top disks: attached read-only again, it reads back.
    for (i, top) in [&vmdk, &vhdx].into_iter().enumerate() {
        let device = scene.ok("attach", &["--read-only", &s(top)]);
        let mnt = scene.path(&format!("check{i}"));
        mount(device.trim(), &mnt, true);
        assert_eq!(
            std::fs::read(mnt.join("written.bin")).unwrap(),
            pattern(3 << 20, i as u8)
        );
        unmount(&mnt);
        scene.ok("detach", &[&s(top)]);
    }
    assert_eq!(scene.leftovers(), Vec::<String>::new());
}

#[test]
fn a_raw_addressable_disk_goes_on_a_loop_device_with_no_server_needs_root_loop() {
    if !testkit::require(
        "a_raw_addressable_disk_goes_on_a_loop_device_with_no_server_needs_root_loop",
        NEEDS,
    ) {
        return;
    }
    let scene = Scene::new();
    let vhd = fixed_vhd(&scene, "fixed", &[("a.txt", b"fixed\n")]);
    let device = scene.ok("attach", &[&s(&vhd)]);
    let listed = scene.listed();
    assert_eq!(listed[0]["format"], "vhd-fixed");
    assert!(listed[0]["server"].is_null(), "{}", listed[0]);
    let backing = std::fs::read_to_string(format!(
        "/sys/block/{}/loop/backing_file",
        Path::new(device.trim())
            .file_name()
            .unwrap()
            .to_string_lossy()
    ))
    .unwrap();
    assert_eq!(Path::new(backing.trim()), vhd.canonicalize().unwrap());
    let mnt = scene.path("mnt");
    mount(device.trim(), &mnt, false);
    assert_eq!(std::fs::read(mnt.join("a.txt")).unwrap(), b"fixed\n");
    unmount(&mnt);
    scene.ok("detach", &[&s(&vhd)]);
    assert_eq!(scene.leftovers(), Vec::<String>::new());
    // qemu-img checks no VHD; it must still open it as the fixed VHD it was.
    assert!(qemu_img(&["info", "-f", "vpc", &s(&vhd)]).contains("file format: vpc"));
}

#[test]
fn attachments_are_shared_by_count_and_conflicting_modes_are_refused_needs_root_fuse_loop() {
    if !testkit::require(
        "attachments_are_shared_by_count_and_conflicting_modes_are_refused_needs_root_fuse_loop",
        NEEDS,
    ) {
        return;
    }
    let scene = Scene::new();
    let top = chain(&scene, "vmdk", 2);
    let parent = scene.path("vmdk-0.vmdk");
    let first = scene.ok("attach", &["--read-only", &s(&top)]);
    let second = scene.ok("attach", &["--read-only", &s(&top)]);
    assert_eq!(first, second, "one chain is attached once");
    assert_eq!(scene.listed()[0]["refs"], 2);

    let refused = |args: &[&str], says: &str| {
        let out = scene.diskimg("attach", args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    };
    refused(&[&s(&top)], "attached read-only");
    refused(&[&s(&parent)], "is a parent of the attached");
    // Shared, the chain still meets a caller's confinement.
    let elsewhere = scene.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    refused(
        &["--read-only", "--within", &s(&elsewhere), &s(&top)],
        "which lies outside",
    );
    let within = ["--read-only", "--within", &s(scene.dir.path()), &s(&top)];
    assert_eq!(scene.ok("attach", &within), first);
    scene.ok("detach", &[&s(&top)]);

    // A filesystem mounted from it keeps the last reference from being dropped.
    let mnt = scene.path("mnt");
    mount(first.trim(), &mnt, true);
    assert!(
        scene
            .ok("detach", &[&s(&top)])
            .contains("still attached for 1")
    );
    let out = scene.diskimg("detach", &[&s(&top)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("still mounted at"),
        "{err}"
    );
    unmount(&mnt);
    scene.ok("detach", &[&s(&top)]);

    // Reading a parent under a writable child is fine: the child never writes it…
    scene.ok("attach", &[&s(&top)]);
    scene.ok("attach", &["--read-only", &s(&parent)]);
    scene.ok("detach", &[&s(&top), &s(&parent)]);
    // …but a writable parent keeps its children from being attached.
    scene.ok("attach", &[&s(&parent)]);
    refused(&["--read-only", &s(&top)], "is attached writable");
    scene.ok("detach", &[&s(&parent)]);
    assert_eq!(scene.leftovers(), Vec::<String>::new());
}

#[test]
fn a_server_killed_under_a_mounted_filesystem_being_written_is_found_and_cleaned_needs_root_fuse_loop()
 {
    if !testkit::require(
        "a_server_killed_under_a_mounted_filesystem_being_written_is_found_and_cleaned_needs_root_fuse_loop",
        NEEDS,
    ) {
        return;
    }
    let scene = Scene::new();
    // A VMDK delta on its base, and a dynamic VHDX (qemu checks no differencing one).
    for (format, depth) in [("vmdk", 2), ("vhdx", 1)] {
        let top = chain(&scene, format, depth);
        let device = scene.ok("attach", &[&s(&top)]);
        let mnt = scene.path(&format!("mnt-{format}"));
        mount(device.trim(), &mnt, false);
        // A writer that keeps going until the filesystem fails under it.
        let mut writer = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "i=0; while dd if=/dev/urandom of={}/f$i bs=64k count=8 conv=fsync 2>/dev/null; do i=$((i+1)); done",
                s(&mnt)
            ))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let pid = scene.listed()[0]["server"]["pid"].as_u64().unwrap();
        run("kill", &["-KILL", &pid.to_string()]);
        let _ = writer.wait();

        // The next command finds it…
        let out = scene.diskimg("check", &[]);
        let found = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{found}");
        assert!(
            found.contains(&format!("server (pid {pid}) is gone")),
            "{found}"
        );
        // …and, told to repair, cleans it: the filesystem on the dead device, the device,
        // the view, the record.
        let repaired = scene.ok("check", &["--repair"]);
        assert!(repaired.starts_with("repaired:"), "{repaired}");
        assert!(repaired.contains("which stood on it"), "{repaired}");
        assert_eq!(scene.leftovers(), Vec::<String>::new(), "{repaired}");
        assert_qemu_check(format, &top);
    }
}

/// Kills `diskimg ARGS` after `delay`; returns whether it had already finished.
fn kill_after(scene: &Scene, command: &str, args: &[&str], delay: Duration) -> bool {
    let mut child = Command::new(DISKIMG)
        .arg(command)
        .arg("--run-dir")
        .arg(scene.registry())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let _ = child.wait();
    finished
}

/// How long `diskimg ARGS` takes, in this scene.
fn timed(scene: &Scene, command: &str, args: &[&str]) -> Duration {
    let start = Instant::now();
    scene.ok(command, args);
    start.elapsed()
}

#[test]
fn processes_killed_while_attaching_or_detaching_leave_nothing_the_next_command_cannot_clean_needs_root_fuse_loop()
 {
    if !testkit::require(
        "processes_killed_while_attaching_or_detaching_leave_nothing_the_next_command_cannot_clean_needs_root_fuse_loop",
        NEEDS,
    ) {
        return;
    }
    let scene = Scene::new();
    let served = chain(&scene, "vmdk", 2);
    let direct = fixed_vhd(&scene, "direct", &[("a", b"a")]);
    // A new seed each run, printed: the kills land at other moments every time.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x2545_f491_4f6c_dd1d, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("kill delays from seed {seed:#x}");
    let mut rng = seed;
    let mut next = move |bound: u128| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (u128::from(rng) % bound.max(1)) as u64
    };
    let mut kills = std::collections::BTreeMap::<String, usize>::new();
    for disk in [&served, &direct] {
        let attach_time = timed(&scene, "attach", &[&s(disk)]);
        let detach_time = timed(&scene, "detach", &[&s(disk)]);
        for round in 0..24 {
            let detaching = round % 2 == 1;
            if detaching {
                scene.ok("attach", &[&s(disk)]);
            }
            let (command, whole) = if detaching {
                ("detach", detach_time)
            } else {
                ("attach", attach_time)
            };
            let delay = Duration::from_micros(next(whole.as_micros()));
            let finished = kill_after(&scene, command, &[&s(disk)], delay);
            let repaired = scene.ok("check", &["--repair"]);
            // What is left is either nothing, or one whole attachment; a whole one is
            // detached by the next user as usual.
            let listed = scene.listed();
            assert!(listed.len() <= 1, "{listed:?}");
            if let Some(a) = listed.first() {
                assert!(a["problem"].is_null(), "{a}");
                scene.ok("detach", &[&s(disk)]);
            }
            assert_eq!(scene.leftovers(), Vec::<String>::new(), "{repaired}");
            let what = match repaired.lines().next() {
                None if finished => "finished before the kill".to_string(),
                None => "killed with nothing to clean".to_string(),
                Some(line) => {
                    let detail = line.split(": ").nth(2).unwrap_or(line);
                    detail.split(';').next().unwrap_or(detail).to_string()
                }
            };
            *kills.entry(format!("{command}: {what}")).or_default() += 1;
        }
    }
    eprintln!("kills while attaching and detaching, by what the next command found:");
    for (what, n) in &kills {
        eprintln!("  {n:3}  {what}");
    }
    assert_qemu_check("vmdk", &served);
    assert!(qemu_img(&["info", "-f", "vpc", &s(&direct)]).contains("file format: vpc"));
}

#[test]
fn eight_processes_mounting_one_chain_at_once_leave_no_attachment_or_loop_device_needs_root_fuse_loop()
 {
    if !testkit::require(
        "eight_processes_mounting_one_chain_at_once_leave_no_attachment_or_loop_device_needs_root_fuse_loop",
        NEEDS,
    ) {
        return;
    }
    let scene = Scene::new();
    let top = chain(&scene, "vmdk", 3);
    // Loop devices reading this test's files (other tests run beside it).
    let ours = || -> Vec<String> {
        let base = scene.dir.path().to_string_lossy().into_owned();
        run("losetup", &["-a"])
            .lines()
            .filter(|l| l.contains(&base))
            .map(String::from)
            .collect()
    };
    let loops_before = ours();
    let registry = s(&scene.registry());
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let mnt = scene.path(&format!("w{w}"));
            std::fs::create_dir_all(&mnt).unwrap();
            let script = format!(
                "set -e
                 for i in 1 2 3 4 5; do
                   dev=$({DISKIMG} attach --read-only --run-dir {registry} {top})
                   mount -o ro \"$dev\" {mnt}
                   grep -q 'from the base' {mnt}/base.txt
                   umount {mnt}
                   {DISKIMG} detach --run-dir {registry} {top} >/dev/null
                 done",
                top = s(&top),
                mnt = s(&mnt),
            );
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (w, worker) in workers.into_iter().enumerate() {
        let out = worker.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "worker {w}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(scene.listed(), Vec::<serde_json::Value>::new());
    assert_eq!(scene.leftovers(), Vec::<String>::new());
    assert_eq!(ours(), loops_before, "loop devices leaked");
    assert_qemu_check("vmdk", &top);
}

#[test]
fn records_of_an_earlier_boot_are_dropped_without_touching_devices_needs_root_fuse_loop() {
    if !testkit::require(
        "records_of_an_earlier_boot_are_dropped_without_touching_devices_needs_root_fuse_loop",
        NEEDS,
    ) {
        return;
    }
    let scene = Scene::new();
    let top = chain(&scene, "vhdx", 2);
    scene.ok("attach", &[&s(&top)]);
    let entry = scene.only_entry();
    let record = std::fs::read_to_string(entry.join("record.json")).unwrap();
    scene.ok("detach", &[&s(&top)]);
    // The same record, as a machine that rebooted (with /run not on tmpfs) finds it.
    let mut stale: serde_json::Value = serde_json::from_str(&record).unwrap();
    stale["boot_id"] = "an earlier boot".into();
    std::fs::create_dir_all(entry.join("mnt")).unwrap();
    std::fs::write(entry.join("record.json"), stale.to_string()).unwrap();
    let listed = scene.listed();
    assert_eq!(listed[0]["problem"], "recorded in an earlier boot");
    let out = scene.diskimg("attachments", &[]);
    assert!(out.status.success());
    // Any registry command sets it right first, and says so.
    let out = scene.diskimg("attach", &[&s(&top)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("set right") && err.contains("earlier boot"),
        "{err}"
    );
    assert_eq!(scene.listed().len(), 1);
    scene.ok("detach", &[&s(&top)]);
    assert_eq!(scene.leftovers(), Vec::<String>::new());
}

#[test]
fn an_unreadable_record_is_torn_down_with_what_it_held_needs_root_fuse_loop() {
    if !testkit::require(
        "an_unreadable_record_is_torn_down_with_what_it_held_needs_root_fuse_loop",
        NEEDS,
    ) {
        return;
    }
    let scene = Scene::new();
    let top = chain(&scene, "vmdk", 2);
    scene.ok("attach", &[&s(&top)]);
    let entry = scene.only_entry();
    std::fs::write(entry.join("record.json"), b"{ not json").unwrap();
    // The next attach finds it, tears down its device and view (its server ends with
    // the view), and attaches afresh.
    let out = scene.diskimg("attach", &[&s(&top)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("set right") && err.contains("detached"),
        "{err}"
    );
    assert_eq!(scene.listed().len(), 1);
    scene.ok("detach", &[&s(&top)]);
    assert_eq!(scene.leftovers(), Vec::<String>::new());
}
