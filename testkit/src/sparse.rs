//! Sparse files, and the archives GNU tar makes of them in each of its sparse encodings,
//! for the writers' tests: a small archive of a large, mostly empty file must import with
//! its holes kept.
//!
//! ```no_run
//! use testkit::sparse::{self, Encoding};
//! let dir = tempfile::tempdir().unwrap();
//! let src = dir.path().join("src");
//! std::fs::create_dir(&src).unwrap();
//! sparse::make(&src.join("big"), 1 << 30, &[(0, b"head"), ((1 << 30) - 4, b"tail")]);
//! let tar = dir.path().join("big.tar");
//! sparse::gnu_tar(&src, &["big"], Encoding::OldGnu, &tar);
//! assert!(std::fs::metadata(&tar).unwrap().len() < 64 << 10);
//! ```

use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

/// How GNU tar encodes a sparse file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `--format=gnu`: entry type `S`, the map in the header and extension headers.
    OldGnu,
    /// `--format=posix --sparse-version=0.0`: `GNU.sparse.offset`/`numbytes` records.
    Pax00,
    /// `--format=posix --sparse-version=0.1`: one `GNU.sparse.map` record.
    Pax01,
    /// `--format=posix --sparse-version=1.0`: the map at the start of the data.
    Pax10,
}

impl Encoding {
    /// Every encoding.
    pub const ALL: [Encoding; 4] = [
        Encoding::OldGnu,
        Encoding::Pax00,
        Encoding::Pax01,
        Encoding::Pax10,
    ];

    fn args(self) -> &'static [&'static str] {
        match self {
            Encoding::OldGnu => &["--format=gnu"],
            Encoding::Pax00 => &["--format=posix", "--sparse-version=0.0"],
            Encoding::Pax01 => &["--format=posix", "--sparse-version=0.1"],
            Encoding::Pax10 => &["--format=posix", "--sparse-version=1.0"],
        }
    }
}

/// The files [`sample_tree`] makes, in the order to archive them.
pub const SAMPLE: [&str; 3] = ["big", "many", "after"];

/// What `after`, the plain file of [`sample_tree`], holds.
pub const AFTER: &[u8] = b"after the sparse files\n";

/// Makes in `dir`: `big`, 1 GiB (a 4 KiB head, 6 bytes at 300 MiB + 123, a 4 KiB tail);
/// `many`, 64 MiB (30 blocks of 4 KiB 2 MiB apart, more than an old GNU header's four map
/// slots, and a hole at the end); and `after`, a plain file that must still be read
/// right after them.
pub fn sample_tree(dir: &Path) {
    let head: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 + 1).collect();
    make(
        &dir.join("big"),
        1 << 30,
        &[
            (0, &head),
            (300 * (1 << 20) + 123, b"middle"),
            ((1 << 30) - 4096, &head),
        ],
    );
    let blocks: Vec<(u64, Vec<u8>)> = (0..30u64)
        .map(|i| (i * (2 << 20), vec![i as u8 + 1; 4096]))
        .collect();
    let refs: Vec<(u64, &[u8])> = blocks.iter().map(|(at, d)| (*at, d.as_slice())).collect();
    make(&dir.join("many"), 64 << 20, &refs);
    std::fs::write(dir.join("after"), AFTER).expect("write a plain file");
}

/// Creates `path` as a file of `size` bytes holding `data` (offset, bytes) and holes
/// elsewhere.
pub fn make(path: &Path, size: u64, data: &[(u64, &[u8])]) {
    let f = std::fs::File::create(path).expect("create a sparse file");
    f.set_len(size).expect("size a sparse file");
    for (at, bytes) in data {
        f.write_all_at(bytes, *at)
            .expect("write into a sparse file");
    }
}

/// Archives `names` (relative to `dir`) with GNU tar's `--sparse` into `out`. Panics when
/// `tar` is not GNU tar.
pub fn gnu_tar(dir: &Path, names: &[&str], encoding: Encoding, out: &Path) {
    let version = Command::new("tar")
        .arg("--version")
        .output()
        .expect("run tar --version");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("GNU tar"),
        "tar is not GNU tar"
    );
    let status = Command::new("tar")
        .arg("--sparse")
        .args(encoding.args())
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .args(names)
        .status()
        .expect("run tar");
    assert!(status.success(), "tar {encoding:?} failed: {status}");
}

/// Bytes the file system allocated to `path` (`st_blocks` × 512).
pub fn allocated(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .expect("stat a file")
        .blocks()
        * 512
}

/// Whether the readers `a` and `b` yield the same bytes, read to their ends in 1 MiB chunks
/// (so a gibibyte of holes is compared without holding it).
pub fn same_bytes(mut a: impl Read, mut b: impl Read) -> bool {
    let mut x = vec![0u8; 1 << 20];
    let mut y = vec![0u8; 1 << 20];
    loop {
        let n = read_full(&mut a, &mut x);
        let m = read_full(&mut b, &mut y);
        if n != m || x[..n] != y[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

/// Fills `buf` as far as `r` goes; the count read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).expect("read for a comparison") {
            0 => break,
            k => n += k,
        }
    }
    n
}
