//! The VHDX header section (MS-VHDX 2.2): file type identifier, the two headers with
//! sequence numbers, and the two region tables, all little-endian and CRC-32C protected.

use std::path::Path;

use uuid::Uuid;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, ErrorKind, Result};

/// File type identifier signature at offset 0.
pub const FILE_SIGNATURE: [u8; 8] = *b"vhdxfile";
/// Header signature `head`.
pub const HEADER_SIGNATURE: [u8; 4] = *b"head";
/// Region table signature `regi`.
pub const REGION_SIGNATURE: [u8; 4] = *b"regi";
/// Offsets of the two headers.
pub const HEADER_OFFSETS: [u64; 2] = [64 << 10, 128 << 10];
/// Offsets of the two region tables.
pub const REGION_TABLE_OFFSETS: [u64; 2] = [192 << 10, 256 << 10];
/// Size of a region table.
pub const REGION_TABLE_SIZE: usize = 64 << 10;
/// Most region table entries allowed.
pub const MAX_REGION_ENTRIES: u32 = 2047;
/// The BAT region.
pub const BAT_REGION: Uuid = uuid::uuid!("2DC27766-F623-4200-9D64-115E9BFD4A08");
/// The metadata region.
pub const METADATA_REGION: Uuid = uuid::uuid!("8B7CA206-4790-4B9A-B8FE-575F050F886E");

/// CRC-32C of `bytes` with the 4 checksum bytes at `at` taken as zero.
pub fn crc_with_zero_field(bytes: &[u8], at: usize) -> u32 {
    let crc = crc32c::crc32c(&bytes[..at]);
    let crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc32c::crc32c_append(crc, &bytes[at + 4..])
}

/// A GUID as VHDX stores it (Windows mixed-endian layout).
pub fn guid_from(bytes: [u8; 16]) -> Uuid {
    Uuid::from_bytes_le(bytes)
}

/// The stored form of a GUID.
pub fn guid_bytes(id: Uuid) -> [u8; 16] {
    id.to_bytes_le()
}

/// The file type identifier, first 64 KiB of the file (only its start is structured).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FileIdentifier {
    /// [`FILE_SIGNATURE`].
    pub signature: [u8; 8],
    /// Creator, UTF-16LE, informational.
    pub creator: [u8; 512],
}

const _: () = assert!(size_of::<FileIdentifier>() == 520);

/// One header (4 KiB).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    /// [`HEADER_SIGNATURE`].
    pub signature: [u8; 4],
    /// CRC-32C of the 4 KiB header with this field zero.
    pub checksum: U32,
    /// The header with the larger number is current.
    pub sequence_number: U64,
    /// Changes when the file is first opened for writing.
    pub file_write_guid: [u8; 16],
    /// Changes before the first write of user-visible data; children link to it.
    pub data_write_guid: [u8; 16],
    /// Identifies the active log; zero when the log is empty.
    pub log_guid: [u8; 16],
    /// 0.
    pub log_version: U16,
    /// 1.
    pub version: U16,
    /// Bytes of log.
    pub log_length: U32,
    /// File offset of the log.
    pub log_offset: U64,
    /// Zero.
    pub reserved: [u8; 4016],
}

const _: () = assert!(size_of::<Header>() == 4096);

impl Header {
    /// Recomputes the checksum.
    pub fn seal(&mut self) {
        self.checksum = 0.into();
        self.checksum = crc32c::crc32c(self.as_bytes()).into();
    }

    /// Parses a header, verifying signature, checksum, version and log placement.
    pub fn parse(bytes: &[u8], path: &Path, offset: u64, file_len: u64) -> Result<Self> {
        let (h, _) = Header::read_from_prefix(bytes)
            .map_err(|_| Error::corrupt(path, offset, "file ends inside a VHDX header"))?;
        if h.signature != HEADER_SIGNATURE {
            return Err(Error::corrupt(path, offset, "no VHDX header signature"));
        }
        let want = crc_with_zero_field(h.as_bytes(), 4);
        if h.checksum.get() != want {
            return Err(Error::corrupt(
                path,
                offset,
                format!(
                    "VHDX header CRC-32C {:#x}, computed {want:#x}",
                    h.checksum.get()
                ),
            ));
        }
        if h.version.get() != 1 || h.log_version.get() != 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "VHDX version {} log version {}",
                    h.version.get(),
                    h.log_version.get()
                ),
            )
            .with_path(path)
            .with_offset(offset));
        }
        let log_end = h
            .log_offset
            .get()
            .checked_add(u64::from(h.log_length.get()));
        if h.log_length.get() % (1 << 20) != 0
            || h.log_offset.get() % (1 << 20) != 0
            || log_end.is_none_or(|end| end > file_len)
        {
            return Err(Error::corrupt(
                path,
                offset,
                "VHDX log outside the file or misaligned",
            ));
        }
        Ok(h)
    }
}

/// Region table header (16 bytes), followed by entries.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RegionTableHeader {
    /// [`REGION_SIGNATURE`].
    pub signature: [u8; 4],
    /// CRC-32C of the 64 KiB table with this field zero.
    pub checksum: U32,
    /// Entries that follow.
    pub entry_count: U32,
    /// Zero.
    pub reserved: U32,
}

const _: () = assert!(size_of::<RegionTableHeader>() == 16);

/// One region table entry.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RegionEntry {
    /// [`BAT_REGION`], [`METADATA_REGION`], ...
    pub guid: [u8; 16],
    /// File offset, 1 MiB aligned.
    pub file_offset: U64,
    /// Bytes, a multiple of 1 MiB.
    pub length: U32,
    /// Bit 0: a reader must understand this region.
    pub required: U32,
}

const _: () = assert!(size_of::<RegionEntry>() == 32);

/// Where the BAT and metadata regions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regions {
    /// BAT offset and length.
    pub bat: (u64, u32),
    /// Metadata offset and length.
    pub metadata: (u64, u32),
}

impl Regions {
    /// Parses a 64 KiB region table, verifying signature and checksum, that every
    /// required region is known and that regions lie inside the file.
    pub fn parse(table: &[u8], path: &Path, offset: u64, file_len: u64) -> Result<Self> {
        if table.len() < REGION_TABLE_SIZE {
            return Err(Error::corrupt(
                path,
                offset,
                "file ends inside a VHDX region table",
            ));
        }
        let table = &table[..REGION_TABLE_SIZE];
        let (h, rest) = RegionTableHeader::read_from_prefix(table)
            .map_err(|_| Error::corrupt(path, offset, "short VHDX region table"))?;
        if h.signature != REGION_SIGNATURE {
            return Err(Error::corrupt(
                path,
                offset,
                "no VHDX region table signature",
            ));
        }
        let want = crc_with_zero_field(table, 4);
        if h.checksum.get() != want {
            return Err(Error::corrupt(
                path,
                offset,
                format!(
                    "VHDX region table CRC-32C {:#x}, computed {want:#x}",
                    h.checksum.get()
                ),
            ));
        }
        let count = h.entry_count.get();
        if count > MAX_REGION_ENTRIES {
            return Err(Error::corrupt(
                path,
                offset,
                format!("{count} region entries"),
            ));
        }
        let (entries, _) = <[RegionEntry]>::ref_from_prefix_with_elems(rest, count as usize)
            .map_err(|_| Error::corrupt(path, offset, "region entries past the table"))?;
        let mut bat = None;
        let mut metadata = None;
        for e in entries {
            let id = guid_from(e.guid);
            let (off, len) = (e.file_offset.get(), e.length.get());
            let inside = off % (1 << 20) == 0
                && off >= 1 << 20
                && off
                    .checked_add(u64::from(len))
                    .is_some_and(|end| end <= file_len);
            if id == BAT_REGION || id == METADATA_REGION {
                if !inside {
                    return Err(Error::corrupt(
                        path,
                        offset,
                        format!("region {id} outside the file"),
                    ));
                }
                let slot = if id == BAT_REGION {
                    &mut bat
                } else {
                    &mut metadata
                };
                if slot.replace((off, len)).is_some() {
                    return Err(Error::corrupt(
                        path,
                        offset,
                        format!("region {id} listed twice"),
                    ));
                }
            } else if e.required.get() & 1 != 0 {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("required VHDX region {id}"),
                )
                .with_path(path));
            }
        }
        match (bat, metadata) {
            (Some(bat), Some(metadata)) => Ok(Regions { bat, metadata }),
            _ => Err(Error::corrupt(
                path,
                offset,
                "VHDX region table lacks BAT or metadata",
            )),
        }
    }

    /// The 64 KiB table for these regions.
    pub fn to_table(self) -> Vec<u8> {
        let mut table = vec![0u8; REGION_TABLE_SIZE];
        let mut h = RegionTableHeader::new_zeroed();
        h.signature = REGION_SIGNATURE;
        h.entry_count = 2.into();
        table[..16].copy_from_slice(h.as_bytes());
        for (i, (id, (off, len))) in [(BAT_REGION, self.bat), (METADATA_REGION, self.metadata)]
            .into_iter()
            .enumerate()
        {
            let mut e = RegionEntry::new_zeroed();
            e.guid = guid_bytes(id);
            e.file_offset = off.into();
            e.length = len.into();
            e.required = 1.into();
            table[16 + i * 32..16 + (i + 1) * 32].copy_from_slice(e.as_bytes());
        }
        let crc = crc32c::crc32c(&table);
        table[4..8].copy_from_slice(&crc.to_le_bytes());
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_table_round_trips_and_checksum_is_verified() {
        let r = Regions {
            bat: (3 << 20, 1 << 20),
            metadata: (2 << 20, 1 << 20),
        };
        let mut t = r.to_table();
        let p = Path::new("x.vhdx");
        assert_eq!(Regions::parse(&t, p, 0, 8 << 20).unwrap(), r);
        assert!(
            Regions::parse(&t, p, 0, 3 << 20).is_err(),
            "BAT past the end"
        );
        t[40] ^= 1;
        assert!(Regions::parse(&t, p, 0, 8 << 20).is_err());
    }

    #[test]
    fn header_checksum_is_verified() {
        let mut h = Header::new_zeroed();
        h.signature = HEADER_SIGNATURE;
        h.version = 1.into();
        h.log_offset = (1u64 << 20).into();
        h.log_length = (1u32 << 20).into();
        h.seal();
        let p = Path::new("x.vhdx");
        assert!(Header::parse(h.as_bytes(), p, 0, 4 << 20).is_ok());
        let mut b = h.as_bytes().to_vec();
        b[9] ^= 1;
        assert_eq!(
            Header::parse(&b, p, 0, 4 << 20).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }
}
