//! The VHD footer parser (cookie, checksum, type, size): the input as it is, and again
//! with its checksum resealed so the fields behind it are reached.
#![no_main]

use std::path::Path;

use disk_image::vhd::footer::Footer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Footer::parse(data, Path::new("fuzz.vhd"), 0);
    if data.len() >= 512 {
        let mut sealed = data[..512].to_vec();
        disk_image_fuzz::seal_vhd(&mut sealed, 64);
        let _ = Footer::parse(&sealed, Path::new("fuzz.vhd"), 0);
    }
});
