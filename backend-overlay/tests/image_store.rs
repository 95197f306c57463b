//! The port layer's face over a real overlay store: image stores, write_image,
//! delete_image, the name cache's delete_branch, and the volume cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use backend_overlay::DirVolumes;
use catalog::image_store::{ImageStorer, NameLookupCache, NewImage, VolumeLookupCache};
use common::{Fixture, tar_with};
use storage_core::{Error, ObjectUrl, VolumeStorer};
use testkit::{Requirement, require};

fn new_image(id: &str, parent: &str) -> NewImage {
    NewImage {
        id: id.to_owned(),
        parent: parent.to_owned(),
        metadata: BTreeMap::from([("by".to_owned(), id.as_bytes().to_vec())]),
        sum: None,
    }
}

async fn cache(f: &Fixture) -> NameLookupCache {
    let storer: Arc<dyn ImageStorer> = f.store.clone();
    NameLookupCache::open(&f.op, storer).await.unwrap()
}

#[tokio::test]
async fn image_stores_are_created_once_listed_and_deleted_only_when_empty() {
    let f = Fixture::new().await;
    let c = cache(&f).await;
    let op = &f.op;
    assert_eq!(
        c.create_image_store(op, "default").await.unwrap(),
        ObjectUrl::image_store("default")
    );
    let e = c.create_image_store(op, "default").await.unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    assert!(matches!(
        c.get_image_store(op, "nope").await,
        Err(Error::StoreNotFound { .. })
    ));
    c.write_image(
        op,
        "default",
        new_image("a", "scratch"),
        tar_with("a", b"1"),
    )
    .await
    .unwrap();
    let e = c.delete_image_store(op, "default").await.unwrap_err();
    assert!(matches!(e, Error::ImageInUse { .. }), "{e}");
    // Scratch is never listed, and never deleted on its own.
    let listed: Vec<String> = c
        .list_images(op, "default", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(listed, vec!["a".to_string()]);
    let e = c.delete_image(op, "default", "scratch").await.unwrap_err();
    assert!(matches!(e, Error::ImageInUse { .. }), "{e}");
    c.delete_image(op, "default", "a").await.unwrap();
    c.delete_image_store(op, "default").await.unwrap();
    assert!(c.list_image_stores(op).await.unwrap().is_empty());
    assert!(
        f.store.layers().await.unwrap().is_empty(),
        "scratch's layer stayed"
    );
}

#[tokio::test]
async fn write_image_checks_parent_id_and_sum() {
    let f = Fixture::new().await;
    let c = cache(&f).await;
    let op = &f.op;
    c.create_image_store(op, "s").await.unwrap();
    let e = c
        .write_image(op, "s", new_image("a", "missing"), tar_with("a", b"1"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let a = c
        .write_image(op, "s", new_image("a", "scratch"), tar_with("a", b"1"))
        .await
        .unwrap();
    assert_eq!(a.metadata["by"], b"a");
    assert_eq!(a.parent.as_deref(), Some("scratch"));
    // The same id answers the existing image and writes nothing.
    let layers = f.store.layers().await.unwrap().len();
    let again = c
        .write_image(op, "s", new_image("a", "scratch"), tar_with("other", b"2"))
        .await
        .unwrap();
    assert_eq!(again, a);
    assert_eq!(f.store.layers().await.unwrap().len(), layers);
    // A wrong sum leaves nothing behind.
    let mut bad = new_image("b", "a");
    bad.sum = Some(format!("sha256:{}", "0".repeat(64)));
    let e = c
        .write_image(op, "s", bad, tar_with("b", b"3"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert_eq!(f.store.layers().await.unwrap().len(), layers);
    assert!(matches!(
        c.get_image(op, "s", "b").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        f.store.get_image(op, "s", "b").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn scratch_carries_the_base_structure_needs_root() {
    if !require(
        "scratch_carries_the_base_structure_needs_root",
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    ) {
        return;
    }
    let f = Fixture::new().await;
    let op = &f.op;
    f.store.create_image_store(op, "s").await.unwrap();
    let scratch = f.store.get_image(op, "s", "scratch").await.unwrap();
    let root = f.store.mount(op, &scratch.layer, true).await.unwrap();
    for dir in ["etc", "lib/modules", "run", "proc", "sys"] {
        assert!(root.join(dir).is_dir(), "{dir} missing");
    }
    for file in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
        assert_eq!(
            std::fs::metadata(root.join(file)).unwrap().len(),
            0,
            "{file}"
        );
    }
    assert_eq!(
        std::fs::read_link(root.join("etc/mtab")).unwrap(),
        std::path::Path::new("/proc/mounts")
    );
    f.store.unmount(op, &scratch.layer).await.unwrap();
    let st = f
        .store
        .stat_image_path(op, "s", "scratch", "/etc/mtab")
        .await
        .unwrap();
    assert_eq!(st.link_target.as_deref(), Some("/proc/mounts"));
    let e = f
        .store
        .stat_image_path(op, "s", "scratch", "/nope")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
}

/// scratch -> {1 -> 10 -> 100, 2 -> 20 -> 200, 3 -> 30 -> {300, 301}}
async fn tree(c: &NameLookupCache, op: &storage_core::Op) {
    c.create_image_store(op, "t").await.unwrap();
    for (id, parent) in [
        ("1", "scratch"),
        ("10", "1"),
        ("100", "10"),
        ("2", "scratch"),
        ("20", "2"),
        ("200", "20"),
        ("3", "scratch"),
        ("30", "3"),
        ("300", "30"),
        ("301", "30"),
    ] {
        c.write_image(op, "t", new_image(id, parent), tar_with(id, id.as_bytes()))
            .await
            .unwrap();
    }
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn delete_branch_walks_up_to_scratch_a_kept_image_or_a_fork() {
    let f = Fixture::new().await;
    let c = cache(&f).await;
    let op = &f.op;
    tree(&c, op).await;
    let e = c.delete_branch(op, "t", "30", &[]).await.unwrap_err();
    assert!(matches!(e, Error::ImageInUse { .. }), "{e}");
    assert_eq!(
        c.delete_branch(op, "t", "100", &[]).await.unwrap(),
        ids(&["100", "10", "1"])
    );
    assert_eq!(
        c.delete_branch(op, "t", "300", &[]).await.unwrap(),
        ids(&["300"])
    );
    assert_eq!(
        c.delete_branch(op, "t", "200", &ids(&["2"])).await.unwrap(),
        ids(&["200", "20"])
    );
    // A restarted cache serves the same answers, from the catalog.
    let restarted = NameLookupCache::open(op, f.reopen().await).await.unwrap();
    let mut left: Vec<String> = restarted
        .list_images(op, "t", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    left.sort();
    assert_eq!(left, ids(&["2", "3", "30", "301"]));
    assert_eq!(
        restarted.delete_branch(op, "t", "301", &[]).await.unwrap(),
        ids(&["301", "30", "3"])
    );
}

#[tokio::test]
async fn a_store_whose_scratch_is_missing_opens_as_corrupt() {
    let f = Fixture::new().await;
    let c = cache(&f).await;
    c.create_image_store(&f.op, "broken").await.unwrap();
    f.store
        .write(|sql| {
            sql.exec(
                "DELETE FROM store_images WHERE store = 'broken' AND id = 'scratch'",
                [],
            )
        })
        .await
        .unwrap();
    let storer: Arc<dyn ImageStorer> = f.store.clone();
    let e = NameLookupCache::open(&f.op, storer).await.err().unwrap();
    assert!(matches!(e, Error::CorruptStore { .. }), "{e}");
}

#[tokio::test]
async fn the_volume_cache_refuses_taken_ids_used_volumes_and_unknown_stores() {
    let f = Fixture::new().await;
    let op = &f.op;
    let cache = VolumeLookupCache::new(f.store.catalog());
    let dirs: Arc<dyn VolumeStorer> =
        Arc::new(DirVolumes::new("local", &f.dir.path().join("store")));
    cache.add_store(op, "local", dirs).await.unwrap();
    let info = BTreeMap::from([("size".to_owned(), b"1G".to_vec())]);
    cache
        .volume_create(op, "local", "v1", 0, info.clone())
        .await
        .unwrap();
    let e = cache
        .volume_create(op, "local", "v1", 0, info)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::VolumeExists { .. }), "{e}");
    let e = cache
        .volume_create(op, "elsewhere", "v2", 0, BTreeMap::new())
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::VolumeStoreNotFound { ref known, .. } if known == &["local".to_string()]),
        "{e}"
    );

    let image = f
        .store
        .create_image(None, None, &[], "", None)
        .await
        .unwrap();
    let c = f
        .store
        .create_container(op, &image.id, None, &[], "")
        .await
        .unwrap();
    cache.join(&c.id, "local", "v1").await.unwrap();
    let e = cache.volume_destroy(op, "local", "v1").await.unwrap_err();
    assert!(matches!(e, Error::VolumeInUse { .. }), "{e}");
    // Deleting the container ends its use.
    f.store.delete_container(op, &c.id).await.unwrap();
    cache.volume_destroy(op, "local", "v1").await.unwrap();
    assert!(cache.volumes_list().unwrap().is_empty());
}

/// Reads a tar stream into (name, contents) pairs of its regular files.
async fn files_of(stream: tar_engine::ArchiveStream) -> Vec<(String, Vec<u8>)> {
    let bytes = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        stream.copy_to_blocking(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    let mut archive = tar::Archive::new(std::io::Cursor::new(bytes));
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let name = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            files.push((name, data));
        }
    }
    files
}

#[tokio::test]
async fn exports_carry_the_data_of_every_layer_they_cover_needs_root() {
    if !require(
        "exports_carry_the_data_of_every_layer_they_cover_needs_root",
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    ) {
        return;
    }
    let f = Fixture::new().await;
    let c = cache(&f).await;
    let op = &f.op;
    c.create_image_store(op, "s").await.unwrap();
    for (id, parent, file) in [("a", "scratch", "a"), ("b", "a", "b"), ("c", "b", "c")] {
        c.write_image(
            op,
            "s",
            new_image(id, parent),
            tar_with(file, file.as_bytes()),
        )
        .await
        .unwrap();
    }
    let spec = storage_core::FilterSpec::default();
    // The whole image: read through a mount, which must stay up while data is written.
    let whole = files_of(
        f.store
            .export_image(op, "s", "c", None, &spec, true)
            .await
            .unwrap(),
    )
    .await;
    for name in ["a", "b", "c"] {
        assert!(
            whole.contains(&(name.to_string(), name.as_bytes().to_vec())),
            "{name} missing from {whole:?}"
        );
    }
    // Against a grandparent: the two layers above it, nothing of scratch or a.
    let diff = files_of(
        f.store
            .export_image(op, "s", "c", Some("a"), &spec, true)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        diff,
        vec![
            ("b".to_string(), b"b".to_vec()),
            ("c".to_string(), b"c".to_vec())
        ]
    );
    assert!(f.store.mounted_layers(op).await.unwrap().is_empty());
}
