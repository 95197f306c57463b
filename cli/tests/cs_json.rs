//! `--json` has containers-storage's structure: the same content is built in a
//! `containers-storage` store (1.43, vfs driver) and in a strata store, and each verb's
//! JSON is reduced to its shape (keys, and the JSON type of each value) and compared.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{CliStore, containers_storage as cs, json_shape as shape};
use serde_json::Value;
use testkit::{Requirement, require};

#[test]
fn json_output_has_containers_storage_structure_needs_root() {
    if !require(
        "json_output_has_containers_storage_structure_needs_root",
        &[
            Requirement::Root,
            Requirement::Filesystem("overlay"),
            Requirement::Command("containers-storage"),
        ],
    ) {
        return;
    }
    let store = CliStore::new("cs-json");
    let dir = store.scratch().to_owned();
    // Two owners, so that the owner sets say something.
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("home")).unwrap();
    std::fs::write(tree.join("home/user.txt"), b"theirs\n").unwrap();
    std::fs::write(tree.join("root.txt"), b"root's\n").unwrap();
    std::os::unix::fs::chown(tree.join("home/user.txt"), Some(1000), Some(33)).unwrap();
    let tar = dir.join("layer.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let data = dir.join("item");
    std::fs::write(&data, b"some big data\n").unwrap();
    let (tar, data) = (tar.to_str().unwrap(), data.to_str().unwrap());
    let first = |out: String| out.split_whitespace().next().unwrap().to_owned();

    // The same content in both: a named imported layer, a child, an image with metadata
    // and a big-data item, and a named container on it.
    let cs_base = first(cs(&dir, &["import-layer", "-n", "base", "-f", tar]));
    let cs_top = first(cs(&dir, &["create-layer", &cs_base]));
    cs(&dir, &["create-image", "-n", "img", "-m", "meta", &cs_top]);
    cs(&dir, &["set-image-data", "-f", data, "img", "item"]);
    cs(&dir, &["create-container", "-n", "ctr", "img"]);
    let base = store.ok(&["import-layer", "-n", "base", "-f", tar]);
    let top = store.ok(&["create-layer", &base]);
    store.ok(&["create-image", "-n", "img", "-m", "meta", &top]);
    store.ok(&["set-image-data", "-f", data, "img", "item"]);
    store.ok(&["create-container", "-n", "ctr", "img"]);

    let compare = |theirs: &[&str], ours: &[&str]| {
        let cs_json: Value = serde_json::from_str(&cs(&dir, theirs)).unwrap();
        let strata_json = store.json(ours);
        assert_eq!(
            shape(&strata_json),
            shape(&cs_json),
            "{ours:?}: strata printed {strata_json}, containers-storage {cs_json}"
        );
    };
    for verb in ["layers", "images", "containers", "status"] {
        compare(&[verb, "-j"], &[verb, "-j"]);
    }
    compare(&["layer", "-j", &cs_base], &["layer", "-j", &base]);
    // The owner sets are the same values, not only the same shape.
    let theirs: Value = serde_json::from_str(&cs(&dir, &["layer", "-j", &cs_base])).unwrap();
    let ours = store.json(&["layer", "-j", &base]);
    for key in ["uidset", "gidset"] {
        assert_eq!(ours[0][key], theirs[0][key], "{key}: {ours} vs {theirs}");
    }
    assert_eq!(ours[0]["uidset"], serde_json::json!([0, 1000]));
    compare(&["layer", "-j", &cs_top], &["layer", "-j", &top]);
    for args in [
        vec!["image", "-j", "img"],
        vec!["container", "-j", "ctr"],
        vec!["exists", "-j", "base", "img"],
        vec!["get-names", "-j", "img"],
        vec!["metadata", "-j", "img"],
        vec!["list-image-data", "-j", "img"],
    ] {
        compare(&args, &args);
    }
    compare(&["changes", "-j", &cs_base], &["changes", "-j", &base]);
    compare(&["mount", "-j", &cs_top], &["mount", "-j", &top]);
    cs(&dir, &["unmount", &cs_top]);
    store.ok(&["unmount", &top]);
    cs(&dir, &["delete-container", "ctr"]);
    store.ok(&["delete-container", "ctr"]);
    compare(
        &["delete-image", "-j", "img"],
        &["delete-image", "-j", "img"],
    );
}
