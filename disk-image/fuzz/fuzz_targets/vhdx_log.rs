//! The VHDX log: entry parser and the search for the active sequence. The first 16 bytes
//! are the log GUID; the log follows, searched as it is and again with the entry at its
//! start resealed (its CRC-32C covers the entry length it claims).
#![no_main]

use std::path::Path;

use disk_image::vhdx::log::{LOG_SECTOR, active_sequence, parse_entry};
use libfuzzer_sys::fuzz_target;

fn search(log: &[u8], guid: &[u8; 16]) {
    let _ = parse_entry(log, guid);
    let mut whole = log.to_vec();
    whole.resize(log.len().next_multiple_of(LOG_SECTOR).max(LOG_SECTOR), 0);
    let _ = active_sequence(&whole, guid, Path::new("fuzz.vhdx"), 1 << 20);
}

fuzz_target!(|data: &[u8]| {
    let Some((guid, log)) = data.split_first_chunk::<16>() else {
        return;
    };
    search(log, guid);
    if let Some(len) = log.get(8..12) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if (8..=log.len()).contains(&len) {
            let mut sealed = log.to_vec();
            disk_image_fuzz::seal_vhdx(&mut sealed[..len]);
            search(&sealed, guid);
        }
    }
});
