//! monolithicSparse VMDK against qemu-img: pattern writes, delta chains, and images that
//! qemu-img made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use disk_image::{Disk, ErrorKind, Format, SparseVmdk, create, create_child, open, open_chain};
use testkit::Requirement::Command;

const SIZE: u64 = 64 << 20;

fn write_raw(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
}

#[test]
fn vmdk_pattern_passes_check_and_compare_with_qemu_img() {
    if !testkit::require(
        "vmdk_pattern_passes_check_and_compare_with_qemu_img",
        &[Command("qemu-img")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.vmdk");
    let raw = dir.path().join("a.raw");
    let mut expected = vec![0u8; SIZE as usize];
    {
        let mut disk = create(&img, Format::VmdkSparse, SIZE).unwrap();
        write_pattern(disk.as_mut(), &mut expected, 1);
        // Overwrite inside already-allocated grains too.
        write_both(disk.as_mut(), &mut expected, &pattern(200_000, 9), 5 << 20);
        disk.flush().unwrap();
        assert_eq!(read_all(disk.as_ref()), expected);
    }
    write_raw(&raw, &expected);
    assert_qemu_check("vmdk", &img);
    assert_qemu_identical("vmdk", &img, &raw);
    let reopened = open(&img, true).unwrap();
    assert_eq!(reopened.format(), Format::VmdkSparse);
    assert_eq!(read_all(reopened.as_ref()), expected);
    // Only the grains written are allocated.
    let allocated: u64 = reopened
        .allocated_ranges()
        .unwrap()
        .iter()
        .map(|r| r.end - r.start)
        .sum();
    assert!(allocated < 5 << 20, "allocated {allocated} bytes");
}

#[test]
fn vmdk_three_deep_chain_with_qemu_img() {
    if !testkit::require(
        "vmdk_three_deep_chain_with_qemu_img",
        &[Command("qemu-img")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Chain {
        base,
        mid,
        top,
        expected,
        opened: chain,
    } = three_deep_chain(
        dir.path(),
        "vmdk",
        Format::VmdkSparse,
        Format::VmdkSparse,
        SIZE,
    );
    for p in [&base, &mid, &top] {
        assert_qemu_check("vmdk", p);
    }
    assert_eq!(
        qemu_chain("vmdk", &top),
        ["top.vmdk", "mid.vmdk", "base.vmdk"]
    );
    let raw = dir.path().join("expected.raw");
    write_raw(&raw, &expected);
    assert_qemu_identical("vmdk", &top, &raw);

    // Flatten and convert the chain to raw, then back.
    let flat = dir.path().join("flat.vmdk");
    disk_image::flatten(&top, &flat, Format::VmdkSparse).unwrap();
    assert_qemu_check("vmdk", &flat);
    assert_qemu_identical("vmdk", &flat, &raw);
    assert!(qemu_chain("vmdk", &flat).len() == 1);
    let as_raw = dir.path().join("out.raw");
    disk_image::convert(chain.as_ref(), &as_raw, Format::Raw).unwrap();
    assert_eq!(file_bytes(&as_raw), expected);
}

#[test]
fn vmdk_cid_changes_on_first_write_after_open() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.vmdk");
    let first = SparseVmdk::create(&img, 1 << 20).unwrap().descriptor().cid;
    let mut disk = SparseVmdk::open(&img, false).unwrap();
    assert_eq!(
        disk.descriptor().cid,
        first,
        "opening does not change the CID"
    );
    disk.write_at(b"x", 0).unwrap();
    let second = disk.descriptor().cid;
    assert_ne!(second, first);
    disk.write_at(b"y", 1).unwrap();
    assert_eq!(
        disk.descriptor().cid,
        second,
        "only the first write changes it"
    );
    drop(disk);
    assert_eq!(
        SparseVmdk::open(&img, true).unwrap().descriptor().cid,
        second
    );
}

#[test]
fn vmdk_chain_with_missing_or_changed_parent_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vmdk");
    let child = dir.path().join("child.vmdk");
    drop(create(&base, Format::VmdkSparse, 1 << 20).unwrap());
    drop(create_child(&child, &base).unwrap());
    assert!(open_chain(&child, true).is_ok());
    // Writing the parent changes its CID: the child no longer matches.
    {
        let mut b = open(&base, false).unwrap();
        b.write_at(b"changed", 0).unwrap();
        b.flush().unwrap();
    }
    let err = open_chain(&child, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ParentMismatch, "{err}");
    std::fs::remove_file(&base).unwrap();
    let err = open_chain(&child, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ParentMissing, "{err}");
    assert!(err.to_string().contains("base.vmdk"), "{err}");
}

#[test]
fn vmdk_read_only_refuses_writes_and_bounds_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.vmdk");
    drop(create(&img, Format::VmdkSparse, 1 << 20).unwrap());
    let mut ro = open(&img, true).unwrap();
    assert_eq!(
        ro.write_at(b"x", 0).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    let mut buf = [0u8; 2];
    assert_eq!(
        ro.read_at(&mut buf, (1 << 20) - 1).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
}

#[test]
fn qemu_made_vmdk_chain_reads_back_with_qemu_img() {
    if !testkit::require(
        "qemu_made_vmdk_chain_reads_back_with_qemu_img",
        &[Command("qemu-img"), Command("qemu-io")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    let base = dir.path().join("base.vmdk");
    let child = dir.path().join("child.vmdk");
    let mut data = vec![0u8; SIZE as usize];
    data[..4 << 20].copy_from_slice(&pattern(4 << 20, 11));
    data[(20 << 20)..(21 << 20)].copy_from_slice(&pattern(1 << 20, 12));
    write_raw(&src, &data);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=monolithicSparse",
        &s(&src),
        &s(&base),
    ]);
    qemu_img(&[
        "create",
        "-f",
        "vmdk",
        "-b",
        "base.vmdk",
        "-F",
        "vmdk",
        &s(&child),
    ]);
    qemu_io("vmdk", &child, "write -P 0xab 1000 70000");
    qemu_io("vmdk", &child, "write -P 0xcd 30M 64k");
    let out = dir.path().join("out.raw");
    qemu_img(&["convert", "-O", "raw", &s(&child), &s(&out)]);
    let disk = open_chain(&child, true).unwrap();
    assert_eq!(read_all(disk.as_ref()), file_bytes(&out));
    assert_ne!(file_bytes(&out), data, "the child's writes are visible");

    // And our writes to qemu's child keep it valid for qemu.
    let mut disk = open_chain(&child, false).unwrap();
    let mut expected = read_all(disk.as_ref());
    write_pattern(disk.as_mut(), &mut expected, 40);
    disk.flush().unwrap();
    drop(disk);
    assert_qemu_check("vmdk", &child);
    let exp = dir.path().join("expected.raw");
    write_raw(&exp, &expected);
    assert_qemu_identical("vmdk", &child, &exp);
}

#[test]
fn open_as_raw_ignores_a_guest_written_vmdk_header() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.vmdk");
    drop(create(&img, Format::VmdkSparse, 1 << 20).unwrap());
    let raw = dir.path().join("guest.raw");
    let mut bytes = file_bytes(&img);
    bytes.resize(3 << 20, 0);
    write_raw(&raw, &bytes);
    assert_eq!(disk_image::detect(&raw).unwrap(), Format::VmdkSparse);
    let disk = disk_image::open_as(&raw, Format::Raw, true).unwrap();
    assert_eq!((disk.format(), disk.size()), (Format::Raw, 3 << 20));
    assert_eq!(read_all(disk.as_ref()), bytes);
}
