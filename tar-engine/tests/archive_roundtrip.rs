//! Property: any generated tree exports and re-imports identically, and exporting the
//! copy gives the same bytes (exports are deterministic). Runs without root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use proptest::prelude::*;
use storage_core::Op;
use tar_engine::{
    ApplyOptions, ExportOptions, Ownership, WhiteoutMode, apply_tar, layer_changes, write_changes,
    write_layer,
};

#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>, u32),
    Dir(u32),
    Symlink(String),
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..3000),
            0o400u32..0o777
        )
            .prop_map(|(d, m)| Node::File(d, m)),
        (0o700u32..0o777).prop_map(Node::Dir),
        "[a-z./]{1,20}".prop_map(Node::Symlink),
    ]
}

fn tree() -> impl Strategy<Value = BTreeMap<String, Node>> {
    proptest::collection::btree_map("[a-c]{1,2}(/[a-c]{1,2}){0,2}", node(), 1..25)
}

/// Materialises the map; a path whose parent was made a file or symlink is skipped.
fn build(root: &Path, t: &BTreeMap<String, Node>) {
    for (path, node) in t {
        let p = root.join(path);
        let Some(parent) = p.parent() else { continue };
        if std::fs::create_dir_all(parent).is_err() || p.symlink_metadata().is_ok() {
            continue;
        }
        match node {
            Node::File(data, mode) => {
                std::fs::write(&p, data).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Node::Dir(mode) => {
                std::fs::create_dir(&p).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Node::Symlink(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
        }
    }
}

/// path -> (type, mode, size, content or link target, mtime seconds)
fn snapshot(root: &Path) -> BTreeMap<String, (String, u32, u64, Vec<u8>, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let (kind, content) = if md.is_dir() {
                stack.push(p.clone());
                ("dir", Vec::new())
            } else if md.file_type().is_symlink() {
                (
                    "symlink",
                    std::fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .as_bytes()
                        .to_vec(),
                )
            } else {
                ("file", std::fs::read(&p).unwrap())
            };
            let mode = if kind == "symlink" {
                0
            } else {
                md.mode() & 0o7777
            };
            let mtime = if kind == "symlink" { 0 } else { md.mtime() };
            out.insert(
                rel,
                (
                    kind.to_string(),
                    mode,
                    md.len() * u64::from(kind == "file"),
                    content,
                    mtime,
                ),
            );
        }
    }
    out
}

/// The export of a whole tree, made both ways: from the listed changes and in one walk.
/// They must agree byte for byte.
fn export(root: &Path) -> Vec<u8> {
    let op = Op::new("test");
    let opts = ExportOptions::default();
    let changes = layer_changes(root, &[]).unwrap();
    let listed = write_changes(&op, &changes, &opts, Vec::new()).unwrap();
    let walked = write_layer(&op, root, &[], &opts, Vec::new()).unwrap();
    assert!(
        listed == walked,
        "the single-pass export differs from the listed one"
    );
    walked
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn any_tree_exports_identically_both_ways_and_reimports_identically(t in tree()) {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        build(a.path(), &t);
        let tar = export(a.path());
        let mut opts = ApplyOptions::new(WhiteoutMode::Delete);
        opts.ownership = Ownership::Caller;
        opts.sync = false;
        apply_tar(&Op::new("test"), b.path(), &tar[..], &opts).unwrap();
        prop_assert_eq!(snapshot(a.path()), snapshot(b.path()));
        prop_assert_eq!(export(b.path()), tar);
    }
}
