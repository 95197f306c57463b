//! VHD (Microsoft "Virtual Hard Disk Image Format Specification"): fixed, dynamic and
//! differencing disks.
//!
//! - [`footer`]: the 512-byte footer (cookie, checksum, geometry, unique id);
//! - [`header`]: the dynamic disk header and parent locators;
//! - `bat`: block allocation table and sector bitmaps;
//! - `io`: [`FixedVhd`] and [`DynamicVhd`], the [`crate::Disk`]s over them.

mod bat;
pub mod footer;
pub mod header;
mod io;

pub use io::{DynamicVhd, FixedVhd};

use crate::disk::Format;

/// The VHD type named by a footer candidate (`bytes` starting with the cookie), if any.
pub fn footer_format(bytes: &[u8]) -> Option<Format> {
    if !footer::Footer::is_footer(bytes) {
        return None;
    }
    let t = bytes.get(60..64)?;
    match u32::from_be_bytes([t[0], t[1], t[2], t[3]]) {
        footer::DISK_FIXED => Some(Format::VhdFixed),
        footer::DISK_DYNAMIC => Some(Format::VhdDynamic),
        footer::DISK_DIFFERENCING => Some(Format::VhdDifferencing),
        _ => None,
    }
}
