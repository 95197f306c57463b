//! The `diskimg` example, driven as scripts drive it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use testkit::Requirement;

/// The example binary, which `cargo test` builds beside the test binaries.
fn diskimg() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples/diskimg");
    assert!(bin.exists(), "{bin:?} not built");
    bin
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
fn diskimg_attach_until_sigterm_needs_root_fuse_loop() {
    if !testkit::require(
        "diskimg_attach_until_sigterm_needs_root_fuse_loop",
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
    ok(
        &["create", "--format", "vhdx", "--size", "8388608", s(&img)],
        b"",
    );
    let mut child = Command::new(diskimg())
        .args(["attach", s(&img)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let device = line.trim().to_string();
    assert!(device.starts_with("/dev/loop"), "{device}");
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
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let back = ok(
        &["read", s(&img), "--offset", "1048576", "--length", "65536"],
        b"",
    );
    assert_eq!(back, data);
}
