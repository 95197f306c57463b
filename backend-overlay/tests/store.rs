//! The store's rules over a real overlay driver: deletion rules with each error kind,
//! names, metadata, big data, wipe and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Fixture, names, tar_with};
use storage_core::{Error, LayerDriver, ObjectKind};
use testkit::{Requirement, require};

#[tokio::test]
async fn deleting_a_layer_is_refused_for_children_images_and_containers() {
    let f = Fixture::new().await;
    let (s, op) = (&f.store, &f.op);
    let base = s
        .create_layer(op, None, &names(&["base"]), false)
        .await
        .unwrap();
    let top = s.create_layer(op, Some("base"), &[], false).await.unwrap();
    let e = s.delete_layer(op, "base").await.unwrap_err();
    assert!(
        matches!(e, Error::LayerHasChildren { ref children, .. } if children == std::slice::from_ref(&top.id)),
        "{e}"
    );

    let image = s
        .create_image(Some(&top.id), None, &names(&["img"]), "", None)
        .await
        .unwrap();
    let e = s.delete_layer(op, &top.id).await.unwrap_err();
    assert!(
        matches!(e, Error::LayerUsedByImage { ref images, .. } if images == std::slice::from_ref(&image.id)),
        "{e}"
    );

    let c = s
        .create_container(op, "img", None, &names(&["c"]), "")
        .await
        .unwrap();
    let e = s.delete_layer(op, &c.layer).await.unwrap_err();
    assert!(
        matches!(e, Error::LayerUsedByContainer { ref container, .. } if *container == c.id),
        "{e}"
    );

    let e = s.delete_image(op, "img", false).await.unwrap_err();
    assert!(
        matches!(e, Error::ImageUsedByContainer { ref containers, .. } if containers == std::slice::from_ref(&c.id)),
        "{e}"
    );

    // Everything is still there after the refusals.
    assert_eq!(s.layers().await.unwrap().len(), 3);
    assert_eq!(s.image("img").await.unwrap().id, image.id);
    assert_eq!(base.id, s.layer("base").await.unwrap().id);
}

#[tokio::test]
async fn a_mounted_layer_or_container_is_not_deleted_needs_root() {
    if !require(
        "a_mounted_layer_or_container_is_not_deleted_needs_root",
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    ) {
        return;
    }
    let f = Fixture::new().await;
    let (s, op) = (&f.store, &f.op);
    let (_, c) = f.container_on_file("a", b"x").await;
    s.mount(op, &c.layer, false).await.unwrap();
    let e = s.delete_container(op, &c.id).await.unwrap_err();
    assert!(matches!(e, Error::LayerInUse { mounts: 1, .. }), "{e}");
    let e = s.wipe(op).await.unwrap_err();
    assert!(
        matches!(e, Error::StoreBusy { ref mounted, .. } if mounted == std::slice::from_ref(&c.layer)),
        "{e}"
    );
    let e = s.shutdown(op, false).await.unwrap_err();
    assert!(matches!(e, Error::StoreBusy { .. }), "{e}");
    assert_eq!(s.shutdown(op, true).await.unwrap(), vec![c.layer.clone()]);
    assert_eq!(f.driver.mount_count(op, &c.layer).await.unwrap(), 0);
    s.delete_container(op, &c.id).await.unwrap();
    s.wipe(op).await.unwrap();
    assert!(s.layers().await.unwrap().is_empty());
    assert!(s.images().await.unwrap().is_empty());
}

#[tokio::test]
async fn deleting_an_image_removes_only_the_layers_nobody_else_needs() {
    let f = Fixture::new().await;
    let (s, op) = (&f.store, &f.op);
    let base = s.create_layer(op, None, &[], false).await.unwrap();
    let mid = s
        .create_layer(op, Some(&base.id), &[], false)
        .await
        .unwrap();
    let a_top = s.create_layer(op, Some(&mid.id), &[], false).await.unwrap();
    let b_top = s.create_layer(op, Some(&mid.id), &[], false).await.unwrap();
    let a = s
        .create_image(Some(&a_top.id), None, &names(&["a"]), "", None)
        .await
        .unwrap();
    s.create_image(Some(&b_top.id), None, &names(&["b"]), "", None)
        .await
        .unwrap();
    // A shares mid and base with B: only its own top goes.
    let plan = s.delete_image(op, "a", true).await.unwrap();
    assert_eq!(plan.layers, vec![a_top.id.clone()]);
    assert!(s.image("a").await.is_ok(), "a dry run deleted the image");
    let done = s.delete_image(op, "a", false).await.unwrap();
    assert_eq!(done, plan);
    assert!(matches!(
        s.image(&a.id).await,
        Err(Error::NotFound {
            kind: ObjectKind::Image,
            ..
        })
    ));
    assert!(matches!(
        s.layer(&a_top.id).await,
        Err(Error::NotFound {
            kind: ObjectKind::Layer,
            ..
        })
    ));
    // B is now alone: its whole chain goes.
    let done = s.delete_image(op, "b", false).await.unwrap();
    assert_eq!(done.layers, vec![b_top.id, mid.id, base.id]);
    assert!(s.layers().await.unwrap().is_empty());
    assert!(
        std::fs::read_dir(f.dir.path().join("store/overlay"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .all(|n| n == "l" || n == "empty")
    );
}

#[tokio::test]
async fn deleting_a_container_removes_its_layer_and_directories() {
    let f = Fixture::new().await;
    let (s, op) = (&f.store, &f.op);
    let image = s.create_image(None, None, &[], "", None).await.unwrap();
    let c = s
        .create_container(op, &image.id, None, &names(&["web"]), "m")
        .await
        .unwrap();
    let dir = s.container_dir("web").await.unwrap();
    let run = s.container_run_dir("web").await.unwrap();
    assert!(dir.is_dir() && run.is_dir());
    assert!(s.layer(&c.layer).await.unwrap().read_write);
    s.delete_container(op, "web").await.unwrap();
    assert!(!dir.exists() && !run.exists());
    assert!(matches!(
        s.layer(&c.layer).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.container("web").await,
        Err(Error::NotFound {
            kind: ObjectKind::Container,
            ..
        })
    ));
    // Deleting the image is allowed now.
    s.delete_image(op, &image.id, false).await.unwrap();
}

#[tokio::test]
async fn names_are_unique_per_kind_and_move_on_add() {
    let f = Fixture::new().await;
    let (s, op) = (&f.store, &f.op);
    let l = s
        .create_layer(op, None, &names(&["x"]), false)
        .await
        .unwrap();
    // The same name on another kind is fine.
    let i1 = s
        .create_image(Some(&l.id), None, &names(&["x"]), "", None)
        .await
        .unwrap();
    let e = s
        .create_layer(op, None, &names(&["x"]), false)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::DuplicateName {
                kind: ObjectKind::Layer,
                ..
            }
        ),
        "{e}"
    );
    let e = s
        .create_image(None, None, &names(&["x"]), "", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::DuplicateName {
                kind: ObjectKind::Image,
                ..
            }
        ),
        "{e}"
    );
    s.create_container(op, &i1.id, None, &names(&["c"]), "")
        .await
        .unwrap();
    let e = s
        .create_container(op, &i1.id, None, &names(&["c"]), "")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::DuplicateName {
                kind: ObjectKind::Container,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        s.containers().await.unwrap().len(),
        1,
        "the refused container left something"
    );
    assert_eq!(s.layers().await.unwrap().len(), 2);

    // add-names moves a name from its holder, as containers/storage does for tags.
    let i2 = s.create_image(None, None, &[], "", None).await.unwrap();
    let i2_id = i2.id.clone();
    let now = s
        .db(move |c| {
            c.change_names(
                ObjectKind::Image,
                &i2_id,
                &names(&["x", "y"]),
                catalog::NameChange::Add,
            )
        })
        .await
        .unwrap();
    assert_eq!(now, names(&["x", "y"]));
    assert!(s.image(&i1.id).await.unwrap().names.is_empty());
    assert_eq!(s.image("x").await.unwrap().id, i2.id);
    let e = s.image("nope").await.unwrap_err();
    assert_eq!(e.to_string(), "image nope not found");
}

#[tokio::test]
async fn metadata_and_big_data_round_trip_and_keys_never_become_paths() {
    let f = Fixture::new().await;
    let (s, op) = (&f.store, &f.op);
    let image = s
        .create_image(None, None, &names(&["i"]), "{\"a\":1}", None)
        .await
        .unwrap();
    assert_eq!(
        s.db(|c| c.metadata(ObjectKind::Image, "i")).await.unwrap(),
        "{\"a\":1}"
    );
    s.db(|c| c.set_metadata(ObjectKind::Image, "i", "new"))
        .await
        .unwrap();
    assert_eq!(s.image("i").await.unwrap().metadata, "new");

    for key in ["manifest", "../../escape", "/abs", "a/b", "ünïcode key"] {
        let data = format!("data of {key}").into_bytes();
        let info = s
            .set_big_data(ObjectKind::Image, "i", key, data.clone())
            .await
            .unwrap();
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(s.big_data(ObjectKind::Image, "i", key).await.unwrap(), data);
    }
    // Replacing an item keeps one file per item.
    s.set_big_data(ObjectKind::Image, "i", "manifest", b"v2".to_vec())
        .await
        .unwrap();
    assert_eq!(
        s.big_data(ObjectKind::Image, "i", "manifest")
            .await
            .unwrap(),
        b"v2"
    );
    let files = std::fs::read_dir(
        f.dir
            .path()
            .join(format!("store/bigdata/image/{}", image.id)),
    )
    .unwrap()
    .count();
    assert_eq!(files, 5);
    assert!(!f.dir.path().join("escape").exists() && !std::path::Path::new("/abs").exists());
    let digest = s
        .big_data_info(ObjectKind::Image, "i", "manifest")
        .await
        .unwrap()
        .digest;
    assert_eq!(s.images_by_digest(&digest).await.unwrap()[0].id, image.id);
    let e = s
        .big_data(ObjectKind::Image, "i", "missing")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let e = s
        .set_big_data(ObjectKind::Image, "i", "", vec![])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidId { .. }), "{e}");

    // The image's big data goes with it, and a reopened store sees the same.
    let l = s.create_layer(op, None, &[], false).await.unwrap();
    s.set_big_data(ObjectKind::Layer, &l.id, "k", b"v".to_vec())
        .await
        .unwrap();
    assert_eq!(
        f.reopen()
            .await
            .big_data(ObjectKind::Layer, &l.id, "k")
            .await
            .unwrap(),
        b"v"
    );
    s.delete_image(op, "i", false).await.unwrap();
    assert!(
        !f.dir
            .path()
            .join(format!("store/bigdata/image/{}", image.id))
            .exists()
    );
}

#[tokio::test]
async fn ids_prefixes_and_kinds_resolve_like_containers_storage() {
    let f = Fixture::new().await;
    let (s, op) = (&f.store, &f.op);
    let l = s
        .create_layer(op, None, &names(&["l"]), false)
        .await
        .unwrap();
    let i = s
        .create_image(Some("l"), Some(&"ab".repeat(32)), &names(&["i"]), "", None)
        .await
        .unwrap();
    assert_eq!(s.image("abab").await.unwrap().id, i.id);
    assert_eq!(
        s.resolve_any("i").await.unwrap(),
        (ObjectKind::Image, i.id.clone())
    );
    assert_eq!(
        s.resolve_any("l").await.unwrap(),
        (ObjectKind::Layer, l.id.clone())
    );
    let e = s
        .create_image(None, Some(&"ab".repeat(32)), &[], "", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::AlreadyExists {
                kind: ObjectKind::Image,
                ..
            }
        ),
        "{e}"
    );
    let e = s
        .create_image(None, Some("../x"), &[], "", None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidId { .. }), "{e}");
    // delete: an image goes alone, its layer stays.
    assert_eq!(s.delete_any(op, "i").await.unwrap(), ObjectKind::Image);
    assert!(s.layer("l").await.is_ok());
    assert_eq!(s.delete_any(op, "l").await.unwrap(), ObjectKind::Layer);
}

#[tokio::test]
async fn additional_stores_lend_layers_and_images_but_are_never_written_needs_root() {
    if !require(
        "additional_stores_lend_layers_and_images_but_are_never_written_needs_root",
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    ) {
        return;
    }
    let ro = Fixture::new().await;
    let (base, _) = ro
        .store
        .import_layer(
            &ro.op,
            None,
            &names(&["base"]),
            tar_with("etc/a", b"lent"),
            None,
        )
        .await
        .unwrap();
    let lent = ro
        .store
        .create_image(Some("base"), None, &names(&["lent"]), "", None)
        .await
        .unwrap();
    let before = common::tree_listing(ro.dir.path());

    let f = Fixture::with_additional(&[ro.dir.path().join("store")]).await;
    let (s, op) = (&f.store, &f.op);
    assert_eq!(s.image("lent").await.unwrap().id, lent.id);
    assert!(
        s.images()
            .await
            .unwrap()
            .iter()
            .any(|i| i.id == lent.id && i.read_only)
    );
    // A layer of ours on a lent parent, and a container of a lent image.
    let (mine, _) = s
        .import_layer(op, Some("base"), &[], tar_with("etc/b", b"mine"), None)
        .await
        .unwrap();
    assert_eq!(mine.parent.as_deref(), Some(base.id.as_str()));
    let c = s.create_container(op, "lent", None, &[], "").await.unwrap();
    let root = s.mount(op, &c.layer, false).await.unwrap();
    assert_eq!(std::fs::read(root.join("etc/a")).unwrap(), b"lent");
    s.unmount(op, &c.layer).await.unwrap();
    let merged = s.mount(op, &mine.id, true).await.unwrap();
    assert_eq!(std::fs::read(merged.join("etc/a")).unwrap(), b"lent");
    assert_eq!(std::fs::read(merged.join("etc/b")).unwrap(), b"mine");
    s.unmount(op, &mine.id).await.unwrap();
    // Nothing of the additional store can be changed through this one.
    for e in [
        s.delete_image(op, "lent", false).await.unwrap_err(),
        s.delete_layer(op, "base").await.unwrap_err(),
    ] {
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    }
    s.delete_container(op, &c.id).await.unwrap();
    s.delete_layer(op, &mine.id).await.unwrap();
    assert_eq!(
        common::tree_listing(ro.dir.path()),
        before,
        "the additional store changed"
    );
}

#[tokio::test]
async fn chain_depth_counts_the_chain_down_to_its_base_across_additional_stores_up_to_a_limit() {
    let ro = Fixture::new().await;
    let mut lent = None;
    for _ in 0..3 {
        let l = ro
            .store
            .create_layer(&ro.op, lent.as_deref(), &[], false)
            .await
            .unwrap();
        lent = Some(l.id);
    }
    let f = Fixture::with_additional(&[ro.dir.path().join("store")]).await;
    let (s, op) = (&f.store, &f.op);
    let mut top = lent.unwrap();
    for _ in 0..4 {
        top = s.create_layer(op, Some(&top), &[], false).await.unwrap().id;
    }
    assert_eq!(s.chain_depth(&top, 100).await.unwrap(), 7);
    assert_eq!(
        s.chain_depth(&top, 5).await.unwrap(),
        5,
        "stops at the limit"
    );
    assert_eq!(s.chain_depth(&top, 7).await.unwrap(), 7);
    let base = s.create_layer(op, None, &[], false).await.unwrap();
    assert_eq!(s.chain_depth(&base.id, 100).await.unwrap(), 1);
    assert!(matches!(
        s.chain_depth("no-such-layer", 10).await.unwrap_err(),
        Error::NotFound { .. }
    ));
}

#[tokio::test]
async fn an_overlay_store_has_no_layer_disks_for_a_vm() {
    let f = Fixture::new().await;
    let l = f.store.create_layer(&f.op, None, &[], false).await.unwrap();
    let e = f.store.layer_disks(&f.op, &l.id).await.unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains(&l.id), "{e}");
}

#[tokio::test]
async fn a_containers_storage_layers_big_data_item_gets_its_digest_when_asked() {
    // containers-storage records no size or digest for a layer's items; the store reads
    // the size from the file on open and hashes the item only when asked for its digest.
    let cs = tempfile::tempdir().unwrap();
    let id = "a".repeat(64);
    let layers = format!(r#"[{{"id":"{id}","names":["base"],"big-data-names":["toc"]}}]"#);
    std::fs::create_dir_all(cs.path().join("overlay-layers").join(&id)).unwrap();
    std::fs::write(cs.path().join("overlay-layers/layers.json"), layers).unwrap();
    std::fs::write(
        cs.path().join("overlay-layers").join(&id).join("toc"),
        b"table",
    )
    .unwrap();
    let f = Fixture::with_additional(&[cs.path().to_owned()]).await;
    let info = f
        .store
        .big_data_info(ObjectKind::Layer, "base", "toc")
        .await
        .unwrap();
    assert_eq!(info.size, 5);
    // sha256 of "table".
    assert_eq!(
        info.digest,
        "sha256:0d4fc4a78d3706edccafb665a8b2fdd9309e82c78625bb0f2b8e7bb9e1c4d21c"
    );
    assert_eq!(
        f.store
            .big_data(ObjectKind::Layer, "base", "toc")
            .await
            .unwrap(),
        b"table"
    );
}
