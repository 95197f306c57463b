//! A container's diff is its data whatever overlay features the kernel turns on by
//! default: with the module's `metacopy` and `redirect_dir` on, a chown copies up the
//! file's data too and a renamed directory is copied, so the diff carries the content.
//! And an upper an earlier strata wrote under those defaults, where they left metacopy
//! files, keeps them, so those files still open. Changes the module's parameters for its duration (restored
//! after), so it is a test binary of its own: cargo runs test binaries one at a time, and
//! its tests take turns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::Path;

use tokio::io::AsyncReadExt;

use common::Fixture;
use storage_core::archive::ExportOptions;
use testkit::{Requirement, require};

const PARAMS: &str = "/sys/module/overlay/parameters";

/// The tests here change the same module parameters: one at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sets the overlay module's parameters, and puts back what they were on drop.
struct Params(Vec<(String, String)>);

impl Params {
    fn set(names: &[&str], value: &str) -> Self {
        let mut saved = Params(Vec::new());
        for name in names {
            let path = Path::new(PARAMS).join(name);
            let was = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            saved.0.push((name.to_string(), was.trim().to_owned()));
            std::fs::write(&path, value)
                .unwrap_or_else(|e| panic!("set {} (this test changes it): {e}", path.display()));
        }
        saved
    }
}

impl Drop for Params {
    fn drop(&mut self) {
        for (name, was) in &self.0 {
            let _ = std::fs::write(Path::new(PARAMS).join(name), was);
        }
    }
}

#[tokio::test]
async fn a_containers_diff_keeps_file_data_with_metacopy_and_redirect_dir_on_by_default_needs_root()
{
    if !require(
        "a_containers_diff_keeps_file_data_with_metacopy_and_redirect_dir_on_by_default_needs_root",
        &[
            Requirement::Root,
            Requirement::Filesystem("overlay"),
            Requirement::Path("/sys/module/overlay/parameters/metacopy"),
            Requirement::Path("/sys/module/overlay/parameters/redirect_dir"),
        ],
    ) {
        return;
    }
    let _turn = TURN.lock().await;
    // metacopy alone (the kernel then turns redirect_dir on with it), and both.
    for on in [&["metacopy"][..], &["redirect_dir", "metacopy"]] {
        let _on = Params::set(on, "Y");
        let (owner, data, renamed) = chown_rename_and_diff().await;
        assert_eq!(
            (owner, data.as_slice()),
            (1234, &b"precious data\n"[..]),
            "with {on:?} on by default"
        );
        assert!(
            !renamed,
            "with {on:?} on, a lower directory was renamed in place"
        );
    }
}

#[tokio::test]
async fn an_upper_written_under_the_kernels_defaults_keeps_them_and_its_files_open_needs_root() {
    if !require(
        "an_upper_written_under_the_kernels_defaults_keeps_them_and_its_files_open_needs_root",
        &[
            Requirement::Root,
            Requirement::Filesystem("overlay"),
            Requirement::Path("/sys/module/overlay/parameters/metacopy"),
            Requirement::Path("/sys/module/overlay/parameters/redirect_dir"),
        ],
    ) {
        return;
    }
    let _turn = TURN.lock().await;
    let _on = Params::set(&["redirect_dir", "metacopy"], "Y");
    let (f, image_layer, container_layer) = container().await;
    let (s, op) = (&f.store, &f.op);
    // As an earlier strata left it: written under the kernel's defaults (by a mount
    // without options) before strata first mounted it, where a chown copied up the
    // file's metadata only.
    let overlay = f.dir.path().join("store/overlay");
    let layer = overlay.join(&container_layer);
    let scratch = tempfile::tempdir().unwrap();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        overlay.join(&image_layer).join("diff").display(),
        layer.join("diff").display(),
        layer.join("work").display()
    );
    run(
        "mount",
        &["-t", "overlay", "overlay", "-o", &options],
        scratch.path(),
    );
    std::os::unix::fs::chown(scratch.path().join("d/file"), Some(1234), None).unwrap();
    run("umount", &[], scratch.path());
    let copied_up = layer.join("diff/d/file");
    assert!(
        tar_engine::tree::get_xattr(&copied_up, "trusted.overlay.metacopy")
            .unwrap()
            .is_some(),
        "the kernel copied up metadata only"
    );

    let merged = s.mount(op, &container_layer, false).await.unwrap();
    let read = std::fs::read(merged.join("d/file"));
    s.unmount(op, &container_layer).await.unwrap();
    assert_eq!(read.unwrap(), b"precious data\n");
    assert!(layer.join(mounts::overlay::DEFAULTS_UPPER_MARK).exists());
}

fn run(cmd: &str, args: &[&str], target: &Path) {
    let status = std::process::Command::new(cmd)
        .args(args)
        .arg(target)
        .status()
        .unwrap();
    assert!(status.success(), "{cmd} {args:?} {}", target.display());
}

/// A new store with a container on a one-layer image holding `d/file`: the store, the
/// image's layer and the container's layer.
async fn container() -> (Fixture, String, String) {
    let f = Fixture::new().await;
    let (image_layer, c) = f.container_on_file("d/file", b"precious data\n").await;
    (f, image_layer, c.layer)
}

/// In a new container: chowns a file of the image (with metacopy, only its metadata would
/// be copied up) and renames its directory (refused without redirect_dir, as `mv` then
/// copies). Returns the file's owner and data as the container's diff carries them (under
/// either name), and whether the rename went through.
async fn chown_rename_and_diff() -> (u64, Vec<u8>, bool) {
    let (f, _, container_layer) = container().await;
    let (s, op) = (&f.store, &f.op);
    let merged = s.mount(op, &container_layer, false).await.unwrap();
    let mark = f
        .dir
        .path()
        .join("store/overlay")
        .join(&container_layer)
        .join(mounts::overlay::PLAIN_UPPER_MARK);
    assert!(
        mark.exists(),
        "a new container's upper is marked plain at its first mount"
    );
    std::os::unix::fs::chown(merged.join("d/file"), Some(1234), None).unwrap();
    std::fs::create_dir(merged.join("x")).unwrap();
    let renamed = match std::fs::rename(merged.join("d"), merged.join("x/moved")) {
        Ok(()) => true,
        // EXDEV
        Err(e) if e.raw_os_error() == Some(18) => false,
        Err(e) => panic!("rename: {e}"),
    };
    s.unmount(op, &container_layer).await.unwrap();

    let mut stream = s
        .diff(op, &container_layer, None, &ExportOptions::default())
        .await
        .unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        if path == Path::new("d/file") || path == Path::new("x/moved/file") {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            return (entry.header().uid().unwrap(), data, renamed);
        }
    }
    panic!("the diff has no d/file");
}
