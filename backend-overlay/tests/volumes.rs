//! Directory volumes: create, list, import, export, destroy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use backend_overlay::DirVolumes;
use storage_core::{Error, Exporter, FilterSpec, Importer, Op, Resolver, VolumeStorer};
use tokio::io::AsyncReadExt;

fn info(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_keep_their_info_beside_them_and_go_whole() {
    let dir = tempfile::tempdir().unwrap();
    let vols = DirVolumes::new("local", dir.path());
    std::fs::create_dir_all(dir.path().join("volumes")).unwrap();
    std::fs::create_dir_all(dir.path().join("volumes_metadata")).unwrap();
    let op = Op::new("test");
    let a = vols
        .volume_create(&op, "a", 0, info(&[("driver", "local")]))
        .await
        .unwrap();
    assert_eq!(a.info, info(&[("driver", "local")]));
    assert!(dir.path().join("volumes/a").is_dir());
    assert_eq!(
        std::fs::read(dir.path().join("volumes_metadata/a/driver")).unwrap(),
        b"local"
    );
    let again = vols.volume_create(&op, "a", 0, BTreeMap::new()).await;
    assert!(matches!(again, Err(Error::VolumeExists { .. })));
    vols.volume_create(&op, "b", 0, info(&[("x", "1"), ("y", "2")]))
        .await
        .unwrap();
    let listed: Vec<_> = vols
        .volumes_list(&op)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(
        listed.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(listed[1].info.len(), 2);
    assert_eq!(
        vols.url(&op, "a").await.unwrap().to_string(),
        "/storage/volumes/local/a"
    );
    assert!(
        vols.volume_create(&op, "../evil", 0, BTreeMap::new())
            .await
            .is_err()
    );

    vols.volume_destroy(&op, "a").await.unwrap();
    assert!(!dir.path().join("volumes/a").exists());
    assert!(!dir.path().join("volumes_metadata/a").exists());
    assert!(dir.path().join("volumes_metadata/b/y").exists());
    assert!(matches!(
        vols.volume_destroy(&op, "a").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_exports_and_reimports_with_a_filter() {
    let dir = tempfile::tempdir().unwrap();
    let vols = DirVolumes::new("local", dir.path());
    std::fs::create_dir_all(dir.path().join("volumes")).unwrap();
    std::fs::create_dir_all(dir.path().join("volumes_metadata")).unwrap();
    let op = Op::new("test");
    vols.volume_create(&op, "src", 0, BTreeMap::new())
        .await
        .unwrap();
    vols.volume_create(&op, "dst", 0, BTreeMap::new())
        .await
        .unwrap();
    let src = dir.path().join("volumes/src");
    std::fs::create_dir_all(src.join("data/keep")).unwrap();
    std::fs::create_dir_all(src.join("data/cache")).unwrap();
    std::fs::write(src.join("data/keep/file"), b"kept").unwrap();
    std::fs::write(src.join("data/cache/junk"), b"junk").unwrap();

    let mut spec = FilterSpec::default();
    spec.exclusions.insert("data/cache".into());
    spec.strip = "data".into();
    let mut stream = vols.export(&op, "src", None, &spec, true).await.unwrap();
    let mut tar = Vec::new();
    stream.read_to_end(&mut tar).await.unwrap();
    vols.import(
        &op,
        "dst",
        &FilterSpec::default(),
        Box::new(std::io::Cursor::new(tar)),
    )
    .await
    .unwrap();
    let dst = dir.path().join("volumes/dst");
    assert_eq!(std::fs::read(dst.join("keep/file")).unwrap(), b"kept");
    assert!(!dst.join("cache").exists() && !dst.join("data").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whiteout_of_dotdot_in_an_import_leaves_every_volume_alone() {
    let dir = tempfile::tempdir().unwrap();
    let vols = DirVolumes::new("local", dir.path());
    std::fs::create_dir_all(dir.path().join("volumes")).unwrap();
    std::fs::create_dir_all(dir.path().join("volumes_metadata")).unwrap();
    let op = Op::new("test");
    for v in ["target", "other"] {
        vols.volume_create(&op, v, 0, BTreeMap::new())
            .await
            .unwrap();
        std::fs::write(dir.path().join("volumes").join(v).join("data"), v).unwrap();
    }
    let cases: [&[&[u8]]; 4] = [
        &[b".wh..."],
        &[b".wh.."],
        &[b"sub/.wh..."],
        &[b"rootlink", b"rootlink/.wh..."],
    ];
    for names in cases {
        let mut t = testkit::tarball::Tarball::new();
        t.entry(testkit::tarball::Kind::Dir, b"sub", &[]);
        for name in names {
            let kind = if *name == b"rootlink" {
                testkit::tarball::Kind::Symlink(b"/".to_vec())
            } else {
                testkit::tarball::Kind::File(Vec::new())
            };
            t.entry(kind, name, &[]);
        }
        let err = vols
            .import(
                &op,
                "target",
                &FilterSpec::default(),
                Box::new(std::io::Cursor::new(t.finish())),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnsafeArchive { .. }), "{err}");
        for v in ["target", "other"] {
            let data = std::fs::read(dir.path().join("volumes").join(v).join("data"));
            assert_eq!(data.unwrap(), v.as_bytes(), "{names:?}: volume {v}");
        }
    }
}
