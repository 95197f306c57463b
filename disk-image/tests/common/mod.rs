//! Helpers shared by the scenario tests: patterns, qemu-img, file digests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::process::Command;
use std::process::Command as Cmd;

use testkit::Requirement::{Command as Program, Path as DevPath, Root};

use disk_image::Disk;

/// A path as a command-line argument.
pub fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

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

/// A chain made by [`three_deep_chain`]: its files, what the top reads as, and the chain
/// opened read-only from the top.
pub struct Chain {
    pub base: std::path::PathBuf,
    pub mid: std::path::PathBuf,
    pub top: std::path::PathBuf,
    pub expected: Vec<u8>,
    pub opened: Box<dyn Disk>,
}

/// Builds `base.EXT` (of `format`, `size` bytes) <- `mid.EXT` <- `top.EXT` in `dir`, each
/// level overwriting part of the one below with unaligned writes (partial sectors, grains
/// and blocks, a write across block boundaries, the last sector). Checks on the way that
/// children have `child_format`, that the middle reads as its composition, that writes to
/// the top leave the lower files' bytes unchanged, and that `open_chain(top)` reads the
/// expected composition.
pub fn three_deep_chain(
    dir: &Path,
    ext: &str,
    format: disk_image::Format,
    child_format: disk_image::Format,
    size: u64,
) -> Chain {
    use disk_image::{create, create_child, open_chain};
    let base = dir.join(format!("base.{ext}"));
    let mid = dir.join(format!("mid.{ext}"));
    let top = dir.join(format!("top.{ext}"));
    let mut expected = vec![0u8; size as usize];
    {
        let mut d = create(&base, format, size).unwrap();
        write_both(d.as_mut(), &mut expected, &pattern(8 << 20, 1), 0);
        d.flush().unwrap();
    }
    {
        let mut d = create_child(&mid, &base).unwrap();
        assert_eq!(d.format(), child_format);
        write_both(d.as_mut(), &mut expected, &pattern(100_001, 2), 1_000_001);
        write_both(d.as_mut(), &mut expected, &pattern(2 << 20, 3), 6 << 20);
        d.flush().unwrap();
        assert_eq!(read_all(d.as_ref()), expected);
    }
    let base_bytes = file_bytes(&base);
    let mid_bytes = file_bytes(&mid);
    {
        let mut d = create_child(&top, &mid).unwrap();
        assert_eq!(d.format(), child_format);
        write_both(
            d.as_mut(),
            &mut expected,
            &pattern(3 << 20, 4),
            (5 << 20) + 333,
        );
        write_both(d.as_mut(), &mut expected, &pattern(4096, 5), 1_000_000);
        write_both(d.as_mut(), &mut expected, &pattern(3, 6), 1_050_000);
        write_both(d.as_mut(), &mut expected, &pattern(512, 7), size - 512);
        d.flush().unwrap();
    }
    assert_eq!(
        file_bytes(&base),
        base_bytes,
        "base changed by writes to top"
    );
    assert_eq!(file_bytes(&mid), mid_bytes, "mid changed by writes to top");
    let opened = open_chain(&top, true).unwrap();
    assert_eq!(read_all(opened.as_ref()), expected);
    let depth = std::iter::successors(Some(opened.as_ref()), |d| d.parent()).count();
    assert_eq!(depth, 3);
    Chain {
        base,
        mid,
        top,
        expected,
        opened,
    }
}

/// Runs `cmd` with `args`, panicking with its output when it fails. Returns stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Cmd::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the attach tests need from the machine.
pub const NEEDS: &[testkit::Requirement<'static>] = &[
    Root,
    Program("qemu-img"),
    Program("mkfs.ext4"),
    Program("mount"),
    DevPath("/dev/fuse"),
    DevPath("/dev/loop-control"),
];

/// Unmounts `mnt`. Right after files were written, the kernel can still hold the mount for
/// a moment (umount says "target is busy", seen once in CI): the data is flushed and the
/// unmount tried again, for up to five seconds.
pub fn unmount(mnt: &Path) {
    for _ in 0..50 {
        let out = Cmd::new("umount").arg(mnt).output().unwrap();
        if out.status.success() {
            return;
        }
        if !String::from_utf8_lossy(&out.stderr).contains("busy") {
            panic!(
                "umount {}: {}",
                mnt.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = Cmd::new("sync").arg("-f").arg(mnt).status();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("umount {}: still busy after 5 s", mnt.display());
}
