//! The single-pass export (`write_layer`) writes exactly the bytes of the listed export
//! (`write_changes` of `layer_changes`) on a diff directory holding what overlay layers hold:
//! hard links (within and across directories), whiteouts, opaque directories, xattrs on
//! files, directories and symlinks, devices, FIFOs, long names, small and large files, over
//! lower layers (adds against modifies) and through filters, with and without data.
//! Needs root for the device nodes and `trusted.*` xattrs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use storage_core::{FilterSpec, Op};
use tar_engine::{ExportOptions, layer_changes, write_changes, write_layer};
use testkit::{Requirement::Root, require};

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

/// A diff directory with every kind of entry, and one lower layer under it.
fn layer(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (diff, lower) = (root.join("diff"), root.join("lower"));
    fs::create_dir_all(lower.join("etc/old")).unwrap();
    fs::write(lower.join("etc/passwd"), b"root:x:0:0").unwrap();
    fs::write(lower.join("etc/old/gone"), b"x").unwrap();
    fs::write(lower.join("removed"), b"x").unwrap();

    fs::create_dir_all(diff.join("etc/old")).unwrap();
    fs::create_dir_all(diff.join("bin/sub")).unwrap();
    fs::write(diff.join("etc/passwd"), b"root:x:0:0:changed").unwrap();
    fs::write(diff.join("etc/old/new"), b"fresh").unwrap();
    // Opaque: the lower etc/old is hidden.
    set_xattr(&diff.join("etc/old"), "trusted.overlay.opaque", b"y");
    // Whiteouts of a file and of a name that never existed.
    for gone in ["removed", "etc/never"] {
        mknod(
            &diff.join(gone),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o000),
            makedev(0, 0),
        )
        .unwrap();
    }
    // Hard links: three names, two of them in another directory.
    fs::write(diff.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::hard_link(diff.join("bin/tool"), diff.join("bin/sub/tool2")).unwrap();
    fs::hard_link(diff.join("bin/tool"), diff.join("etc/tool3")).unwrap();
    // Xattrs on a file, a directory and a symlink; the overlay's own must not leave.
    set_xattr(&diff.join("bin/tool"), "user.note", b"a tool");
    set_xattr(&diff.join("bin/tool"), "trusted.overlay.origin", b"hidden");
    set_xattr(&diff.join("bin"), "user.dir", b"d");
    symlink("../bin/tool", diff.join("etc/link")).unwrap();
    set_xattr(&diff.join("etc/link"), "trusted.link", b"l");
    // Devices, a FIFO, a long name, an empty file and a file larger than the buffer.
    mknod(
        &diff.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    mknod(
        &diff.join("loop9"),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o660),
        makedev(7, 9),
    )
    .unwrap();
    nix::unistd::mkfifo(&diff.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
    let long = "d".repeat(90);
    fs::create_dir_all(diff.join(&long)).unwrap();
    fs::write(diff.join(&long).join("f".repeat(60)), b"long").unwrap();
    fs::write(diff.join("empty"), b"").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(diff.join("big"), &big).unwrap();
    (diff, lower)
}

#[test]
fn single_pass_export_equals_the_listed_export_needs_root() {
    if !require(
        "single_pass_export_equals_the_listed_export_needs_root",
        &[Root],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (diff, lower) = layer(dir.path());
    let op = Op::new("test");
    let filtered = FilterSpec {
        exclusions: ["bin/sub".to_owned()].into(),
        strip: "etc".into(),
        rebase: "new".into(),
        ..FilterSpec::default()
    };
    for lowers in [vec![], vec![lower.clone()]] {
        for filter in [FilterSpec::default(), filtered.clone()] {
            for data in [true, false] {
                let opts = ExportOptions {
                    filter: filter.clone(),
                    data,
                    ..ExportOptions::default()
                };
                let changes = layer_changes(&diff, &lowers).unwrap();
                let listed = write_changes(&op, &changes, &opts, Vec::new()).unwrap();
                let walked = write_layer(&op, &diff, &lowers, &opts, Vec::new()).unwrap();
                assert!(
                    listed == walked,
                    "exports differ (lowers {}, filter {filter:?}, data {data})",
                    lowers.len()
                );
            }
        }
    }
    // And the stream holds what the layer holds: one file body and two links for the
    // three names, the xattrs without the overlay's own, the whiteouts and the marker.
    let opts = ExportOptions::default();
    let tar = write_layer(&op, &diff, &[lower], &opts, Vec::new()).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let ty = entry.header().entry_type();
        let xattrs: Vec<String> = entry
            .pax_extensions()
            .unwrap()
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().key().unwrap().to_owned())
            .filter(|k| k.starts_with("SCHILY.xattr."))
            .collect();
        seen.push((path, ty, xattrs));
    }
    let find = |p: &str| {
        seen.iter()
            .find(|(path, ..)| path.trim_end_matches('/') == p)
            .unwrap_or_else(|| panic!("{p} not in the export: {seen:?}"))
    };
    // bin/sub/tool2 sorts first, so it carries the body and the others link to it.
    assert_eq!(find("bin/sub/tool2").1, tar::EntryType::Regular);
    assert_eq!(
        find("bin/sub/tool2").2,
        vec!["SCHILY.xattr.user.note".to_owned()]
    );
    assert_eq!(find("bin/tool").1, tar::EntryType::Link);
    assert_eq!(find("etc/tool3").1, tar::EntryType::Link);
    assert_eq!(find("bin").2, vec!["SCHILY.xattr.user.dir".to_owned()]);
    assert_eq!(
        find("etc/link").2,
        vec!["SCHILY.xattr.trusted.link".to_owned()]
    );
    assert_eq!(find("etc/link").1, tar::EntryType::Symlink);
    assert_eq!(find("etc/old/.wh..wh..opq").1, tar::EntryType::Regular);
    assert_eq!(find(".wh.removed").1, tar::EntryType::Regular);
    assert_eq!(find("etc/.wh.never").1, tar::EntryType::Regular);
    assert_eq!(find("null").1, tar::EntryType::Char);
    assert_eq!(find("loop9").1, tar::EntryType::Block);
    assert_eq!(find("fifo").1, tar::EntryType::Fifo);
    assert!(
        find("etc/old").2.is_empty(),
        "the opaque xattr left: {seen:?}"
    );
}
