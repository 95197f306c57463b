//! Bad input gives errors, never panics: hostile and broken tars for the Builder, hand-broken
//! and mutated images for the Reader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Cursor;

use ext4_writer::{Builder, Error, Options, ReadOptions, Reader, Whiteouts};
use testkit::{Layercheck, Requirement, require};

fn build_bytes(tar: &[u8]) -> Result<Vec<u8>, Error> {
    build_with(tar, Whiteouts::Keep)
}

fn build_with(tar: &[u8], whiteouts: Whiteouts) -> Result<Vec<u8>, Error> {
    let options = Options {
        whiteouts,
        ..Options::default()
    };
    let mut b = Builder::new(Cursor::new(Vec::new()), options)?;
    b.append_tar(Cursor::new(tar))?;
    Ok(b.finish()?.0.into_inner())
}

/// A Vec that refuses to grow past 64 MiB (a corrupt size can describe a huge sparse file).
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > 64 << 20 {
            return Err(std::io::Error::other("output cap"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_names(img: &[u8]) -> Result<Vec<String>, Error> {
    let mut r = Reader::open(Cursor::new(img))?;
    let tar = r.write_tar(Capped(Vec::new()), ReadOptions::default())?.0;
    let mut a = tar::Archive::new(tar.as_slice());
    Ok(a.entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect())
}

#[test]
fn hostile_layers_are_refused_or_kept_inside_the_root_needs_e2fsck() {
    if !require(
        "hostile_layers_are_refused_or_kept_inside_the_root_needs_e2fsck",
        &[Requirement::Command("e2fsck")],
    ) {
        return;
    }
    let lc = Layercheck::generate();
    for (path, whiteouts) in lc
        .hostile_layers()
        .into_iter()
        .flat_map(|p| [(p.clone(), Whiteouts::Keep), (p, Whiteouts::Overlay)])
    {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let tar = std::fs::read(&path).unwrap();
        let res = build_with(&tar, whiteouts);
        match name.as_str() {
            "garbage" | "truncated" => {
                assert!(
                    matches!(
                        res,
                        Err(Error::Archive(storage_core::Error::InvalidArchive { .. }))
                    ),
                    "{name}: {res:?}"
                );
            }
            "hardlink-escape" | "hardlink-abs" => {
                assert!(
                    matches!(res, Err(Error::HardLinkTarget { .. })),
                    "{name}: {res:?}"
                );
            }
            // A whiteout must reach its directory without a symlink (Keep mode reads it as
            // the plain file it is, kept inside the root).
            "opaque-root-escape" | "whiteout-through-symlink"
                if whiteouts == Whiteouts::Overlay =>
            {
                assert!(
                    matches!(
                        res,
                        Err(Error::Archive(storage_core::Error::UnsafeArchive { .. }))
                    ),
                    "{name}: {res:?}"
                );
            }
            _ => {
                let img = res.unwrap_or_else(|e| panic!("{name}: {e}"));
                common::e2fsck_clean_bytes(&img);
                let names = read_names(&img).unwrap();
                for n in &names {
                    assert!(
                        !n.starts_with('/') && !n.split('/').any(|c| c == ".."),
                        "{name}: {n}"
                    );
                }
                // What the layer wrote landed inside, at the root.
                let expect = match name.as_str() {
                    "dotdot" => Some("escaped-dotdot"),
                    "deep-dotdot" => Some("escaped-deep"),
                    "absolute" => Some("tmp/escaped-absolute"),
                    "symlink-dir-escape" => Some("escaped-symlink"),
                    "symlink-abs-escape" => Some("tmp/escaped-abs-symlink"),
                    "whiteout-escape" => Some(match whiteouts {
                        Whiteouts::Keep => ".wh.outside-canary",
                        Whiteouts::Overlay => "outside-canary",
                    }),
                    "whiteout-through-symlink" => Some(".wh.outside-canary"),
                    _ => None,
                };
                if let Some(e) = expect {
                    assert!(names.iter().any(|n| n == e), "{name}: {names:?}");
                }
            }
        }
    }
}

/// A small valid image to break.
fn base_image() -> Vec<u8> {
    let lc = Layercheck::generate();
    build_bytes(&std::fs::read(lc.chain_layer(2)).unwrap()).unwrap()
}

#[test]
fn hand_broken_images_are_errors() {
    let good = base_image();
    if require(
        "hand_broken_images_are_errors (base image check)",
        &[Requirement::Command("e2fsck")],
    ) {
        common::e2fsck_clean_bytes(&good);
    }
    assert!(read_names(&good).is_ok());
    let sb = 1024;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut m = good.clone();
    m[sb + 0x38] = 0;
    cases.push(("bad magic", m));
    cases.push(("truncated to 8 KiB", good[..8192].to_vec()));
    cases.push(("empty", Vec::new()));
    let mut m = good.clone();
    m[sb..sb + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("huge inode count", m));
    let mut m = good.clone();
    m[sb + 0x18..sb + 0x1C].copy_from_slice(&30u32.to_le_bytes());
    cases.push(("huge block size", m));
    let mut m = good.clone();
    m[sb + 0x28..sb + 0x2C].copy_from_slice(&0u32.to_le_bytes());
    cases.push(("zero inodes per group", m));
    // Point group 0's inode table past the end.
    let mut m = good.clone();
    m[4096 + 8..4096 + 12].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    cases.push(("inode table outside", m));
    // Break the root inode's extent header, then its directory block.
    let table = u32::from_le_bytes(good[4096 + 8..4096 + 12].try_into().unwrap()) as usize;
    let root = table * 4096 + 256;
    let mut m = good.clone();
    m[root + 0x28] = 0;
    cases.push(("root extent magic", m));
    let mut m = good.clone();
    m[root + 0x28 + 4..root + 0x28 + 6].copy_from_slice(&500u16.to_le_bytes());
    cases.push(("root extent capacity", m));
    let mut m = good.clone();
    m[root + 0x28 + 2..root + 0x28 + 4].copy_from_slice(&5u16.to_le_bytes());
    cases.push(("root extent entries", m));
    let dir_block =
        u32::from_le_bytes(good[root + 0x28 + 20..root + 0x28 + 24].try_into().unwrap()) as usize;
    let mut m = good.clone();
    m[dir_block * 4096 + 4..dir_block * 4096 + 6].copy_from_slice(&0u16.to_le_bytes());
    cases.push(("dir rec_len 0", m));
    let mut m = good.clone();
    m[dir_block * 4096 + 24..dir_block * 4096 + 28].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("dir entry inode out of range", m));
    // Root's first child entry points back at the root: a directory loop.
    let mut m = good.clone();
    m[dir_block * 4096 + 24..dir_block * 4096 + 28].copy_from_slice(&2u32.to_le_bytes());
    m[dir_block * 4096 + 24 + 7] = 2;
    cases.push(("directory loop", m));
    for (what, img) in cases {
        let res = read_names(&img);
        assert!(res.is_err(), "{what}: read without error: {res:?}");
    }
}

#[test]
fn mutated_images_never_panic() {
    let good = base_image();
    // xorshift: deterministic mutations of metadata (block 0, the descriptors, and the
    // tail where directories, inode tables and bitmaps live).
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let tail = good.len().saturating_sub(24 * 4096);
    let mut errors = 0;
    for _ in 0..3000 {
        let mut m = good.clone();
        for _ in 0..(1 + next() % 4) {
            let r = next();
            let at = if r % 3 == 0 {
                (r >> 8) as usize % 8192
            } else {
                tail + (r >> 8) as usize % (good.len() - tail)
            };
            m[at] = (next() >> 16) as u8;
        }
        if read_names(&m).is_err() {
            errors += 1;
        }
    }
    assert!(errors > 0, "some mutations must be detected");
}

#[test]
fn mutated_tars_never_panic_and_build_clean_images_needs_e2fsck() {
    if !require(
        "mutated_tars_never_panic_and_build_clean_images_needs_e2fsck",
        &[Requirement::Command("e2fsck")],
    ) {
        return;
    }
    let mut checked = std::collections::HashSet::new();
    let lc = Layercheck::generate();
    let good = std::fs::read(lc.chain_layer(2)).unwrap();
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..1000 {
        let mut m = good.clone();
        for _ in 0..(1 + next() % 4) {
            let at = (next() >> 8) as usize % m.len();
            m[at] = (next() >> 16) as u8;
        }
        let cut = (next() >> 8) as usize % (m.len() + 1);
        for input in [&m[..cut], &m[..]] {
            // Whatever builds must be a clean file system (each distinct image checked once).
            if let Ok(img) = build_bytes(input)
                && checked.insert(img.clone())
            {
                common::e2fsck_clean_bytes(&img);
            }
        }
    }
}
