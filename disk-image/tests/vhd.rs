//! VHD fixed, dynamic and differencing against qemu-img (driver `vpc`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use disk_image::{ErrorKind, Format, create, create_child, open, open_chain};
use testkit::Requirement::Command;

const SIZE: u64 = 64 << 20;

#[test]
fn vhd_fixed_and_dynamic_pattern_compare_with_qemu_img() {
    if !testkit::require(
        "vhd_fixed_and_dynamic_pattern_compare_with_qemu_img",
        &[Command("qemu-img")],
    ) {
        return;
    }
    for format in [Format::VhdFixed, Format::VhdDynamic] {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.vhd");
        let raw = dir.path().join("a.raw");
        let mut expected = vec![0u8; SIZE as usize];
        {
            let mut disk = create(&img, format, SIZE).unwrap();
            write_pattern(disk.as_mut(), &mut expected, 21);
            write_both(
                disk.as_mut(),
                &mut expected,
                &pattern(300_000, 29),
                (5 << 20) - 1000,
            );
            disk.flush().unwrap();
            assert_eq!(read_all(disk.as_ref()), expected, "{format}");
        }
        std::fs::write(&raw, &expected).unwrap();
        let disk = open(&img, true).unwrap();
        assert_eq!(disk.format(), format);
        assert_eq!(read_all(disk.as_ref()), expected, "{format}");
        assert_qemu_check_if_supported("vpc", &img);
        let info = qemu_img(&["info", "-f", "vpc", &s(&img)]);
        assert!(
            info.contains(&format!("({SIZE} bytes)")),
            "{format}: {info}"
        );
        assert_qemu_identical("vpc", &img, &raw);
        if format == Format::VhdFixed {
            let extent = disk.raw_extent().unwrap();
            assert_eq!((extent.offset, extent.size), (0, SIZE));
        } else {
            let allocated: u64 = disk
                .allocated_ranges()
                .unwrap()
                .iter()
                .map(|r| r.end - r.start)
                .sum();
            assert_eq!(allocated, 8 << 20, "blocks 0, 2, 3 and 31 hold data");
        }
    }
}

#[test]
fn qemu_made_vhd_fixed_and_dynamic_read_back_with_qemu_img() {
    if !testkit::require(
        "qemu_made_vhd_fixed_and_dynamic_read_back_with_qemu_img",
        &[Command("qemu-img")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    let mut data = vec![0u8; SIZE as usize];
    data[..3 << 20].copy_from_slice(&pattern(3 << 20, 31));
    data[(40 << 20) + 7..(41 << 20)].copy_from_slice(&pattern((1 << 20) - 7, 32));
    std::fs::write(&src, &data).unwrap();
    for sub in ["fixed", "dynamic"] {
        let img = dir.path().join(format!("{sub}.vhd"));
        let out = dir.path().join(format!("{sub}.raw"));
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            &format!("subformat={sub}"),
            &s(&src),
            &s(&img),
        ]);
        qemu_img(&["convert", "-f", "vpc", "-O", "raw", &s(&img), &s(&out)]);
        let disk = open(&img, true).unwrap();
        assert_eq!(read_all(disk.as_ref()), file_bytes(&out), "{sub}");
        drop(disk);
        // Writes through this crate keep qemu's image readable by qemu.
        let mut disk = open(&img, false).unwrap();
        let mut expected = read_all(disk.as_ref());
        write_pattern(disk.as_mut(), &mut expected, 33);
        disk.flush().unwrap();
        drop(disk);
        let exp = dir.path().join(format!("{sub}.expected"));
        std::fs::write(&exp, &expected).unwrap();
        assert_qemu_identical("vpc", &img, &exp);
    }
}

#[test]
fn vhd_three_deep_differencing_chain() {
    let dir = tempfile::tempdir().unwrap();
    let Chain {
        top,
        expected,
        opened: chain,
        ..
    } = three_deep_chain(
        dir.path(),
        "vhd",
        Format::VhdDynamic,
        Format::VhdDifferencing,
        SIZE,
    );
    let levels: Vec<Format> = std::iter::successors(Some(chain.as_ref()), |d| d.parent())
        .map(|d| d.format())
        .collect();
    assert_eq!(
        levels,
        [
            Format::VhdDifferencing,
            Format::VhdDifferencing,
            Format::VhdDynamic
        ]
    );

    // Flattened to every standalone format, the chain reads the same.
    for format in [
        Format::Raw,
        Format::VhdFixed,
        Format::VhdDynamic,
        Format::VmdkSparse,
    ] {
        let out = dir.path().join(format!("flat-{format}"));
        disk_image::flatten(&top, &out, format).unwrap();
        assert_eq!(
            read_all(open(&out, true).unwrap().as_ref()),
            expected,
            "{format}"
        );
    }

    // The parent is found from the absolute locator when the relative one fails.
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("top.vhd");
    std::fs::copy(&top, &moved).unwrap();
    let err = open_chain(&moved, true);
    // mid.vhd's relative locator points beside the moved file, where there is none; the
    // absolute locator still finds the original.
    assert_eq!(read_all(err.unwrap().as_ref()), expected);
}

#[test]
fn vhd_child_of_changed_or_missing_parent_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vhd");
    let other = dir.path().join("other.vhd");
    let child = dir.path().join("child.vhd");
    drop(create(&base, Format::VhdDynamic, 1 << 20).unwrap());
    drop(create(&other, Format::VhdDynamic, 1 << 20).unwrap());
    drop(create_child(&child, &base).unwrap());
    assert!(open_chain(&child, true).is_ok());
    // Same name, different disk: the unique id does not match.
    std::fs::rename(&other, &base).unwrap();
    let err = open_chain(&child, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ParentMismatch, "{err}");
    std::fs::remove_file(&base).unwrap();
    let err = open_chain(&child, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ParentMissing, "{err}");
}

#[test]
fn vhd_corrupt_footer_checksum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.vhd");
    drop(create(&img, Format::VhdFixed, 1 << 20).unwrap());
    let mut bytes = file_bytes(&img);
    let n = bytes.len();
    bytes[n - 512 + 40] ^= 0xff; // current_size
    std::fs::write(&img, &bytes).unwrap();
    let err = open(&img, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}
