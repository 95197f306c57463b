//! A vhd store whose layers are dynamic VHDs (`--storage-opt layer_format=dynamic`):
//! each `layer.vhd` allocates only what its ext4 uses, is served through a block view
//! when mounted, and a container on them shows the layers' tree; nothing is left
//! attached once the store is cleaned up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{CliStore, files_tar};
use testkit::{Requirement, require};

#[test]
fn a_container_on_dynamic_layer_vhds_mounts_their_tree_and_leaves_nothing_needs_root() {
    if !require(
        "a_container_on_dynamic_layer_vhds_mounts_their_tree_and_leaves_nothing_needs_root",
        &[
            Requirement::Root,
            Requirement::Filesystem("overlay"),
            Requirement::Filesystem("fuse"),
            Requirement::Path("/dev/loop-control"),
            Requirement::Path("/dev/fuse"),
        ],
    ) {
        return;
    }
    let store = CliStore::on("strata-vhd-dynamic-", "vhd");
    let dynamic = |args: &[&str]| {
        let mut all = vec!["--storage-opt", "layer_format=dynamic"];
        all.extend_from_slice(args);
        all.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
    };
    let ok = |args: &[&str]| {
        let args = dynamic(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        store.ok(&args)
    };
    let tar = files_tar(20, 3, 1);
    let args = dynamic(&["import-layer", "-n", "base", "-"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let base = store.run_with_input(&args, &tar);
    assert!(
        base.status.success(),
        "{}",
        String::from_utf8_lossy(&base.stderr)
    );
    let top = ok(&["create-layer", "-n", "top", "base"]);
    ok(&["create-image", "-n", "img", &top]);
    ok(&["create-container", "-n", "box", "img"]);

    let disks = store.json(&["layer-disks", "--json", "box"]);
    let formats: Vec<&str> = disks
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["vhdx", "vhd-dynamic", "vhd-dynamic"], "{disks}");

    let merged = std::path::PathBuf::from(ok(&["mount", "box"]));
    assert_eq!(
        std::fs::read(merged.join("d00/f00000")).unwrap(),
        b"file 0\n",
        "the container does not show the base layer's file"
    );
    assert_eq!(std::fs::read_dir(merged.join("d02")).unwrap().count(), 6);
    ok(&["unmount", "box"]);
    ok(&["cleanup"]);
    let left = store.leftovers();
    assert!(left.is_empty(), "left: {left:#?}");
}
