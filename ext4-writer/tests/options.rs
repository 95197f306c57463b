//! Builder options and input formats: compression is detected, output is deterministic,
//! inode headroom and the read-only flag land in the superblock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Cursor, Write};
use std::process::Command;

use common::e2fsck_clean;
use ext4_writer::{Builder, Options};
use testkit::{Layercheck, Requirement, require};

fn build_bytes(tar: &[u8], options: Options) -> Vec<u8> {
    let mut b = Builder::new(Cursor::new(Vec::new()), options).unwrap();
    b.append_tar(Cursor::new(tar)).unwrap();
    b.finish().unwrap().0.into_inner()
}

#[test]
fn gzip_and_zstd_layers_give_the_same_image_as_plain_needs_e2fsck() {
    if !require(
        "gzip_and_zstd_layers_give_the_same_image_as_plain_needs_e2fsck",
        &[Requirement::Command("e2fsck")],
    ) {
        return;
    }
    let lc = Layercheck::generate();
    let plain = std::fs::read(lc.chain_layer(1)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
    let a = build_bytes(&plain, Options::default());
    assert_eq!(
        a,
        build_bytes(&plain, Options::default()),
        "output is deterministic"
    );
    assert!(
        a == build_bytes(&gz, Options::default()),
        "gzip input differs"
    );
    assert!(
        a == build_bytes(&zst, Options::default()),
        "zstd input differs"
    );
}

#[test]
fn headroom_and_read_only_flag_reach_the_superblock_needs_e2fsck_dumpe2fs() {
    if !require(
        "headroom_and_read_only_flag_reach_the_superblock_needs_e2fsck_dumpe2fs",
        &[
            Requirement::Command("e2fsck"),
            Requirement::Command("dumpe2fs"),
        ],
    ) {
        return;
    }
    let lc = Layercheck::generate();
    let plain = std::fs::read(lc.chain_layer(1)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("opts.img");
    let bytes = build_bytes(
        &plain,
        Options {
            inode_headroom: 5000,
            read_only: true,
            ..Options::default()
        },
    );
    std::fs::write(&img, &bytes).unwrap();
    e2fsck_clean(&img);
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let free: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Free inodes:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(free >= 5000, "{text}");
    let features = text
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap();
    assert!(features.contains("read-only"), "{features}");
    assert!(
        features.contains("dir_index") && features.contains("extent"),
        "{features}"
    );
    // Without the options: no read-only flag, and few free inodes.
    let plain_img = tmp.path().join("plain.img");
    std::fs::write(&plain_img, build_bytes(&plain, Options::default())).unwrap();
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&plain_img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("read-only"), "{text}");
}
