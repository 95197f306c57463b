//! The [`Disk`] trait every format implements, and the small types it speaks in.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// The on-disk format of one image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// A plain file holding the disk's bytes.
    Raw,
    /// VMDK hosted sparse extent with an embedded descriptor (`monolithicSparse`), base or
    /// delta disk.
    VmdkSparse,
    /// VMDK descriptor plus one raw extent file (`monolithicFlat`), raw-addressable.
    VmdkFlat,
    /// VMDK with compressed grains and markers (`streamOptimized`), for transport.
    VmdkStream,
    /// VHD fixed: raw data followed by a 512-byte footer.
    VhdFixed,
    /// VHD dynamic: footer, dynamic header, block allocation table and blocks.
    VhdDynamic,
    /// VHD differencing: a dynamic VHD whose unallocated sectors come from a parent.
    VhdDifferencing,
    /// VHDX dynamic.
    Vhdx,
    /// VHDX differencing: unallocated sectors come from a parent VHDX.
    VhdxDifferencing,
}

impl Format {
    /// A short stable name (`raw`, `vmdk`, `vhd-fixed`, ...), the one `diskimg` uses.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::VmdkSparse => "vmdk",
            Format::VmdkFlat => "vmdk-flat",
            Format::VmdkStream => "vmdk-stream",
            Format::VhdFixed => "vhd-fixed",
            Format::VhdDynamic => "vhd-dynamic",
            Format::VhdDifferencing => "vhd-differencing",
            Format::Vhdx => "vhdx",
            Format::VhdxDifferencing => "vhdx-differencing",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = Error;

    /// Parses a [`Format::name`].
    fn from_str(s: &str) -> Result<Self> {
        [
            Format::Raw,
            Format::VmdkSparse,
            Format::VmdkFlat,
            Format::VmdkStream,
            Format::VhdFixed,
            Format::VhdDynamic,
            Format::VhdDifferencing,
            Format::Vhdx,
            Format::VhdxDifferencing,
        ]
        .into_iter()
        .find(|f| f.name() == s)
        .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, format!("unknown format {s:?}")))
    }
}

impl serde::Serialize for Format {
    /// As its [`Format::name`].
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What identifies a disk to its children, so a chain can be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskId {
    /// A VMDK content id (`CID`), which changes whenever the disk is written.
    VmdkCid(u32),
    /// A VHD or VHDX unique id.
    UniqueId([u8; 16]),
}

impl fmt::Display for DiskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskId::VmdkCid(cid) => write!(f, "CID {cid:08x}"),
            DiskId::UniqueId(id) => write!(f, "unique id {}", uuid::Uuid::from_bytes(*id)),
        }
    }
}

/// What a child disk says about its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLink {
    /// Where the parent may be, most preferred first. Relative paths are relative to the
    /// child's directory.
    pub hints: Vec<PathBuf>,
    /// The identity the parent must have.
    pub expected: DiskId,
}

/// A region of a file that holds a range of the virtual disk as plain bytes, so that the
/// kernel can address it through a loop device at an offset and size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawExtent {
    /// The file holding the bytes.
    pub path: PathBuf,
    /// Where in the file byte 0 of the disk is.
    pub offset: u64,
    /// How many bytes of the disk the file holds from `offset` on.
    pub size: u64,
}

/// What [`Disk::flush`] promises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// A flush returns once data, then the metadata pointing at it, are on stable
    /// storage (`fdatasync` between the two).
    #[default]
    Synced,
    /// A flush writes metadata in the same order but waits for no disk, as qemu's
    /// `cache=unsafe` (which `qemu-img convert` uses): for images that are rebuilt, not
    /// recovered, after a crash, such as a conversion into a temporary file.
    Unsynced,
}

/// A virtual disk: a fixed number of bytes that can be read and written at any offset,
/// possibly stacked on a parent.
///
/// Reads take `&self` (metadata is cached in memory at open), writes `&mut self`. Writes
/// may be buffered until [`Disk::flush`]; a disk flushes on drop on a best-effort basis,
/// so callers that care about errors call `flush` themselves.
///
/// `Box<D>` and `&mut D` of a disk `D` are disks too, so code generic over `D: Disk` (a
/// [`DiskFile`](crate::DiskFile)) takes a `Box<dyn Disk>` or a borrow as well.
pub trait Disk: fmt::Debug + Send + Sync {
    /// The format of this image file.
    fn format(&self) -> Format;

    /// The image file (for multi-file formats, the file that names the others).
    fn path(&self) -> &Path;

    /// The virtual size in bytes.
    fn size(&self) -> u64;

    /// Fills `buf` with the disk's bytes at `offset`, reading through to the parent where
    /// this disk holds nothing.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// Writes `buf` at `offset`, into this disk only (never into a parent).
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()>;

    /// Makes every completed write durable, data before the metadata that points at it
    /// (with [`Durability::Unsynced`], writes the metadata without waiting for the disk).
    fn flush(&mut self) -> Result<()>;

    /// Chooses what later flushes of this disk's own files promise (its parents are
    /// never written). A disk starts [`Durability::Synced`].
    fn set_durability(&mut self, durability: Durability);

    /// The ranges of the virtual disk that this file itself stores (not its parents),
    /// sorted and not overlapping. Everything else reads from the parent, or as zeros.
    fn allocated_ranges(&self) -> Result<Vec<Range<u64>>> {
        Ok(std::iter::once(0..self.size()).collect())
    }

    /// The parent this disk reads through to, once attached by [`crate::open_chain`].
    fn parent(&self) -> Option<&dyn Disk> {
        None
    }

    /// What this disk says about its parent, if it is a child disk.
    fn parent_link(&self) -> Option<ParentLink> {
        None
    }

    /// The identity children record for this disk.
    fn id(&self) -> Option<DiskId> {
        None
    }

    /// Stacks this disk on `parent`, after checking it is the parent this disk names.
    fn set_parent(&mut self, parent: Box<dyn Disk>) -> Result<()> {
        Err(no_parent(self.path(), parent.as_ref()))
    }

    /// Where this disk's bytes lie as a plain range of one file, if they do (raw, fixed VHD).
    fn raw_extent(&self) -> Option<RawExtent> {
        None
    }
}

/// Implements [`Disk`] for the pointer types `$ty` to a disk `D`, every method (the
/// provided ones too, so a parent or the allocated ranges are the pointee's) passed on.
macro_rules! forward_disk {
    ($($ty:ty),*) => {$(
        impl<D: Disk + ?Sized> Disk for $ty {
            fn format(&self) -> Format {
                (**self).format()
            }
            fn path(&self) -> &Path {
                (**self).path()
            }
            fn size(&self) -> u64 {
                (**self).size()
            }
            fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
                (**self).read_at(buf, offset)
            }
            fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
                (**self).write_at(buf, offset)
            }
            fn flush(&mut self) -> Result<()> {
                (**self).flush()
            }
            fn set_durability(&mut self, durability: Durability) {
                (**self).set_durability(durability)
            }
            fn allocated_ranges(&self) -> Result<Vec<Range<u64>>> {
                (**self).allocated_ranges()
            }
            fn parent(&self) -> Option<&dyn Disk> {
                (**self).parent()
            }
            fn parent_link(&self) -> Option<ParentLink> {
                (**self).parent_link()
            }
            fn id(&self) -> Option<DiskId> {
                (**self).id()
            }
            fn set_parent(&mut self, parent: Box<dyn Disk>) -> Result<()> {
                (**self).set_parent(parent)
            }
            fn raw_extent(&self) -> Option<RawExtent> {
                (**self).raw_extent()
            }
        }
    )*};
}

// A boxed disk (what `open`, `open_chain` and `create` return) and a borrowed one are
// disks too, as a boxed or borrowed reader is a reader: so code generic over `D: Disk`
// (a `DiskFile`) takes a format's own type, a `Box<dyn Disk>` or a `&mut` to either.
forward_disk!(Box<D>, &mut D);

/// Fails with `OutOfRange` unless `[offset, offset + len)` lies within a disk of `size`.
pub(crate) fn check_range(path: &Path, size: u64, offset: u64, len: usize) -> Result<()> {
    let end = offset.checked_add(len as u64);
    match end {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::new(
            ErrorKind::OutOfRange,
            format!("{len} bytes from there run past the end of a disk of {size} bytes"),
        )
        .with_path(path)
        .with_offset(offset)),
    }
}

/// The error for stacking a disk that names no parent on `parent`.
pub(crate) fn no_parent(child: &Path, parent: &dyn Disk) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!(
            "names no parent, so cannot stack on {}",
            parent.path().display()
        ),
    )
    .with_path(child)
}

/// Checks that `parent` has the identity `link` expects, for [`Disk::set_parent`].
fn check_parent(child: &Path, link: &ParentLink, parent: &dyn Disk) -> Result<()> {
    match parent.id() {
        Some(id) if id == link.expected => Ok(()),
        Some(id) => Err(Error::new(
            ErrorKind::ParentMismatch,
            format!(
                "parent {} has {id}, the child expects {}",
                parent.path().display(),
                link.expected
            ),
        )
        .with_path(child)),
        None => Err(Error::new(
            ErrorKind::ParentMismatch,
            format!(
                "parent {} is a {} disk, which has no identity to match {}",
                parent.path().display(),
                parent.format(),
                link.expected
            ),
        )
        .with_path(child)),
    }
}

/// What every differencing format's [`Disk::set_parent`] does: refuse a parent when the
/// child names none (`link` is `None`) or when its identity is not the one `link`
/// expects; otherwise put it in `slot`.
pub(crate) fn link_parent(
    child: &Path,
    link: Option<ParentLink>,
    parent: Box<dyn Disk>,
    slot: &mut Option<Box<dyn Disk>>,
) -> Result<()> {
    let Some(link) = link else {
        return Err(no_parent(child, parent.as_ref()));
    };
    check_parent(child, &link, parent.as_ref())?;
    *slot = Some(parent);
    Ok(())
}

/// Reads `buf` from `parent` at `offset`, or zeros where there is no parent or the parent
/// is smaller than the child.
pub(crate) fn read_parent_or_zero(
    parent: Option<&dyn Disk>,
    buf: &mut [u8],
    offset: u64,
) -> Result<()> {
    let Some(parent) = parent else {
        buf.fill(0);
        return Ok(());
    };
    let psize = parent.size();
    if offset >= psize {
        buf.fill(0);
        return Ok(());
    }
    let avail = usize::try_from(psize - offset).unwrap_or(usize::MAX);
    let n = buf.len().min(avail);
    parent.read_at(&mut buf[..n], offset)?;
    buf[n..].fill(0);
    Ok(())
}
