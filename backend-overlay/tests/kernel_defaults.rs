//! A container's diff is its data whatever overlay features the kernel turns on by
//! default: with the module's `metacopy` and `redirect_dir` on, a chown copies up the
//! file's data too and a renamed directory is copied, so the diff carries the content.
//! Changes the module's parameters for its duration (restored after), so it is a test
//! binary of its own: cargo runs test binaries one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::Path;

use tokio::io::AsyncReadExt;

use common::{Fixture, tar_with};
use storage_core::archive::ExportOptions;
use testkit::{Requirement, require};

const PARAMS: &str = "/sys/module/overlay/parameters";

/// Sets the overlay module's parameters, and puts back what they were on drop.
struct Params(Vec<(String, String)>);

impl Params {
    fn set(names: &[&str], value: &str) -> Self {
        let saved = names
            .iter()
            .map(|n| {
                let path = Path::new(PARAMS).join(n);
                let was = std::fs::read_to_string(&path).unwrap();
                std::fs::write(&path, value).unwrap();
                (n.to_string(), was.trim().to_owned())
            })
            .collect();
        Params(saved)
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

/// In a new container: chowns a file of the image (with metacopy, only its metadata would
/// be copied up) and renames its directory (refused without redirect_dir, as `mv` then
/// copies). Returns the file's owner and data as the container's diff carries them (under
/// either name), and whether the rename went through.
async fn chown_rename_and_diff() -> (u64, Vec<u8>, bool) {
    let f = Fixture::new().await;
    let (s, op) = (&f.store, &f.op);
    let (l, _) = s
        .import_layer(op, None, &[], tar_with("d/file", b"precious data\n"), None)
        .await
        .unwrap();
    let image = s
        .create_image(Some(&l.id), None, &[], "", None)
        .await
        .unwrap();
    let c = s
        .create_container(op, &image.id, None, &[], "")
        .await
        .unwrap();
    let merged = s.mount(op, &c.layer, false).await.unwrap();
    std::os::unix::fs::chown(merged.join("d/file"), Some(1234), None).unwrap();
    std::fs::create_dir(merged.join("x")).unwrap();
    let renamed = match std::fs::rename(merged.join("d"), merged.join("x/moved")) {
        Ok(()) => true,
        // EXDEV
        Err(e) if e.raw_os_error() == Some(18) => false,
        Err(e) => panic!("rename: {e}"),
    };
    s.unmount(op, &c.layer).await.unwrap();

    let mut stream = s
        .diff(op, &c.layer, None, &ExportOptions::default())
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
