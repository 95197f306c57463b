//! A corpus of hand-broken images of every format: opening, reading and writing them gives
//! errors, never panics, and never allocates beyond what the file justifies (the process
//! runs under an address-space limit, so a huge allocation aborts the test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use disk_image::vhd::footer::Footer;
use disk_image::vhd::header::DynamicHeader;
use disk_image::vhdx::header::{HEADER_OFFSETS, Header};
use disk_image::{Format, create, create_child, open, open_chain};
use zerocopy::{FromBytes, IntoBytes};

const SIZE: u64 = 4 << 20;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Opens, reads and writes `path` every way a caller might. Any result is fine; a panic
/// or an abort is not.
fn exercise(path: &Path) {
    for chain in [false, true] {
        let opened = if chain {
            open_chain(path, true)
        } else {
            open(path, true)
        };
        if let Ok(disk) = opened {
            let size = disk.size();
            let _ = disk.allocated_ranges();
            let n = size.min(1 << 20) as usize;
            let mut buf = vec![0u8; n];
            let _ = disk.read_at(&mut buf, 0);
            let _ = disk.read_at(&mut buf, size - n as u64);
        }
    }
    if let Ok(mut disk) = open(path, false) {
        let size = disk.size();
        if size >= 8192 {
            let _ = disk.write_at(&[0xa5; 5000], size / 2 - 100);
            let _ = disk.write_at(&[0x5a; 512], 0);
        }
        let _ = disk.flush();
    }
}

fn valid_images(dir: &Path) -> Vec<(Format, PathBuf)> {
    let mut out = Vec::new();
    for (i, format) in [
        Format::VmdkSparse,
        Format::VmdkStream,
        Format::VmdkFlat,
        Format::VhdFixed,
        Format::VhdDynamic,
        Format::Vhdx,
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.join(format!("base{i}.img"));
        let mut d = create(&path, format, SIZE).unwrap();
        d.write_at(&pattern(300_000, i as u8), 100_000).unwrap();
        d.flush().unwrap();
        drop(d);
        out.push((format, path.clone()));
        if matches!(
            format,
            Format::VmdkSparse | Format::VhdDynamic | Format::Vhdx
        ) {
            let child = dir.join(format!("child{i}.img"));
            let mut c = create_child(&child, &path).unwrap();
            c.write_at(&pattern(70_000, 50 + i as u8), 1_000_001)
                .unwrap();
            c.flush().unwrap();
            drop(c);
            out.push((c_format(format), child));
        }
    }
    out
}

fn c_format(base: Format) -> Format {
    match base {
        Format::VhdDynamic => Format::VhdDifferencing,
        Format::Vhdx => Format::VhdxDifferencing,
        other => other,
    }
}

/// Rewrites the structure at `at` of `len` bytes through `edit`, then reseals it with
/// `seal` (so the checksum passes and the parser's later checks are reached).
fn edit_sealed(
    path: &Path,
    at: u64,
    len: usize,
    edit: &mut dyn FnMut(&mut [u8]),
    seal: fn(&mut [u8]),
) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, at).unwrap();
    edit(&mut buf);
    seal(&mut buf);
    f.write_all_at(&buf, at).unwrap();
}

fn seal_footer(b: &mut [u8]) {
    let mut f = Footer::read_from_bytes(b).unwrap();
    f.seal();
    b.copy_from_slice(f.as_bytes());
}

fn seal_dynamic(b: &mut [u8]) {
    let mut h = DynamicHeader::read_from_bytes(b).unwrap();
    h.seal();
    b.copy_from_slice(h.as_bytes());
}

fn seal_vhdx_header(b: &mut [u8]) {
    let mut h = Header::read_from_bytes(b).unwrap();
    h.seal();
    b.copy_from_slice(h.as_bytes());
}

fn no_seal(_: &mut [u8]) {}

/// Sealed structures (offset, length, sealer) of an image, to mutate past their checksums.
/// A structure to mutate: file offset, length, and how to reseal it.
type Sealed = (u64, usize, fn(&mut [u8]));

fn structures(format: Format, len: u64) -> Vec<Sealed> {
    match format {
        Format::VhdFixed => vec![(len - 512, 512, seal_footer)],
        Format::VhdDynamic | Format::VhdDifferencing => vec![
            (0, 512, seal_footer),
            (len - 512, 512, seal_footer),
            (512, 1024, seal_dynamic),
        ],
        Format::Vhdx | Format::VhdxDifferencing => vec![
            (HEADER_OFFSETS[0], 4096, seal_vhdx_header),
            (HEADER_OFFSETS[1], 4096, seal_vhdx_header),
            // Metadata region items (no checksum of their own).
            (2 << 20, 65536 + 4096, no_seal),
        ],
        _ => vec![(0, 512, no_seal), (512, 1024, no_seal)],
    }
}

#[test]
fn hand_broken_images_give_errors_not_panics_or_huge_allocations() {
    use nix::sys::resource::{Resource, setrlimit};
    // Far above what these small files justify, far below a runaway allocation.
    setrlimit(Resource::RLIMIT_AS, 6 << 30, 6 << 30).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = valid_images(dir.path());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let values: [u64; 8] = [0, 1, 0x7f, 0xff, 0xffff, 0xffff_ffff, 1 << 40, u64::MAX];
    for (format, path) in &images {
        let original = std::fs::read(path).unwrap();
        let len = original.len() as u64;
        let restore = || std::fs::write(path, &original).unwrap();

        // Truncated anywhere.
        for cut in [
            0,
            1,
            100,
            511,
            512,
            1024,
            1536,
            65536,
            200_000,
            1 << 20,
            (2 << 20) + 7,
            len.saturating_sub(1),
            len.saturating_sub(512),
            len.saturating_sub(1536),
        ] {
            if cut < len {
                std::fs::write(path, &original[..cut as usize]).unwrap();
                exercise(path);
            }
        }
        restore();

        // Random bytes and smashed fields in the first 4 MiB (headers, tables, metadata).
        for _ in 0..150 {
            let at = rng.below(len.min(4 << 20));
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            if rng.below(2) == 0 {
                f.write_all_at(&[rng.next() as u8], at).unwrap();
            } else {
                let v = values[rng.below(8) as usize];
                f.write_all_at(&v.to_le_bytes(), at & !3).unwrap();
            }
            drop(f);
            exercise(path);
            restore();
        }

        // Fields smashed inside checksummed structures, then resealed.
        for (at, size, seal) in structures(*format, len)
            .into_iter()
            .filter(|s| s.0 + s.1 as u64 <= len)
        {
            for _ in 0..60 {
                let pos = rng.below(size as u64 - 8) as usize & !3;
                let v = values[rng.below(8) as usize];
                let be = rng.below(2) == 0;
                edit_sealed(
                    path,
                    at,
                    size,
                    &mut |b: &mut [u8]| {
                        let bytes = if be { v.to_be_bytes() } else { v.to_le_bytes() };
                        let w = if rng_width(pos) { 8 } else { 4 };
                        b[pos..pos + w].copy_from_slice(&bytes[8 - w..]);
                    },
                    seal,
                );
                exercise(path);
                restore();
            }
        }
        // The untouched image still works.
        assert_eq!(open_chain(path, true).unwrap().size(), SIZE, "{format}");
    }
}

fn rng_width(pos: usize) -> bool {
    pos.is_multiple_of(8)
}
