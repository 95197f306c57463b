//! The entry rules as the directory writer applies them, one regression test per defect a
//! hostile corpus found: whiteouts naming `.` or `..`, NUL in names, a whiteout of what
//! the same archive wrote, negative fractional PAX times.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use storage_core::{Error, Op};
use tar_engine::{ApplyOptions, Ownership, WhiteoutMode, apply_tar};
use testkit::tarball::{self, Kind, Tarball};
use testkit::{Requirement, require};

fn file(data: &[u8]) -> Kind {
    Kind::File(data.to_vec())
}

fn apply(target: &Path, tar: &[u8], mode: WhiteoutMode) -> storage_core::Result<()> {
    let mut opts = ApplyOptions::new(mode);
    opts.sync = false;
    if mode == WhiteoutMode::Delete {
        opts.ownership = Ownership::Caller;
    }
    apply_tar(&Op::new("test"), target, tar, &opts).map(|_| ())
}

/// A target directory with a sibling beside it and a file inside, both of which must
/// survive whatever the archive does.
struct Scene {
    _outer: tempfile::TempDir,
    target: std::path::PathBuf,
    sibling: std::path::PathBuf,
}

impl Scene {
    fn new() -> Self {
        let outer = tempfile::tempdir().unwrap();
        let target = outer.path().join("volumes/v1");
        let sibling = outer.path().join("volumes/v2/data");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::create_dir_all(sibling.parent().unwrap()).unwrap();
        std::fs::write(&sibling, b"other volume").unwrap();
        std::fs::write(target.join("keep"), b"own data").unwrap();
        Scene {
            _outer: outer,
            target,
            sibling,
        }
    }

    fn intact(&self) -> bool {
        std::fs::read(&self.sibling).is_ok_and(|d| d == b"other volume")
            && std::fs::read(self.target.join("keep")).is_ok_and(|d| d == b"own data")
    }
}

#[test]
fn whiteouts_of_dot_or_dotdot_are_refused_and_delete_nothing_in_either_mode() {
    let modes: &[WhiteoutMode] = if require(
        "whiteouts_of_dot_or_dotdot (overlay mode)",
        &[Requirement::Root],
    ) {
        &[WhiteoutMode::Delete, WhiteoutMode::Overlay]
    } else {
        &[WhiteoutMode::Delete]
    };
    let names: &[&[u8]] = &[b".wh...", b".wh..", b".wh.", b"sub/.wh...", b"sub/.wh.."];
    for &mode in modes {
        for name in names {
            for through_root_symlink in [false, true] {
                let scene = Scene::new();
                let mut t = Tarball::new();
                let name = if through_root_symlink {
                    t.entry(Kind::Symlink(b"/".to_vec()), b"rootlink", &[]);
                    [&b"rootlink/"[..], name].concat()
                } else {
                    name.to_vec()
                };
                t.entry(Kind::Dir, b"sub", &[]);
                t.entry(file(b""), &name, &[]);
                let err = apply(&scene.target, &t.finish(), mode).unwrap_err();
                let what = format!("{mode:?} {}", String::from_utf8_lossy(&name));
                assert!(matches!(err, Error::UnsafeArchive { .. }), "{what}: {err}");
                assert!(scene.intact(), "{what}: data outside the entry was removed");
                assert!(scene.target.join("sub").is_dir(), "{what}");
            }
        }
    }
}

#[test]
fn names_and_link_targets_holding_nul_are_refused() {
    for (what, tar) in tarball::nul_names() {
        let scene = Scene::new();
        let err = apply(&scene.target, &tar, WhiteoutMode::Delete).unwrap_err();
        assert!(matches!(err, Error::InvalidArchive { .. }), "{what}: {err}");
        assert!(scene.intact(), "{what}");
    }
}

#[test]
fn a_whiteout_spares_what_the_same_archive_wrote_in_delete_mode() {
    let scene = Scene::new();
    std::fs::write(scene.target.join("x"), b"lower").unwrap();
    std::fs::create_dir_all(scene.target.join("d/lower-only")).unwrap();
    let mut t = Tarball::new();
    t.entry(file(b"upper"), b"x", &[])
        .entry(file(b""), b".wh.x", &[])
        .entry(Kind::Dir, b"d", &[])
        .entry(file(b"new"), b"d/new", &[])
        .entry(file(b""), b".wh.d", &[]);
    apply(&scene.target, &t.finish(), WhiteoutMode::Delete).unwrap();
    assert_eq!(std::fs::read(scene.target.join("x")).unwrap(), b"upper");
    assert_eq!(std::fs::read(scene.target.join("d/new")).unwrap(), b"new");
    assert!(!scene.target.join("d/lower-only").exists());
}

#[test]
fn a_whiteout_spares_what_the_same_archive_wrote_in_overlay_mode_needs_root() {
    if !require(
        "a_whiteout_spares_what_the_same_archive_wrote_in_overlay_mode",
        &[Requirement::Root],
    ) {
        return;
    }
    let scene = Scene::new();
    let tar = tarball::same_layer_whiteouts();
    apply(&scene.target, &tar, WhiteoutMode::Overlay).unwrap();
    let opaque = |p: &str| {
        xattr_of(&scene.target.join(p), "trusted.overlay.opaque").as_deref() == Some(&b"y"[..])
    };
    // The layer's own x stays a file; its own d stays, made opaque so the lower d's content
    // is hidden, as a deletion of the lower d asks.
    assert_eq!(std::fs::read(scene.target.join("x")).unwrap(), b"upper");
    assert_eq!(std::fs::read(scene.target.join("d/new")).unwrap(), b"new");
    assert!(opaque("d"));
    // A directory written after its own whiteout replaces it, and hides the lower one.
    assert!(scene.target.join("y").is_dir() && opaque("y"));
    // What the archive did not write is whited out for overlayfs.
    let gone = std::fs::symlink_metadata(scene.target.join("gone")).unwrap();
    assert_eq!((gone.mode() & 0o170000, gone.rdev()), (0o020000, 0));
}

#[test]
fn negative_fractional_pax_times_are_stored_below_the_second() {
    let scene = Scene::new();
    let mut t = Tarball::new();
    t.entry(file(b"a"), b"a", &[("mtime", b"-1.5")])
        .entry(file(b"b"), b"b", &[("mtime", b"-0.5")])
        .entry(file(b"c"), b"c", &[("mtime", b"1.25")]);
    apply(&scene.target, &t.finish(), WhiteoutMode::Delete).unwrap();
    let times = |n: &str| {
        let m = std::fs::symlink_metadata(scene.target.join(n)).unwrap();
        (m.mtime(), m.mtime_nsec())
    };
    assert_eq!(times("a"), (-2, 500_000_000));
    assert_eq!(times("b"), (-1, 500_000_000));
    assert_eq!(times("c"), (1, 250_000_000));
}

#[test]
fn overlay_marker_xattrs_in_an_archive_never_enter_needs_root() {
    if !require(
        "overlay_marker_xattrs_in_an_archive_never_enter",
        &[Requirement::Root],
    ) {
        return;
    }
    let scene = Scene::new();
    let tar = tarball::overlay_marker_xattrs();
    apply(&scene.target, &tar, WhiteoutMode::Overlay).unwrap();
    let d = scene.target.join("d");
    for name in [
        "trusted.overlay.opaque",
        "user.overlay.opaque",
        "trusted.overlay.redirect",
    ] {
        assert_eq!(xattr_of(&d, name), None, "{name}");
    }
    assert_eq!(xattr_of(&d, "user.kept").as_deref(), Some(&b"v"[..]));
}

fn xattr_of(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn a_tree_deeper_than_its_names_through_symlinks_is_refused_at_the_path_limit() {
    // 8 hops of 400 levels: 3,200 levels with no name over 810 bytes.
    let tar = tarball::deep_through_symlinks(8, 400);
    let scene = Scene::new();
    let started = std::time::Instant::now();
    let err = apply(&scene.target, &tar, WhiteoutMode::Delete).unwrap_err();
    match &err {
        Error::InvalidArchive {
            entry: Some(_),
            reason,
        } => assert!(reason.contains("4095"), "{err}"),
        other => panic!("expected the path limit, got {other}"),
    }
    assert!(scene.intact());
    // What was written stays walkable and removable (the caller removes a failed import).
    let changes = tar_engine::layer_changes(&scene.target, &[]).unwrap();
    assert!(changes.len() > 2000, "{}", changes.len());
    assert!(dirtree::remove_all(&scene.target).unwrap());
    eprintln!("refused after {:?}", started.elapsed());
}

#[test]
fn a_tree_within_the_path_limit_through_symlinks_is_written_whole() {
    // 4 hops of 400 levels: 1,600 levels, 3,200 bytes deep.
    let tar = tarball::deep_through_symlinks(4, 400);
    let scene = Scene::new();
    apply(&scene.target, &tar, WhiteoutMode::Delete).unwrap();
    let changes = tar_engine::layer_changes(&scene.target, &[]).unwrap();
    let deepest = changes.iter().map(|c| c.path.len()).max().unwrap_or(0);
    assert_eq!(
        deepest,
        "h0".len() + 2 * 1600,
        "deepest path in the listing"
    );
}

#[test]
fn a_failed_apply_with_rollback_removes_what_it_created_and_keeps_what_was_there() {
    let scene = Scene::new();
    std::fs::create_dir(scene.target.join("old")).unwrap();
    let mut t = Tarball::new();
    t.entry(Kind::Dir, b"new", &[])
        .entry(file(b"x"), b"new/deep/implied/f", &[])
        .entry(file(b"y"), b"old/added", &[])
        .entry(Kind::Symlink(b"old".to_vec()), b"link", &[])
        .entry(file(b"z"), b"link/through", &[]);
    let mut tar = t.finish();
    // A last file whose data is cut short: the apply fails after writing part of it.
    let mut last = Tarball::new();
    last.entry(file(&[1u8; 4096]), b"partial", &[]);
    let last = last.finish();
    tar.truncate(tar.len() - 1024);
    tar.extend_from_slice(&last[..512 + 1000]);
    let mut opts = ApplyOptions::new(WhiteoutMode::Delete);
    opts.sync = false;
    opts.ownership = Ownership::Caller;
    opts.rollback = true;
    let err = apply_tar(&Op::new("test"), &scene.target, &tar[..], &opts).unwrap_err();
    assert!(matches!(err, Error::InvalidArchive { .. }), "{err}");
    let mut left: Vec<String> = std::fs::read_dir(&scene.target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["keep", "old"]);
    assert_eq!(
        std::fs::read_dir(scene.target.join("old")).unwrap().count(),
        0
    );
    assert!(scene.intact());
}
