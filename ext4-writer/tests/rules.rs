//! The entry rules as the ext4 writer applies them, one regression test per defect a hostile
//! corpus found: whiteouts naming `.` or `..`, NUL in names and link targets (images
//! `e2fsck` rejected), overlay markers copied from the archive, a whiteout of what the same
//! archive wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Cursor;

use ext4_writer::reader::InodeInfo;
use ext4_writer::{Builder, Error, Options, Reader, Whiteouts};
use testkit::tarball::{self, Kind, Tarball};
use testkit::{Requirement, require};

fn build(tar: &[u8], whiteouts: Whiteouts) -> Result<Vec<u8>, Error> {
    let options = Options {
        whiteouts,
        ..Options::default()
    };
    let mut b = Builder::new(Cursor::new(Vec::new()), options)?;
    b.append_tar(Cursor::new(tar))?;
    Ok(b.finish()?.0.into_inner())
}

fn file(data: &[u8]) -> Kind {
    Kind::File(data.to_vec())
}

/// The inode at `path` in the image, `None` when nothing is there.
fn lookup(r: &mut Reader<Cursor<&[u8]>>, path: &str) -> Option<InodeInfo> {
    let mut ino = r.inode(2).unwrap();
    for comp in path.split('/') {
        let children = r.read_dir(&ino).unwrap();
        let child = *children.get(comp.as_bytes())?;
        ino = r.inode(child).unwrap();
    }
    Some(ino)
}

#[test]
fn whiteouts_of_dot_or_dotdot_are_refused_in_every_mode() {
    for mode in [Whiteouts::Keep, Whiteouts::Overlay] {
        for name in [&b".wh..."[..], b".wh..", b".wh.", b"d/.wh...", b"d/.wh.."] {
            let mut t = Tarball::new();
            t.entry(Kind::Dir, b"d", &[]).entry(file(b""), name, &[]);
            let what = format!("{mode:?} {}", String::from_utf8_lossy(name));
            match build(&t.finish(), mode) {
                Err(Error::Archive(storage_core::Error::UnsafeArchive { .. })) => {}
                other => panic!("{what}: {:?}", other.map(|i| i.len())),
            }
        }
    }
}

#[test]
fn names_and_link_targets_holding_nul_are_refused() {
    for (what, tar) in tarball::nul_names() {
        match build(&tar, Whiteouts::Overlay) {
            Err(Error::Archive(storage_core::Error::InvalidArchive { .. })) => {}
            other => panic!("{what}: {:?}", other.map(|i| i.len())),
        }
    }
}

#[test]
fn overlay_marker_xattrs_in_an_archive_never_enter_the_image_needs_e2fsck() {
    if !require(
        "overlay_marker_xattrs_in_an_archive_never_enter_the_image",
        &[Requirement::Command("e2fsck")],
    ) {
        return;
    }
    let tar = tarball::overlay_marker_xattrs();
    for mode in [Whiteouts::Keep, Whiteouts::Overlay] {
        let img = build(&tar, mode).unwrap();
        common::e2fsck_clean_bytes(&img);
        let mut r = Reader::open(Cursor::new(img.as_slice())).unwrap();
        let d = lookup(&mut r, "d").unwrap();
        let names: Vec<Vec<u8>> = r.xattrs(&d).unwrap().into_keys().collect();
        assert_eq!(names, vec![b"user.kept".to_vec()], "{mode:?}");
    }
}

#[test]
fn a_whiteout_spares_what_the_same_archive_wrote_needs_e2fsck() {
    if !require(
        "a_whiteout_spares_what_the_same_archive_wrote",
        &[Requirement::Command("e2fsck")],
    ) {
        return;
    }
    let img = build(&tarball::same_layer_whiteouts(), Whiteouts::Overlay).unwrap();
    common::e2fsck_clean_bytes(&img);
    let mut r = Reader::open(Cursor::new(img.as_slice())).unwrap();
    let opaque = |r: &mut Reader<Cursor<&[u8]>>, p: &str| {
        let ino = lookup(r, p).unwrap();
        r.xattrs(&ino)
            .unwrap()
            .get(&b"trusted.overlay.opaque"[..])
            .is_some_and(|v| v == b"y")
    };
    let x = lookup(&mut r, "x").unwrap();
    assert_eq!((x.mode & 0o170000, x.size), (0o100000, 5));
    assert!(lookup(&mut r, "d/new").is_some());
    assert!(opaque(&mut r, "d"));
    assert_eq!(lookup(&mut r, "y").unwrap().mode & 0o170000, 0o040000);
    assert!(opaque(&mut r, "y"));
    let gone = lookup(&mut r, "gone").unwrap();
    assert_eq!(gone.mode & 0o170000, 0o020000);
}
