//! `strata check` and `check --repair` on a store damaged in each way it looks for:
//! layer data with no record, a big-data file with no record, a big-data item whose bytes
//! changed, a layer whose data is gone, and an interrupted import. Repair removes what
//! nothing refers to and finishes what was left; damage to recorded objects stays
//! reported until they are deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::CliStore;
use testkit::{Requirement, require};

/// The kinds and objects of the problems `check --json` reports.
fn problems(store: &CliStore, repair: bool) -> (bool, BTreeSet<(String, String, bool)>) {
    let mut args = vec!["check", "--json"];
    if repair {
        args.push("--repair");
    }
    let out = store.run(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let found = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["object"].as_str().unwrap().to_owned(),
                !p["repaired"].is_null(),
            )
        })
        .collect();
    (out.status.success(), found)
}

fn set_data(store: &CliStore, image: &str, key: &str, data: &[u8]) {
    let out = store.run_with_input(&["set-image-data", image, key], data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_finds_each_kind_of_damage_and_repair_fixes_what_nothing_refers_to() {
    if !require("check and repair", &[Requirement::Root]) {
        return;
    }
    let store = CliStore::new("strata-check-");
    let top = store.ok(&["create-layer", "-n", "top"]);
    let gone = store.ok(&["create-layer", "-n", "gone"]);
    let image = store.ok(&["create-image", &top, "-n", "img"]);
    set_data(&store, "img", "manifest", b"{\"schemaVersion\":2}");
    set_data(&store, "img", "config", b"{}");
    let (ok, found) = problems(&store, false);
    assert!(ok && found.is_empty(), "a fresh store: {found:?}");

    // Damage: data with no record, a stray big-data file, changed big-data bytes, a layer
    // whose data is gone.
    let orphan = "ab".repeat(32);
    std::fs::create_dir_all(store.root().join("overlay").join(&orphan).join("diff")).unwrap();
    let owner_dir = store.root().join("bigdata/image").join(&image);
    let files: Vec<_> = std::fs::read_dir(&owner_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let mut changed = None;
    for f in &files {
        if std::fs::read(f).unwrap() == b"{}" {
            std::fs::write(f, b"{ }").unwrap();
            changed = Some(f.clone());
        }
    }
    assert!(changed.is_some());
    std::fs::write(owner_dir.join("stray"), b"left by a crash").unwrap();
    dirtree::remove_all(&store.root().join("overlay").join(&gone)).unwrap();

    let (ok, found) = problems(&store, false);
    assert!(!ok, "problems must fail the check");
    let kinds: BTreeSet<&str> = found.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["big-data", "missing-data", "unreferenced"]),
        "{found:?}"
    );
    assert!(found.contains(&("unreferenced".into(), orphan.clone(), false)));
    assert!(found.contains(&("missing-data".into(), gone.clone(), false)));
    assert!(
        found.iter().all(|p| !p.2),
        "nothing is repaired without --repair"
    );

    // Repair removes the unreferenced data; the damaged objects stay reported.
    let (ok, found) = problems(&store, true);
    assert!(!ok);
    for (kind, object, repaired) in &found {
        assert_eq!(*repaired, kind == "unreferenced", "{kind} {object}");
    }
    assert!(!store.root().join("overlay").join(&orphan).exists());
    assert!(!owner_dir.join("stray").exists());
    let (_, found) = problems(&store, false);
    let kinds: BTreeSet<&str> = found.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["big-data", "missing-data"]));

    // Deleting the damaged objects leaves a consistent store.
    store.ok(&["delete-image", "img"]);
    store.ok(&["delete-layer", "gone"]);
    let (ok, found) = problems(&store, false);
    assert!(ok && found.is_empty(), "{found:?}");
    // `delete-image` took its no-longer-used top layer with it, as containers-storage does.
    assert!(store.complete_layer_ids().is_empty());
}

#[test]
fn check_finds_mount_records_that_disagree_with_the_mounts_and_repair_mends_them() {
    if !require(
        "stale mounts",
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    ) {
        return;
    }
    let store = CliStore::new("strata-check-");
    let base = store.ok(&["create-layer", "-n", "base"]);
    let top = store.ok(&["create-layer", "--parent", &base, "-n", "top"]);
    // Recorded as mounted, nothing mounted: what a reboot with a kept run root leaves.
    let merged = store.ok(&["mount", "top"]);
    let umount = std::process::Command::new("umount")
        .arg(&merged)
        .status()
        .unwrap();
    assert!(umount.success());
    // Mounted with no record: what a kill between the mount and its record leaves.
    let other = store.ok(&["mount", "base"]);
    std::fs::remove_file(store.run_root().join("counts").join(&base)).unwrap();

    let (ok, found) = problems(&store, false);
    assert!(!ok);
    assert_eq!(
        found,
        BTreeSet::from([
            ("stale-mount".to_owned(), base.clone(), false),
            ("stale-mount".to_owned(), top.clone(), false),
        ])
    );
    let (ok, found) = problems(&store, true);
    assert!(ok, "{found:?}");
    assert!(found.iter().all(|p| p.2));
    assert!(!mounted(&other), "the unrecorded mount is left");
    let (ok, found) = problems(&store, false);
    assert!(ok && found.is_empty(), "{found:?}");
    // The layers mount and unmount as before.
    store.ok(&["mount", "top"]);
    store.ok(&["unmount", "top"]);
    store.ok(&["delete-layer", "top"]);
    store.ok(&["delete-layer", "base"]);
}

/// Whether something is mounted at `path` (as `/proc/self/mounts` lists it).
fn mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(path))
}
