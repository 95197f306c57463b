//! Virtual disk images for strata: readers and writers for VMDK (`monolithicSparse` with
//! delta disks, `monolithicFlat`, `streamOptimized`), VHD (fixed, dynamic, differencing),
//! VHDX (dynamic, differencing, with log replay) and raw files, behind one [`Disk`] trait,
//! plus parent chains ([`open_chain`]), conversion between formats ([`convert`],
//! [`flatten`]), block devices for any of them (lasting and shared:
//! [`attach::Attachments`], whose block views a detached server process serves, so an
//! attachment outlives the command that made it; or for one process: [`attach()`]), and
//! any of them as a file
//! ([`DiskFile`]: `Read`, `Write` and `Seek`, so a writer of files, such as an ext4 image
//! builder, writes straight into a VHDX, a VMDK or a differencing child).
//!
//! This crate owns the on-disk formats: their byte layout, checksums, allocation, the
//! order metadata reaches the disk, and the identity checks between a child and its
//! parent. It does not own filesystems inside the disks (that is `ext4-writer`), it does
//! not know about layers, stores or backends (the `backend-vmdk` and `backend-vhd` crates
//! build on it). It makes disks block devices (loop devices, directly or over its FUSE
//! block view) and records them in a registry, but mounts no filesystem: it only
//! unmounts, through the `mounts` crate, what still stands on a device whose server died.
//!
//! The byte layouts, as written and as accepted, are described in `FORMATS.md` beside this
//! crate.
//!
//! ```no_run
//! use disk_image::{Format, create, open_chain};
//! # fn main() -> disk_image::Result<()> {
//! let mut base = create("base.vmdk".as_ref(), Format::VmdkSparse, 1 << 30)?;
//! base.write_at(b"hello", 0)?;
//! base.flush()?;
//! drop(base);
//! disk_image::create_child("child.vmdk".as_ref(), "base.vmdk".as_ref())?;
//! let child = open_chain("child.vmdk".as_ref(), false)?;
//! let mut buf = [0u8; 5];
//! child.read_at(&mut buf, 0)?;
//! assert_eq!(&buf, b"hello");
//! # Ok(()) }
//! ```
// The one exception, `sync_file_range(2)` in `writeback`, allows itself.
#![forbid(unsafe_code)]

pub mod attach;
pub mod block_view;
pub mod chain;
pub mod disk;
pub mod disk_file;
pub mod error;
mod file;
pub mod raw;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;
mod writeback;

use std::path::Path;

pub use attach::{Attached, attach, cleanup};
pub use chain::{convert, flatten, open_chain, open_chain_within};
pub use disk::{Disk, DiskId, Durability, Format, ParentLink, RawExtent};
pub use disk_file::DiskFile;
pub use error::{Error, ErrorKind, Result};
pub use raw::RawDisk;
pub use vhd::{DynamicVhd, FixedVhd};
pub use vhdx::Vhdx;
pub use vmdk::{FlatVmdk, SparseVmdk, StreamVmdk};

use file::ImageFile;

/// Works out the format of the image at `path` from its magic numbers. A file with no
/// known magic is raw. Any VHDX is reported as [`Format::Vhdx`]; whether it is a
/// differencing disk is in its metadata, which the opened disk's [`Disk::format`] tells.
pub fn detect(path: &Path) -> Result<Format> {
    let file = ImageFile::open(path, true)?;
    let len = file.len()?;
    let mut first = [0u8; 512];
    let head = len.min(512) as usize;
    file.read_exact_at(&mut first[..head], 0)?;
    if let Some(format) = vmdk::detect(&first[..head]) {
        return Ok(format);
    }
    if vhdx::is_vhdx(&first[..head]) {
        return Ok(Format::Vhdx);
    }
    // Dynamic VHDs keep a copy of the footer at the start; every VHD has it at the end.
    if let Some(format) = vhd::footer_format(&first[..head]) {
        return Ok(format);
    }
    if len >= 512 {
        let mut last = [0u8; 512];
        file.read_exact_at(&mut last, len - 512)?;
        if let Some(format) = vhd::footer_format(&last) {
            return Ok(format);
        }
    }
    Ok(Format::Raw)
}

/// Opens one image file, detecting its format, without its parents (a child disk opened
/// this way reads zeros where it holds nothing; use [`open_chain`] to read through).
///
/// Detection trusts the file's magic numbers, as qemu's probing does; a caller that knows
/// the format (say, a backend opening its own layers) should use [`open_as`], so a raw
/// disk whose guest wrote a VMDK header at sector 0 is never taken for a VMDK.
pub fn open(path: &Path, read_only: bool) -> Result<Box<dyn Disk>> {
    open_as(path, detect(path)?, read_only)
}

/// Opens one image file as `format` (any VHDX format opens either VHDX kind; any VHD
/// dynamic format opens dynamic and differencing disks alike).
pub fn open_as(path: &Path, format: Format, read_only: bool) -> Result<Box<dyn Disk>> {
    Ok(match format {
        Format::VmdkSparse => Box::new(SparseVmdk::open(path, read_only)?),
        Format::VmdkFlat => Box::new(FlatVmdk::open(path, read_only)?),
        Format::VmdkStream => Box::new(StreamVmdk::open(path, read_only)?),
        Format::VhdFixed => Box::new(FixedVhd::open(path, read_only)?),
        Format::VhdDynamic | Format::VhdDifferencing => {
            Box::new(DynamicVhd::open(path, read_only)?)
        }
        Format::Vhdx | Format::VhdxDifferencing => Box::new(Vhdx::open(path, read_only)?),
        Format::Raw => Box::new(RawDisk::open(path, read_only)?),
    })
}

/// Creates a new standalone image of `format` and `size` bytes at `path`; fails if the
/// file exists.
pub fn create(path: &Path, format: Format, size: u64) -> Result<Box<dyn Disk>> {
    Ok(match format {
        Format::VmdkSparse => Box::new(SparseVmdk::create(path, size)?),
        Format::VmdkFlat => Box::new(FlatVmdk::create(path, size)?),
        Format::VmdkStream => Box::new(StreamVmdk::create(path, size)?),
        Format::VhdFixed => Box::new(FixedVhd::create(path, size)?),
        Format::VhdDynamic => Box::new(DynamicVhd::create(path, size)?),
        Format::Vhdx => Box::new(Vhdx::create(path, size)?),
        Format::VhdDifferencing | Format::VhdxDifferencing => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a differencing disk needs a parent (use create_child)",
            )
            .with_path(path));
        }
        Format::Raw => Box::new(RawDisk::create(path, size)?),
    })
}

/// Creates a child of the image at `parent` (opened with its own chain), in the parent's
/// format family: a sparse VMDK delta disk for any VMDK parent, a differencing VHD for any
/// VHD, a differencing VHDX for a VHDX. Returns the child, stacked on its parent.
pub fn create_child(path: &Path, parent: &Path) -> Result<Box<dyn Disk>> {
    let parent_disk = open_chain(parent, true)?;
    let hint = chain::parent_hint(path, parent)?;
    Ok(match parent_disk.format() {
        Format::VmdkSparse | Format::VmdkFlat | Format::VmdkStream => {
            Box::new(SparseVmdk::create_child(path, parent_disk, &hint)?)
        }
        Format::VhdFixed | Format::VhdDynamic | Format::VhdDifferencing => {
            Box::new(DynamicVhd::create_child(path, parent_disk, &hint)?)
        }
        Format::Vhdx | Format::VhdxDifferencing => {
            Box::new(Vhdx::create_child(path, parent_disk, &hint)?)
        }
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("a {other} disk cannot have children"),
            )
            .with_path(parent));
        }
    })
}
