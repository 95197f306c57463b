//! Bad input gets the outcome it calls for, and never a panic: hostile, broken and mutated
//! tars for the Builder (refused as the engine refuses them, or built into a clean image),
//! hand-broken and mutated images for the Reader (refused as corrupt or short, or read).
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
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for (path, whiteouts) in lc
        .hostile_layers()
        .into_iter()
        .flat_map(|p| [(p.clone(), Whiteouts::Keep), (p, Whiteouts::Overlay)])
    {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        *seen.entry(name.clone()).or_default() += 1;
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
    // Every layer named above was met, each in both whiteout modes.
    for name in [
        "absolute",
        "deep-dotdot",
        "dotdot",
        "garbage",
        "hardlink-abs",
        "hardlink-escape",
        "opaque-root-escape",
        "symlink-abs-escape",
        "symlink-dir-escape",
        "truncated",
        "whiteout-escape",
        "whiteout-through-symlink",
    ] {
        assert_eq!(seen.get(name), Some(&2), "{name}: {seen:?}");
    }
}

/// A small valid image to break.
fn base_image() -> Vec<u8> {
    let lc = Layercheck::generate();
    build_bytes(&std::fs::read(lc.chain_layer(2)).unwrap()).unwrap()
}

#[test]
fn hand_broken_images_are_refused_as_corrupt_or_short() {
    let good = base_image();
    if require(
        "hand_broken_images_are_refused_as_corrupt_or_short (base image check)",
        &[Requirement::Command("e2fsck")],
    ) {
        common::e2fsck_clean_bytes(&good);
    }
    assert!(read_names(&good).is_ok());
    let sb = 1024;
    // Each case is refused as corrupt, except those cut short, whose reads fail.
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
    assert_eq!(cases.len(), 13);
    for (what, img) in cases {
        let res = read_names(&img);
        match (what, res) {
            ("truncated to 8 KiB" | "empty", Err(Error::Read { source, .. })) => {
                assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof, "{what}");
            }
            ("truncated to 8 KiB" | "empty", other) => {
                panic!("{what}: expected a short read, got {other:?}")
            }
            (_, Err(Error::Corrupt { .. })) => {}
            (_, other) => panic!("{what}: expected a corrupt image, got {other:?}"),
        }
    }
}

#[test]
fn mutated_images_are_read_or_refused_as_damaged_never_panic() {
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
    let (mut read, mut refused) = (0, 0);
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
        match read_names(&m) {
            Ok(_) => read += 1,
            // Damage is reported as such: a corrupt or unsupported image, a structure that
            // reaches past the end, or a file too large for the capped output.
            Err(Error::Corrupt { .. } | Error::Unsupported { .. } | Error::Read { .. }) => {
                refused += 1
            }
            Err(Error::TarWrite { source, .. }) if source.to_string() == "output cap" => {
                refused += 1
            }
            Err(other) => panic!("a damaged image gave {other:?}"),
        }
    }
    assert_eq!(read + refused, 3000);
    // Some damage is detected, and some lands where a reader never looks.
    assert!(refused > 0 && read > 0, "{read} read, {refused} refused");
}

/// Where the structures of a tar lie, to say what damage to each must do.
struct TarLayout {
    /// Offsets of every header block (extension headers included).
    headers: Vec<usize>,
    /// The data of extension headers (PAX, GNU long names), whose damage may or may not
    /// refuse the archive.
    extension_data: Vec<std::ops::Range<usize>>,
    /// Offset of the first all-zero block, which ends the archive.
    end: usize,
}

impl TarLayout {
    fn of(tar: &[u8]) -> Self {
        let mut a = tar::Archive::new(tar);
        let mut headers = Vec::new();
        let mut extension_data = Vec::new();
        let mut end = 0;
        for e in a.entries().unwrap().raw(true) {
            let e = e.unwrap();
            let h = e.raw_header_position() as usize;
            let data = e.raw_file_position() as usize;
            let size = e.size() as usize;
            headers.push(h);
            let t = e.header().entry_type();
            if t.is_pax_local_extensions()
                || t.is_pax_global_extensions()
                || t.is_gnu_longname()
                || t.is_gnu_longlink()
            {
                extension_data.push(data..data + size.next_multiple_of(512));
            }
            end = data + size.next_multiple_of(512);
        }
        assert!(tar[end..end + 512].iter().all(|&b| b == 0), "no end block");
        TarLayout {
            headers,
            extension_data,
            end,
        }
    }
}

/// Whether a header block's checksum holds, as a tar reader checks it.
fn checksum_holds(block: &[u8]) -> bool {
    let sum: u32 = block[..148]
        .iter()
        .chain(&block[156..512])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * u32::from(b' ');
    // The field is read up to its first NUL, blanks trimmed.
    let field = block[148..156]
        .split(|&b| b == 0)
        .next()
        .unwrap_or_default();
    std::str::from_utf8(field)
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|stored| stored == sum)
}

/// What building a damaged tar must give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Verdict {
    /// It builds, and holds the names the undamaged archive cut at the same place holds.
    Builds,
    /// It is refused as an invalid archive.
    Refused,
    /// Damage that may go either way (a header whose checksum still holds, extension
    /// data): if it builds, the image must still be clean.
    Either,
}

/// The verdict on `damaged` (the archive `good` with some bytes changed) cut to `cut`.
fn verdict(layout: &TarLayout, good: &[u8], damaged: &[u8], cut: usize) -> Verdict {
    let mut verdict = Verdict::Builds;
    // A cut must fall where a header would start, or after the end block.
    let clean_cut = cut == layout.end || cut >= layout.end + 512 || layout.headers.contains(&cut);
    if !clean_cut {
        return Verdict::Refused;
    }
    for at in (0..cut).filter(|&i| damaged[i] != good[i]) {
        let block = at - at % 512;
        if layout.headers.contains(&block) || block == layout.end {
            if !checksum_holds(&damaged[block..block + 512]) {
                return Verdict::Refused;
            }
            verdict = Verdict::Either;
        } else if layout.extension_data.iter().any(|r| r.contains(&at)) {
            verdict = Verdict::Either;
        }
        // File data, padding, and anything past the end block change no verdict.
    }
    verdict
}

#[test]
fn mutated_tars_get_the_verdict_their_damage_calls_for_needs_e2fsck() {
    if !require(
        "mutated_tars_get_the_verdict_their_damage_calls_for_needs_e2fsck",
        &[Requirement::Command("e2fsck")],
    ) {
        return;
    }
    let mut checked = std::collections::HashSet::new();
    let mut tally = std::collections::BTreeMap::<Verdict, usize>::new();
    let lc = Layercheck::generate();
    let good = std::fs::read(lc.chain_layer(2)).unwrap();
    let layout = TarLayout::of(&good);
    assert!(
        layout.headers.len() >= 10,
        "{} headers",
        layout.headers.len()
    );
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut cases = 0;
    for _ in 0..1000 {
        let mut m = good.clone();
        for _ in 0..(1 + next() % 4) {
            // Mostly where the archive's structures and data are, sometimes past its end.
            let at = (next() >> 8) as usize % (layout.end + 1024).min(m.len());
            m[at] = (next() >> 16) as u8;
        }
        let cut = (next() >> 8) as usize % (m.len() + 1);
        for cut in [cut, m.len()] {
            cases += 1;
            let want = verdict(&layout, &good, &m, cut);
            *tally.entry(want).or_default() += 1;
            let res = build_bytes(&m[..cut]);
            let changed: Vec<(usize, u8)> = (0..m.len())
                .filter(|&i| m[i] != good[i])
                .map(|i| (i, m[i]))
                .collect();
            let case = format!("case {cases}: cut at {cut}, bytes changed {changed:?}");
            match (want, res) {
                (
                    Verdict::Refused,
                    Err(Error::Archive(storage_core::Error::InvalidArchive { .. })),
                ) => {}
                (Verdict::Refused, other) => panic!(
                    "{case}: expected an invalid archive, got {:?}",
                    other.map(|i| i.len())
                ),
                (Verdict::Builds, Err(e)) => panic!("{case}: refused: {e}"),
                (Verdict::Either, Err(_)) => {}
                (Verdict::Builds | Verdict::Either, Ok(img)) => {
                    if want == Verdict::Builds {
                        // The damage touched only file data: the same names as the
                        // undamaged archive cut at the same place.
                        let undamaged = build_bytes(&good[..cut]).unwrap();
                        assert_eq!(
                            read_names(&img).unwrap(),
                            read_names(&undamaged).unwrap(),
                            "{case}"
                        );
                    }
                    // Whatever builds must be a clean file system (each distinct image
                    // checked once).
                    if checked.insert(img.clone()) {
                        common::e2fsck_clean_bytes(&img);
                    }
                }
            }
        }
    }
    eprintln!(
        "verdicts: {tally:?}, {} distinct images checked",
        checked.len()
    );
    assert_eq!(cases, 2000);
    // Each verdict was reached many times, so none of the arms above is dead.
    for v in [Verdict::Builds, Verdict::Refused] {
        assert!(tally.get(&v).copied().unwrap_or(0) >= 100, "{tally:?}");
    }
    assert!(!checked.is_empty(), "{tally:?}");
}
