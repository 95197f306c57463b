//! The hosted sparse extent header (VMware "Virtual Disk Format 5.0", `SparseExtentHeader`):
//! the first 512-byte sector of a `monolithicSparse` or `streamOptimized` file,
//! little-endian.

use std::path::Path;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, ErrorKind, Result};

/// `magicNumber`: the bytes `KDMV` read as a little-endian u32.
pub const SPARSE_MAGIC: u32 = 0x564d_444b;
/// Sector size of every offset in the header, grain directory and grain tables.
pub const SECTOR: u64 = 512;
/// Flag: the newline-detection characters are valid.
pub const FLAG_NEWLINE_DETECT: u32 = 1 << 0;
/// Flag: a redundant grain directory (and redundant grain tables) is kept.
pub const FLAG_REDUNDANT_GRAIN_TABLE: u32 = 1 << 1;
/// Flag: a grain table entry of 1 means "this grain reads as zeros".
pub const FLAG_ZERO_GRAIN_GTE: u32 = 1 << 2;
/// Flag: grains are compressed (stream-optimized).
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// Flag: the file holds stream markers (stream-optimized).
pub const FLAG_MARKERS: u32 = 1 << 17;
/// `gdOffset` value meaning "the grain directory is at the end of the file" (stream).
pub const GD_AT_END: u64 = u64::MAX;
/// Grain table entries per grain table that this crate writes (and VMware requires).
pub const GTES_PER_GT: u32 = 512;
/// Default grain size in sectors (64 KiB).
pub const DEFAULT_GRAIN_SECTORS: u64 = 128;
/// Largest grain this crate accepts, in sectors (128 MiB, as qemu).
pub const MAX_GRAIN_SECTORS: u64 = 128 * 1024 * 1024 / SECTOR;
/// Largest virtual size this crate accepts, in sectors (64 TiB).
pub const MAX_CAPACITY_SECTORS: u64 = (64 << 40) / SECTOR;

/// `SparseExtentHeader`, byte for byte.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SparseExtentHeader {
    /// [`SPARSE_MAGIC`].
    pub magic: U32,
    /// 1 (or 2, 3 for stream-optimized).
    pub version: U32,
    /// `FLAG_*` bits.
    pub flags: U32,
    /// Virtual size in sectors.
    pub capacity: U64,
    /// Sectors per grain.
    pub grain_size: U64,
    /// Sector of the embedded descriptor (0 when none).
    pub descriptor_offset: U64,
    /// Sectors reserved for the embedded descriptor.
    pub descriptor_size: U64,
    /// Grain table entries per grain table.
    pub num_gtes_per_gt: U32,
    /// Sector of the redundant grain directory.
    pub rgd_offset: U64,
    /// Sector of the grain directory.
    pub gd_offset: U64,
    /// Sectors of metadata before the first grain, rounded to a grain.
    pub overhead: U64,
    /// Set while the disk is open for writing by VMware tools.
    pub unclean_shutdown: u8,
    /// `'\n'`.
    pub single_end_line_char: u8,
    /// `' '`.
    pub non_end_line_char: u8,
    /// `'\r'`.
    pub double_end_line_char1: u8,
    /// `'\n'`.
    pub double_end_line_char2: u8,
    /// 0 none, 1 deflate.
    pub compress_algorithm: U16,
    /// Zero.
    pub pad: [u8; 433],
}

const _: () = assert!(size_of::<SparseExtentHeader>() == 512);

impl SparseExtentHeader {
    /// Parses and validates a header from the first sector of `path`. `file_len` bounds
    /// every offset.
    pub fn parse(bytes: &[u8], path: &Path, file_len: u64) -> Result<Self> {
        let (header, _) = SparseExtentHeader::read_from_prefix(bytes)
            .map_err(|_| Error::corrupt(path, 0, "file is shorter than a VMDK header"))?;
        header.validate(path, file_len)?;
        Ok(header)
    }

    fn validate(&self, path: &Path, file_len: u64) -> Result<()> {
        let bad = |msg: String| Err(Error::corrupt(path, 0, msg));
        if self.magic.get() != SPARSE_MAGIC {
            return bad(format!("bad VMDK magic {:#x}", self.magic.get()));
        }
        let version = self.version.get();
        if !(1..=3).contains(&version) {
            return Err(
                Error::new(ErrorKind::Unsupported, format!("VMDK version {version}"))
                    .with_path(path),
            );
        }
        let grain = self.grain_size.get();
        if grain == 0 || !grain.is_power_of_two() || grain > MAX_GRAIN_SECTORS {
            return bad(format!("grain size of {grain} sectors"));
        }
        let capacity = self.capacity.get();
        if capacity > MAX_CAPACITY_SECTORS {
            return bad(format!("capacity of {capacity} sectors is beyond 64 TiB"));
        }
        let gtes = self.num_gtes_per_gt.get();
        if gtes == 0 || gtes > 1 << 20 {
            return bad(format!("{gtes} entries per grain table"));
        }
        let file_sectors = file_len.div_ceil(SECTOR);
        let desc_end = self
            .descriptor_offset
            .get()
            .checked_add(self.descriptor_size.get());
        if desc_end.is_none_or(|end| end > file_sectors) {
            return bad("embedded descriptor lies past the end of the file".into());
        }
        Ok(())
    }

    /// Flags.
    pub fn flags(&self) -> u32 {
        self.flags.get()
    }

    /// Grain size in bytes.
    pub fn grain_bytes(&self) -> u64 {
        self.grain_size.get() * SECTOR
    }

    /// Grain directory entries needed to cover the capacity.
    pub fn gd_entries(&self) -> u64 {
        let grains = self.capacity.get().div_ceil(self.grain_size.get());
        grains.div_ceil(u64::from(self.num_gtes_per_gt.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn good() -> SparseExtentHeader {
        let mut h = SparseExtentHeader::new_zeroed();
        h.magic = SPARSE_MAGIC.into();
        h.version = 1.into();
        h.capacity = 2048.into();
        h.grain_size = 128.into();
        h.descriptor_offset = 1.into();
        h.descriptor_size = 20.into();
        h.num_gtes_per_gt = 512.into();
        h
    }

    #[test]
    fn magic_bytes_are_kdmv() {
        assert_eq!(&good().as_bytes()[..4], b"KDMV");
    }

    #[test]
    fn rejects_bad_magic_grain_and_descriptor() {
        let p = Path::new("t.vmdk");
        assert!(SparseExtentHeader::parse(good().as_bytes(), p, 1 << 20).is_ok());
        let mut h = good();
        h.magic = 0.into();
        assert!(SparseExtentHeader::parse(h.as_bytes(), p, 1 << 20).is_err());
        let mut h = good();
        h.grain_size = 100.into();
        assert!(SparseExtentHeader::parse(h.as_bytes(), p, 1 << 20).is_err());
        let h = good();
        let err = SparseExtentHeader::parse(h.as_bytes(), p, 4 * 512).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(SparseExtentHeader::parse(&h.as_bytes()[..100], p, 1 << 20).is_err());
    }
}
