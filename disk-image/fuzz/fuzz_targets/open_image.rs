//! Whole images, one file as the bytes are: detected, opened with its chain, read,
//! reopened read-write, written and flushed. The byte fuzzer's view: it explores magic
//! numbers, checksums and what a broken file looks like; `open_image_set` goes past the
//! checksums.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: disk_image_fuzz::drop_root(), |data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("image");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    disk_image_fuzz::exercise_image(&path);
});
