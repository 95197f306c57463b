//! A corpus of hand-broken images of every format, each case checked for its outcome:
//! - a truncated image is refused as corrupt, or reads what the cut left (the rule per
//!   format is [`after_cut`]);
//! - damage to one of two copies (a VHD footer, a VHDX header or region table) is repaired
//!   from the other: the disk reads as before;
//! - random damage is refused with a kind meant for damaged images, or opens and then
//!   reads and writes (a write reading back as written) or is refused the same way; it
//!   never panics and never allocates beyond what the file justifies (the process runs
//!   under an address-space limit, so a huge allocation aborts the test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use disk_image::vhd::footer::Footer;
use disk_image::vhd::header::DynamicHeader;
use disk_image::vhdx::header::{HEADER_OFFSETS, Header};
use disk_image::vhdx::header::{REGION_TABLE_OFFSETS, REGION_TABLE_SIZE, Regions};
use disk_image::{ErrorKind, Format, create, create_child, open_as, open_chain};
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

/// Kinds a damaged image may be refused with, on opening, reading or writing it.
const DAMAGED: [ErrorKind; 4] = [
    ErrorKind::Corrupt,
    ErrorKind::Unsupported,
    ErrorKind::ParentMissing,
    ErrorKind::ParentMismatch,
];

/// Whether `e` is an acceptable refusal of a damaged image of `format`: one of
/// [`DAMAGED`], or, for a flat VMDK whose descriptor now names another extent file, that
/// file not being found.
fn refusal(format: Format, e: &disk_image::Error) -> bool {
    DAMAGED.contains(&e.kind())
        || (format == Format::VmdkFlat
            && e.kind() == ErrorKind::Io
            && std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound))
}

/// How the damaged images of one format fared.
#[derive(Debug, Default)]
struct Tally {
    /// Damaged images exercised.
    cases: usize,
    /// Openings refused (with an acceptable kind).
    refused: usize,
    /// Openings that succeeded.
    opened: usize,
}

/// Opens, reads and writes the damaged image `path` of `format` every way a caller might,
/// and checks each outcome: an opening, read, write or flush either succeeds or is refused
/// with a kind [`refusal`] accepts (never `OutOfRange`, `InvalidArgument` or a stray I/O
/// error for an access inside the disk), and a write that succeeds reads back as written.
/// A panic or an abort fails the test too.
fn exercise(format: Format, path: &Path, tally: &mut Tally) {
    tally.cases += 1;
    let what = |how: &str| format!("{how} of damaged {format} {}", path.display());
    for chain in [false, true] {
        let opened = if chain {
            open_chain(path, true)
        } else {
            open_as(path, format, true)
        };
        let disk = match opened {
            Ok(disk) => disk,
            Err(e) => {
                assert!(refusal(format, &e), "{}: {e}", what("opening"));
                tally.refused += 1;
                continue;
            }
        };
        tally.opened += 1;
        if let Err(e) = disk.allocated_ranges() {
            assert!(refusal(format, &e), "{}: {e}", what("listing ranges"));
        }
        let size = disk.size();
        let n = size.min(1 << 20) as usize;
        let mut buf = vec![0u8; n];
        for at in [0, size - n as u64] {
            if let Err(e) = disk.read_at(&mut buf, at) {
                assert!(refusal(format, &e), "{}: {e}", what("a read"));
            }
        }
    }
    let Ok(mut disk) = open_as(path, format, false) else {
        return;
    };
    let size = disk.size();
    if size >= 8192 {
        for (data, at) in [(vec![0xa5; 5000], size / 2 - 100), (vec![0x5a; 512], 0)] {
            match disk.write_at(&data, at) {
                Ok(()) => {
                    let mut back = vec![0u8; data.len()];
                    match disk.read_at(&mut back, at) {
                        Ok(()) => {
                            assert!(back == data, "{}: reads back otherwise", what("a write"))
                        }
                        Err(e) => assert!(refusal(format, &e), "{}: {e}", what("a read back")),
                    }
                }
                Err(e) => assert!(refusal(format, &e), "{}: {e}", what("a write")),
            }
        }
    }
    if let Err(e) = disk.flush() {
        assert!(refusal(format, &e), "{}: {e}", what("a flush"));
    }
}

/// The whole virtual disk of the chain topped by `path`, opened as `format` (so damage is
/// never taken for another format, or for a raw disk, by detection).
fn content(format: Format, path: &Path) -> disk_image::Result<Vec<u8>> {
    let mut disk = open_as(path, format, true)?;
    if let Some(link) = disk.parent_link() {
        let parent = disk_image::chain::locate_parent(path, &link.hints)?;
        disk.set_parent(open_chain(&parent, true)?)?;
    }
    let mut all = vec![0u8; disk.size() as usize];
    disk.read_at(&mut all, 0)?;
    Ok(all)
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

/// What a truncated image must give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterCut {
    /// Opening the chain fails with this kind.
    Refused(ErrorKind),
    /// It opens and reads exactly what it did before (the cut took nothing it needs).
    ReadsOriginal,
    /// It opens and reads what its "twin" reads: the whole image with every byte past the
    /// cut zeroed (and a VHD's trailing footer kept). Data that was cut off reads as zeros,
    /// everything else as before.
    ReadsZeroedTwin,
}

/// A sparse VMDK grain of the images here (128 sectors).
const GRAIN: u64 = 64 << 10;

/// What cutting the image `original` of `format` to `cut` bytes must give, from where the
/// format keeps what a reader needs.
fn after_cut(format: Format, original: &[u8], cut: u64) -> AfterCut {
    let len = original.len() as u64;
    match format {
        // The footer (the stream VMDK's footer and end-of-stream marker) is at the end of
        // the file, with no copy elsewhere.
        Format::VhdFixed | Format::VmdkStream => AfterCut::Refused(ErrorKind::Corrupt),
        // A text descriptor: only the final newline can go.
        Format::VmdkFlat if cut + 1 == len => AfterCut::ReadsOriginal,
        Format::VmdkFlat => AfterCut::Refused(ErrorKind::Corrupt),
        // Grain tables point into the file, and a grain that starts past the end refuses
        // the image. These images end with their last grain, so a cut inside it leaves
        // every grain's start in the file.
        Format::VmdkSparse if cut >= len - GRAIN => AfterCut::ReadsZeroedTwin,
        Format::VmdkSparse => AfterCut::Refused(ErrorKind::Corrupt),
        // The footer has a copy at offset 0; the dynamic header and the BAT must be whole;
        // blocks are read as far as the file goes.
        Format::VhdDynamic | Format::VhdDifferencing => {
            let header = DynamicHeader::read_from_bytes(&original[512..1536]).unwrap();
            let bat_end = (header.table_offset.get()
                + 4 * u64::from(header.max_table_entries.get()))
            .next_multiple_of(512);
            if cut >= bat_end {
                AfterCut::ReadsZeroedTwin
            } else {
                AfterCut::Refused(ErrorKind::Corrupt)
            }
        }
        // Headers, log, region tables, metadata and BAT must lie in the file; payload
        // blocks are read as far as the file goes.
        Format::Vhdx | Format::VhdxDifferencing => {
            let at = REGION_TABLE_OFFSETS[0];
            let table = &original[at as usize..at as usize + REGION_TABLE_SIZE];
            let regions = Regions::parse(table, Path::new("original"), at, len).unwrap();
            let end = [regions.bat, regions.metadata]
                .iter()
                .map(|&(offset, length)| offset + u64::from(length))
                .max()
                .unwrap();
            if cut >= end {
                AfterCut::ReadsZeroedTwin
            } else {
                AfterCut::Refused(ErrorKind::Corrupt)
            }
        }
        other => panic!("no truncation rule for {other}"),
    }
}

#[test]
fn truncated_images_are_refused_or_read_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let images = valid_images(dir.path());
    let mut checked = std::collections::BTreeMap::<(String, &str), usize>::new();
    for (format, path) in &images {
        let original = std::fs::read(path).unwrap();
        let len = original.len() as u64;
        let before = content(*format, path).unwrap();
        let twin = path.with_extension("twin");
        let footer = match format {
            Format::VhdDynamic | Format::VhdDifferencing => 512,
            _ => 0,
        };
        let mut cuts = vec![
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
            len - 1,
            len.saturating_sub(512),
            len.saturating_sub(1536),
        ];
        cuts.retain(|&c| c < len);
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts {
            std::fs::write(path, &original[..cut as usize]).unwrap();
            let expect = after_cut(*format, &original, cut);
            let got = content(*format, path);
            let case = format!("{format} {} cut to {cut} of {len} bytes", path.display());
            match expect {
                AfterCut::Refused(kind) => match got {
                    Err(e) => assert_eq!(e.kind(), kind, "{case}: {e}"),
                    Ok(_) => panic!("{case}: opened, expected {kind:?}"),
                },
                AfterCut::ReadsOriginal => {
                    assert!(got.unwrap() == before, "{case}: reads otherwise");
                }
                AfterCut::ReadsZeroedTwin => {
                    let mut zeroed = original.clone();
                    zeroed[cut as usize..(len - footer).max(cut) as usize].fill(0);
                    std::fs::write(&twin, &zeroed).unwrap();
                    let want = content(*format, &twin).unwrap();
                    let got = got.unwrap_or_else(|e| panic!("{case}: {e}"));
                    assert!(got == want, "{case}: does not read as its zeroed twin");
                }
            }
            let label = match expect {
                AfterCut::Refused(_) => "refused",
                AfterCut::ReadsOriginal => "reads the original",
                AfterCut::ReadsZeroedTwin => "reads the zeroed twin",
            };
            *checked.entry((format.to_string(), label)).or_default() += 1;
        }
        std::fs::write(path, &original).unwrap();
        assert!(
            content(*format, path).unwrap() == before,
            "{format}: restored"
        );
    }
    // Every format was cut both ways where it has both: one cut it survives, one it does
    // not (a stream VMDK and a fixed VHD survive none; a flat VMDK only the lost newline).
    let n = |f: Format, label| checked.get(&(f.to_string(), label)).copied().unwrap_or(0);
    for f in [
        Format::VmdkSparse,
        Format::VhdDynamic,
        Format::VhdDifferencing,
        Format::Vhdx,
        Format::VhdxDifferencing,
    ] {
        assert!(
            n(f, "refused") >= 3 && n(f, "reads the zeroed twin") >= 3,
            "{f}: {checked:?}"
        );
    }
    assert!(n(Format::VmdkStream, "refused") >= 10, "{checked:?}");
    assert!(n(Format::VhdFixed, "refused") >= 10, "{checked:?}");
    assert_eq!(n(Format::VmdkFlat, "reads the original"), 1, "{checked:?}");
    assert!(n(Format::VmdkFlat, "refused") >= 3, "{checked:?}");
}

/// Overwrites `len` bytes at `at` with 0xff (breaking a checksum or a magic number).
fn smash(path: &Path, at: u64, len: usize) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![0xff; len], at).unwrap();
}

#[test]
fn damage_to_one_of_two_copies_is_repaired_from_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let images = valid_images(dir.path());
    let mut repaired = 0;
    for (format, path) in &images {
        let original = std::fs::read(path).unwrap();
        let len = original.len() as u64;
        let before = content(*format, path).unwrap();
        // Each damage leaves one good copy of what it hits.
        let damages: Vec<(&str, u64, usize)> = match format {
            Format::VhdDynamic | Format::VhdDifferencing => vec![
                ("the trailing footer", len - 512, 16),
                ("the footer copy at 0", 0, 16),
            ],
            Format::Vhdx | Format::VhdxDifferencing => vec![
                ("the first header", HEADER_OFFSETS[0], 8),
                ("the second header", HEADER_OFFSETS[1], 8),
                ("the first region table", REGION_TABLE_OFFSETS[0], 8),
                ("the second region table", REGION_TABLE_OFFSETS[1], 8),
            ],
            _ => continue,
        };
        for (what, at, n) in damages {
            smash(path, at, n);
            let got = content(*format, path)
                .unwrap_or_else(|e| panic!("{format} with {what} broken: {e}"));
            assert!(got == before, "{format} with {what} broken reads otherwise");
            repaired += 1;
            std::fs::write(path, &original).unwrap();
        }
    }
    // Two VHDs (base and child) with two footers, two VHDXs with two headers and tables.
    assert_eq!(repaired, 2 * 2 + 2 * 4);
}

#[test]
fn randomly_damaged_images_are_refused_as_damaged_or_read_and_written_back_never_overallocating() {
    use nix::sys::resource::{Resource, setrlimit};
    // Far above what these small files justify, far below a runaway allocation.
    setrlimit(Resource::RLIMIT_AS, 6 << 30, 6 << 30).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = valid_images(dir.path());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let values: [u64; 8] = [0, 1, 0x7f, 0xff, 0xffff, 0xffff_ffff, 1 << 40, u64::MAX];
    let mut total = Tally::default();
    let mut planned = 0;
    for (format, path) in &images {
        let original = std::fs::read(path).unwrap();
        let len = original.len() as u64;
        let restore = || std::fs::write(path, &original).unwrap();
        let mut tally = Tally::default();

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
            exercise(*format, path, &mut tally);
            restore();
        }
        planned += 150;

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
                exercise(*format, path, &mut tally);
                restore();
            }
            planned += 60;
        }
        // The untouched image still works.
        assert_eq!(open_chain(path, true).unwrap().size(), SIZE, "{format}");
        eprintln!("{format} {}: {tally:?}", path.display());
        total.cases += tally.cases;
        total.refused += tally.refused;
        total.opened += tally.opened;
    }
    // Every planned case ran, and both outcomes were met: some damage is refused, some
    // opens (and was then read and written under the checks above).
    assert_eq!(total.cases, planned, "{total:?}");
    assert!(planned >= 11 * 150, "{planned}");
    assert!(total.refused > 0 && total.opened > 0, "{total:?}");
}

fn rng_width(pos: usize) -> bool {
    pos.is_multiple_of(8)
}
