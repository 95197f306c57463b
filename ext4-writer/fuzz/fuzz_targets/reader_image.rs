//! Any bytes as an ext4 image: the Reader must return an error or a tar, never panic, and
//! never allocate by what the image claims. Output is capped because a corrupt size can
//! describe a huge sparse file, which is a valid thing to export.
//!
//! An input that is a `testkit::fileset` is read as its first file without expanding it:
//! an image is mostly zeros around its metadata, and the custom mutator then changes the
//! metadata (superblock, descriptors, inode tables, directories, extent and xattr blocks)
//! rather than the zeros. The Reader verifies no checksums, so none is resealed. Any other
//! input is the image itself, mutated byte by byte.
#![no_main]

use std::io::{Cursor, Read, Seek, Write};

use ext4_writer::{ReadOptions, Reader, WhiteoutsOut};
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};
use testkit::fileset::{self, FileSet, Rng};
// Links the capped allocator.
use fuzz_support as _;

struct Capped(usize);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        if self.0 > 64 << 20 {
            return Err(std::io::Error::other("output cap"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_all<R: Read + Seek>(open: impl Fn() -> R) {
    for whiteouts in [WhiteoutsOut::Keep, WhiteoutsOut::Oci] {
        if let Ok(mut r) = Reader::open(open()) {
            let _ = r.write_tar(Capped(0), ReadOptions { whiteouts });
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match FileSet::decode(data) {
        Some(set) => {
            if let Some(image) = set.files.first() {
                read_all(|| image.reader());
            }
        }
        None => read_all(|| Cursor::new(data)),
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let Some(mut set) = FileSet::decode(&data[..size]) else {
        return fuzzer_mutate(data, size, max_size);
    };
    let slack = max_size.saturating_sub(size);
    let mutated = fileset::mutate(&mut set, &mut Rng::new(seed), |bytes| {
        let len = bytes.len();
        let room = len + slack.min(4096);
        bytes.resize(room, 0);
        let n = fuzzer_mutate(bytes, len, room);
        bytes.truncate(n);
    });
    let out = set.encode();
    if !mutated || out.len() > max_size {
        return fuzzer_mutate(data, size, max_size);
    }
    data[..out.len()].copy_from_slice(&out);
    out.len()
});
