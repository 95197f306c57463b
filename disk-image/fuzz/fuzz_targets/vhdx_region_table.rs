//! The VHDX region table parser: the input as it is, padded to a whole table, and padded
//! with its CRC resealed.
#![no_main]

use std::path::Path;

use disk_image::vhdx::header::{REGION_TABLE_SIZE, Regions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.vhdx");
    let mut table = data.to_vec();
    table.resize(REGION_TABLE_SIZE, 0);
    let _ = Regions::parse(data, path, 0, 1 << 30);
    let _ = Regions::parse(&table, path, 0, 1 << 30);
    disk_image_fuzz::seal_vhdx(&mut table);
    let _ = Regions::parse(&table, path, 0, 1 << 30);
});
