//! VMDK (VMware "Virtual Disk Format 5.0"): the hosted sparse extent with an embedded
//! descriptor (`monolithicSparse`, base and delta disks), the descriptor plus raw extent
//! (`monolithicFlat`) and the compressed stream (`streamOptimized`).
//!
//! - [`header`]: the 512-byte `SparseExtentHeader`;
//! - [`descriptor`]: the text descriptor (`CID`, `parentCID`, extents, disk database);
//! - `grain`: grain directory and grain tables of a sparse extent;
//! - `sparse`, `flat`, `stream`: [`SparseVmdk`], [`FlatVmdk`], [`StreamVmdk`], the
//!   [`crate::Disk`]s.

pub mod descriptor;
mod flat;
mod grain;
pub mod header;
mod sparse;
mod stream;

pub use flat::FlatVmdk;
pub use sparse::SparseVmdk;
pub use stream::StreamVmdk;

use crate::disk::Format;
use descriptor::NO_PARENT_CID;

/// Which VMDK `first` (the start of a file) begins, if any.
pub fn detect(first: &[u8]) -> Option<Format> {
    if flat::is_descriptor(first) {
        return Some(Format::VmdkFlat);
    }
    if first.get(..4) != Some(&header::SPARSE_MAGIC.to_le_bytes()[..]) {
        return None;
    }
    let flags = first
        .get(8..12)
        .map_or(0, |f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]));
    if flags & (header::FLAG_COMPRESSED | header::FLAG_MARKERS) != 0 {
        Some(Format::VmdkStream)
    } else {
        Some(Format::VmdkSparse)
    }
}

/// A fresh content id, different from `old` and from the reserved values.
pub(crate) fn new_cid(old: u32) -> u32 {
    loop {
        let cid = uuid::Uuid::new_v4().as_u128() as u32;
        if cid != old && cid != NO_PARENT_CID && cid != 0xffff_fffe {
            return cid;
        }
    }
}
