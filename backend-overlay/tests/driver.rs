//! The graph-driver conformance cases, on real overlay mounts (root and overlayfs needed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use backend_overlay::OverlayDriver;
use storage_core::run_root::RunRoot;
use storage_core::{CreateOpts, DiffOpts, LayerDriver, MountOpts, Op};
use tar_engine::{ChangeKind, ExportOptions};
use testkit::{Requirement, require};
use tokio::io::AsyncReadExt;

struct Fixture {
    _dir: tempfile::TempDir,
    driver: OverlayDriver,
    op: Op,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("overlay-driver-")
            .tempdir()
            .unwrap();
        let run = RunRoot::open(&dir.path().join("run")).unwrap();
        let driver = OverlayDriver::open(&dir.path().join("store"), run).unwrap();
        Fixture {
            _dir: dir,
            driver,
            op: Op::new("test"),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let driver = self.driver.clone();
        let op = self.op.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(driver.cleanup(&op))
        })
        .join();
    }
}

fn id(n: usize) -> String {
    format!("{n:064x}")
}

fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, mode) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

async fn try_apply(
    f: &Fixture,
    layer: &str,
    parent: Option<&str>,
    tar: Vec<u8>,
) -> storage_core::Result<storage_core::archive::ApplyReport> {
    f.driver
        .apply_diff(
            &f.op,
            layer,
            parent,
            Box::new(std::io::Cursor::new(tar)),
            &DiffOpts::default(),
        )
        .await
}

async fn apply(f: &Fixture, layer: &str, parent: Option<&str>, tar: Vec<u8>) {
    try_apply(f, layer, parent, tar).await.unwrap();
}

fn needs(test: &str) -> bool {
    require(
        test,
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_layer_mounts_empty_needs_root() {
    if !needs("an_empty_layer_mounts_empty_needs_root") {
        return;
    }
    let f = Fixture::new();
    f.driver
        .create(&f.op, &id(1), None, &CreateOpts::default())
        .await
        .unwrap();
    let m = f
        .driver
        .get(&f.op, &id(1), &MountOpts::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read_dir(&m).unwrap().count(), 0);
    assert_eq!(f.driver.mount_count(&f.op, &id(1)).await.unwrap(), 1);
    f.driver.put(&f.op, &id(1)).await.unwrap();
    assert_eq!(f.driver.mount_count(&f.op, &id(1)).await.unwrap(), 0);
    f.driver.remove(&f.op, &id(1)).await.unwrap();
    assert!(!f.driver.exists(&f.op, &id(1)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base_with_odd_modes_and_owners_survives_a_remount_needs_root() {
    if !needs("a_base_with_odd_modes_and_owners_survives_a_remount_needs_root") {
        return;
    }
    let f = Fixture::new();
    f.driver
        .create(&f.op, &id(1), None, &CreateOpts::default())
        .await
        .unwrap();
    let m = f
        .driver
        .get(&f.op, &id(1), &MountOpts::default())
        .await
        .unwrap();
    for (name, mode, uid) in [
        ("setuid", 0o4755, 0),
        ("sticky", 0o1777, 1),
        ("odd", 0o2511, 12345),
    ] {
        let p = m.join(name);
        std::fs::write(&p, name).unwrap();
        std::os::unix::fs::chown(&p, Some(uid), Some(uid + 1)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    f.driver.put(&f.op, &id(1)).await.unwrap();
    let m = f
        .driver
        .get(&f.op, &id(1), &MountOpts { read_only: true })
        .await
        .unwrap();
    for (name, mode, uid) in [
        ("setuid", 0o4755, 0),
        ("sticky", 0o1777, 1),
        ("odd", 0o2511, 12345),
    ] {
        let md = std::fs::metadata(m.join(name)).unwrap();
        assert_eq!(md.mode() & 0o7777, mode, "{name}");
        assert_eq!((md.uid(), md.gid()), (uid, uid + 1), "{name}");
    }
    f.driver.put(&f.op, &id(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_sees_its_parent_and_hides_its_own_deletions_needs_root() {
    if !needs("a_snapshot_sees_its_parent_and_hides_its_own_deletions_needs_root") {
        return;
    }
    let f = Fixture::new();
    f.driver
        .create(&f.op, &id(1), None, &CreateOpts::default())
        .await
        .unwrap();
    apply(
        &f,
        &id(1),
        None,
        tar_of(&[("a", b"a", 0o644), ("b", b"b", 0o644)]),
    )
    .await;
    f.driver
        .create_read_write(&f.op, &id(2), Some(&id(1)), &CreateOpts::default())
        .await
        .unwrap();
    let m = f
        .driver
        .get(&f.op, &id(2), &MountOpts::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(m.join("a")).unwrap(), b"a");
    std::fs::remove_file(m.join("b")).unwrap();
    std::fs::write(m.join("c"), b"c").unwrap();
    f.driver.put(&f.op, &id(2)).await.unwrap();
    let changes = f.driver.changes(&f.op, &id(2), Some(&id(1))).await.unwrap();
    let got: Vec<(String, ChangeKind)> =
        changes.iter().map(|c| (c.display_path(), c.kind)).collect();
    assert_eq!(
        got,
        vec![
            ("/b".into(), ChangeKind::Delete),
            ("/c".into(), ChangeKind::Add)
        ]
    );
    // The parent is untouched.
    let m = f
        .driver
        .get(&f.op, &id(1), &MountOpts { read_only: true })
        .await
        .unwrap();
    assert!(m.join("b").exists() && !m.join("c").exists());
    f.driver.put(&f.op, &id(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_then_apply_carries_n_files_needs_root() {
    if !needs("diff_then_apply_carries_n_files_needs_root") {
        return;
    }
    let f = Fixture::new();
    let names: Vec<String> = (0..300).map(|i| format!("dir{}/file{i}", i % 7)).collect();
    let files: Vec<(&str, &[u8], u32)> = names
        .iter()
        .map(|n| (n.as_str(), n.as_bytes(), 0o640))
        .collect();
    f.driver
        .create(&f.op, &id(1), None, &CreateOpts::default())
        .await
        .unwrap();
    apply(&f, &id(1), None, tar_of(&files)).await;
    let mut stream = f
        .driver
        .diff(&f.op, &id(1), None, &ExportOptions::default())
        .await
        .unwrap();
    let mut tar = Vec::new();
    stream.read_to_end(&mut tar).await.unwrap();
    f.driver
        .create(&f.op, &id(2), None, &CreateOpts::default())
        .await
        .unwrap();
    apply(&f, &id(2), None, tar).await;
    let a = f.driver.changes(&f.op, &id(1), None).await.unwrap();
    let b = f.driver.changes(&f.op, &id(2), None).await.unwrap();
    let paths = |v: &[tar_engine::Change]| v.iter().map(|c| c.display_path()).collect::<Vec<_>>();
    assert_eq!(paths(&a), paths(&b));
    assert_eq!(
        a.iter()
            .filter(|c| c.stat.as_ref().is_some_and(|s| s.mode == 0o640))
            .count(),
        300
    );
}

/// Builds a chain of `n` layers, each adding one file, and checks the top sees them all.
async fn deep_chain(n: usize) {
    let f = Fixture::new();
    let mut parent: Option<String> = None;
    for i in 1..=n {
        let layer = id(i);
        f.driver
            .create(&f.op, &layer, parent.as_deref(), &CreateOpts::default())
            .await
            .unwrap();
        let name = format!("f{i}");
        apply(
            &f,
            &layer,
            parent.as_deref(),
            tar_of(&[(&name, name.as_bytes(), 0o644)]),
        )
        .await;
        parent = Some(layer);
    }
    // A container's read-write layer on top of the whole chain.
    let rw = id(n + 1);
    f.driver
        .create_read_write(&f.op, &rw, parent.as_deref(), &CreateOpts::default())
        .await
        .unwrap();
    let m = f
        .driver
        .get(&f.op, &rw, &MountOpts::default())
        .await
        .unwrap();
    for i in [1, n / 2, n] {
        let name = format!("f{i}");
        assert_eq!(
            std::fs::read(m.join(&name)).unwrap(),
            name.as_bytes(),
            "layer {i} of {n}"
        );
    }
    assert_eq!(std::fs::read_dir(&m).unwrap().count(), n);
    std::fs::write(m.join("written-on-top"), b"x").unwrap();
    f.driver.put(&f.op, &rw).await.unwrap();
    assert!(
        Path::new(&f.driver.layout().diff(&rw))
            .join("written-on-top")
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_128_layer_chain_mounts_needs_root() {
    if !needs("a_128_layer_chain_mounts_needs_root") {
        return;
    }
    deep_chain(128).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_layer_chain_mounts_needs_root() {
    if !needs("a_500_layer_chain_mounts_needs_root") {
        return;
    }
    deep_chain(500).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1200_layer_chain_mounts_by_nesting_needs_root() {
    if !needs("a_1200_layer_chain_mounts_by_nesting_needs_root") {
        return;
    }
    deep_chain(1200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whiteout_of_dotdot_is_refused_and_the_layer_stays_usable_needs_root() {
    if !needs("a_whiteout_of_dotdot_is_refused_and_the_layer_stays_usable_needs_root") {
        return;
    }
    let f = Fixture::new();
    f.driver
        .create(&f.op, &id(1), None, &CreateOpts::default())
        .await
        .unwrap();
    apply(&f, &id(1), None, tar_of(&[("kept", b"own", 0o644)])).await;
    for name in [&b".wh..."[..], b".wh.."] {
        let mut t = testkit::tarball::Tarball::new();
        t.entry(testkit::tarball::Kind::File(Vec::new()), name, &[]);
        let err = try_apply(&f, &id(1), None, t.finish()).await.unwrap_err();
        assert!(
            matches!(err, storage_core::Error::UnsafeArchive { .. }),
            "{err}"
        );
        assert!(f.driver.exists(&f.op, &id(1)).await.unwrap());
    }
    let m = f
        .driver
        .get(&f.op, &id(1), &MountOpts::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(m.join("kept")).unwrap(), b"own");
    f.driver.put(&f.op, &id(1)).await.unwrap();
}
