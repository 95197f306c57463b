//! VMDK (VMware "Virtual Disk Format 5.0"): the hosted sparse extent with an embedded
//! descriptor (`monolithicSparse`), base and delta disks.
//!
//! - [`header`]: the 512-byte `SparseExtentHeader`;
//! - [`descriptor`]: the text descriptor (`CID`, `parentCID`, extents, disk database);
//! - [`grain`]: grain directory and grain tables;
//! - `io`: [`SparseVmdk`], the [`crate::Disk`] over them.

pub mod descriptor;
mod grain;
pub mod header;
mod io;

pub use io::SparseVmdk;

/// True when `first` (the start of a file) is a VMDK sparse extent header.
pub fn is_sparse(first: &[u8]) -> bool {
    first.get(..4) == Some(&header::SPARSE_MAGIC.to_le_bytes()[..])
}
