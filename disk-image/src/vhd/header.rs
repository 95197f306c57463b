//! The VHD dynamic disk header (1024 big-endian bytes at the footer's `data_offset`) and
//! its parent locators.

use std::path::{Path, PathBuf};

use zerocopy::big_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::footer::checksum;
use crate::error::{Error, ErrorKind, Result};

/// `cookie`.
pub const HEADER_COOKIE: [u8; 8] = *b"cxsparse";
/// `header_version` 1.0.
pub const HEADER_VERSION: u32 = 0x0001_0000;
/// Default block size (2 MiB).
pub const DEFAULT_BLOCK_SIZE: u32 = 2 << 20;
/// Largest block size accepted (256 MiB).
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;
/// A BAT entry for a block that is not allocated.
pub const BAT_UNUSED: u32 = u32::MAX;
/// Locator platform code: Windows relative path, UTF-16LE.
pub const PLATFORM_W2RU: u32 = 0x5732_7275;
/// Locator platform code: Windows absolute path, UTF-16LE.
pub const PLATFORM_W2KU: u32 = 0x5732_6b75;
/// Largest locator payload read, bytes.
pub const MAX_LOCATOR_BYTES: u32 = 64 << 10;

/// One parent locator entry.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ParentLocator {
    /// `PLATFORM_*`, 0 when unused.
    pub platform_code: U32,
    /// Room reserved for the locator data.
    pub platform_data_space: U32,
    /// Length of the locator data in bytes.
    pub platform_data_length: U32,
    /// Zero.
    pub reserved: U32,
    /// File offset of the locator data.
    pub platform_data_offset: U64,
}

const _: () = assert!(size_of::<ParentLocator>() == 24);

/// The dynamic disk header, byte for byte.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DynamicHeader {
    /// [`HEADER_COOKIE`].
    pub cookie: [u8; 8],
    /// Unused, all ones.
    pub data_offset: U64,
    /// File offset of the block allocation table.
    pub table_offset: U64,
    /// [`HEADER_VERSION`].
    pub header_version: U32,
    /// BAT entries.
    pub max_table_entries: U32,
    /// Bytes of data per block (excluding its sector bitmap).
    pub block_size: U32,
    /// One's complement byte sum with this field zero.
    pub checksum: U32,
    /// The parent footer's unique id (differencing disks).
    pub parent_unique_id: [u8; 16],
    /// The parent's modification time (differencing disks).
    pub parent_timestamp: U32,
    /// Zero.
    pub reserved1: U32,
    /// The parent's file name, UTF-16BE, NUL padded.
    pub parent_unicode_name: [u8; 512],
    /// Where the parent's path is stored, per platform.
    pub parent_locators: [ParentLocator; 8],
    /// Zero.
    pub reserved2: [u8; 256],
}

const _: () = assert!(size_of::<DynamicHeader>() == 1024);

impl DynamicHeader {
    /// A header for a dynamic disk of `entries` blocks of `block_size` with its BAT at
    /// `table_offset`.
    pub fn new(table_offset: u64, entries: u32, block_size: u32) -> Self {
        let mut h = DynamicHeader::new_zeroed();
        h.cookie = HEADER_COOKIE;
        h.data_offset = u64::MAX.into();
        h.table_offset = table_offset.into();
        h.header_version = HEADER_VERSION.into();
        h.max_table_entries = entries.into();
        h.block_size = block_size.into();
        h
    }

    /// Recomputes the checksum.
    pub fn seal(&mut self) {
        self.checksum = 0.into();
        self.checksum = checksum(self.as_bytes()).into();
    }

    /// Parses the header at `offset`, verifying cookie and checksum, the block size and
    /// that the BAT for `disk_size` fits in a file of `file_len` bytes.
    pub fn parse(
        bytes: &[u8],
        path: &Path,
        offset: u64,
        disk_size: u64,
        file_len: u64,
    ) -> Result<Self> {
        let (h, _) = DynamicHeader::read_from_prefix(bytes)
            .map_err(|_| Error::corrupt(path, offset, "file ends inside the VHD dynamic header"))?;
        if h.cookie != HEADER_COOKIE {
            return Err(Error::corrupt(path, offset, "no VHD dynamic header cookie"));
        }
        let mut copy = h.clone();
        copy.checksum = 0.into();
        let want = checksum(copy.as_bytes());
        if h.checksum.get() != want {
            return Err(Error::corrupt(
                path,
                offset,
                format!(
                    "VHD dynamic header checksum {:#x}, computed {want:#x}",
                    h.checksum.get()
                ),
            ));
        }
        if h.header_version.get() >> 16 != 1 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("VHD dynamic header version {:#x}", h.header_version.get()),
            )
            .with_path(path));
        }
        let bs = h.block_size.get();
        if !bs.is_power_of_two() || !(512..=MAX_BLOCK_SIZE).contains(&bs) {
            return Err(Error::corrupt(path, offset, format!("VHD block size {bs}")));
        }
        let entries = u64::from(h.max_table_entries.get());
        if entries < disk_size.div_ceil(u64::from(bs)) {
            return Err(Error::corrupt(
                path,
                offset,
                format!("{entries} BAT entries do not cover {disk_size} bytes"),
            ));
        }
        let bat_end = h.table_offset.get().checked_add(entries * 4);
        if bat_end.is_none_or(|end| end > file_len) {
            return Err(Error::corrupt(
                path,
                offset,
                "VHD BAT lies past the end of the file",
            ));
        }
        Ok(h)
    }

    /// The parent's file name from `parent_unicode_name`.
    pub fn parent_name(&self) -> String {
        let units: Vec<u16> = self
            .parent_unicode_name
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        String::from_utf16_lossy(&units)
    }

    /// Sets `parent_unicode_name`, truncated to 255 UTF-16 units.
    pub fn set_parent_name(&mut self, name: &str) {
        self.parent_unicode_name = [0; 512];
        for (i, unit) in name.encode_utf16().take(255).enumerate() {
            self.parent_unicode_name[i * 2..i * 2 + 2].copy_from_slice(&unit.to_be_bytes());
        }
    }
}

/// Encodes a locator path as Windows tools store it: UTF-16LE.
pub fn encode_locator(path: &str) -> Vec<u8> {
    path.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Decodes a locator payload to a path usable here (backslashes become slashes, a
/// leading `.\` is dropped).
pub fn decode_locator(bytes: &[u8]) -> PathBuf {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let text = String::from_utf16_lossy(&units).replace('\\', "/");
    PathBuf::from(text.strip_prefix("./").unwrap_or(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checksum_and_bat_bounds_are_verified() {
        let mut h = DynamicHeader::new(1536, 32, DEFAULT_BLOCK_SIZE);
        h.set_parent_name("base.vhd");
        h.seal();
        let p = Path::new("x.vhd");
        let ok = DynamicHeader::parse(h.as_bytes(), p, 512, 64 << 20, 1 << 20).unwrap();
        assert_eq!(ok.parent_name(), "base.vhd");
        // Too few entries for the size.
        assert!(DynamicHeader::parse(h.as_bytes(), p, 512, 65 << 20, 1 << 20).is_err());
        // BAT past the end of the file.
        assert!(DynamicHeader::parse(h.as_bytes(), p, 512, 64 << 20, 1536).is_err());
        let mut bytes = h.as_bytes().to_vec();
        bytes[600] ^= 1;
        assert!(DynamicHeader::parse(&bytes, p, 512, 64 << 20, 1 << 20).is_err());
    }

    #[test]
    fn locators_round_trip() {
        assert_eq!(
            decode_locator(&encode_locator(".\\base.vhd")),
            PathBuf::from("base.vhd")
        );
        assert_eq!(
            decode_locator(&encode_locator("/a/b.vhd")),
            PathBuf::from("/a/b.vhd")
        );
    }
}
