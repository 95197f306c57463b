//! Whole images of one or more files (a flat VMDK and its extents, a child and its
//! parents), as a `testkit::fileset` of sparse files: written into a directory, and the
//! first one exercised like `open_image` does.
//!
//! The custom mutator keeps the set well-formed, mutates mostly the bytes that are there
//! (headers, tables, descriptors; not the zeros between them), and reseals every VHD and
//! VHDX checksum afterwards, so mutated fields get past the checksum checks to the code
//! that reads them. An input that is not a file set is taken as one raw file.
#![no_main]

use disk_image_fuzz::{Rng, exercise_image, mutate_set};
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};
use testkit::fileset::FileSet;

fuzz_target!(init: disk_image_fuzz::drop_root(), |data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let paths = match FileSet::decode(data) {
        Some(set) => match set.materialize(dir.path()) {
            Ok(paths) => paths,
            Err(_) => return,
        },
        None => {
            let path = dir.path().join("image");
            if std::fs::write(&path, data).is_err() {
                return;
            }
            vec![path]
        }
    };
    if let Some(first) = paths.first() {
        exercise_image(first);
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let Some(mut set) = FileSet::decode(&data[..size]) else {
        return fuzzer_mutate(data, size, max_size);
    };
    let mut rng = Rng::new(seed);
    // Room for the chunk to grow, within what libFuzzer lets the whole input be.
    let slack = max_size.saturating_sub(size);
    let mutated = mutate_set(&mut set, &mut rng, |bytes| {
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
