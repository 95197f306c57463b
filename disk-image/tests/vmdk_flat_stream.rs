//! monolithicFlat and streamOptimized VMDKs against qemu-img.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use disk_image::{Format, create, create_child, open, open_chain};
use testkit::Requirement::Command;

const SIZE: u64 = 64 << 20;

#[test]
fn vmdk_flat_and_stream_pattern_with_qemu_img() {
    if !testkit::require(
        "vmdk_flat_and_stream_pattern_with_qemu_img",
        &[Command("qemu-img")],
    ) {
        return;
    }
    for format in [Format::VmdkFlat, Format::VmdkStream] {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.vmdk");
        let raw = dir.path().join("a.raw");
        let mut expected = vec![0u8; SIZE as usize];
        {
            let mut disk = create(&img, format, SIZE).unwrap();
            write_pattern(disk.as_mut(), &mut expected, 91);
            // Rewrites of grains already written.
            write_both(
                disk.as_mut(),
                &mut expected,
                &pattern(200_000, 92),
                (5 << 20) - 50,
            );
            disk.flush().unwrap();
            assert_eq!(read_all(disk.as_ref()), expected, "{format}");
            // More writes after a flush, then flush again.
            write_both(disk.as_mut(), &mut expected, &pattern(10, 93), 20 << 20);
            disk.flush().unwrap();
        }
        std::fs::write(&raw, &expected).unwrap();
        let disk = open(&img, true).unwrap();
        assert_eq!(disk.format(), format);
        assert_eq!(read_all(disk.as_ref()), expected, "{format}");
        assert_qemu_check("vmdk", &img);
        assert_qemu_identical("vmdk", &img, &raw);
        if format == Format::VmdkFlat {
            let e = disk.raw_extent().unwrap();
            assert_eq!(e.path, dir.path().join("a-flat.vmdk"));
            assert_eq!(std::fs::read(&e.path).unwrap(), expected);
        }
        // A sparse delta on either reads through to it.
        let child = dir.path().join("child.vmdk");
        let mut c = create_child(&child, &img).unwrap();
        write_both(c.as_mut(), &mut expected, &pattern(70_000, 94), 33_333);
        c.flush().unwrap();
        drop(c);
        drop(disk);
        assert_eq!(
            read_all(open_chain(&child, true).unwrap().as_ref()),
            expected
        );
        assert_eq!(qemu_chain("vmdk", &child), ["child.vmdk", "a.vmdk"]);
        std::fs::write(&raw, &expected).unwrap();
        assert_qemu_identical("vmdk", &child, &raw);
    }
}

#[test]
fn qemu_made_stream_and_flat_vmdk_read_back_with_qemu_img() {
    if !testkit::require(
        "qemu_made_stream_and_flat_vmdk_read_back_with_qemu_img",
        &[Command("qemu-img")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    let mut data = vec![0u8; SIZE as usize];
    data[..3 << 20].copy_from_slice(&pattern(3 << 20, 95));
    data[(30 << 20) + 5..(31 << 20)].copy_from_slice(&pattern((1 << 20) - 5, 96));
    std::fs::write(&src, &data).unwrap();
    for sub in ["streamOptimized", "monolithicFlat"] {
        let img = dir.path().join(format!("{sub}.vmdk"));
        let out = dir.path().join(format!("{sub}.raw"));
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            &format!("subformat={sub}"),
            &s(&src),
            &s(&img),
        ]);
        qemu_img(&["convert", "-f", "vmdk", "-O", "raw", &s(&img), &s(&out)]);
        let disk = open(&img, true).unwrap();
        assert_eq!(read_all(disk.as_ref()), file_bytes(&out), "{sub}");
        drop(disk);
        let mut disk = open(&img, false).unwrap();
        let mut expected = read_all(disk.as_ref());
        write_pattern(disk.as_mut(), &mut expected, 97);
        disk.flush().unwrap();
        drop(disk);
        assert_eq!(
            read_all(open(&img, true).unwrap().as_ref()),
            expected,
            "{sub}"
        );
        assert_qemu_check("vmdk", &img);
        let exp = dir.path().join(format!("{sub}.expected"));
        std::fs::write(&exp, &expected).unwrap();
        assert_qemu_identical("vmdk", &img, &exp);
    }
}

#[test]
fn convert_between_every_pair_of_formats_with_qemu_img() {
    if !testkit::require(
        "convert_between_every_pair_of_formats_with_qemu_img",
        &[Command("qemu-img")],
    ) {
        return;
    }
    const FORMATS: [(Format, &str); 7] = [
        (Format::Raw, "raw"),
        (Format::VmdkSparse, "vmdk"),
        (Format::VmdkFlat, "vmdk"),
        (Format::VmdkStream, "vmdk"),
        (Format::VhdFixed, "vpc"),
        (Format::VhdDynamic, "vpc"),
        (Format::Vhdx, "vhdx"),
    ];
    let size = 16u64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    let mut expected = vec![0u8; size as usize];
    {
        let mut d = create(&raw, Format::Raw, size).unwrap();
        write_pattern(d.as_mut(), &mut expected, 101);
        d.flush().unwrap();
    }
    let src = open(&raw, true).unwrap();
    for (i, (from, from_q)) in FORMATS.iter().enumerate() {
        let first = dir.path().join(format!("{i}.img"));
        disk_image::convert(src.as_ref(), &first, *from).unwrap();
        assert_qemu_identical(from_q, &first, &raw);
        let mid = open(&first, true).unwrap();
        assert_eq!(mid.format(), *from);
        for (j, (to, to_q)) in FORMATS.iter().enumerate() {
            let out = dir.path().join(format!("{i}-{j}.img"));
            disk_image::convert(mid.as_ref(), &out, *to).unwrap();
            assert_eq!(
                read_all(open(&out, true).unwrap().as_ref()),
                expected,
                "{from} -> {to}"
            );
            assert_qemu_identical(to_q, &out, &raw);
        }
    }
}
