//! Long sequential writes, flushed with either durability, make images qemu-img accepts
//! and reads back as written: early writeback (and the waits that bound it) and unsynced
//! flushes change when data reaches the disk, never what the image holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use disk_image::{Durability, Format, create, open_chain};
use testkit::Requirement::Command;

/// More than the writeback's 64 MiB of unwaited runs, in the 1 MiB pieces `diskimg write`
/// uses, with a gap so that one run is cut short.
const WRITTEN: usize = 96 << 20;
const SIZE: u64 = 128 << 20;

fn long_write_reads_back(format: Format, qemu_fmt: &str, durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join(format!("a.{qemu_fmt}"));
    let raw = dir.path().join("a.raw");
    let mut expected = vec![0u8; SIZE as usize];
    {
        let mut disk = create(&img, format, SIZE).unwrap();
        drop(disk);
        let mut reopened = open_chain(&img, false).unwrap();
        reopened.set_durability(durability);
        let data = pattern(WRITTEN, 11);
        for (i, piece) in data.chunks(1 << 20).enumerate() {
            // Leave a hole at 40 MiB: the run before it is started short.
            let at = (i as u64) << 20;
            let at = if at >= 40 << 20 { at + (1 << 20) } else { at };
            write_both(reopened.as_mut(), &mut expected, piece, at);
        }
        reopened.flush().unwrap();
        disk = reopened;
        assert_eq!(read_all(disk.as_ref()), expected);
    }
    std::fs::write(&raw, &expected).unwrap();
    assert_qemu_check(qemu_fmt, &img);
    assert_qemu_identical(qemu_fmt, &img, &raw);
    assert_eq!(read_all(open_chain(&img, true).unwrap().as_ref()), expected);
}

fn needs_qemu(test: &str) -> bool {
    testkit::require(test, &[Command("qemu-img")])
}

#[test]
fn a_long_synced_vmdk_write_passes_check_and_compare_with_qemu_img() {
    if needs_qemu("a_long_synced_vmdk_write_passes_check_and_compare_with_qemu_img") {
        long_write_reads_back(Format::VmdkSparse, "vmdk", Durability::Synced);
    }
}

#[test]
fn a_long_unsynced_vmdk_write_passes_check_and_compare_with_qemu_img() {
    if needs_qemu("a_long_unsynced_vmdk_write_passes_check_and_compare_with_qemu_img") {
        long_write_reads_back(Format::VmdkSparse, "vmdk", Durability::Unsynced);
    }
}

#[test]
fn a_long_synced_vhdx_write_passes_check_and_compare_with_qemu_img() {
    if needs_qemu("a_long_synced_vhdx_write_passes_check_and_compare_with_qemu_img") {
        long_write_reads_back(Format::Vhdx, "vhdx", Durability::Synced);
    }
}

#[test]
fn a_long_unsynced_vhdx_write_passes_check_and_compare_with_qemu_img() {
    if needs_qemu("a_long_unsynced_vhdx_write_passes_check_and_compare_with_qemu_img") {
        long_write_reads_back(Format::Vhdx, "vhdx", Durability::Unsynced);
    }
}
