//! The VHDX header parser (signature, CRC-32C, version, log placement): the input as it
//! is, and again with its CRC resealed.
#![no_main]

use std::path::Path;

use disk_image::vhdx::header::Header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Header::parse(data, Path::new("fuzz.vhdx"), 65536, 1 << 30);
    if data.len() >= 4096 {
        let mut sealed = data[..4096].to_vec();
        disk_image_fuzz::seal_vhdx(&mut sealed);
        let _ = Header::parse(&sealed, Path::new("fuzz.vhdx"), 65536, 1 << 30);
    }
});
