//! Any bytes as an ext4 image: the Reader must return an error or a tar, never panic, and
//! never allocate by what the image claims. Output is capped because a corrupt size can
//! describe a huge sparse file, which is a valid thing to export.
#![no_main]

use std::io::{Cursor, Write};

use ext4_writer::{ReadOptions, Reader, WhiteoutsOut};
use libfuzzer_sys::fuzz_target;
// Links the capped allocator.
use fuzz_support as _;

struct Capped(usize);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        if self.0 > 64 << 20 {
            return Err(std::io::Error::other("output cap"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    for whiteouts in [WhiteoutsOut::Keep, WhiteoutsOut::Oci] {
        if let Ok(mut r) = Reader::open(Cursor::new(data)) {
            let _ = r.write_tar(Capped(0), ReadOptions { whiteouts });
        }
    }
});
