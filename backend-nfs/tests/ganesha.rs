//! The NFS volume store against a real nfs-ganesha server (one private instance per test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backend_nfs::{NfsUrl, NfsVolumes};
use storage_core::{DataSink, Error, Exporter, FilterSpec, Importer, Op, VolumeStorer};
use testkit::ganesha::{Ganesha, REQUIREMENTS};
use testkit::{Layercheck, require};
use tokio::io::AsyncReadExt;

const UID: u32 = 1000;
const GID: u32 = 1000;

fn store_url(url: &str) -> NfsVolumes {
    NfsVolumes::new(
        "shared",
        NfsUrl::parse(&url::Url::parse(url).unwrap()).unwrap(),
    )
}

fn store(g: &Ganesha) -> NfsVolumes {
    store_url(&g.url(UID, GID))
}

fn info(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

async fn listed(vols: &NfsVolumes) -> Vec<storage_core::Volume> {
    vols.volumes_list(&Op::new("test"))
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.unwrap())
        .collect()
}

async fn import_file(
    vols: &NfsVolumes,
    id: &str,
    tar: &Path,
) -> storage_core::Result<tar_engine::ApplyReport> {
    let file = tokio::fs::File::open(tar).await.unwrap();
    vols.import(&Op::new("test"), id, &FilterSpec::default(), Box::new(file))
        .await
}

async fn export_bytes(vols: &NfsVolumes, id: &str, spec: &FilterSpec, data: bool) -> Vec<u8> {
    let mut s = vols
        .export(&Op::new("test"), id, None, spec, data)
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn vic_create_one_volume_with_ganesha() {
    if !require("vic_create_one_volume_with_ganesha", &REQUIREMENTS) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let vols = store(&g);
    let op = Op::new("test");
    let v = vols
        .volume_create(&op, "v1", 0, info(&[("driver", "vsphere"), ("size", "10")]))
        .await
        .unwrap();
    assert_eq!(v.info, info(&[("driver", "vsphere"), ("size", "10")]));
    let root = g.export_dir();
    assert_eq!(names(&root.join("volumes")), ["v1"]);
    assert_eq!(names(&root.join("volumes_metadata")), ["v1"]);
    assert_eq!(
        std::fs::read(root.join("volumes_metadata/v1/driver")).unwrap(),
        b"vsphere"
    );
    // Files the store made carry the URL's credentials.
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(root.join("volumes_metadata/v1/size")).unwrap();
    assert_eq!((m.uid(), m.gid()), (UID, GID));
    assert_eq!(listed(&vols).await, vec![v]);
    assert!(matches!(
        vols.volume_create(&op, "v1", 0, BTreeMap::new()).await,
        Err(Error::VolumeExists { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn vic_destroy_recreate_and_three_volumes_with_ganesha() {
    if !require(
        "vic_destroy_recreate_and_three_volumes_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let vols = store(&g);
    let op = Op::new("test");
    let root = g.export_dir();
    let first = info(&[("k", "v")]);
    vols.volume_create(&op, "v1", 0, first.clone())
        .await
        .unwrap();
    std::fs::write(root.join("volumes/v1/data"), b"x").unwrap();
    vols.volume_destroy(&op, "v1").await.unwrap();
    assert!(names(&root.join("volumes")).is_empty());
    assert!(names(&root.join("volumes_metadata")).is_empty());
    assert!(matches!(
        vols.volume_destroy(&op, "v1").await,
        Err(Error::NotFound { .. })
    ));

    // Re-create, then list: one volume, equal info.
    vols.volume_create(&op, "v1", 0, first.clone())
        .await
        .unwrap();
    let l = listed(&vols).await;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].info, first);
    vols.volume_destroy(&op, "v1").await.unwrap();

    // Three volumes with 1, 2 and 2 keys; destroy one; the others are intact.
    let a = info(&[("one", "1")]);
    let b = info(&[("one", "1"), ("two", "2")]);
    let c = info(&[("x", "ex"), ("y", "why")]);
    for (id, i) in [("a", &a), ("b", &b), ("c", &c)] {
        vols.volume_create(&op, id, 0, i.clone()).await.unwrap();
    }
    vols.volume_destroy(&op, "b").await.unwrap();
    let l = listed(&vols).await;
    assert_eq!(
        l.iter()
            .map(|v| (v.id.as_str(), v.info.clone()))
            .collect::<Vec<_>>(),
        [("a", a), ("c", c)]
    );
    assert_eq!(names(&root.join("volumes_metadata")), ["a", "c"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_entry_is_reported_and_the_listing_goes_on_with_ganesha() {
    if !require(
        "a_broken_entry_is_reported_and_the_listing_goes_on_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let vols = store(&g);
    let op = Op::new("test");
    vols.volume_create(&op, "good", 0, info(&[("k", "v")]))
        .await
        .unwrap();
    // Another writer left a file where a volume directory should be.
    std::fs::write(g.export_dir().join("volumes/broken"), b"not a dir").unwrap();
    let l = vols.volumes_list(&op).await.unwrap();
    assert_eq!(l.len(), 2);
    let err = l[0].as_ref().unwrap_err().to_string();
    assert!(
        err.contains("broken") && err.contains("not a directory"),
        "{err}"
    );
    assert_eq!(l[1].as_ref().unwrap().id, "good");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_volume_is_in_use_until_its_handle_closes_with_ganesha() {
    if !require(
        "a_held_volume_is_in_use_until_its_handle_closes_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let vols = store(&g);
    let op = Op::new("holder");
    vols.volume_create(&op, "v", 0, BTreeMap::new())
        .await
        .unwrap();
    let sink: Box<dyn DataSink> = vols.new_data_sink(&op, "v").await.unwrap();
    let err = vols.volume_destroy(&Op::new("rm"), "v").await.unwrap_err();
    assert!(matches!(err, Error::VolumeInUse { .. }), "{err}");
    sink.close(&op).await.unwrap();
    vols.volume_destroy(&Op::new("rm"), "v").await.unwrap();
}

/// The manifest of a tree as JSON, from layercheck.
fn manifest(root: &Path) -> serde_json::Value {
    serde_json::from_str(&Layercheck::manifest(root)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_layer_one_imports_over_nfs_and_layercheck_agrees_with_ganesha() {
    if !require(
        "chain_layer_one_imports_over_nfs_and_layercheck_agrees_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let vols = store(&g);
    let op = Op::new("test");
    let data = Layercheck::generate();
    vols.volume_create(&op, "layer1", 0, BTreeMap::new())
        .await
        .unwrap();
    let report = import_file(&vols, "layer1", &data.chain_layer(1))
        .await
        .unwrap();
    // The two device nodes (char 1:3, block 7:200) are refused by the server for the
    // non-root credentials 1000:1000, and counted as skipped; the FIFO is made.
    assert_eq!(report.skipped, 2, "{report:?}");
    let tree = g.export_dir().join("volumes/layer1");
    // Owners are the URL's, not the archive's; NFSv3 carries no xattrs.
    let out = Layercheck::compare(
        &data.expected(),
        &tree,
        1,
        &["--ignore", "uid,gid,xattrs", "--skip-types", "char,block"],
    );
    assert!(out.is_ok(), "{}", out.unwrap_err());
    let m = manifest(&tree);
    let entries = m["tree"].as_object().unwrap();
    assert!(entries.len() > 30);
    for (path, e) in entries {
        assert_eq!(
            (e["uid"].as_u64(), e["gid"].as_u64()),
            (Some(1000), Some(1000)),
            "{path}"
        );
    }
    // A gzip and a zstd copy give the same tree.
    for (tool, id) in [("gzip", "gz"), ("zstd", "zst")] {
        if !testkit::require(
            "chain_layer_one_imports_compressed",
            &[testkit::Requirement::Command(tool)],
        ) {
            continue;
        }
        let packed = data.dir().join(format!("layer1.{id}"));
        let out = std::process::Command::new(tool)
            .arg("-c")
            .arg(data.chain_layer(1))
            .output()
            .unwrap();
        std::fs::write(&packed, out.stdout).unwrap();
        vols.volume_create(&op, id, 0, BTreeMap::new())
            .await
            .unwrap();
        import_file(&vols, id, &packed).await.unwrap();
        assert_eq!(
            manifest(&g.export_dir().join("volumes").join(id)),
            m,
            "{tool}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_reimport_gives_an_identical_tree_with_ganesha() {
    if !require(
        "export_then_reimport_gives_an_identical_tree_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let vols = store(&g);
    let op = Op::new("test");
    let data = Layercheck::generate();
    for id in ["src", "copy", "filtered"] {
        vols.volume_create(&op, id, 0, BTreeMap::new())
            .await
            .unwrap();
    }
    import_file(&vols, "src", &data.chain_layer(1))
        .await
        .unwrap();
    let tar = export_bytes(&vols, "src", &FilterSpec::default(), true).await;
    // Deterministic: the same tree gives the same bytes.
    assert_eq!(
        tar,
        export_bytes(&vols, "src", &FilterSpec::default(), true).await
    );
    vols.import(
        &op,
        "copy",
        &FilterSpec::default(),
        Box::new(std::io::Cursor::new(tar)),
    )
    .await
    .unwrap();
    let vroot = g.export_dir().join("volumes");
    assert_eq!(manifest(&vroot.join("src")), manifest(&vroot.join("copy")));

    // FilterSpec on export: keep usr/, strip it.
    let mut spec = FilterSpec::default();
    spec.exclusions.insert("".into());
    spec.inclusions.insert("usr".into());
    spec.strip = "usr".into();
    let tar = export_bytes(&vols, "src", &spec, true).await;
    vols.import(
        &op,
        "filtered",
        &FilterSpec::default(),
        Box::new(std::io::Cursor::new(tar)),
    )
    .await
    .unwrap();
    assert_eq!(names(&vroot.join("filtered")), ["bin", "lib"]);
    assert_eq!(
        std::fs::read(vroot.join("filtered/bin/tool")).unwrap(),
        std::fs::read(vroot.join("src/usr/bin/tool")).unwrap()
    );

    // Headers only: every entry, no data, each marked as an add with its real size.
    let headers = export_bytes(&vols, "src", &FilterSpec::default(), false).await;
    let mut archive = tar::Archive::new(&headers[..]);
    let mut count = 0;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        assert_eq!(e.header().size().unwrap(), 0);
        let pax: Vec<(String, String)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_owned(), x.value().unwrap().to_owned())
            })
            .collect();
        assert!(
            pax.contains(&("STRATA.changetype".into(), "A".into())),
            "{pax:?}"
        );
        count += 1;
    }
    assert!(count > 30);
}

/// Every path below `root` but those under `skip`, with size and mode.
fn snapshot(root: &Path, skip: &Path) -> BTreeMap<PathBuf, (u64, u32, bool)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.starts_with(skip) {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            out.insert(p.clone(), (m.len(), m.mode(), m.is_dir()));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_layers_leave_the_export_outside_the_volume_unchanged_with_ganesha() {
    if !require(
        "hostile_layers_leave_the_export_outside_the_volume_unchanged_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let vols = store(&g);
    let op = Op::new("test");
    let data = Layercheck::generate();
    vols.volume_create(&op, "neighbour", 0, info(&[("k", "v")]))
        .await
        .unwrap();
    let root = g.export_dir();
    std::fs::write(root.join("outside-canary"), b"canary").unwrap();
    std::fs::write(root.join("volumes/outside-canary"), b"canary").unwrap();
    std::fs::write(root.join("volumes/neighbour/outside-canary"), b"canary").unwrap();
    for (i, layer) in data.hostile_layers().iter().enumerate() {
        let id = format!("hostile{i}");
        vols.volume_create(&op, &id, 0, BTreeMap::new())
            .await
            .unwrap();
        let volume = root.join("volumes").join(&id);
        let before = snapshot(root, &volume);
        let result = import_file(&vols, &id, layer).await;
        let after = snapshot(root, &volume);
        assert_eq!(
            before,
            after,
            "{} changed the export outside its volume ({result:?})",
            layer.display()
        );
        for p in [
            root.join("outside-canary"),
            root.join("volumes/outside-canary"),
        ] {
            assert_eq!(std::fs::read(&p).unwrap(), b"canary", "{}", layer.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whiteout_of_dotdot_is_refused_and_the_other_volumes_stay_with_ganesha() {
    if !require(
        "a_whiteout_of_dotdot_is_refused_and_the_other_volumes_stay_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let vols = store(&g);
    let op = Op::new("test");
    let root = g.export_dir();
    for v in ["target", "neighbour"] {
        vols.volume_create(&op, v, 0, BTreeMap::new())
            .await
            .unwrap();
        std::fs::write(root.join("volumes").join(v).join("data"), v).unwrap();
    }
    use testkit::tarball::{Kind, Tarball};
    let cases: [&[(&[u8], bool)]; 4] = [
        &[(b".wh...", false)],
        &[(b".wh..", false)],
        &[(b"sub/.wh...", false)],
        &[(b"rootlink", true), (b"rootlink/.wh...", false)],
    ];
    for case in cases {
        let mut t = Tarball::new();
        t.entry(Kind::Dir, b"sub", &[]);
        for (name, symlink) in case {
            let kind = if *symlink {
                Kind::Symlink(b"/".to_vec())
            } else {
                Kind::File(Vec::new())
            };
            t.entry(kind, name, &[]);
        }
        let result = vols
            .import(
                &op,
                "target",
                &FilterSpec::default(),
                Box::new(std::io::Cursor::new(t.finish())),
            )
            .await;
        assert!(
            matches!(result, Err(Error::UnsafeArchive { .. })),
            "{case:?}: {result:?}"
        );
        for v in ["target", "neighbour"] {
            let data = std::fs::read(root.join("volumes").join(v).join("data"));
            assert_eq!(data.unwrap(), v.as_bytes(), "{case:?}: volume {v}");
        }
    }
}

/// A tar of `files` files of `size` bytes each, of varied bytes.
fn big_tar(path: &Path, files: usize, size: usize) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut data = vec![0u8; size];
    for i in 0..files {
        for (j, x) in data.iter_mut().enumerate() {
            *x = (i * 31 + j * 7) as u8;
        }
        let mut h = tar::Header::new_ustar();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, format!("d{}/f{i}", i % 4), &data[..])
            .unwrap();
    }
    b.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_ganesha_mid_import_fails_cleanly_and_a_rerun_gives_the_tree_with_ganesha() {
    if !require(
        "killing_ganesha_mid_import_fails_cleanly_and_a_rerun_gives_the_tree_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let mut g = Ganesha::start(UID, GID);
    let timeout = 5;
    let url = format!("{}&timeout={timeout}", g.url(UID, GID));
    let vols = store_url(&url);
    let op = Op::new("test");
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("big.tar");
    big_tar(&tar, 120, 2 << 20);
    vols.volume_create(&op, "v", 0, BTreeMap::new())
        .await
        .unwrap();
    vols.volume_create(&op, "reference", 0, BTreeMap::new())
        .await
        .unwrap();

    let volume = g.export_dir().join("volumes/v");
    let job = {
        let vols = vols.clone();
        let tar = tar.clone();
        tokio::spawn(async move { import_file(&vols, "v", &tar).await })
    };
    // Kill the server once the import is well under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while snapshot(&volume, Path::new("/nonexistent")).len() < 20
        && Instant::now() < deadline
        && !job.is_finished()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if job.is_finished() {
        panic!(
            "the import ended before the server could be killed: {:?}",
            job.await
        );
    }
    g.kill();
    let killed = Instant::now();
    let err = job.await.unwrap().unwrap_err();
    let waited = killed.elapsed();
    // Bounded by the RPC timeout (with room for the calls already in flight).
    assert!(
        waited < Duration::from_secs(2 * timeout + 5),
        "took {waited:?}: {err}"
    );
    // As it is printed: with its causes.
    let text = storage_core::Report(&err).to_string();
    assert!(
        text.contains("NFS") && text.contains(&g.nfs_port().to_string()),
        "{text}"
    );

    g.restart();
    // A new session, as a re-run of the command would have.
    let vols = store_url(&url);
    import_file(&vols, "v", &tar).await.unwrap();
    import_file(&vols, "reference", &tar).await.unwrap();
    let vroot = g.export_dir().join("volumes");
    assert_eq!(
        manifest(&vroot.join("v")),
        manifest(&vroot.join("reference"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_server_is_a_timeout_error_not_a_hang_with_ganesha() {
    if !require(
        "a_hung_server_is_a_timeout_error_not_a_hang_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let vols = store_url(&format!("{}&timeout=2", g.url(UID, GID)));
    let op = Op::new("test");
    vols.volume_create(&op, "v", 0, BTreeMap::new())
        .await
        .unwrap();
    let pid = g.pid().unwrap().to_string();
    let signal = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    // The stop is asynchronous: wait until every thread of the server is stopped.
    let stopped = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .all(|t| {
                let stat =
                    std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
                stat.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('T'))
            })
    };
    while !stopped() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let result = vols.volumes_list(&op).await;
    signal("-CONT");
    // As it is printed: with its causes.
    let err = storage_core::Report(&result.unwrap_err()).to_string();
    assert!(
        err.contains("did not answer") && err.contains("within 2s"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Run as a child process by the race test: creates the volume named by the environment.
#[tokio::test(flavor = "multi_thread")]
async fn race_child() {
    let (Ok(url), Ok(id)) = (
        std::env::var("STRATA_RACE_URL"),
        std::env::var("STRATA_RACE_ID"),
    ) else {
        return; // only meaningful when started by the race test
    };
    let vols = store_url(&url);
    match vols
        .volume_create(&Op::new("race"), &id, 0, BTreeMap::new())
        .await
    {
        Ok(_) => println!("RACE-WON"),
        Err(Error::VolumeExists { .. }) => println!("RACE-LOST"),
        Err(e) => println!("RACE-ERROR {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_racing_to_create_a_volume_exactly_one_wins_with_ganesha() {
    if !require(
        "two_processes_racing_to_create_a_volume_exactly_one_wins_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let url = g.url(UID, GID);
    // Make the store's top directories first, so the race is on the volume alone.
    store_url(&url)
        .volumes_list(&Op::new("test"))
        .await
        .unwrap();
    let me = std::env::current_exe().unwrap();
    for round in 0..5 {
        let id = format!("raced{round}");
        let children: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new(&me)
                    .args(["--exact", "race_child", "--nocapture", "--test-threads=1"])
                    .env("STRATA_RACE_URL", &url)
                    .env("STRATA_RACE_ID", &id)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<String> = children
            .into_iter()
            .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned())
            .collect();
        let won = outs.iter().filter(|o| o.contains("RACE-WON")).count();
        let lost = outs.iter().filter(|o| o.contains("RACE-LOST")).count();
        assert_eq!((won, lost), (1, 1), "{outs:?}");
    }
    let l = listed(&store_url(&url)).await;
    assert_eq!(l.len(), 5);
}

/// A tar of `entries` (name, data; a name ending in `/` is a directory).
fn tar_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_uid(UID.into());
        h.set_gid(GID.into());
        h.set_mtime(1_700_000_000);
        if let Some(dir) = name.strip_suffix('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, dir, std::io::empty()).unwrap();
        } else {
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
    }
    b.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_import_takes_back_what_it_made_and_keeps_what_was_there_with_ganesha() {
    if !require(
        "a_failed_import_takes_back_what_it_made_and_keeps_what_was_there_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let vols = store(&g);
    let op = Op::new("test");
    vols.volume_create(&op, "v", 0, BTreeMap::new())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("before.tar");
    std::fs::write(
        &before,
        tar_of(&[("keep", b"kept".to_vec()), ("old/", vec![])]),
    )
    .unwrap();
    import_file(&vols, "v", &before).await.unwrap();
    let volume = g.export_dir().join("volumes/v");
    let was = snapshot(&volume, Path::new("/nonexistent"));

    // Small files (jobs of their own), a large one (many writes), new directories, a file
    // added to an old one, then a file whose data is cut short.
    let mut entries: Vec<(&str, Vec<u8>)> = vec![
        ("new/", vec![]),
        ("new/a", b"a".to_vec()),
        ("new/deep/implied/b", b"b".to_vec()),
        ("old/added", b"c".to_vec()),
        ("large", vec![7u8; 3 << 20]),
    ];
    for name in ["s1", "s2", "s3", "s4"] {
        entries.push((name, vec![1u8; 4096]));
    }
    entries.push(("last", vec![9u8; 64 << 10]));
    // Without its end blocks and the last 32 KiB of the last file's data.
    let mut tar = tar_of(&entries);
    tar.truncate(tar.len() - 1024 - (32 << 10));
    let cut = dir.path().join("cut.tar");
    std::fs::write(&cut, tar).unwrap();
    let err = import_file(&vols, "v", &cut).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArchive { .. }), "{err}");
    assert_eq!(
        snapshot(&volume, Path::new("/nonexistent")),
        was,
        "the volume is not as it was"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_onto_a_full_export_fails_naming_the_cause_and_takes_back_its_files_with_ganesha()
{
    let mut needs = REQUIREMENTS.to_vec();
    needs.extend([
        testkit::Requirement::Command("mkfs.ext4"),
        testkit::Requirement::Path("/dev/loop-control"),
    ]);
    if !require("an_import_onto_a_full_export_with_ganesha", &needs) {
        return;
    }
    // The export lives on a 48 MiB ext4 disk.
    let disk = testkit::loop_disk::LoopDisk::new(48);
    let g = Ganesha::start_in(disk.mount(), UID, GID);
    let vols = store(&g);
    let op = Op::new("test");
    vols.volume_create(&op, "v", 0, BTreeMap::new())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("big.tar");
    big_tar(&tar, 32, 2 << 20);
    let err = import_file(&vols, "v", &tar).await.unwrap_err();
    // As it is printed: with its causes.
    let text = storage_core::Report(&err).to_string();
    assert!(
        text.contains("NOSPC") || text.contains("No space"),
        "{text}"
    );
    assert!(
        text.contains("volumes/v"),
        "does not name the volume: {text}"
    );
    let volume = g.export_dir().join("volumes/v");
    assert!(
        names(&volume).is_empty(),
        "left behind: {:?}",
        names(&volume)
    );
    // The space is back: a smaller archive imports whole.
    big_tar(&tar, 4, 2 << 20);
    import_file(&vols, "v", &tar).await.unwrap();
    assert_eq!(names(&volume).len(), 4);
    drop(g);
}

#[tokio::test(flavor = "multi_thread")]
async fn gnu_tar_sparse_archives_keep_their_holes_with_ganesha() {
    use testkit::sparse::{self, Encoding};
    if !require(
        "gnu_tar_sparse_archives_keep_their_holes_with_ganesha",
        &[&REQUIREMENTS[..], &[testkit::Requirement::Command("tar")]].concat(),
    ) {
        return;
    }
    let g = Ganesha::start(UID, GID);
    let vols = store(&g);
    let op = Op::new("test");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    sparse::sample_tree(&src);
    for encoding in Encoding::ALL {
        let id = format!("sparse-{encoding:?}").to_lowercase();
        let tar = dir.path().join(format!("{id}.tar"));
        sparse::gnu_tar(&src, &sparse::SAMPLE, encoding, &tar);
        vols.volume_create(&op, &id, 0, BTreeMap::new())
            .await
            .unwrap();
        import_file(&vols, &id, &tar).await.unwrap();
        let volume = g.export_dir().join("volumes").join(&id);
        for name in sparse::SAMPLE {
            let (want, got) = (src.join(name), volume.join(name));
            assert_eq!(
                std::fs::metadata(&got).unwrap().len(),
                std::fs::metadata(&want).unwrap().len(),
                "{encoding:?} {name}"
            );
            // Only the data segments were written; the size made the rest a hole.
            assert!(
                sparse::allocated(&got) <= sparse::allocated(&want) + (64 << 10),
                "{encoding:?} {name}: {} bytes allocated, the source has {}",
                sparse::allocated(&got),
                sparse::allocated(&want)
            );
            assert!(
                sparse::same_bytes(
                    std::fs::File::open(&want).unwrap(),
                    std::fs::File::open(&got).unwrap()
                ),
                "{encoding:?} {name}: content differs"
            );
        }
    }
}
