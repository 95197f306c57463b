//! ext4 filesystems made with `mkfs.ext4` on real loop devices, mounted read-only and
//! read-write, and found again in the mount table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mounts::block::is_claimed;
use mounts::{BlockMount, is_mounted, mountinfo, unmount};
use storage_core::Error;
use testkit::loop_disk::{LoopDevice, e2fsck_clean, ext4_image};
use testkit::{Requirement, require};

/// The tests of this file run one at a time, each from before its first child process:
/// a process forked by one test's thread holds whatever descriptors another test's thread
/// had open (a mount's, a device's) until it executes its program, and a device held so
/// cannot be mounted or let go.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Takes this file's turn, then checks what the tests need; `None` to skip.
fn needs(test: &str, more: &[Requirement<'_>]) -> Option<MutexGuard<'static, ()>> {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut needs = vec![
        Requirement::Root,
        Requirement::Filesystem("ext4"),
        Requirement::Path("/dev/loop-control"),
        Requirement::Command("mkfs.ext4"),
        Requirement::Command("e2fsck"),
        Requirement::Command("losetup"),
    ];
    needs.extend_from_slice(more);
    require(test, &needs).then_some(turn)
}

/// A mount point that is unmounted when the test ends, passed or failed. Declared after
/// the loop device, so it goes first.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

/// A fresh 16 MiB ext4 image in `dir`, attached to a loop device.
fn disk(dir: &Path) -> (PathBuf, LoopDevice) {
    let image = dir.join("disk.img");
    ext4_image(&image, 16);
    let device = LoopDevice::attach(&image);
    (image, device)
}

/// Unmounts `target` and waits until its filesystem has let go of `device`.
fn unmount_and_settle(target: &Path, device: &LoopDevice) {
    unmount(target).unwrap();
    settle(device);
}

/// Waits until nothing holds `device`: a lazy unmount leaves the filesystem to whoever
/// still holds it, and the last of them writes it back.
fn settle(device: &LoopDevice) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_claimed(device.path()).unwrap() {
        assert!(
            Instant::now() < deadline,
            "{} stays claimed",
            device.path().display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn mount_point(dir: &Path, name: &str) -> Mounted {
    let target = dir.join(name);
    std::fs::create_dir_all(&target).unwrap();
    Mounted(target)
}

#[test]
fn ext4_mounted_read_write_keeps_a_write_and_checks_clean_needs_root() {
    let Some(_turn) = needs(
        "ext4_mounted_read_write_keeps_a_write_and_checks_clean_needs_root",
        &[],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (image, device) = disk(dir.path());
    let mnt = mount_point(dir.path(), "rw");
    BlockMount::new(device.path(), &mnt.0).mount().unwrap();
    assert!(is_mounted(&mnt.0));
    let table = mountinfo::read().unwrap();
    let entry = table.iter().find(|m| m.mount_point == mnt.0).unwrap();
    assert_eq!(entry.fstype, "ext4");
    assert!(entry.mount_options.starts_with("rw"), "{entry:?}");
    assert!(
        entry.super_options.contains("errors=remount-ro"),
        "{entry:?}"
    );
    for unwanted in ["nodev", "nosuid"] {
        assert!(!entry.mount_options.contains(unwanted), "{entry:?}");
    }
    std::fs::create_dir(mnt.0.join("etc")).unwrap();
    std::fs::write(mnt.0.join("etc/hostname"), b"strata\n").unwrap();
    unmount_and_settle(&mnt.0, &device);
    assert!(!is_mounted(&mnt.0));
    drop(device);
    e2fsck_clean(&image);

    let device = LoopDevice::attach(&image);
    BlockMount::new(device.path(), &mnt.0)
        .read_only()
        .mount()
        .unwrap();
    assert_eq!(
        std::fs::read(mnt.0.join("etc/hostname")).unwrap(),
        b"strata\n"
    );
}

#[test]
fn ext4_mounted_read_only_refuses_writes_and_leaves_the_image_unchanged_needs_root() {
    let Some(_turn) = needs(
        "ext4_mounted_read_only_refuses_writes_and_leaves_the_image_unchanged_needs_root",
        &[],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (image, device) = disk(dir.path());
    let mnt = mount_point(dir.path(), "ro");
    BlockMount::new(device.path(), &mnt.0).mount().unwrap();
    std::fs::write(mnt.0.join("kept"), b"layer data").unwrap();
    unmount_and_settle(&mnt.0, &device);
    let before = std::fs::read(&image).unwrap();

    // The loop device is writable: only the mount keeps the disk unchanged.
    BlockMount::new(device.path(), &mnt.0)
        .read_only()
        .mount()
        .unwrap();
    assert_eq!(std::fs::read(mnt.0.join("kept")).unwrap(), b"layer data");
    let refused = std::fs::write(mnt.0.join("new"), b"x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(30), "{refused}"); // EROFS
    let entry = mountinfo::read()
        .unwrap()
        .into_iter()
        .find(|m| m.mount_point == mnt.0)
        .unwrap();
    assert!(entry.mount_options.starts_with("ro"), "{entry:?}");
    assert!(entry.super_options.starts_with("ro"), "{entry:?}");
    unmount_and_settle(&mnt.0, &device);
    drop(device);
    assert!(
        std::fs::read(&image).unwrap() == before,
        "a read-only mount wrote"
    );
    e2fsck_clean(&image);
}

#[test]
fn a_read_only_mount_of_a_journal_that_needs_recovery_is_refused_needs_root() {
    let Some(_turn) = needs(
        "a_read_only_mount_of_a_journal_that_needs_recovery_is_refused_needs_root",
        &[Requirement::Command("debugfs")],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    ext4_image(&image, 16);
    // What a crash of a read-write mount leaves in the superblock.
    let status = Command::new("debugfs")
        .args(["-w", "-R", "feature needs_recovery"])
        .arg(&image)
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    let before = std::fs::read(&image).unwrap();
    let device = LoopDevice::attach(&image);
    let mnt = mount_point(dir.path(), "ro");
    let err = BlockMount::new(device.path(), &mnt.0)
        .read_only()
        .mount()
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    let text = err.to_string();
    for named in [device.path(), mnt.0.as_path()] {
        assert!(text.contains(&named.display().to_string()), "{text}");
    }
    assert!(text.contains("journal needs recovery"), "{text}");
    assert!(!is_mounted(&mnt.0));
    drop(device);
    assert!(
        std::fs::read(&image).unwrap() == before,
        "the refusal wrote"
    );
}

#[test]
fn a_failed_mount_names_the_device_the_target_and_what_the_kernel_logged_needs_root() {
    let Some(_turn) = needs(
        "a_failed_mount_names_the_device_the_target_and_what_the_kernel_logged_needs_root",
        &[],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mnt = mount_point(dir.path(), "mnt");
    let missing = dir.path().join("no-such-device");
    let err = BlockMount::new(&missing, &mnt.0).mount().unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains(&mnt.0.display().to_string()), "{text}");
    assert!(text.contains("kernel: "), "{text}");
    assert!(err.raw_os_error().is_some(), "{err:?}");

    // A device that holds no ext4: the kernel's verdict, and the device named.
    let zeros = dir.path().join("zeros.img");
    std::fs::File::create(&zeros)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let device = LoopDevice::attach(&zeros);
    let err = BlockMount::new(device.path(), &mnt.0)
        .read_only()
        .mount()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&device.path().display().to_string()),
        "{text}"
    );
    assert!(text.contains("(read-only)"), "{text}");
    assert!(!is_mounted(&mnt.0));
}

#[test]
fn the_mounts_of_a_device_are_found_even_where_their_paths_need_escaping_needs_root() {
    let Some(_turn) = needs(
        "the_mounts_of_a_device_are_found_even_where_their_paths_need_escaping_needs_root",
        &[],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_image, device) = disk(dir.path());
    let (_other_image, other) = {
        let d = dir.path().join("other");
        std::fs::create_dir(&d).unwrap();
        disk(&d)
    };
    let first = mount_point(dir.path(), "first");
    let second = mount_point(dir.path(), "with space\tand\\backslash");
    let elsewhere = mount_point(dir.path(), "other device");
    BlockMount::new(device.path(), &first.0).mount().unwrap();
    BlockMount::new(device.path(), &second.0).mount().unwrap();
    BlockMount::new(other.path(), &elsewhere.0)
        .read_only()
        .mount()
        .unwrap();

    let found = mountinfo::mount_points_of(device.path()).unwrap();
    assert_eq!(found, vec![first.0.clone(), second.0.clone()]);
    assert!(is_claimed(device.path()).unwrap());
    // What a caller does before detaching a device whose server died.
    for target in found.iter().rev() {
        unmount(target).unwrap();
    }
    assert!(
        mountinfo::mount_points_of(device.path())
            .unwrap()
            .is_empty()
    );
    settle(&device);
    assert_eq!(
        mountinfo::mount_points_of(other.path()).unwrap(),
        vec![elsewhere.0.clone()]
    );
}

#[test]
fn unmounting_what_is_not_mounted_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    unmount(dir.path()).unwrap();
    unmount(&dir.path().join("gone")).unwrap();
}
