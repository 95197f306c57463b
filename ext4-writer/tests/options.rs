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

#[test]
fn digests_of_the_input_are_reported_only_when_asked_for_and_the_image_is_the_same() {
    let lc = Layercheck::generate();
    let plain = std::fs::read(lc.chain_layer(1)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let build = |input: &[u8], digests: bool| {
        let options = Options {
            digests,
            ..Options::default()
        };
        let mut b = Builder::new(Cursor::new(Vec::new()), options).unwrap();
        let report = b.append_tar(Cursor::new(input.to_vec())).unwrap();
        (report, b.finish().unwrap().0.into_inner())
    };
    let (hashed, image) = build(&gz, true);
    let (unhashed, same) = build(&gz, false);
    assert_eq!(image, same);
    let sha = |data: &[u8]| {
        let out = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(data)?;
                c.wait_with_output()
            })
            .unwrap();
        format!(
            "sha256:{}",
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap()
        )
    };
    assert_eq!(hashed.digest, Some(sha(&gz)));
    assert_eq!(hashed.tar_digest, Some(sha(&plain)));
    assert_eq!((unhashed.digest, unhashed.tar_digest), (None, None));
    assert_eq!(
        (unhashed.size, unhashed.tar_size),
        (gz.len() as u64, plain.len() as u64)
    );
}

#[test]
fn a_label_and_uuid_reach_the_superblock_and_a_sized_image_fills_its_size_needs_e2fsck_dumpe2fs() {
    if !require(
        "a_label_and_uuid_reach_the_superblock_and_a_sized_image_fills_its_size_needs_e2fsck_dumpe2fs",
        &[
            Requirement::Command("e2fsck"),
            Requirement::Command("dumpe2fs"),
        ],
    ) {
        return;
    }
    let lc = Layercheck::generate();
    let tar = std::fs::read(lc.chain_layer(1)).unwrap();
    let mut label = [0u8; 16];
    label[..8].copy_from_slice(b"my-layer");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("sized.img");
    let size = 256u64 << 20;
    let options = Options {
        label,
        uuid: *b"0123456789abcdef",
        min_size: size,
        max_size: size,
        inode_headroom: 4096,
        lost_found: false,
        ..Options::default()
    };
    let mut b = Builder::new(std::fs::File::create(&img).unwrap(), options).unwrap();
    b.append_tar(Cursor::new(&tar)).unwrap();
    let (_, summary) = b.finish().unwrap();
    assert_eq!(summary.size, size);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), size);
    // The free inode tables are holes: the file allocates far less than it is long.
    use std::os::unix::fs::MetadataExt;
    assert!(std::fs::metadata(&img).unwrap().blocks() * 512 < size / 4);
    e2fsck_clean(&img);
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Filesystem volume name:   my-layer"),
        "{text}"
    );
    assert!(
        text.contains("Filesystem UUID:          30313233-3435-3637-3839-616263646566"),
        "{text}"
    );
    assert!(text.contains("Block count:              65536"), "{text}");
}

#[test]
fn a_least_size_is_free_space_that_e2fsck_accepts_needs_e2fsck() {
    if !require(
        "a_least_size_is_free_space_that_e2fsck_accepts_needs_e2fsck",
        &[Requirement::Command("e2fsck")],
    ) {
        return;
    }
    let lc = Layercheck::generate();
    let plain = std::fs::read(lc.chain_layer(1)).unwrap();
    for min_size in [64u64 << 20, (300 << 20) + 4096] {
        let mut b = Builder::new(
            Cursor::new(Vec::new()),
            Options {
                min_size,
                max_size: 1 << 30,
                inode_headroom: 1000,
                ..Options::default()
            },
        )
        .unwrap();
        b.append_tar(Cursor::new(&plain)).unwrap();
        let (img, summary) = b.finish().unwrap();
        assert!(summary.size >= min_size, "{summary:?} for {min_size}");
        assert!(
            summary.size < min_size + (1 << 20),
            "{summary:?} for {min_size}"
        );
        common::e2fsck_clean_bytes(&img.into_inner());
    }
}
