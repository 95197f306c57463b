//! Attaching disks as block devices: ext4 on a sparse VMDK chain and on a VHDX through the
//! FUSE block view, a fixed VHD straight on a loop device, and cleanup of stale attaches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use disk_image::{Format, attach, create, create_child, open, open_chain};
use testkit::Requirement::{Command as Program, Path as DevPath, Root};

const SIZE: u64 = 64 << 20;

/// Files written into the filesystem on the attached disk.
fn files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("small.txt".into(), b"hello from strata\n".to_vec()),
        ("big.bin".into(), pattern(5 << 20, 7)),
        ("dir/nested.bin".into(), pattern(300_000, 8)),
    ]
}

/// mkfs.ext4 on `device`, mount it, write [`files`], unmount.
fn make_filesystem(device: &Path, mnt: &Path) {
    run("mkfs.ext4", &["-q", "-F", &s(device)]);
    run("mount", &[&s(device), &s(mnt)]);
    for (name, data) in files() {
        let p = mnt.join(&name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data).unwrap();
    }
    unmount(mnt);
}

/// Converts `image` (with its chain) to raw with qemu-img, loop-mounts it read-only and
/// checks the files are there.
fn check_files_via_qemu_raw(fmt: &str, image: &Path, dir: &Path) {
    let raw = dir.join("check.raw");
    qemu_img(&["convert", "-f", fmt, "-O", "raw", &s(image), &s(&raw)]);
    let mnt = dir.join("check-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run("mount", &["-o", "loop,ro", &s(&raw), &s(&mnt)]);
    let result = std::panic::catch_unwind(|| {
        for (name, data) in files() {
            assert_eq!(std::fs::read(mnt.join(&name)).unwrap(), data, "{name}");
        }
    });
    unmount(&mnt);
    result.unwrap();
}

#[test]
fn attach_vmdk_chain_ext4_with_qemu_img_needs_root_fuse_loop() {
    if !testkit::require(
        "attach_vmdk_chain_ext4_with_qemu_img_needs_root_fuse_loop",
        NEEDS,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vmdk");
    let top = dir.path().join("top.vmdk");
    drop(create(&base, Format::VmdkSparse, SIZE).unwrap());
    drop(create_child(&top, &base).unwrap());
    let base_bytes = file_bytes(&base);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let attached = attach(open_chain(&top, false).unwrap(), false).unwrap();
    assert!(
        s(attached.device()).starts_with("/dev/loop"),
        "{:?}",
        attached.device()
    );
    make_filesystem(attached.device(), &mnt);
    attached.detach().unwrap();
    assert_eq!(
        file_bytes(&base),
        base_bytes,
        "writes went to the top disk only"
    );
    assert_qemu_check("vmdk", &top);
    assert_qemu_check("vmdk", &base);
    assert_eq!(qemu_chain("vmdk", &top), ["top.vmdk", "base.vmdk"]);
    check_files_via_qemu_raw("vmdk", &top, dir.path());
}

#[test]
fn attach_vhdx_ext4_with_qemu_img_needs_root_fuse_loop() {
    if !testkit::require("attach_vhdx_ext4_with_qemu_img_needs_root_fuse_loop", NEEDS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("sandbox.vhdx");
    drop(create(&img, Format::Vhdx, SIZE).unwrap());
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let attached = attach(open(&img, false).unwrap(), false).unwrap();
    make_filesystem(attached.device(), &mnt);
    drop(attached);
    assert_qemu_check("vhdx", &img);
    check_files_via_qemu_raw("vhdx", &img, dir.path());

    // A differencing child (which qemu cannot read): mount the base's filesystem through
    // the child, add a file, and check it through our own flatten.
    let base_bytes = file_bytes(&img);
    let child = dir.path().join("child.vhdx");
    drop(create_child(&child, &img).unwrap());
    let attached = attach(open_chain(&child, false).unwrap(), false).unwrap();
    run("mount", &[&s(attached.device()), &s(&mnt)]);
    std::fs::write(mnt.join("added.bin"), pattern(1_000_000, 11)).unwrap();
    unmount(&mnt);
    attached.detach().unwrap();
    assert_eq!(
        file_bytes(&img),
        base_bytes,
        "writes went to the child only"
    );
    let flat = dir.path().join("flat.raw");
    disk_image::flatten(&child, &flat, Format::Raw).unwrap();
    run("mount", &["-o", "loop,ro", &s(&flat), &s(&mnt)]);
    let added = std::fs::read(mnt.join("added.bin"));
    let small = std::fs::read(mnt.join("small.txt"));
    unmount(&mnt);
    assert_eq!(added.unwrap(), pattern(1_000_000, 11));
    assert_eq!(small.unwrap(), b"hello from strata\n");
}

#[test]
fn attach_raw_addressable_directly_and_read_only_needs_root_fuse_loop() {
    if !testkit::require(
        "attach_raw_addressable_directly_and_read_only_needs_root_fuse_loop",
        &[Root, DevPath("/dev/loop-control"), DevPath("/dev/fuse")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (format, name, backing_name) in [
        (Format::VhdFixed, "layer.vhd", "layer.vhd"),
        (Format::VmdkFlat, "flat.vmdk", "flat-flat.vmdk"),
        (Format::Raw, "disk.raw", "disk.raw"),
    ] {
        let img = dir.path().join(name);
        drop(create(&img, format, SIZE).unwrap());
        let attached = attach(open(&img, false).unwrap(), false).unwrap();
        // Straight onto the file holding the bytes, not through the block view.
        let dev = attached.device().file_name().unwrap().to_owned();
        let backing =
            std::fs::read_to_string(Path::new("/sys/block").join(&dev).join("loop/backing_file"))
                .unwrap();
        assert_eq!(
            backing.trim(),
            s(&dir.path().join(backing_name)),
            "{format}"
        );
        let data = pattern(1 << 20, 9);
        {
            use std::os::unix::fs::FileExt;
            let dev = std::fs::OpenOptions::new()
                .write(true)
                .open(attached.device())
                .unwrap();
            dev.write_all_at(&data, 4096).unwrap();
            dev.sync_all().unwrap();
        }
        attached.detach().unwrap();
        let disk = open(&img, true).unwrap();
        let mut back = vec![0u8; data.len()];
        disk.read_at(&mut back, 4096).unwrap();
        assert_eq!(back, data, "{format}");
        // Footers and descriptors are intact: the size limit kept the device off them.
        assert_eq!((disk.format(), disk.size()), (format, SIZE));
    }

    // Read-only through the block view: writes fail.
    let sparse = dir.path().join("ro.vmdk");
    drop(create(&sparse, Format::VmdkSparse, SIZE).unwrap());
    let before = file_bytes(&sparse);
    let attached = attach(open(&sparse, true).unwrap(), true).unwrap();
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(attached.device())
        .and_then(|dev| {
            use std::os::unix::fs::FileExt;
            dev.write_all_at(&[1u8; 4096], 0)?;
            dev.sync_all()
        });
    assert!(written.is_err(), "a read-only device took a write");
    drop(attached);
    assert_eq!(file_bytes(&sparse), before);
}

#[test]
fn cleanup_removes_attaches_of_dead_processes_needs_root_fuse_loop() {
    if !testkit::require(
        "cleanup_removes_attaches_of_dead_processes_needs_root_fuse_loop",
        &[Root, DevPath("/dev/loop-control"), Program("losetup")],
    ) {
        return;
    }
    // A state directory as a crashed process leaves it: a dead pid, a loop device still
    // backed by the recorded file.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("stale.raw");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let device = run("losetup", &["--find", "--show", &s(&img)])
        .trim()
        .to_string();
    let base = disk_image::attach::run_dir();
    let state = base.join("999999999-0");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("pid"), "999999999").unwrap();
    std::fs::write(state.join("device"), &device).unwrap();
    std::fs::write(state.join("backing"), s(&img)).unwrap();
    let removed = disk_image::cleanup().unwrap();
    assert!(removed >= 1);
    assert!(!state.exists());
    let listed = run("losetup", &["-a"]);
    assert!(!listed.contains(&s(&img)), "{listed}");
}

#[test]
fn attach_is_released_when_the_caller_panics_needs_root_fuse_loop() {
    if !testkit::require(
        "attach_is_released_when_the_caller_panics_needs_root_fuse_loop",
        &[Root, DevPath("/dev/fuse"), DevPath("/dev/loop-control")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.vmdk");
    drop(create(&img, Format::VmdkSparse, SIZE).unwrap());
    let sys = |dev: &Path| {
        Path::new("/sys/block")
            .join(dev.file_name().unwrap())
            .join("loop/backing_file")
    };
    let path = img.clone();
    let panicked = std::thread::spawn(move || {
        let attached = attach(open(&path, false).unwrap(), false).unwrap();
        let device = attached.device().to_path_buf();
        let backing = std::fs::read_to_string(sys(&device)).unwrap();
        std::panic::panic_any((device, backing));
    })
    .join()
    .unwrap_err();
    let (device, backing) = *panicked.downcast::<(std::path::PathBuf, String)>().unwrap();
    assert!(backing.contains("strata-disk-image"), "{backing}");
    // The loop device no longer serves this view (it may serve another test by now).
    let now = std::fs::read_to_string(sys(&device)).unwrap_or_default();
    assert_ne!(now, backing);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let mountpoint = Path::new(backing.trim()).parent().unwrap();
    assert!(!mounts.contains(mountpoint.to_str().unwrap()), "{mounts}");
    assert!(!mountpoint.exists());
}
