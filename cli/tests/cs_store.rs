//! A store made by containers-storage itself (1.43, overlay driver) used by strata: as a
//! read-only additional store (its layers, images and big data listed and read, changes
//! to them refused, a strata container on its image mounting the same tree as its own
//! container, `diff` of its layers byte-identical to `containers-storage diff`), and
//! copied by `strata migrate` (same ids, names, digests, metadata and big data, every
//! layer's diff hashing to its recorded digest, a re-run copying nothing, the container's
//! files there), waiting while containers-storage holds its layers lock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::CliStore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use testkit::{Requirement, require};

const NEEDS: &[Requirement<'static>] = &[
    Requirement::Root,
    Requirement::Filesystem("overlay"),
    Requirement::Command("containers-storage"),
    Requirement::Command("python3"),
];

/// A containers-storage overlay store in `dir/g` (run root `dir/r`).
struct Cs {
    graph: PathBuf,
    run: PathBuf,
}

impl Cs {
    fn new(dir: &Path) -> Self {
        Cs {
            graph: dir.join("g"),
            run: dir.join("r"),
        }
    }

    fn raw(&self, args: &[&str]) -> Output {
        Command::new("containers-storage")
            .arg("--graph")
            .arg(&self.graph)
            .arg("--run")
            .arg(&self.run)
            .args(["--storage-driver", "overlay"])
            .args(args)
            .output()
            .unwrap()
    }
}

/// A command line run with arguments, and what the tests read of its output.
trait Tool {
    /// The tool's name, for failures.
    const NAME: &'static str;

    /// Runs it with `args`.
    fn run(&self, args: &[&str]) -> Output;

    /// Standard output of a run that must succeed.
    fn ok_bytes(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            Self::NAME,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The same, as trimmed text.
    fn ok(&self, args: &[&str]) -> String {
        String::from_utf8(self.ok_bytes(args))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The first word of the output (an id).
    fn id(&self, args: &[&str]) -> String {
        self.ok(args).split_whitespace().next().unwrap().to_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.ok_bytes(args)).unwrap()
    }

    /// A verb's JSON for one object (`layer`, `image`, `container` print a list of one).
    fn one(&self, args: &[&str]) -> Value {
        first(self.json(args))
    }
}

impl Tool for Cs {
    const NAME: &'static str = "containers-storage";

    fn run(&self, args: &[&str]) -> Output {
        self.raw(args)
    }
}

/// The one element of a list of one; anything else as it is.
fn first(v: Value) -> Value {
    match v {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        v => v,
    }
}

impl Drop for Cs {
    fn drop(&mut self) {
        // containers-storage keeps its overlay directory bind-mounted on itself.
        let _ = self.raw(&["shutdown", "-f"]);
    }
}

/// What the containers-storage store holds.
struct Made {
    base: String,
    top: String,
    image: String,
    container: String,
    manifest: Vec<u8>,
    odd_item: Vec<u8>,
}

const ODD_KEY: &str = "sha256:abc/man ifest";

/// Builds, with containers-storage: a base layer imported from a tar (files, a
/// directory, a symlink, modes and owners), a child applied from a tar with a new file
/// and a whiteout, an image on it with metadata and two big-data items (one key that
/// containers-storage stores base64-named), and a named container with big data and a
/// file written into its layer.
fn build(dir: &Path, cs: &Cs) -> Made {
    let src = dir.join("src1");
    std::fs::create_dir_all(src.join("etc/app")).unwrap();
    std::fs::write(src.join("etc/app/conf"), b"answer = 42\n").unwrap();
    std::fs::write(src.join("etc/gone"), b"removed by the child\n").unwrap();
    std::fs::write(src.join("big"), vec![7u8; 300_000]).unwrap();
    std::fs::set_permissions(
        src.join("etc/app/conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink("app/conf", src.join("etc/link")).unwrap();
    std::os::unix::fs::chown(src.join("etc/app/conf"), Some(1000), Some(1001)).unwrap();
    let src2 = dir.join("src2");
    std::fs::create_dir_all(src2.join("etc")).unwrap();
    std::fs::write(src2.join("etc/new"), b"added by the child\n").unwrap();
    std::fs::write(src2.join("etc/.wh.gone"), b"").unwrap();
    let tar = |from: &Path, to: &Path| {
        let st = Command::new("tar")
            .arg("-cf")
            .arg(to)
            .arg("-C")
            .arg(from)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
    };
    let (t1, t2) = (dir.join("l1.tar"), dir.join("l2.tar"));
    tar(&src, &t1);
    tar(&src2, &t2);
    let base = cs.id(&["import-layer", "-n", "base", "-f", t1.to_str().unwrap()]);
    let top = cs.id(&["create-layer", "-n", "top", &base]);
    cs.ok_bytes(&["applydiff", "-f", t2.to_str().unwrap(), &top]);
    let image = cs.id(&["create-image", "-n", "cs-img", "-m", "image meta", &top]);
    // A name given later, so that the image has a name history.
    cs.ok_bytes(&["add-names", "-n", "cs-img-alias", &image]);
    let manifest = br#"{"schemaVersion":2}"#.to_vec();
    let odd_item = b"a big-data item under an odd key\n".to_vec();
    let (m, o) = (dir.join("manifest"), dir.join("odd"));
    std::fs::write(&m, &manifest).unwrap();
    std::fs::write(&o, &odd_item).unwrap();
    cs.ok_bytes(&[
        "set-image-data",
        "-f",
        m.to_str().unwrap(),
        &image,
        "manifest",
    ]);
    cs.ok_bytes(&["set-image-data", "-f", o.to_str().unwrap(), &image, ODD_KEY]);
    let container = cs.id(&["create-container", "-n", "cs-ctr", "-m", "ctr meta", &image]);
    cs.ok_bytes(&[
        "set-container-data",
        "-f",
        o.to_str().unwrap(),
        &container,
        "state",
    ]);
    let merged = String::from_utf8(cs.ok_bytes(&["mount", &container])).unwrap();
    std::fs::write(
        Path::new(merged.trim()).join("written-in-ctr"),
        b"container data\n",
    )
    .unwrap();
    cs.ok_bytes(&["unmount", &container]);
    Made {
        base,
        top,
        image,
        container,
        manifest,
        odd_item,
    }
}

/// A strata store using `additional` (if any) as an additional store.
struct Strata<'a> {
    store: &'a CliStore,
    additional: Option<&'a Path>,
}

impl Strata<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.store.cmd(&[]);
        if let Some(a) = self.additional {
            c.arg("--additional-store").arg(a);
        }
        c.args(args);
        c
    }
}

impl Tool for Strata<'_> {
    const NAME: &'static str = "strata";

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every entry under `root` by relative path: type and mode, owner, and content or
/// link target.
fn tree(root: &Path) -> BTreeMap<String, (u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let data = if md.file_type().is_symlink() {
                std::fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if md.is_file() {
                std::fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            if md.is_dir() {
                stack.push(path.clone());
            }
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(rel, (md.mode(), md.uid(), md.gid(), data));
        }
    }
    out
}

/// Asserts that `key` is the same in both records: absent, null and empty lists alike,
/// and times to the second (strata records seconds).
fn same(what: &str, ours: &Value, theirs: &Value, key: &str) {
    let norm = |v: Option<&Value>| match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Array(a)) if a.is_empty() => Value::Null,
        Some(Value::String(s)) if key == "created" => Value::String(s.chars().take(19).collect()),
        Some(v) => v.clone(),
    };
    assert_eq!(
        norm(ours.get(key)),
        norm(theirs.get(key)),
        "{what} {key}: strata {ours} / containers-storage {theirs}"
    );
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[test]
fn a_containers_storage_store_is_a_read_only_additional_store_with_the_same_trees_and_diffs_needs_root()
 {
    if !require(
        "a_containers_storage_store_is_a_read_only_additional_store_with_the_same_trees_and_diffs_needs_root",
        NEEDS,
    ) {
        return;
    }
    let store = CliStore::new("cs-additional");
    let dir = store.scratch().to_owned();
    let cs = Cs::new(&dir);
    let made = build(&dir, &cs);
    let strata = Strata {
        store: &store,
        additional: Some(&cs.graph),
    };

    // Listed and read.
    let layers = ids(&strata.json(&["layers", "--json"]));
    assert!(
        layers.contains(&made.base) && layers.contains(&made.top),
        "{layers:?}"
    );
    assert_eq!(
        ids(&strata.json(&["images", "--json"])),
        vec![made.image.clone()]
    );
    let image = strata.one(&["image", "--json", "cs-img"]);
    assert_eq!(image["id"], made.image.as_str());
    assert_eq!(
        strata.json(&["metadata", "--json", "cs-img"])["cs-img"],
        "image meta"
    );
    assert_eq!(
        strata.ok_bytes(&["get-image-data", "cs-img", "manifest"]),
        made.manifest
    );
    assert_eq!(
        strata.ok_bytes(&["get-image-data", "cs-img", ODD_KEY]),
        made.odd_item
    );
    let keys = strata.ok(&["list-image-data", "cs-img"]);
    assert!(
        keys.contains("manifest") && keys.contains(ODD_KEY),
        "{keys}"
    );
    let layer = strata.one(&["layer", "--json", "base"]);
    let cs_layer = cs.one(&["layer", "-j", "base"]);
    assert_eq!(
        layer["diff-digest"], cs_layer["diff-digest"],
        "{layer} / {cs_layer}"
    );

    // Never written.
    for args in [
        vec!["set-metadata", "-m", "changed", "cs-img"],
        vec!["add-names", "-n", "other", "cs-img"],
        vec!["delete-layer", &made.base],
        vec!["delete-image", "cs-img"],
        vec!["mount", "base"],
    ] {
        let out = strata.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains("read-only"), "{args:?}: {err}");
    }
    assert_eq!(
        cs.json(&["metadata", "-j", "cs-img"])["cs-img"],
        "image meta"
    );

    // A strata container on the image mounts what containers-storage's container does
    // (less the file written into that container).
    strata.ok(&["create-container", "--name", "mine", "cs-img"]);
    let ours = PathBuf::from(strata.ok(&["mount", "mine"]));
    let theirs = String::from_utf8(cs.ok_bytes(&["mount", &made.container])).unwrap();
    let mut theirs_tree = tree(Path::new(theirs.trim()));
    assert!(theirs_tree.remove("written-in-ctr").is_some());
    let ours_tree = tree(&ours);
    cs.ok_bytes(&["unmount", &made.container]);
    strata.ok(&["unmount", "mine"]);
    assert!(ours_tree.contains_key("etc/new") && !ours_tree.contains_key("etc/gone"));
    assert_eq!(ours_tree, theirs_tree);

    // `diff` is containers-storage's, byte for byte.
    for layer in [&made.base, &made.top] {
        let ours = strata.ok_bytes(&["diff", layer]);
        let theirs = cs.ok_bytes(&["diff", "-u", layer]);
        assert!(
            ours == theirs,
            "diff of {layer} differs ({} vs {} bytes)",
            ours.len(),
            theirs.len()
        );
    }
    strata.ok(&["delete-container", "mine"]);
}

#[test]
fn migrate_copies_a_containers_storage_store_keeping_ids_names_digests_and_big_data_needs_root() {
    if !require(
        "migrate_copies_a_containers_storage_store_keeping_ids_names_digests_and_big_data_needs_root",
        NEEDS,
    ) {
        return;
    }
    let store = CliStore::new("cs-migrate");
    let dir = store.scratch().to_owned();
    let cs = Cs::new(&dir);
    let made = build(&dir, &cs);
    let strata = Strata {
        store: &store,
        additional: None,
    };
    let from = [
        "migrate",
        "--from",
        cs.graph.to_str().unwrap(),
        "--from-run",
        cs.run.to_str().unwrap(),
    ];
    let out = strata.run(&from);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "migrate: {err}");
    assert!(err.contains(&format!("layer {}", made.base)), "{err}");

    // Layers: ids, names, digests, sizes, and a diff that hashes to the recorded digest.
    let cs_layers = cs.json(&["layers", "-j"]);
    let ctr_layer = cs.one(&["container", "-j", "cs-ctr"])["layer"]
        .as_str()
        .unwrap()
        .to_owned();
    for l in cs_layers.as_array().unwrap() {
        let id = l["id"].as_str().unwrap();
        if id == ctr_layer {
            continue;
        }
        let ours = strata.one(&["layer", "--json", id]);
        for key in [
            "id",
            "names",
            "parent",
            "diff-digest",
            "diff-size",
            "compressed-diff-digest",
            "compressed-size",
            "created",
            "uidset",
            "gidset",
        ] {
            same(&format!("layer {id}"), &ours, l, key);
        }
        let diff = strata.ok_bytes(&["diff", id]);
        assert_eq!(
            Some(sha256(&diff).as_str()),
            l["diff-digest"].as_str(),
            "diff of {id}"
        );
        assert_eq!(diff, cs.ok_bytes(&["diff", "-u", id]), "diff of {id}");
    }
    // The image: id, names, digest, metadata, every big-data item byte-equal.
    let ours = strata.one(&["image", "--json", &made.image]);
    let theirs = cs.one(&["image", "-j", &made.image]);
    for key in [
        "id",
        "names",
        "names-history",
        "layer",
        "digest",
        "metadata",
        "created",
    ] {
        same("image", &ours, &theirs, key);
    }
    assert_eq!(
        strata.ok_bytes(&["get-image-data", &made.image, "manifest"]),
        made.manifest
    );
    assert_eq!(
        strata.ok_bytes(&["get-image-data", &made.image, ODD_KEY]),
        made.odd_item
    );
    assert_eq!(
        strata.ok(&["get-image-data-digest", &made.image, ODD_KEY]),
        sha256(&made.odd_item)
    );
    // The container: id, names, image, its layer's id, metadata, big data, and its files.
    let ours = strata.one(&["container", "--json", "cs-ctr"]);
    let theirs = cs.one(&["container", "-j", "cs-ctr"]);
    for key in ["id", "names", "image", "layer", "metadata", "created"] {
        same("container", &ours, &theirs, key);
    }
    assert_eq!(
        strata.ok_bytes(&["get-container-data", "cs-ctr", "state"]),
        made.odd_item
    );
    let merged = PathBuf::from(strata.ok(&["mount", "cs-ctr"]));
    let files = tree(&merged);
    strata.ok(&["unmount", "cs-ctr"]);
    let theirs = String::from_utf8(cs.ok_bytes(&["mount", "cs-ctr"])).unwrap();
    let their_files = tree(Path::new(theirs.trim()));
    cs.ok_bytes(&["unmount", "cs-ctr"]);
    assert_eq!(files["written-in-ctr"].3, b"container data\n");
    assert_eq!(files["etc/app/conf"].1, 1000);
    assert!(files.contains_key("etc/new") && !files.contains_key("etc/gone"));
    assert_eq!(files, their_files);

    // A second run copies nothing, and the source is as it was.
    let before = cs.json(&["layers", "-j"]);
    let out = strata.run(&from);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "second migrate: {err}");
    assert!(err.contains("0 objects copied"), "{err}");
    assert_eq!(cs.json(&["layers", "-j"]), before);
    let _ = (made.top, made.container);
}

#[test]
fn migrate_waits_while_containers_storage_holds_its_layers_lock_needs_root() {
    if !require(
        "migrate_waits_while_containers_storage_holds_its_layers_lock_needs_root",
        NEEDS,
    ) {
        return;
    }
    let store = CliStore::new("cs-locked");
    let dir = store.scratch().to_owned();
    let cs = Cs::new(&dir);
    let made = build(&dir, &cs);
    let strata = Strata {
        store: &store,
        additional: None,
    };
    // A writer's lock, as containers-storage's pkg/lockfile takes it: fcntl F_SETLKW,
    // F_WRLCK, whole file. Held until the helper's standard input closes.
    let lock = cs.graph.join("overlay-layers/layers.lock");
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import fcntl,sys\nf=open(sys.argv[1],'r+')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('held',flush=True)\nsys.stdin.read()\n",
        ])
        .arg(&lock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "held");

    let mut migrate = strata
        .cmd(&["migrate", "--from", cs.graph.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The same store as an additional store waits too.
    let mut listing = Strata {
        store: &store,
        additional: Some(&cs.graph),
    }
    .cmd(&["images", "--json"])
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    if migrate.try_wait().unwrap().is_some() {
        let out = migrate.wait_with_output().unwrap();
        panic!(
            "migrate finished while containers-storage held its layers lock: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        listing.try_wait().unwrap().is_none(),
        "a listing with it as additional store finished while its layers lock was held"
    );
    assert!(
        store.complete_layer_ids().is_empty(),
        "migrate copied under a held lock"
    );

    drop(holder.stdin.take());
    holder.wait().unwrap();
    let out = migrate.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = listing.wait_with_output().unwrap();
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&made.image));
    assert_eq!(
        strata.one(&["image", "--json", &made.image])["id"],
        made.image.as_str()
    );
}

#[test]
fn migrate_skips_a_container_mounted_in_the_source_naming_it_and_copies_it_once_unmounted_needs_root()
 {
    if !require(
        "migrate_skips_a_container_mounted_in_the_source_naming_it_and_copies_it_once_unmounted_needs_root",
        NEEDS,
    ) {
        return;
    }
    let store = CliStore::new("cs-mounted");
    let dir = store.scratch().to_owned();
    let cs = Cs::new(&dir);
    let made = build(&dir, &cs);
    let strata = Strata {
        store: &store,
        additional: None,
    };
    cs.ok_bytes(&["mount", &made.container]);
    let from = [
        "migrate",
        "--from",
        cs.graph.to_str().unwrap(),
        "--from-run",
        cs.run.to_str().unwrap(),
    ];
    let out = strata.run(&from);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "migrate of a mounted container succeeded: {err}"
    );
    assert!(
        err.contains(&made.container) && err.contains("mounted"),
        "{err}"
    );
    assert!(
        strata
            .json(&["containers", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        strata.one(&["image", "--json", &made.image])["id"],
        made.image.as_str()
    );

    cs.ok_bytes(&["unmount", &made.container]);
    let out = strata.run(&from);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ids(&strata.json(&["containers", "--json"])),
        vec![made.container]
    );
}

#[test]
fn a_migrate_failing_on_an_image_leaves_none_of_it_and_a_rerun_finishes_needs_root() {
    if !require(
        "a_migrate_failing_on_an_image_leaves_none_of_it_and_a_rerun_finishes_needs_root",
        NEEDS,
    ) {
        return;
    }
    let store = CliStore::new("cs-resume");
    let dir = store.scratch().to_owned();
    let cs = Cs::new(&dir);
    let made = build(&dir, &cs);
    let strata = Strata {
        store: &store,
        additional: None,
    };
    // The image's manifest file is gone from the source for the first run.
    let item = cs
        .graph
        .join(format!("overlay-images/{}/manifest", made.image));
    let aside = dir.join("manifest-aside");
    std::fs::rename(&item, &aside).unwrap();
    let from = ["migrate", "--from", cs.graph.to_str().unwrap()];
    let out = strata.run(&from);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "migrate without a big-data file succeeded: {err}"
    );
    assert!(
        err.contains(&made.image) && err.contains("manifest"),
        "{err}"
    );
    assert!(
        strata
            .json(&["images", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(store.complete_layer_ids().contains(&made.top));

    // As a kill between making the image and finishing it would leave it: there, with
    // no big data and today's creation time.
    strata.ok(&["create-image", "--id", &made.image, &made.top]);

    std::fs::rename(&aside, &item).unwrap();
    let out = strata.run(&from);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("left unfinished"), "{err}");
    assert!(
        err.contains(&format!("layer {} already here", made.base)),
        "{err}"
    );
    assert_eq!(
        strata.ok_bytes(&["get-image-data", &made.image, "manifest"]),
        made.manifest
    );
    assert_eq!(
        strata.ok_bytes(&["get-image-data", &made.image, ODD_KEY]),
        made.odd_item
    );
    assert_eq!(
        ids(&strata.json(&["containers", "--json"])),
        vec![made.container]
    );
}
