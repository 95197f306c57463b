//! The directory writer without privilege ([`Ownership::Xattr`]): owners, modes and
//! devices recorded in `user.containers.override_stat`, exported back as the archive gave
//! them (deterministically and byte for byte), opaque directories marked in the `user.`
//! namespace, and what no record can hold counted in the report. The mode is chosen
//! explicitly, so these run the same as root or not (as root, nothing is chowned).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use storage_core::Op;
use storage_core::archive::ExportOptions;
use tar_engine::split::{FILE_NAME, write_layer_exact};
use tar_engine::{
    ApplyOptions, OVERRIDE_STAT_XATTR, OverrideStat, Ownership, RecordOn, WhiteoutMode, apply_tar,
    write_layer,
};

type Add<'a> = (
    &'a str,
    tar::EntryType,
    (u64, u64),
    u32,
    &'a [u8],
    Option<&'a str>,
);

fn archive(entries: &[Add<'_>], xattrs: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for &(name, kind, (uid, gid), mode, data, link) in entries {
        let x: Vec<(String, &[u8])> = xattrs
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        if !x.is_empty() {
            b.append_pax_extensions(x.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if kind == tar::EntryType::Char {
            h.set_device_major(4).unwrap();
            h.set_device_minor(64).unwrap();
        }
        match link {
            Some(target) => b.append_link(&mut h, name, target).unwrap(),
            None => b.append_data(&mut h, name, data).unwrap(),
        }
    }
    b.into_inner().unwrap()
}

fn layer() -> Vec<u8> {
    use tar::EntryType::*;
    archive(
        &[
            ("etc/", Directory, (0, 0), 0o755, b"", None),
            ("etc/shadow", Regular, (0, 42), 0o640, b"secret\n", None),
            (
                "etc/none",
                Regular,
                (7, 8),
                0o000,
                b"unreadable by mode\n",
                None,
            ),
            ("bin/", Directory, (0, 0), 0o555, b"", None),
            ("bin/su", Regular, (0, 0), 0o4755, b"#!/bin/sh\n", None),
            ("bin/su2", Link, (0, 0), 0o4755, b"", Some("bin/su")),
            ("bin/sh", Symlink, (0, 0), 0o777, b"", Some("su")),
            ("dev/", Directory, (0, 0), 0o755, b"", None),
            ("dev/ttyS0", Char, (0, 20), 0o660, b"", None),
            ("dev/pipe", Fifo, (5, 5), 0o600, b"", None),
        ],
        &[("etc/shadow", "user.note", b"kept")],
    )
}

fn xattr_opts() -> ApplyOptions {
    let mut opts = ApplyOptions::new(WhiteoutMode::Overlay);
    opts.ownership = Ownership::Xattr;
    opts.sync = false;
    opts
}

/// name -> (type, uid, gid, mode, device, xattr names)
type Seen = BTreeMap<String, (char, u64, u64, u32, Option<(u32, u32)>, Vec<String>)>;

fn seen(tar: &[u8]) -> Seen {
    let mut out = Seen::new();
    let mut a = tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let name = String::from_utf8_lossy(&e.path_bytes())
            .trim_end_matches('/')
            .to_owned();
        let mut xattrs = Vec::new();
        if let Some(ext) = e.pax_extensions().unwrap() {
            for x in ext {
                let x = x.unwrap();
                if let Some(k) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push(k.to_owned());
                }
            }
        }
        let t = match h.entry_type() {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            tar::EntryType::Fifo => 'p',
            other => panic!("{other:?}"),
        };
        let dev = (t == 'c').then(|| {
            (
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            )
        });
        let mut sink = Vec::new();
        e.read_to_end(&mut sink).unwrap();
        let mode = if t == 'l' {
            0o777
        } else {
            h.mode().unwrap() & 0o7777
        };
        out.insert(
            name,
            (t, h.uid().unwrap(), h.gid().unwrap(), mode, dev, xattrs),
        );
    }
    out
}

fn record(path: &Path) -> String {
    OverrideStat::get(RecordOn::Path(path), None, &path.display())
        .unwrap()
        .unwrap_or_else(|| panic!("{} has no record", path.display()))
        .to_string()
}

#[test]
fn owners_modes_and_devices_are_recorded_and_the_export_gives_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("diff");
    std::fs::create_dir(&tree).unwrap();
    let input = layer();
    let report = apply_tar(&Op::new("test"), &tree, &input[..], &xattr_opts()).unwrap();

    assert_eq!(record(&tree.join("etc/shadow")), "0:42:0640:file");
    assert_eq!(record(&tree.join("bin")), "0:0:0555:dir");
    assert_eq!(record(&tree.join("bin/su")), "0:0:4755:file");
    assert_eq!(record(&tree.join("dev/ttyS0")), "0:20:0660:char-4-64");
    assert_eq!(record(&tree.join("dev/pipe")), "5:5:0600:pipe");
    // fuse-overlayfs reads records only in a layer whose root has one.
    assert_eq!(record(&tree), "0:0:0755:dir");
    // The entries themselves: the writer's own, readable and writable by it, no setuid.
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    for (rel, mode) in [
        ("etc/none", 0o600),
        ("bin", 0o755),
        ("bin/su", 0o755),
        ("dev/ttyS0", 0o660),
    ] {
        let md = std::fs::symlink_metadata(tree.join(rel)).unwrap();
        assert_eq!((md.uid(), md.gid()), me, "{rel}");
        assert_eq!(md.mode() & 0o7777, mode, "{rel}");
    }
    assert!(
        std::fs::symlink_metadata(tree.join("dev/ttyS0"))
            .unwrap()
            .file_type()
            .is_file()
    );

    // The symlink's owner is the one loss, and it is reported unless it is the writer's.
    if me == (0, 0) {
        assert_eq!(report.lost, 0, "{:?}", report.lost_paths);
    } else {
        assert_eq!(report.lost, 1, "{:?}", report.lost_paths);
        assert_eq!(
            report.lost_paths,
            ["bin/sh: owner 0:0 (a symlink cannot record it)"]
        );
    }

    let mut out = Vec::new();
    write_layer(&Op::new("test"), &tree, &[], &recorded(), &mut out).unwrap();
    let (want, got) = (seen(&input), seen(&out));
    for (name, w) in &want {
        let g = got.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            !g.5.iter().any(|x| x == OVERRIDE_STAT_XATTR),
            "{name} leaves with its record"
        );
        if name == "bin/sh" {
            assert_eq!((g.1, g.2), (u64::from(me.0), u64::from(me.1)));
            continue;
        }
        assert_eq!(g, w, "{name}");
    }
}

/// Export options that read the records, as an unprivileged process's do by default
/// (these tests also run as root, whose exports do not).
fn recorded() -> ExportOptions {
    ExportOptions {
        owner_records: true,
        ..ExportOptions::default()
    }
}

#[test]
fn as_root_a_record_set_on_a_file_does_not_forge_its_owner_or_mode_in_the_export() {
    // What a container's process could do to a file it owns in its layer: record itself
    // as root, setuid. Exported by root, the file is what it really is.
    // Only root's exports ignore records: under CI=true, not being root fails.
    if !testkit::require(
        "as_root_a_record_set_on_a_file_does_not_forge_its_owner_or_mode_in_the_export",
        &[testkit::Requirement::Root],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("diff");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("d/tool"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        tree.join("d/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::chown(tree.join("d/tool"), Some(1000), Some(1000)).unwrap();
    let forged = OverrideStat::parse(b"0:0:4755:file", &"d/tool").unwrap();
    let file = std::fs::File::open(tree.join("d/tool")).unwrap();
    forged
        .set(std::os::fd::AsFd::as_fd(&file), &"d/tool")
        .unwrap();
    rustix::fs::setxattr(
        tree.join("d"),
        "user.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let mut out = Vec::new();
    write_layer(
        &Op::new("test"),
        &tree,
        &[],
        &ExportOptions::default(),
        &mut out,
    )
    .unwrap();
    let got = seen(&out);
    let tool = &got["d/tool"];
    assert_eq!(
        (tool.1, tool.2, tool.3 & 0o7777),
        (1000, 1000, 0o755),
        "{tool:?}"
    );
    assert!(
        !got.contains_key("d/.wh..wh..opq"),
        "a user.overlay.opaque mark made d opaque: {got:?}"
    );
}

#[test]
fn a_recorded_layer_comes_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("diff");
    std::fs::create_dir(&tree).unwrap();
    let split = dir.path().join(FILE_NAME);
    let mut opts = xattr_opts();
    opts.tar_split = Some(split.clone());
    let input = layer();
    apply_tar(&Op::new("test"), &tree, &input[..], &opts).unwrap();
    let out = write_layer_exact(
        &Op::new("test"),
        &tree,
        &[],
        &split,
        &recorded(),
        Vec::new(),
    )
    .unwrap();
    assert!(out == input, "the replay differs from the imported tar");
}

#[test]
fn opaque_directories_are_marked_in_the_user_namespace_and_exported_as_opaque() {
    use tar::EntryType::*;
    let input = archive(
        &[
            ("d/", Directory, (0, 0), 0o755, b"", None),
            ("d/.wh..wh..opq", Regular, (0, 0), 0o600, b"", None),
            ("d/new", Regular, (0, 0), 0o644, b"n", None),
        ],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("diff");
    std::fs::create_dir(&tree).unwrap();
    apply_tar(&Op::new("test"), &tree, &input[..], &xattr_opts()).unwrap();
    let v = tar_engine::tree::get_xattr(&tree.join("d"), "user.overlay.opaque").unwrap();
    assert_eq!(v.as_deref(), Some(&b"y"[..]));
    let mut out = Vec::new();
    write_layer(&Op::new("test"), &tree, &[], &recorded(), &mut out).unwrap();
    let got = seen(&out);
    assert!(got.contains_key("d/.wh..wh..opq"), "{got:?}");
    assert!(
        got.values()
            .all(|e| !e.5.iter().any(|x| x.starts_with("user.overlay"))),
        "{got:?}"
    );
}

#[test]
fn an_archives_own_record_never_enters() {
    use tar::EntryType::*;
    // An archive cannot make the exporter lie about an entry by carrying a record.
    let input = archive(
        &[("f", Regular, (0, 0), 0o644, b"x", None)],
        &[("f", OVERRIDE_STAT_XATTR, b"0:0:4755:file")],
    );
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("diff");
    std::fs::create_dir(&tree).unwrap();
    let mut opts = ApplyOptions::new(WhiteoutMode::Overlay);
    opts.ownership = Ownership::Caller;
    opts.sync = false;
    apply_tar(&Op::new("test"), &tree, &input[..], &opts).unwrap();
    assert!(
        OverrideStat::get(RecordOn::Path(&tree.join("f")), None, &"f")
            .unwrap()
            .is_none()
    );
}

#[test]
fn directories_a_path_needed_are_recorded_as_roots_and_described_ones_keep_theirs() {
    use tar::EntryType::*;
    let root: Add<'_> = ("./", Directory, (0, 0), 0o755, b"", None);
    let entries: [Add<'_>; 2] = [
        ("a/b/file", Regular, (3, 3), 0o644, b"f", None),
        ("a/", Directory, (9, 9), 0o711, b"", None),
    ];
    // Without a root entry, and with one (as most layers have).
    for with_root in [false, true] {
        let mut all = Vec::new();
        if with_root {
            all.push(root);
        }
        all.extend(entries);
        let input = archive(&all, &[]);
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("diff");
        std::fs::create_dir(&tree).unwrap();
        apply_tar(&Op::new("test"), &tree, &input[..], &xattr_opts()).unwrap();
        assert_eq!(record(&tree.join("a")), "9:9:0711:dir");
        assert_eq!(
            record(&tree.join("a/b")),
            "0:0:0755:dir",
            "root entry: {with_root}"
        );
        assert_eq!(record(&tree.join("a/b/file")), "3:3:0644:file");
    }
}
