//! The VHDX header parser (signature, CRC-32C, version, log placement).
#![no_main]

use std::path::Path;

use disk_image::vhdx::header::Header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Header::parse(data, Path::new("fuzz.vhdx"), 65536, 1 << 30);
});
