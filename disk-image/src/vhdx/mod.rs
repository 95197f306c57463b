//! VHDX (MS-VHDX): dynamic and differencing disks, with log replay on open.
//!
//! - [`header`]: file identifier, the two headers and the two region tables;
//! - [`metadata`]: the metadata region (block size, sizes, page 83 id, parent locator);
//! - `bat`: the block allocation table with its sector bitmap entries;
//! - [`log`]: finding and replaying the active log sequence;
//! - `io`: [`Vhdx`], the [`crate::Disk`] over them.

mod bat;
pub mod header;
mod io;
pub mod log;
pub mod metadata;

pub use io::Vhdx;

/// True when `first` (the start of a file) is a VHDX file identifier.
pub fn is_vhdx(first: &[u8]) -> bool {
    first.get(..8) == Some(&header::FILE_SIGNATURE[..])
}
