//! A full disk at every write path of a store: a layer import, a big-data write, the
//! catalog itself, a volume import, and a container writing through its mount. Each ends
//! in a clear error that names what was being written and the cause, leaves nothing
//! half-written, and `strata check` finds the store consistent afterwards; once space is
//! free again, the same operations succeed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::CliStore;
use testkit::loop_disk::LoopDisk;
use testkit::{Requirement, require};

fn run(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tar holding one file of `mib` MiB of incompressible bytes.
fn big_tar(mib: usize) -> Vec<u8> {
    let mut data = vec![0u8; mib << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, "payload", &data[..]).unwrap();
    b.into_inner().unwrap()
}

/// Asserts a clean failure whose message says the disk is full and names `object`.
fn full_disk_error(out: &Output, what: &str, object: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} succeeded on a full disk");
    assert!(
        stderr.contains("No space left on device") || stderr.contains("disk is full"),
        "{what}: {stderr}"
    );
    assert!(
        stderr.contains(object),
        "{what} does not name {object}: {stderr}"
    );
    assert_eq!(
        stderr.matches("No space left on device").count().min(1),
        stderr.matches("No space left on device").count(),
        "{what} repeats its cause: {stderr}"
    );
}

fn check_passes(store: &CliStore, after: &str) {
    let out = store.run(&["check"]);
    assert!(
        out.status.success(),
        "after {after}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn needs() -> Vec<Requirement<'static>> {
    vec![
        Requirement::Root,
        Requirement::Command("mkfs.ext4"),
        Requirement::Path("/dev/loop-control"),
        Requirement::Filesystem("overlay"),
    ]
}

#[test]
fn every_write_path_on_a_full_disk_fails_cleanly_and_leaves_a_consistent_store() {
    if !require("full disk at every write path", &needs()) {
        return;
    }
    let disk = LoopDisk::new(48);
    let root = disk.mount().join("store");
    let store = CliStore::rooted_at("strata-faults-", &root);
    let base = store.ok(&["create-layer", "-n", "base"]);
    store.ok(&["create-image", &base, "-n", "img"]);
    store.ok(&["volume", "create", "vol"]);
    let tar = big_tar(64);

    // A layer import larger than the disk.
    let out = store.run_with_input(&["import-layer", "-n", "big", "-"], &tar);
    full_disk_error(&out, "import-layer", "big");
    check_passes(&store, "a layer import on a full disk");
    assert_eq!(store.complete_layer_ids().len(), 1);

    // A big-data item larger than the disk.
    let out = store.run_with_input(&["set-image-data", "img", "manifest"], &tar);
    full_disk_error(&out, "set-image-data", "manifest");
    check_passes(&store, "a big-data write on a full disk");
    assert!(
        !store
            .run(&["get-image-data", "img", "manifest"])
            .status
            .success()
    );

    // A volume import larger than the disk.
    let out = store.run_with_input(&["volume", "import", "vol", "-"], &tar);
    full_disk_error(&out, "volume import", "vol");
    check_passes(&store, "a volume import on a full disk");
    let held = std::fs::read_dir(root.join("volumes/vol")).unwrap().count();
    assert_eq!(held, 0, "a failed volume import left part of its archive");

    // A container writing through its mount until the disk is full.
    let container = store.ok(&["create-container", "img", "-n", "c"]);
    let layer = store.json(&["container", "c", "--json"])[0]["layer"]
        .as_str()
        .unwrap()
        .to_owned();
    let merged = store.ok(&["mount", &layer]);
    let mut f = std::fs::File::create(Path::new(&merged).join("fill")).unwrap();
    let err = loop {
        if let Err(e) = f.write_all(&[7u8; 1 << 20]) {
            break e;
        }
    };
    assert_eq!(err.raw_os_error(), Some(28), "{err}");
    drop(f);
    store.ok(&["unmount", &layer]);
    check_passes(&store, "a container filled the disk through its mount");
    store.ok(&["delete-container", &container]);

    // The catalog itself, with not a block free: a new process cannot even size the
    // catalog's shared-memory index, and says the disk is full.
    let filler = disk.fill();
    let out = store.run(&["create-layer", "-n", "later"]);
    full_disk_error(&out, "create-layer", "catalog");
    std::fs::remove_file(&filler).unwrap();
    check_passes(&store, "a catalog write on a full disk");

    // With space again, everything works.
    let small = big_tar(1);
    let out = store.run_with_input(&["import-layer", "-n", "big", "-"], &small);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = store.run_with_input(&["set-image-data", "img", "manifest"], b"{}");
    assert!(out.status.success());
    store.ok(&["create-layer", "-n", "later"]);
    check_passes(&store, "the store recovered its space");
    store.ok(&["volume", "rm", "vol"]);
    store.ok(&["wipe"]);
    check_passes(&store, "wipe");
    testkit::tell(
        "faults: a full disk met 5 write paths (layer import, big data, volume import, \
         a container's writes, the catalog); check passed after each",
    );
}

#[test]
fn an_io_error_under_the_store_fails_the_write_with_its_cause_and_check_repairs_what_is_left() {
    let mut needs = needs();
    needs.push(Requirement::Command("e2fsck"));
    if !require("I/O errors under the store", &needs) {
        return;
    }
    // The store's disk is a loop device over a sparse file on a small tmpfs: once the
    // tmpfs is full, the disk's writes fail with EIO, as a failing disk's do.
    let dir = tempfile::Builder::new()
        .prefix("strata-eio-")
        .tempdir()
        .unwrap();
    let backing = dir.path().join("backing");
    std::fs::create_dir_all(&backing).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64M", "tmpfs"])
        .arg(&backing));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    // Declared before the disk, so dropped after it: the tmpfs holds the disk's image.
    let _backing = Unmount(backing.clone());
    let disk = LoopDisk::in_dir(&backing, dir.path(), 256);
    let mount = disk.mount().to_owned();
    let root = mount.join("store");
    let store = CliStore::rooted_at("strata-eio-", &root);
    store.ok(&["create-layer", "-n", "base"]);
    let filler = backing.join("filler");
    std::fs::write(&filler, vec![0u8; 40 << 20]).unwrap();
    let out = store.run_with_input(&["import-layer", "-n", "big", "-"], &big_tar(40));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the import succeeded on a failing disk"
    );
    assert!(stderr.contains("import layer big"), "{stderr}");
    // The cause is the disk's: EIO, or EROFS once ext4 has aborted its journal on an
    // earlier failed write and turned itself read-only (which comes first depends on
    // when the kernel wrote back).
    assert!(
        stderr.contains("Input/output error") || stderr.contains("Read-only file system"),
        "not the cause: {stderr}"
    );

    // The disk is set right as an administrator would: space, fsck, mount again.
    disk.unmount();
    std::fs::remove_file(&filler).unwrap();
    let fsck = Command::new("e2fsck")
        .arg("-fy")
        .arg(disk.image())
        .output()
        .unwrap();
    assert!(fsck.status.code().is_some_and(|c| c <= 1), "{fsck:?}");
    disk.mount_again();

    // What the failure left is nothing a record refers to, or unfinished: repair takes it.
    let out = store.run(&["check", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for p in report["problems"].as_array().unwrap() {
        let kind = p["kind"].as_str().unwrap();
        assert!(
            kind == "unreferenced" || kind == "unfinished",
            "damage after an I/O error: {p}"
        );
    }
    store.ok(&["check", "--repair"]);
    store.ok(&["check"]);
    assert_eq!(store.complete_layer_ids().len(), 1, "base is kept");
    let out = store.run_with_input(&["import-layer", "-n", "big", "-"], &big_tar(4));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    store.ok(&["check"]);
    testkit::tell(
        "faults: an I/O error under the store failed the import with its cause; check --repair set the store right",
    );
}
