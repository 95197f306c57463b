//! Whole images: the input is written to a file, detected, opened, read and written.
#![no_main]

use disk_image::{open, open_chain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("image");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(disk) = open_chain(&path, true) {
        let size = disk.size();
        let mut buf = vec![0u8; size.min(1 << 20) as usize];
        let _ = disk.read_at(&mut buf, 0);
        let _ = disk.allocated_ranges();
    }
    if let Ok(mut disk) = open(&path, false) {
        if disk.size() >= 4096 {
            let _ = disk.write_at(&[0xa5; 4096], disk.size() / 2 / 4096 * 4096);
        }
        let _ = disk.flush();
    }
});
