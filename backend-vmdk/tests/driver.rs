//! The vmdk driver without a block view server: its layout, scratch disk, delta chains
//! and sweeping, through `&dyn LayerDriver`. Nothing here attaches a disk, so nothing
//! needs root; the disk checks need qemu-img and e2fsck.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use backend_vmdk::VmdkDriver;
use storage_core::run_root::RunRoot;
use storage_core::{CreateOpts, Error, LayerDriver, MountOpts, Op};
use testkit::{Requirement, require};

/// A small scratch disk, so that tests stay quick.
const CAPACITY: u64 = 64 << 20;

fn id(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn open(dir: &Path) -> VmdkDriver {
    let run = RunRoot::open(&dir.join("run")).unwrap();
    VmdkDriver::open(&dir.join("store"), run, None, CAPACITY).unwrap()
}

fn qemu_img_check(disk: &Path) {
    let out = Command::new("qemu-img")
        .arg("check")
        .arg(disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        disk.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn mounting_without_a_block_view_server_is_refused_naming_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path());
    let op = Op::new("test");
    driver
        .create(&op, &id(1), None, &CreateOpts::default())
        .await
        .unwrap();
    let err = driver
        .get(&op, &id(1), &MountOpts::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&id(1)) && text.contains("block view server"),
        "{text}"
    );
    assert_eq!(driver.mount_count(&op, &id(1)).await.unwrap(), 0);
}

#[tokio::test]
async fn disks_are_the_chain_topmost_first_down_to_scratch_and_pass_qemu_img_check_needs_qemu_img()
{
    if !require(
        "disks_are_the_chain_topmost_first_down_to_scratch_and_pass_qemu_img_check_needs_qemu_img",
        &[Requirement::Command("qemu-img")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path());
    let op = Op::new("test");
    let none = CreateOpts::default();
    driver.create(&op, &id(1), None, &none).await.unwrap();
    driver
        .create(&op, &id(2), Some(&id(1)), &none)
        .await
        .unwrap();
    driver
        .create_read_write(&op, &id(3), Some(&id(2)), &none)
        .await
        .unwrap();
    let disks = driver.disks(&op, &id(3)).await.unwrap();
    let layout = driver.layout();
    let paths: Vec<_> = disks.iter().map(|d| d.path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            layout.disk(&id(3)),
            layout.disk(&id(2)),
            layout.disk(&id(1)),
            layout.scratch_disk()
        ]
    );
    assert!(disks[0].writable && disks[1..].iter().all(|d| !d.writable));
    assert!(disks.iter().all(|d| d.format == "vmdk"));
    // An image layer's own disk is read-only to a VM too.
    assert!(
        !driver.disks(&op, &id(2)).await.unwrap()[0].writable,
        "an image layer's disk is writable"
    );
    for disk in &paths {
        qemu_img_check(disk);
    }
}

#[tokio::test]
async fn scratch_is_a_sparse_vmdk_holding_a_labelled_ext4_that_e2fsck_accepts_needs_qemu_img_e2fsck()
 {
    if !require(
        "scratch_is_a_sparse_vmdk_holding_a_labelled_ext4_that_e2fsck_accepts_needs_qemu_img_e2fsck",
        &[
            Requirement::Command("qemu-img"),
            Requirement::Command("e2fsck"),
            Requirement::Command("dumpe2fs"),
        ],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path());
    let scratch = driver.layout().scratch_disk();
    qemu_img_check(&scratch);
    let file = std::fs::metadata(&scratch).unwrap().len();
    assert!(file < CAPACITY / 2, "scratch is not sparse: {file} bytes");
    let raw = dir.path().join("scratch.raw");
    let status = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&scratch)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), CAPACITY);
    testkit::loop_disk::e2fsck_clean(&raw);
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&raw)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("Filesystem volume name:") && l.ends_with("strata-scratch")),
        "{text}"
    );
    let blocks: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Block count:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        blocks * 4096,
        CAPACITY,
        "the file system does not fill the disk"
    );
}

#[tokio::test]
async fn a_layer_folder_left_half_made_is_removed_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let op = Op::new("test");
    {
        let driver = open(dir.path());
        driver
            .create(&op, &id(1), None, &CreateOpts::default())
            .await
            .unwrap();
        driver
            .create(&op, &id(2), Some(&id(1)), &CreateOpts::default())
            .await
            .unwrap();
        // What a kill before the marker leaves: a disk and a record, no `complete`.
        std::fs::remove_file(driver.layout().layer(&id(2)).join("complete")).unwrap();
    }
    let driver = open(dir.path());
    assert!(!driver.layout().layer(&id(2)).exists());
    assert!(!driver.exists(&op, &id(2)).await.unwrap());
    assert_eq!(driver.stored_layers(&op).await.unwrap(), vec![id(1)]);
    // The id is free again.
    driver
        .create(&op, &id(2), Some(&id(1)), &CreateOpts::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_layer_past_the_deepest_chain_is_refused_and_leaves_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path());
    let op = Op::new("test");
    let deepest = disk_image::chain::MAX_CHAIN_DEPTH;
    let mut parent: Option<String> = None;
    for n in 0..deepest {
        let layer = format!("{:064x}", n + 1);
        driver
            .create(&op, &layer, parent.as_deref(), &CreateOpts::default())
            .await
            .unwrap();
        parent = Some(layer);
    }
    let one_more = format!("{:064x}", deepest + 1);
    let err = driver
        .create(&op, &one_more, parent.as_deref(), &CreateOpts::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(!driver.layout().layer(&one_more).exists());
    assert_eq!(
        driver
            .disks(&op, parent.as_deref().unwrap())
            .await
            .unwrap()
            .len(),
        deepest + 1
    );
}
