//! The VHD dynamic header parser and the parent locator decoder. The first 8 bytes are the
//! disk size; the header follows, parsed as it is and again with its checksum resealed.
#![no_main]

use std::path::Path;

use disk_image::vhd::header::{DynamicHeader, decode_locator};
use libfuzzer_sys::fuzz_target;

fn parse(header: &[u8], size: u64, file_len: u64) {
    if let Ok(h) = DynamicHeader::parse(header, Path::new("fuzz.vhd"), 512, size, file_len) {
        let _ = h.parent_name();
    }
}

fuzz_target!(|data: &[u8]| {
    let (size, rest) = match data.split_first_chunk::<8>() {
        Some((s, rest)) => (u64::from_le_bytes(*s), rest),
        None => return,
    };
    let file_len = rest.len() as u64 * 4096;
    parse(rest, size, file_len);
    if rest.len() >= 1024 {
        let mut sealed = rest.to_vec();
        disk_image_fuzz::seal_vhd(&mut sealed[..1024], 36);
        parse(&sealed, size, file_len);
    }
    let _ = decode_locator(rest);
});
