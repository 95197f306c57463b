//! Sparse files keep their holes: archives GNU tar wrote with `--sparse` in each of its
//! encodings reach the writer as data segments (the entry stream's `Kind::File::sparse`),
//! and the directory writer writes those segments only, so a gibibyte of holes costs
//! nothing on disk and reads back as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};

use storage_core::{Error, Op};
use tar_engine::{
    ApplyOptions, Entry, EntrySink, IngestOptions, Kind, Ownership, Segment, WhiteoutMode, Written,
    apply_tar, ingest,
};
use testkit::sparse::{self, Encoding};
use testkit::{Requirement, require};

const GIB: u64 = 1 << 30;

/// A [`sparse::sample_tree`] and its archives.
struct Source {
    dir: tempfile::TempDir,
}

impl Source {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        sparse::sample_tree(&dir.path().join("src"));
        Source { dir }
    }

    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    /// The tree archived by GNU tar in `encoding`.
    fn archive(&self, encoding: Encoding) -> PathBuf {
        let out = self.dir.path().join(format!("{encoding:?}.tar"));
        sparse::gnu_tar(&self.src(), &sparse::SAMPLE, encoding, &out);
        // Small: the holes are not in the archive.
        assert!(
            std::fs::metadata(&out).unwrap().len() < 1 << 20,
            "{encoding:?}"
        );
        out
    }
}

fn needs_gnu_tar(test: &str) -> bool {
    require(test, &[Requirement::Command("tar")])
}

/// What the entry stream handed over for one file.
#[derive(Debug)]
struct Seen {
    kind: Kind,
    /// The data handed with it, as read.
    data: Vec<u8>,
}

#[derive(Default)]
struct Record(Vec<(Vec<u8>, Seen)>);

impl EntrySink for Record {
    type Error = Error;

    fn create(
        &mut self,
        e: &Entry,
        data: &mut dyn Read,
        _: &Written,
    ) -> storage_core::Result<bool> {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).unwrap();
        self.0.push((
            e.path.clone(),
            Seen {
                kind: e.kind.clone(),
                data: bytes,
            },
        ));
        Ok(true)
    }

    fn whiteout(&mut self, _: &Entry, _: &Written) -> storage_core::Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> storage_core::Result<()> {
        Ok(())
    }
}

/// The bytes of `path` in [at, at + len).
fn read_at(path: &Path, at: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(path).unwrap(), &mut buf, at)
        .unwrap();
    buf
}

#[test]
fn the_entry_stream_hands_over_a_sparse_files_segments_in_every_gnu_encoding() {
    if !needs_gnu_tar("the_entry_stream_hands_over_a_sparse_files_segments_in_every_gnu_encoding") {
        return;
    }
    let source = Source::new();
    for encoding in Encoding::ALL {
        let tar = std::fs::File::open(source.archive(encoding)).unwrap();
        let mut seen = Record::default();
        ingest(&Op::new("test"), tar, IngestOptions::default(), &mut seen).unwrap();
        let names: Vec<&[u8]> = seen.0.iter().map(|(p, _)| p.as_slice()).collect();
        assert_eq!(names, [&b"big"[..], b"many", b"after"], "{encoding:?}");
        for (name, size, segments_at_least) in [("big", GIB, 3), ("many", 64 << 20, 30)] {
            let s = &seen.0.iter().find(|(p, _)| p == name.as_bytes()).unwrap().1;
            let Kind::File {
                size: got,
                sparse: Some(map),
            } = &s.kind
            else {
                panic!("{encoding:?} {name}: {:?}", s.kind);
            };
            assert_eq!(*got, size, "{encoding:?} {name}");
            assert!(
                map.len() >= segments_at_least,
                "{encoding:?} {name}: {map:?}"
            );
            // The data handed over is the segments' bytes, and they are the file's.
            assert_eq!(
                s.data.len() as u64,
                map.iter().map(|s| s.len).sum::<u64>(),
                "{encoding:?} {name}"
            );
            let mut from = 0usize;
            for Segment { offset, len } in map {
                let len = *len as usize;
                assert_eq!(
                    s.data[from..from + len],
                    read_at(&source.src().join(name), *offset, len),
                    "{encoding:?} {name} at {offset}"
                );
                from += len;
            }
        }
        let after = &seen.0[2].1;
        assert_eq!(
            after.kind,
            Kind::File {
                size: sparse::AFTER.len() as u64,
                sparse: None
            }
        );
        assert_eq!(after.data, sparse::AFTER);
    }
}

fn apply(target: &Path, tar: impl Read + Send) -> storage_core::Result<()> {
    let mut opts = ApplyOptions::new(WhiteoutMode::Delete);
    opts.sync = false;
    opts.ownership = Ownership::Caller;
    apply_tar(&Op::new("test"), target, tar, &opts).map(|_| ())
}

#[test]
fn the_directory_writer_keeps_the_holes_of_gnu_tar_sparse_archives() {
    if !needs_gnu_tar("the_directory_writer_keeps_the_holes_of_gnu_tar_sparse_archives") {
        return;
    }
    let source = Source::new();
    for encoding in Encoding::ALL {
        let target = source.dir.path().join(format!("out-{encoding:?}"));
        std::fs::create_dir(&target).unwrap();
        apply(
            &target,
            std::fs::File::open(source.archive(encoding)).unwrap(),
        )
        .unwrap();
        for name in sparse::SAMPLE {
            let (want, got) = (source.src().join(name), target.join(name));
            assert_eq!(
                std::fs::metadata(&got).unwrap().len(),
                std::fs::metadata(&want).unwrap().len(),
                "{encoding:?} {name}"
            );
            // Holes stay holes: what the source has allocated, and room for metadata.
            assert!(
                sparse::allocated(&got) <= sparse::allocated(&want) + (64 << 10),
                "{encoding:?} {name}: {} bytes allocated, the source has {}",
                sparse::allocated(&got),
                sparse::allocated(&want)
            );
            assert!(
                sparse::same_bytes(
                    std::fs::File::open(&want).unwrap(),
                    std::fs::File::open(&got).unwrap()
                ),
                "{encoding:?} {name}: content differs"
            );
        }
        std::fs::remove_dir_all(&target).unwrap();
    }
}

#[test]
fn a_sparse_archive_cut_inside_its_data_is_refused() {
    if !needs_gnu_tar("a_sparse_archive_cut_inside_its_data_is_refused") {
        return;
    }
    let source = Source::new();
    for encoding in Encoding::ALL {
        let tar = std::fs::read(source.archive(encoding)).unwrap();
        // Inside `big`'s stored data: past its headers, before `many`.
        let cut = tar.windows(6).position(|w| w == b"middle").unwrap();
        let target = source.dir.path().join(format!("cut-{encoding:?}"));
        std::fs::create_dir(&target).unwrap();
        let err = apply(&target, &tar[..cut]).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArchive { .. }),
            "{encoding:?}: {err}"
        );
    }
}

/// An old GNU sparse entry of `size` bytes holding `data` at `at`, by hand.
fn old_gnu_entry(name: &str, size: u64, at: u64, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(data.len() as u64);
    let g = h.as_gnu_mut().unwrap();
    g.sparse[0].set_offset(at);
    g.sparse[0].set_length(data.len() as u64);
    // A map that ends in a hole ends with an empty segment at the size, as GNU tar's do.
    g.sparse[1].set_offset(size);
    g.sparse[1].set_length(0);
    g.set_real_size(size);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

#[test]
fn a_tebibyte_sparse_file_of_one_block_costs_one_block() {
    // Written dense, this would be a tebibyte of zeros; as holes it is one block and a
    // size, and takes no time.
    let dir = tempfile::tempdir().unwrap();
    let mut tar = old_gnu_entry("huge", 1 << 40, (1 << 39) + 512, &[7u8; 512]);
    tar.extend_from_slice(&[0u8; 1024]);
    let started = std::time::Instant::now();
    apply(dir.path(), &tar[..]).unwrap();
    let huge = dir.path().join("huge");
    assert_eq!(std::fs::metadata(&huge).unwrap().len(), 1 << 40);
    assert!(
        sparse::allocated(&huge) <= 64 << 10,
        "{}",
        sparse::allocated(&huge)
    );
    assert_eq!(read_at(&huge, (1 << 39) + 512, 512), vec![7u8; 512]);
    assert_eq!(read_at(&huge, 1 << 39, 512), vec![0u8; 512]);
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}

#[test]
fn pax_sparse_maps_that_do_not_fit_their_data_are_refused() {
    use testkit::tarball::{Kind as TarKind, Tarball};
    /// What is wrong, the PAX records, and the bytes of data stored.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a [u8])], usize);
    let cases: [Case<'_>; 5] = [
        (
            "segments past the size",
            &[("GNU.sparse.size", b"100"), ("GNU.sparse.map", b"0,512")],
            512,
        ),
        (
            "segments overlapping",
            &[
                ("GNU.sparse.size", b"4096"),
                ("GNU.sparse.map", b"0,1024,512,512"),
            ],
            1536,
        ),
        (
            "more data than mapped",
            &[("GNU.sparse.size", b"4096"), ("GNU.sparse.map", b"0,512")],
            1024,
        ),
        (
            "an odd map",
            &[("GNU.sparse.size", b"4096"), ("GNU.sparse.map", b"0,512,9")],
            512,
        ),
        ("no size", &[("GNU.sparse.map", b"0,512")], 512),
    ];
    for (what, pax, stored) in cases {
        let mut t = Tarball::new();
        t.entry(TarKind::File(vec![1u8; stored]), b"f", pax);
        let dir = tempfile::tempdir().unwrap();
        let err = apply(dir.path(), &t.finish()[..]).unwrap_err();
        assert!(matches!(err, Error::InvalidArchive { .. }), "{what}: {err}");
    }
    // A version GNU tar never wrote is unsupported, not misread.
    let mut t = Tarball::new();
    t.entry(
        TarKind::File(vec![1u8; 512]),
        b"f",
        &[
            ("GNU.sparse.major", b"2"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.realsize", b"512"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let err = apply(dir.path(), &t.finish()[..]).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}

#[test]
fn sparse_files_the_filter_leaves_out_are_passed_over_and_what_follows_is_read() {
    if !needs_gnu_tar("sparse_files_the_filter_leaves_out_are_passed_over_and_what_follows_is_read")
    {
        return;
    }
    let source = Source::new();
    let mut filter = storage_core::FilterSpec::default();
    filter.exclusions.insert("big".into());
    filter.exclusions.insert("many".into());
    for encoding in Encoding::ALL {
        let tar = std::fs::File::open(source.archive(encoding)).unwrap();
        let mut seen = Record::default();
        let opts = IngestOptions {
            filter: Some(&filter),
            ..IngestOptions::default()
        };
        let report = ingest(&Op::new("test"), tar, opts, &mut seen).unwrap();
        assert_eq!(report.skipped, 2, "{encoding:?}");
        assert_eq!(seen.0.len(), 1, "{encoding:?}");
        assert_eq!(seen.0[0].0, b"after");
        assert_eq!(seen.0[0].1.data, sparse::AFTER);
    }
}
