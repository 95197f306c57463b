//! `stack_changes` reads what a layer changed since any ancestor from the diff directories
//! in between, without mounting: on the layercheck chain, the export of those changes,
//! applied to the ancestor's tree, gives the layer's tree, and the listing agrees with
//! `compare_trees` of the two trees. Needs root for the chain's devices, owners and
//! `trusted.*` xattrs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use storage_core::Op;
use storage_core::archive::{Change, ChangeKind};
use tar_engine::{
    ApplyOptions, ExportOptions, WhiteoutMode, apply_tar, compare_trees, stack_changes,
    write_changes,
};
use testkit::{Layercheck, Requirement::Root, require};

fn apply(target: &Path, tar: impl std::io::Read + Send, whiteouts: WhiteoutMode) {
    std::fs::create_dir_all(target).unwrap();
    let opts = ApplyOptions {
        sync: false,
        ..ApplyOptions::new(whiteouts)
    };
    apply_tar(&Op::new("stacked-changes"), target, tar, &opts).unwrap();
}

/// The plain tree after chain layers `1..=k`, whiteouts applied as deletions.
fn merged(data: &Layercheck, dir: &Path, k: usize) -> PathBuf {
    let target = dir.join(format!("merged{k}-{}", rand_suffix()));
    std::fs::create_dir_all(&target).unwrap();
    for layer in 1..=k {
        let tar = std::fs::File::open(data.chain_layer(layer)).unwrap();
        apply(&target, tar, WhiteoutMode::Delete);
    }
    target
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

fn listed(changes: &[Change]) -> Vec<(String, ChangeKind)> {
    changes
        .iter()
        .map(|c| (String::from_utf8_lossy(&c.path).into_owned(), c.kind))
        .collect()
}

#[test]
fn changes_since_any_ancestor_read_from_the_diff_directories_rebuild_the_layer_needs_root() {
    if !require(
        "changes_since_any_ancestor_read_from_the_diff_directories_rebuild_the_layer_needs_root",
        &[Root],
    ) {
        return;
    }
    let data = Layercheck::generate();
    let dir = tempfile::tempdir().unwrap();
    // Each layer in its own diff directory, named through a short link, as the overlay
    // store keeps them.
    std::fs::create_dir(dir.path().join("l")).unwrap();
    let diffs: Vec<PathBuf> = (1..=3)
        .map(|k| {
            let diff = dir.path().join(format!("diff{k}"));
            let tar = std::fs::File::open(data.chain_layer(k)).unwrap();
            apply(&diff, tar, WhiteoutMode::Overlay);
            let link = dir.path().join("l").join(k.to_string());
            std::os::unix::fs::symlink(format!("../diff{k}"), &link).unwrap();
            link
        })
        .collect();
    for (from, to) in [(0, 3), (1, 3), (0, 2), (2, 3), (1, 2)] {
        // Topmost first: the layers above the ancestor, then the ancestor's stack.
        let uppers: Vec<PathBuf> = diffs[from..to].iter().rev().cloned().collect();
        let lowers: Vec<PathBuf> = diffs[..from].iter().rev().cloned().collect();
        let changes = stack_changes(&uppers, &lowers).unwrap();

        // Applied to the ancestor's tree, the export gives the layer's tree.
        let tar = write_changes(
            &Op::new("stacked-changes"),
            &changes,
            &ExportOptions::default(),
            Vec::new(),
        )
        .unwrap();
        let rebuilt = merged(&data, dir.path(), from);
        apply(&rebuilt, tar.as_slice(), WhiteoutMode::Delete);
        if let Err(differences) = Layercheck::compare(&data.expected(), &rebuilt, to, &[]) {
            panic!("layer {to} over layer {from}: {differences}");
        }

        // The listing says what comparing the two trees says. It also lists what an
        // upper holds unchanged, and a deletion inside a directory that hides the
        // lowers is the directory's opacity.
        let (old, new) = (
            merged(&data, dir.path(), from),
            merged(&data, dir.path(), to),
        );
        let want = listed(&compare_trees(&old, &new).unwrap());
        let got = listed(&changes);
        let opaque: Vec<String> = changes
            .iter()
            .filter(|c| c.opaque)
            .map(|c| String::from_utf8_lossy(&c.path).into_owned())
            .collect();
        for (path, kind) in &want {
            let hidden = opaque.iter().any(|d| path.starts_with(&format!("{d}/")));
            let found = got.iter().any(|(p, k)| p == path && k == kind);
            assert!(
                found || (*kind == ChangeKind::Delete && hidden),
                "layer {to} over layer {from}: {kind:?} {path} is not listed: {got:?}"
            );
        }
        for (path, kind) in got.iter().filter(|(_, k)| *k == ChangeKind::Delete) {
            assert!(
                want.iter().any(|(p, k)| p == path && k == kind),
                "layer {to} over layer {from}: deletes {path}, which the trees do not"
            );
        }
    }
}

#[test]
fn an_opaque_root_in_a_layer_between_hides_nothing_as_in_an_overlay_mount_needs_root() {
    if !require(
        "an_opaque_root_in_a_layer_between_hides_nothing_as_in_an_overlay_mount_needs_root",
        &[Root],
    ) {
        return;
    }
    // base holds `a`; the middle layer's root is marked opaque (as a tar with
    // `./.wh..wh..opq` leaves it) and holds `m`; the top holds `t`. overlayfs reads no
    // opacity on a layer's root, so the layer's tree holds all three.
    let dir = tempfile::tempdir().unwrap();
    let layer = |name: &str, file: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join(file), file).unwrap();
        d
    };
    let (base, middle, top) = (layer("base", "a"), layer("middle", "m"), layer("top", "t"));
    rustix::fs::setxattr(
        &middle,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let paths = |changes: &[Change]| -> Vec<String> {
        listed(changes).into_iter().map(|(p, _)| p).collect()
    };
    let whole = stack_changes(&[top.clone(), middle.clone(), base.clone()], &[]).unwrap();
    assert_eq!(paths(&whole), ["a", "m", "t"]);
    let over_base = stack_changes(&[top, middle], &[base]).unwrap();
    assert_eq!(paths(&over_base), ["m", "t"]);
}

#[test]
fn a_path_too_long_to_read_is_refused_naming_the_layer_that_holds_it() {
    // The lower of two layers holds a path past 4095 bytes, built a directory at a time
    // (no one path given to the kernel is that long).
    let dir = tempfile::tempdir().unwrap();
    let (top, lower) = (dir.path().join("top"), dir.path().join("lower"));
    std::fs::create_dir(&top).unwrap();
    std::fs::write(top.join("t"), b"t").unwrap();
    let mut deep = lower.clone();
    std::fs::create_dir(&deep).unwrap();
    let mut built = std::fs::File::open(&deep).unwrap();
    for _ in 0..17 {
        let name = "d".repeat(250);
        rustix::fs::mkdirat(
            &built,
            name.as_str(),
            rustix::fs::Mode::from_raw_mode(0o755),
        )
        .unwrap();
        built = rustix::fs::openat(
            &built,
            name.as_str(),
            rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap()
        .into();
        deep.push(name);
    }
    let err = stack_changes(&[top, lower.clone()], &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("below {} (", lower.display())),
        "{err}"
    );
}
