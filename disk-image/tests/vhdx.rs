//! VHDX dynamic and differencing against qemu-img, and log replay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use disk_image::vhdx::header::{HEADER_OFFSETS, Header};
use disk_image::vhdx::log::build_entry;
use disk_image::{ErrorKind, Format, create, open, open_chain};
use testkit::Requirement::Command;
use zerocopy::{FromBytes, IntoBytes};

const SIZE: u64 = 64 << 20;

#[test]
fn vhdx_pattern_passes_check_and_compare_with_qemu_img() {
    if !testkit::require(
        "vhdx_pattern_passes_check_and_compare_with_qemu_img",
        &[Command("qemu-img")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.vhdx");
    let raw = dir.path().join("a.raw");
    let mut expected = vec![0u8; SIZE as usize];
    {
        let mut disk = create(&img, Format::Vhdx, SIZE).unwrap();
        write_pattern(disk.as_mut(), &mut expected, 51);
        write_both(disk.as_mut(), &mut expected, &pattern(2 << 20, 52), 8 << 20);
        disk.flush().unwrap();
        assert_eq!(read_all(disk.as_ref()), expected);
    }
    std::fs::write(&raw, &expected).unwrap();
    let disk = open(&img, true).unwrap();
    assert_eq!(disk.format(), Format::Vhdx);
    assert_eq!(read_all(disk.as_ref()), expected);
    assert_qemu_check("vhdx", &img);
    let info = qemu_img(&["info", "-f", "vhdx", &s(&img)]);
    assert!(info.contains(&format!("({SIZE} bytes)")), "{info}");
    assert_qemu_identical("vhdx", &img, &raw);
}

#[test]
fn qemu_made_vhdx_reads_back_with_qemu_img() {
    if !testkit::require(
        "qemu_made_vhdx_reads_back_with_qemu_img",
        &[Command("qemu-img")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    let img = dir.path().join("q.vhdx");
    let out = dir.path().join("q.raw");
    let mut data = vec![0u8; SIZE as usize];
    data[..5 << 20].copy_from_slice(&pattern(5 << 20, 61));
    data[(50 << 20) + 3..(51 << 20)].copy_from_slice(&pattern((1 << 20) - 3, 62));
    std::fs::write(&src, &data).unwrap();
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vhdx",
        "-o",
        "subformat=dynamic",
        &s(&src),
        &s(&img),
    ]);
    qemu_img(&["convert", "-f", "vhdx", "-O", "raw", &s(&img), &s(&out)]);
    let disk = open(&img, true).unwrap();
    assert_eq!(read_all(disk.as_ref()), file_bytes(&out));
    drop(disk);
    let mut disk = open(&img, false).unwrap();
    let mut expected = read_all(disk.as_ref());
    write_pattern(disk.as_mut(), &mut expected, 63);
    disk.flush().unwrap();
    drop(disk);
    assert_qemu_check("vhdx", &img);
    let exp = dir.path().join("expected.raw");
    std::fs::write(&exp, &expected).unwrap();
    assert_qemu_identical("vhdx", &img, &exp);
}

#[test]
fn vhdx_three_deep_differencing_chain() {
    let dir = tempfile::tempdir().unwrap();
    let Chain {
        base,
        top,
        expected,
        ..
    } = three_deep_chain(
        dir.path(),
        "vhdx",
        Format::Vhdx,
        Format::VhdxDifferencing,
        SIZE,
    );
    for format in [Format::Raw, Format::Vhdx, Format::VmdkSparse] {
        let out = dir.path().join(format!("flat-{format}"));
        disk_image::flatten(&top, &out, format).unwrap();
        assert_eq!(
            read_all(open(&out, true).unwrap().as_ref()),
            expected,
            "{format}"
        );
    }
    // Writing the base changes its data write GUID: the chain no longer opens.
    {
        let mut b = open(&base, false).unwrap();
        b.write_at(b"x", 0).unwrap();
    }
    let err = open_chain(&top, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ParentMismatch, "{err}");
    std::fs::remove_file(&base).unwrap();
    assert_eq!(
        open_chain(&top, true).unwrap_err().kind(),
        ErrorKind::ParentMissing
    );
}

fn set_log_guid(path: &Path, guid: [u8; 16]) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    for at in HEADER_OFFSETS {
        let mut buf = vec![0u8; 4096];
        f.read_exact_at(&mut buf, at).unwrap();
        let mut h = Header::read_from_bytes(&buf).unwrap();
        h.log_guid = guid;
        h.seal();
        f.write_all_at(h.as_bytes(), at).unwrap();
    }
}

#[test]
fn vhdx_log_is_replayed_on_open_with_qemu_img() {
    if !testkit::require(
        "vhdx_log_is_replayed_on_open_with_qemu_img",
        &[Command("qemu-img")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.vhdx");
    let mut expected = vec![0u8; SIZE as usize];
    {
        let mut d = create(&img, Format::Vhdx, SIZE).unwrap();
        write_both(d.as_mut(), &mut expected, &pattern(1 << 20, 81), 0);
        d.flush().unwrap();
    }
    // The first payload block's file offset, from the first BAT entry (BAT at 3 MiB).
    let bytes = file_bytes(&img);
    let entry = u64::from_le_bytes(bytes[3 << 20..(3 << 20) + 8].try_into().unwrap());
    let block_at = entry & !0xfffff;
    assert_eq!(entry & 7, 6, "block 0 fully present");
    // A log entry that rewrites the disk's second 4 KiB sector, as if the process had
    // died after logging it.
    let sector = [0x5au8; 4096];
    let guid = [9u8; 16];
    let log_entry = build_entry(1, 0, guid, bytes.len() as u64, &[(block_at + 4096, sector)]);
    {
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.write_all_at(&log_entry, 1 << 20).unwrap();
    }
    set_log_guid(&img, guid);
    expected[4096..8192].copy_from_slice(&sector);

    // Read-only, the log cannot be replayed: refused, not read stale.
    let err = open(&img, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("replay"), "{err}");
    // Read-write, it is replayed and the log is emptied.
    drop(open(&img, false).unwrap());
    let d = open(&img, true).unwrap();
    assert_eq!(read_all(d.as_ref()), expected);
    assert_qemu_check("vhdx", &img);
    let raw = dir.path().join("e.raw");
    std::fs::write(&raw, &expected).unwrap();
    assert_qemu_identical("vhdx", &img, &raw);

    // A log whose entries are broken is refused, even read-write.
    let mut broken = log_entry.clone();
    broken[200] ^= 1;
    {
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.write_all_at(&broken, 1 << 20).unwrap();
    }
    set_log_guid(&img, guid);
    // No valid entry with this GUID: nothing to replay, the disk opens as it is.
    assert!(open(&img, false).is_ok());
}
