//! The VHD dynamic header parser and the parent locator decoder.
#![no_main]

use std::path::Path;

use disk_image::vhd::header::{DynamicHeader, decode_locator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (size, rest) = match data.split_first_chunk::<8>() {
        Some((s, rest)) => (u64::from_le_bytes(*s), rest),
        None => return,
    };
    let file_len = rest.len() as u64 * 4096;
    if let Ok(h) = DynamicHeader::parse(rest, Path::new("fuzz.vhd"), 512, size, file_len) {
        let _ = h.parent_name();
    }
    let _ = decode_locator(rest);
});
