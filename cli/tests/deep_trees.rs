//! A tree deeper than any walk should go, met by the real `strata` binary: an archive that
//! builds one through symlinks is refused whole, and a tree a container made past the
//! limit is refused by the commands that read it with a clear error, while deleting it
//! and every other command keep working. Nothing aborts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Output;

use common::CliStore;
use testkit::{Requirement, require, tarball};

/// Asserts `out` is a clean failure (an exit code, not a signal) whose message names the
/// path limit.
fn refused_at_the_limit(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), None, "{what} was killed: {stderr}");
    assert!(!out.status.success(), "{what} succeeded");
    assert!(stderr.contains("4095"), "{what}: {stderr}");
}

#[test]
fn an_archive_deeper_than_its_names_is_refused_and_the_store_stays_usable() {
    if !require("deep archive import", &[Requirement::Root]) {
        return;
    }
    let store = CliStore::new("strata-deep-");
    store.ok(&["create-layer", "-n", "base"]);
    // 8 symlink hops of 400 levels each: 3,200 levels, no name past 810 bytes.
    let tar = tarball::deep_through_symlinks(8, 400);
    let out = store.run_with_input(&["import-layer", "-n", "deep", "-"], &tar);
    refused_at_the_limit(&out, "import-layer");
    assert_eq!(store.complete_layer_ids().len(), 1, "only the base layer");
    let leftover: Vec<_> = std::fs::read_dir(store.root().join("overlay"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("diff").exists())
        .collect();
    assert_eq!(leftover.len(), 1, "a refused import left its directory");
    // One within the limit imports, and reads back whole.
    let tar = tarball::deep_through_symlinks(4, 400);
    let out = store.run_with_input(&["import-layer", "-n", "ok", "-"], &tar);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = store.run(&["diff", "ok"]);
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    store.ok(&["delete-layer", "ok"]);
    store.ok(&["delete-layer", "base"]);
}

#[test]
fn a_tree_made_past_the_limit_in_a_layer_is_refused_by_readers_and_still_deleted() {
    if !require("deep layer contents", &[Requirement::Root]) {
        return;
    }
    let store = CliStore::new("strata-deep-");
    let id = store.ok(&["create-layer", "-n", "grown"]);
    // What a container can do through its mount: mkdir in a loop, far past PATH_MAX.
    testkit::deep_dirs(&store.root().join("overlay").join(&id).join("diff"), 20_000);
    for args in [
        &["diff", "grown"][..],
        &["changes", "grown"],
        &["diffsize", "grown"],
    ] {
        refused_at_the_limit(&store.run(args), args[0]);
    }
    // Opening the store (and its recovery) and listing are untouched by the tree.
    assert_eq!(store.complete_layer_ids().len(), 1);
    store.ok(&["delete-layer", "grown"]);
    assert!(store.complete_layer_ids().is_empty());
    assert!(!store.root().join("overlay").join(&id).exists());
}
