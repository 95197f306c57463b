//! Helpers shared by the scenario tests: patterns, qemu-img, file digests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::process::Command;

use disk_image::Disk;

/// Deterministic bytes that differ per `seed` and per position.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

/// Runs qemu-img with `args`, panicking with its output when it fails. Returns stdout.
pub fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs qemu-io with `args` on `path` (format `fmt`).
pub fn qemu_io(fmt: &str, path: &Path, cmd: &str) {
    let out = Command::new("qemu-io")
        .args(["-f", fmt, "-c", cmd])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("failed"),
        "qemu-io {cmd} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `qemu-img check` must report no errors (and no leaks).
pub fn assert_qemu_check(fmt: &str, path: &Path) {
    let out = qemu_img(&["check", "-f", fmt, path.to_str().unwrap()]);
    assert!(
        out.contains("No errors were found"),
        "check of {path:?}: {out}"
    );
}

/// `qemu-img check`, for formats whose qemu driver has no checker (vpc): passes only when
/// qemu says the format has no checks, and otherwise requires no errors.
pub fn assert_qemu_check_if_supported(fmt: &str, path: &Path) {
    let out = Command::new("qemu-img")
        .args(["check", "-f", fmt])
        .arg(path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let unsupported = out.status.code() == Some(63) && text.contains("does not support checks");
    assert!(
        unsupported || (out.status.success() && text.contains("No errors were found")),
        "check of {path:?}: {text}"
    );
}

/// `qemu-img compare -s` (strict) of an image against a raw file must say identical.
pub fn assert_qemu_identical(fmt: &str, image: &Path, raw: &Path) {
    let out = qemu_img(&[
        "compare",
        "-f",
        fmt,
        "-F",
        "raw",
        image.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    assert!(out.contains("Images are identical"), "compare: {out}");
}

/// The file names in the chain `qemu-img info --backing-chain` reports, top first.
pub fn qemu_chain(fmt: &str, path: &Path) -> Vec<String> {
    let out = qemu_img(&["info", "--backing-chain", "-f", fmt, path.to_str().unwrap()]);
    out.lines()
        .filter_map(|l| l.strip_prefix("image: "))
        .map(|name| {
            Path::new(name)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Reads the whole disk.
pub fn read_all(disk: &dyn Disk) -> Vec<u8> {
    let mut buf = vec![0u8; disk.size() as usize];
    disk.read_at(&mut buf, 0).unwrap();
    buf
}

/// Writes `data` at `offset` both into `disk` and into the `expected` image.
pub fn write_both(disk: &mut dyn Disk, expected: &mut [u8], data: &[u8], offset: u64) {
    disk.write_at(data, offset).unwrap();
    expected[offset as usize..offset as usize + data.len()].copy_from_slice(data);
}

/// The writes every format test makes: unaligned, grain- and block-crossing, large.
pub fn write_pattern(disk: &mut dyn Disk, expected: &mut [u8], seed: u8) {
    let size = expected.len() as u64;
    write_both(disk, expected, &pattern(1000, seed), 7);
    write_both(disk, expected, &pattern(70_000, seed + 1), 65_536 - 300);
    write_both(disk, expected, &pattern(3 << 20, seed + 2), 5 << 20);
    write_both(disk, expected, &pattern(512, seed + 3), size - 512);
    write_both(disk, expected, &pattern(4096, seed + 4), (5 << 20) + 10_000);
}

/// The contents of a file, to check it is not changed.
pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
