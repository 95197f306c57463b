//! The VHDX metadata region parser, parent locator included.
#![no_main]

use std::path::Path;

use disk_image::vhdx::metadata::Metadata;
use libfuzzer_sys::fuzz_target;
// Links the capped allocator.
use disk_image_fuzz as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metadata::parse(data, Path::new("fuzz.vhdx"), 2 << 20) {
        let _ = m.locator("parent_linkage");
        let _ = m.to_region(1 << 20);
    }
});
