//! The `diskimg` tool, driven as scripts drive it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use testkit::Requirement;

/// The crate's binary, which `cargo test` builds for its tests.
fn diskimg() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_diskimg"))
}

fn run(args: &[&str], input: &[u8]) -> (bool, Vec<u8>, String) {
    let mut child = Command::new(diskimg())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str], input: &[u8]) -> Vec<u8> {
    let (success, out, err) = run(args, input);
    assert!(success, "diskimg {args:?}: {err}");
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn diskimg_create_write_read_convert_info() {
    let dir = tempfile::tempdir().unwrap();
    let size = 8 << 20;
    for f in [
        "raw",
        "vmdk",
        "vmdk-flat",
        "vmdk-stream",
        "vhd-fixed",
        "vhd-dynamic",
        "vhdx",
    ] {
        let img = dir.path().join(format!("{f}.img"));
        ok(
            &[
                "create",
                "--format",
                f,
                "--size",
                &size.to_string(),
                s(&img),
            ],
            b"",
        );
        let data = pattern(200_000, 3);
        ok(&["write", s(&img), "--offset", "70000"], &data);
        let back = ok(
            &["read", s(&img), "--offset", "70000", "--length", "200000"],
            b"",
        );
        assert_eq!(back, data, "{f}");
        let info = String::from_utf8(ok(&["info", s(&img), "--json"], b"")).unwrap();
        assert!(info.contains(&format!("\"format\":\"{f}\"")), "{info}");
        assert!(info.contains(&format!("\"virtual_size\":{size}")), "{info}");
        let out = dir.path().join(format!("{f}.vhdx"));
        ok(&["convert", "--format", "vhdx", s(&img), s(&out)], b"");
        let back = ok(
            &["read", s(&out), "--offset", "70000", "--length", "200000"],
            b"",
        );
        assert_eq!(back, data, "{f} -> vhdx");
    }
    // Children take their parent's family.
    let child = dir.path().join("child.vmdk");
    ok(
        &[
            "create",
            "--format",
            "vmdk",
            "--parent",
            s(&dir.path().join("vmdk.img")),
            s(&child),
        ],
        b"",
    );
    let info = String::from_utf8(ok(&["info", s(&child)], b"")).unwrap();
    assert!(info.contains("vmdk.img"), "{info}");
    let (success, _, err) = run(
        &[
            "create",
            "--format",
            "vhdx",
            "--parent",
            s(&dir.path().join("vmdk.img")),
            s(&dir.path().join("x.vhdx")),
        ],
        b"",
    );
    assert!(!success && err.contains("vmdk"), "{err}");
    // Errors name the problem.
    let (success, _, err) = run(&["create", "--format", "qcow2", "--size", "1", "y"], b"");
    assert!(!success && err.contains("qcow2"), "{err}");
    let (success, _, err) = run(
        &["read", s(&child), "--offset", "0", "--length", "999999999"],
        b"",
    );
    assert!(!success && err.contains("out of range"), "{err}");
}

#[test]
fn diskimg_attach_prints_a_device_that_outlives_it_until_detach_needs_root_fuse_loop() {
    if !testkit::require(
        "diskimg_attach_prints_a_device_that_outlives_it_until_detach_needs_root_fuse_loop",
        &[
            Requirement::Root,
            Requirement::Path("/dev/fuse"),
            Requirement::Path("/dev/loop-control"),
        ],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.vhdx");
    let registry = dir.path().join("registry");
    ok(
        &["create", "--format", "vhdx", "--size", "8388608", s(&img)],
        b"",
    );
    let out = ok(&["attach", "--run-dir", s(&registry), s(&img)], b"");
    let device = String::from_utf8(out).unwrap().trim().to_string();
    assert!(device.starts_with("/dev/loop"), "{device}");
    // `diskimg` has exited; the device is still served.
    let data = pattern(65536, 5);
    {
        use std::os::unix::fs::FileExt;
        let dev = std::fs::OpenOptions::new()
            .write(true)
            .open(&device)
            .unwrap();
        dev.write_all_at(&data, 1 << 20).unwrap();
        dev.sync_all().unwrap();
    }
    let out = ok(&["detach", "--run-dir", s(&registry), s(&img)], b"");
    assert!(String::from_utf8_lossy(&out).starts_with("detached"));
    let back = ok(
        &["read", s(&img), "--offset", "1048576", "--length", "65536"],
        b"",
    );
    assert_eq!(back, data);
}
