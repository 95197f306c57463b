//! Sparse files keep their holes in the image: archives GNU tar wrote with `--sparse`, in
//! each of its encodings, build images whose files own only their data blocks, that
//! `e2fsck -fn` finds clean, and whose files read back (through debugfs) as the source.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Stdio};

use ext4_writer::{Builder, Options, Reader};
use testkit::sparse::{self, Encoding};
use testkit::{Requirement, require};

/// `debugfs -R 'cat /name' img`, compared with `want` as it streams.
fn reads_back_as(img: &Path, name: &str, want: &Path) -> bool {
    let mut child = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat /{name}"))
        .arg(img)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let same = sparse::same_bytes(
        std::fs::File::open(want).unwrap(),
        child.stdout.take().unwrap(),
    );
    assert!(child.wait().unwrap().success());
    same
}

/// Bytes the image's inode for `/name` owns (`i_blocks` × 512), and its size.
fn owned(img: &Path, name: &str) -> (u64, u64) {
    let mut r = Reader::open(std::fs::File::open(img).unwrap()).unwrap();
    let root = r.inode(2).unwrap();
    let ino = r.read_dir(&root).unwrap()[name.as_bytes()];
    let info = r.inode(ino).unwrap();
    (info.sectors * 512, info.size)
}

#[test]
fn gnu_tar_sparse_archives_build_images_that_keep_their_holes_needs_e2fsck_debugfs() {
    if !require(
        "gnu_tar_sparse_archives_build_images_that_keep_their_holes_needs_e2fsck_debugfs",
        &[
            Requirement::Command("tar"),
            Requirement::Command("e2fsck"),
            Requirement::Command("debugfs"),
        ],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    sparse::sample_tree(&src);
    for encoding in Encoding::ALL {
        let tar = dir.path().join(format!("{encoding:?}.tar"));
        sparse::gnu_tar(&src, &sparse::SAMPLE, encoding, &tar);
        let img = dir.path().join(format!("{encoding:?}.img"));
        let mut b = Builder::new(std::fs::File::create(&img).unwrap(), Options::default()).unwrap();
        b.append_tar(std::fs::File::open(&tar).unwrap()).unwrap();
        let (_, summary) = b.finish().unwrap();
        // The whole image is a few MiB: no gibibyte of zeros went into it.
        assert!(summary.size < 64 << 20, "{encoding:?}: {summary:?}");
        common::e2fsck_clean(&img);
        for name in sparse::SAMPLE {
            let want = src.join(name);
            let (bytes, size) = owned(&img, name);
            assert_eq!(
                size,
                std::fs::metadata(&want).unwrap().len(),
                "{encoding:?} {name}"
            );
            // The data blocks (a few 4 KiB ones), and extent blocks: nothing of the holes.
            assert!(
                bytes <= sparse::allocated(&want) + (16 << 10),
                "{encoding:?} {name}: the image gives it {bytes} bytes, the source has {}",
                sparse::allocated(&want)
            );
            assert!(
                reads_back_as(&img, name, &want),
                "{encoding:?} {name} differs"
            );
        }
    }
}

#[test]
fn a_tebibyte_sparse_file_of_one_block_owns_one_block() {
    let mut h = tar::Header::new_gnu();
    h.set_path("huge").unwrap();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(512);
    let g = h.as_gnu_mut().unwrap();
    g.sparse[0].set_offset((1 << 39) + 4096);
    g.sparse[0].set_length(512);
    g.sparse[1].set_offset(1 << 40);
    g.sparse[1].set_length(0);
    g.set_real_size(1 << 40);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[9u8; 512]);
    tar.extend_from_slice(&[0u8; 1024]);
    // Read dense, a tebibyte of zeros would take minutes; as a map, no time.
    let started = std::time::Instant::now();
    let mut b = Builder::new(Cursor::new(Vec::new()), Options::default()).unwrap();
    b.append_tar(Cursor::new(tar)).unwrap();
    let img = b.finish().unwrap().0.into_inner();
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    assert!(img.len() < 16 << 20, "{} bytes", img.len());
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), &img).unwrap();
    let (bytes, size) = owned(f.path(), "huge");
    assert_eq!(size, 1 << 40);
    assert_eq!(bytes, 4096);
    if require(
        "a_tebibyte_sparse_file_of_one_block_owns_one_block (e2fsck)",
        &[Requirement::Command("e2fsck")],
    ) {
        common::e2fsck_clean(f.path());
    }
}
