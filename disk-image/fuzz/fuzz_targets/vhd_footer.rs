//! The VHD footer parser (cookie, checksum, type, size).
#![no_main]

use std::path::Path;

use disk_image::vhd::footer::Footer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Footer::parse(data, Path::new("fuzz.vhd"), 0);
});
