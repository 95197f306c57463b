//! The VHDX log: entry parser and the search for the active sequence.
#![no_main]

use std::path::Path;

use disk_image::vhdx::log::{LOG_SECTOR, active_sequence, parse_entry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((guid, log)) = data.split_first_chunk::<16>() else {
        return;
    };
    let _ = parse_entry(log, guid);
    let mut whole = log.to_vec();
    whole.resize(log.len().next_multiple_of(LOG_SECTOR).max(LOG_SECTOR), 0);
    let _ = active_sequence(&whole, guid, Path::new("fuzz.vhdx"), 1 << 20);
});
