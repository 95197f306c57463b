//! Any bytes as a tar stream (plain, or whatever compression the magic says), through the
//! tar engine's entry stream into the ext4 Builder (its `EntrySink`): it must return an
//! error or a finished image, never panic. Twice: whiteouts kept as files without
//! checksums, then whiteouts as overlay markers with `metadata_csum` and digests.
#![no_main]

use std::io::Cursor;

use ext4_writer::{Builder, Options, Whiteouts};
use libfuzzer_sys::fuzz_target;
// Links the capped allocator.
use fuzz_support as _;

fuzz_target!(|data: &[u8]| {
    for (whiteouts, metadata_csum) in [(Whiteouts::Keep, false), (Whiteouts::Overlay, true)] {
        let options = Options {
            whiteouts,
            metadata_csum,
            digests: metadata_csum,
            // Keeps the output of a fuzz case small.
            max_size: 64 << 20,
            ..Options::default()
        };
        let Ok(mut b) = Builder::new(Cursor::new(Vec::new()), options) else {
            return;
        };
        if b.append_tar(data).is_ok() {
            let _ = b.finish();
        }
    }
});
