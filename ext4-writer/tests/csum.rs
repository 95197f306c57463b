//! `metadata_csum` images: e2fsck verifies every checksum, the kernel verifies them on read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Cursor;

use common::{Mount, e2fsck_clean, gnu_extract, same_manifest};
use ext4_writer::{Builder, Options, Whiteouts};
use testkit::{Layercheck, Requirement, require};

fn build_csum(tar: &[u8], img: &std::path::Path, whiteouts: Whiteouts) {
    let out = std::fs::File::create(img).unwrap();
    let mut b = Builder::new(
        out,
        Options {
            metadata_csum: true,
            whiteouts,
            ..Options::default()
        },
    )
    .unwrap();
    b.append_tar(Cursor::new(tar)).unwrap();
    b.finish().unwrap();
}

/// Directories big enough for one- and two-level htrees, a file with more than four
/// extents (holes between data blocks), and an xattr too big for the inode.
fn shapes_tar() -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let head = |ty, size| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h
    };
    let long = "n".repeat(200);
    for i in 0..12_000 {
        let mut h = head(tar::EntryType::Regular, 0);
        t.append_data(&mut h, format!("short/{i}"), std::io::empty())
            .unwrap();
        let mut h = head(tar::EntryType::Regular, 0);
        t.append_data(&mut h, format!("long/{long}{i}"), std::io::empty())
            .unwrap();
    }
    let mut holes = vec![0u8; 4096 * 40];
    for b in (0..40).step_by(2) {
        holes[b * 4096] = 1;
    }
    let mut h = head(tar::EntryType::Regular, holes.len() as u64);
    t.append_data(&mut h, "holes", holes.as_slice()).unwrap();
    let big = vec![b'v'; 1500];
    t.append_pax_extensions([("SCHILY.xattr.user.big", big.as_slice())])
        .unwrap();
    let mut h = head(tar::EntryType::Regular, 1);
    t.append_data(&mut h, "xattr", &b"x"[..]).unwrap();
    t.into_inner().unwrap()
}

#[test]
fn checksummed_images_pass_e2fsck_needs_e2fsck_dumpe2fs() {
    if !require(
        "checksummed_images_pass_e2fsck_needs_e2fsck_dumpe2fs",
        &[
            Requirement::Command("e2fsck"),
            Requirement::Command("dumpe2fs"),
        ],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("shapes.img");
    build_csum(&shapes_tar(), &img, Whiteouts::Keep);
    e2fsck_clean(&img);
    let out = std::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("metadata_csum"), "{text}");
    // The Reader gives the same tar as from the image without checksums.
    let plain = tmp.path().join("plain.img");
    {
        let out = std::fs::File::create(&plain).unwrap();
        let mut b = Builder::new(out, Options::default()).unwrap();
        b.append_tar(Cursor::new(shapes_tar())).unwrap();
        b.finish().unwrap();
    }
    let export = |p: &std::path::Path| {
        let f = std::io::BufReader::new(std::fs::File::open(p).unwrap());
        let mut r = ext4_writer::Reader::open(f).unwrap();
        r.write_tar(Vec::new(), ext4_writer::ReadOptions::default())
            .unwrap()
    };
    assert!(export(&img) == export(&plain), "exports differ");
    // A flipped byte in an inode must now be caught.
    let mut bytes = std::fs::read(&img).unwrap();
    let table = u32::from_le_bytes(bytes[4096 + 8..4096 + 12].try_into().unwrap()) as usize;
    bytes[table * 4096 + 256 + 0x10] ^= 1; // root inode mtime
    let broken = tmp.path().join("broken.img");
    std::fs::write(&broken, &bytes).unwrap();
    let st = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(&broken)
        .output()
        .unwrap();
    assert!(
        !st.status.success(),
        "e2fsck missed a corrupted inode checksum"
    );
}

#[test]
fn checksummed_chain_layers_mount_like_gnu_tar_extracts_them_needs_root_loop() {
    if !require(
        "checksummed_chain_layers_mount_like_gnu_tar_extracts_them_needs_root_loop",
        &[
            Requirement::Root,
            Requirement::Command("e2fsck"),
            Requirement::Command("mount"),
            Requirement::Command("tar"),
            Requirement::Path("/dev/loop-control"),
        ],
    ) {
        return;
    }
    let lc = Layercheck::generate();
    let tmp = tempfile::tempdir().unwrap();
    for k in 1..=3 {
        let img = tmp.path().join(format!("layer{k}.img"));
        build_csum(
            &std::fs::read(lc.chain_layer(k)).unwrap(),
            &img,
            Whiteouts::Keep,
        );
        e2fsck_clean(&img);
        let extracted = tmp.path().join(format!("x{k}"));
        gnu_extract(&lc.chain_layer(k), &extracted);
        let m = Mount::loop_ro(&img, &tmp.path().join(format!("m{k}")));
        same_manifest(&m.dir, &extracted);
    }
    // The shapes image too: every name found through the checksummed htrees.
    let img = tmp.path().join("shapes.img");
    build_csum(&shapes_tar(), &img, Whiteouts::Keep);
    let m = Mount::loop_ro(&img, &tmp.path().join("ms"));
    for i in (0..12_000).step_by(37) {
        assert!(m.dir.join(format!("short/{i}")).exists());
        assert!(m.dir.join(format!("long/{}{i}", "n".repeat(200))).exists());
    }
    assert_eq!(std::fs::read(m.dir.join("holes")).unwrap().len(), 4096 * 40);
}
