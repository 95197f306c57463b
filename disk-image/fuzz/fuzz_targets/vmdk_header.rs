//! The VMDK sparse extent header parser, for any file length.
#![no_main]

use std::path::Path;

use disk_image::vmdk::header::SparseExtentHeader;
use libfuzzer_sys::fuzz_target;
// Links the capped allocator.
use disk_image_fuzz as _;

fuzz_target!(|data: &[u8]| {
    let file_len = data.len() as u64 * 1024;
    if let Ok(h) = SparseExtentHeader::parse(data, Path::new("fuzz.vmdk"), file_len) {
        let _ = h.gd_entries();
        let _ = h.grain_bytes();
    }
});
