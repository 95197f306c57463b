//! Streams an OCI layer tar into an ext4 file-system image, and reads ext4 images back to
//! a deterministic tar, both in user space: no mount, no root, no `mkfs`.
//!
//! This crate owns the ext4 on-disk format as far as layers need it: the [`layout`]
//! structures, the single-pass [`Builder`] (tar, gzip or zstd in; a raw image out to any
//! `Write + Seek`) and the [`Reader`] (any ext4 image in, sorted tar out). It does **not**
//! own disk containers (a VHD footer or VMDK wrapping is `disk-image`'s job), mounting,
//! layer digests, or the storage contract: backends call it with a stream and a target.
//! A target or source may be a virtual disk: `disk-image`'s `DiskFile` makes any VHDX,
//! VMDK or VHD (a differencing child too) a `Read + Write + Seek`, so an image is built
//! straight into a disk, and read from one, with no raw file in between.
//!
//! Images are 4 KiB-block ext4 with `extents`, `filetype`, `flex_bg`, `dir_index` (htree
//! directories), `sparse_super2` (no superblock backups), `large_file`, `dir_nlink` and
//! `extra_isize` (256-byte inodes with nanosecond times); no journal, no `64bit`;
//! `metadata_csum` on request (see [`layout`]). Output is deterministic: the same tar gives the
//! same bytes. Memory grows with the number of entries (about 0.5 KiB each), never with the
//! size of file data, which goes straight to the target.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ext4_writer::{Builder, Options, Whiteouts};
//! let tar = std::fs::File::open("layer.tar.gz")?;
//! let img = std::fs::File::create("layer.img")?;
//! let mut builder = Builder::new(img, Options { whiteouts: Whiteouts::Overlay, ..Options::default() })?;
//! builder.append_tar(tar)?;
//! let (_img, summary) = builder.finish()?;
//! println!("{} bytes, {} inodes", summary.size, summary.inodes_used);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod builder;
pub mod error;
pub mod layout;
pub mod reader;
mod tree;

pub use builder::{Builder, Options, Summary, Whiteouts};
pub use error::{Error, Result};
pub use reader::{ReadOptions, Reader, WhiteoutsOut};
