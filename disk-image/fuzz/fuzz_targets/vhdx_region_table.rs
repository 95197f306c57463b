//! The VHDX region table parser.
#![no_main]

use std::path::Path;

use disk_image::vhdx::header::{REGION_TABLE_SIZE, Regions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut table = data.to_vec();
    table.resize(REGION_TABLE_SIZE, 0);
    let _ = Regions::parse(data, Path::new("fuzz.vhdx"), 0, 1 << 30);
    let _ = Regions::parse(&table, Path::new("fuzz.vhdx"), 0, 1 << 30);
});
