//! The VHDX metadata region (MS-VHDX 2.6): a table of items giving block size, virtual
//! size, sector sizes, the page 83 id and, for differencing disks, the parent locator.

use std::path::Path;

use uuid::Uuid;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::header::{guid_bytes, guid_from};
use crate::error::{Error, ErrorKind, Result};

/// Metadata table signature.
pub const METADATA_SIGNATURE: [u8; 8] = *b"metadata";
/// Size of the metadata table; items start at or after it.
pub const TABLE_SIZE: usize = 64 << 10;
/// Most metadata entries allowed.
pub const MAX_ENTRIES: u16 = 2047;
/// File parameters item (block size, flags).
pub const FILE_PARAMETERS: Uuid = uuid::uuid!("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
/// Virtual disk size item.
pub const VIRTUAL_DISK_SIZE: Uuid = uuid::uuid!("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
/// Page 83 data (virtual disk id) item.
pub const PAGE_83_DATA: Uuid = uuid::uuid!("BECA12AB-B2E6-4523-93EF-C309E000C746");
/// Logical sector size item.
pub const LOGICAL_SECTOR_SIZE: Uuid = uuid::uuid!("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
/// Physical sector size item.
pub const PHYSICAL_SECTOR_SIZE: Uuid = uuid::uuid!("CDA348C7-445D-4471-9CC9-E9885251C556");
/// Parent locator item.
pub const PARENT_LOCATOR: Uuid = uuid::uuid!("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");
/// The VHDX parent locator type.
pub const LOCATOR_TYPE_VHDX: Uuid = uuid::uuid!("B04AEFB7-D19E-4A81-B789-25B8E9445913");
/// File parameters flag: the disk has a parent.
pub const HAS_PARENT: u32 = 1 << 1;
/// Entry flag: user metadata.
pub const ENTRY_IS_USER: u32 = 1 << 0;
/// Entry flag: virtual disk metadata.
pub const ENTRY_IS_VIRTUAL_DISK: u32 = 1 << 1;
/// Entry flag: a reader must understand the item.
pub const ENTRY_IS_REQUIRED: u32 = 1 << 2;
/// Largest virtual size (64 TiB).
pub const MAX_SIZE: u64 = 64 << 40;

/// The metadata table header.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TableHeader {
    /// [`METADATA_SIGNATURE`].
    pub signature: [u8; 8],
    /// Zero.
    pub reserved: U16,
    /// Entries that follow.
    pub entry_count: U16,
    /// Zero.
    pub reserved2: [u8; 20],
}

const _: () = assert!(size_of::<TableHeader>() == 32);

/// One metadata table entry.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Entry {
    /// Which item.
    pub item_id: [u8; 16],
    /// Offset of the item from the start of the region.
    pub offset: U32,
    /// Length of the item.
    pub length: U32,
    /// `ENTRY_*` bits.
    pub flags: U32,
    /// Zero.
    pub reserved: U32,
}

const _: () = assert!(size_of::<Entry>() == 32);

/// Parent locator header, followed by key/value entries.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct LocatorHeader {
    /// [`LOCATOR_TYPE_VHDX`].
    pub locator_type: [u8; 16],
    /// Zero.
    pub reserved: U16,
    /// Key/value pairs that follow.
    pub key_value_count: U16,
}

const _: () = assert!(size_of::<LocatorHeader>() == 20);

/// One parent locator key/value entry; offsets are from the start of the locator.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct LocatorEntry {
    /// Offset of the UTF-16LE key.
    pub key_offset: U32,
    /// Offset of the UTF-16LE value.
    pub value_offset: U32,
    /// Key length in bytes.
    pub key_length: U16,
    /// Value length in bytes.
    pub value_length: U16,
}

const _: () = assert!(size_of::<LocatorEntry>() == 12);

/// The metadata this crate needs, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Payload block size in bytes.
    pub block_size: u32,
    /// The disk has a parent.
    pub has_parent: bool,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Page 83 id.
    pub disk_id: Uuid,
    /// Logical sector size, 512 or 4096.
    pub logical_sector_size: u32,
    /// Physical sector size, 512 or 4096.
    pub physical_sector_size: u32,
    /// Parent locator key/value pairs (`parent_linkage`, `relative_path`, ...).
    pub parent_locator: Vec<(String, String)>,
}

fn utf16le(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn encode_utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn parse_locator(item: &[u8], path: &Path, at: u64) -> Result<Vec<(String, String)>> {
    let bad = |m: &str| Error::corrupt(path, at, format!("VHDX parent locator: {m}"));
    let (h, rest) = LocatorHeader::read_from_prefix(item).map_err(|_| bad("too short"))?;
    if guid_from(h.locator_type) != LOCATOR_TYPE_VHDX {
        return Err(
            Error::new(ErrorKind::Unsupported, "VHDX parent locator type")
                .with_path(path)
                .with_offset(at),
        );
    }
    let count = h.key_value_count.get() as usize;
    let (entries, _) = <[LocatorEntry]>::ref_from_prefix_with_elems(rest, count)
        .map_err(|_| bad("entries past the item"))?;
    let slice = |off: u32, len: u16| {
        let start = off as usize;
        item.get(start..start + len as usize)
            .ok_or_else(|| bad("key or value past the item"))
    };
    entries
        .iter()
        .map(|e| {
            Ok((
                utf16le(slice(e.key_offset.get(), e.key_length.get())?),
                utf16le(slice(e.value_offset.get(), e.value_length.get())?),
            ))
        })
        .collect()
}

impl Metadata {
    /// Parses the metadata region `region` (read from file offset `at`), verifying the
    /// table, that every item lies in the region, that required items are known, and the
    /// values of the known items.
    pub fn parse(region: &[u8], path: &Path, at: u64) -> Result<Self> {
        let bad = |m: String| Error::corrupt(path, at, format!("VHDX metadata: {m}"));
        let (h, rest) =
            TableHeader::read_from_prefix(region).map_err(|_| bad("too short".into()))?;
        if h.signature != METADATA_SIGNATURE {
            return Err(bad("no signature".into()));
        }
        let count = h.entry_count.get();
        if count > MAX_ENTRIES {
            return Err(bad(format!("{count} entries")));
        }
        let (entries, _) = <[Entry]>::ref_from_prefix_with_elems(rest, count as usize)
            .map_err(|_| bad("entries past the region".into()))?;
        let mut found: Vec<(Uuid, &[u8])> = Vec::new();
        for e in entries {
            let id = guid_from(e.item_id);
            let (off, len) = (e.offset.get() as usize, e.length.get() as usize);
            let item = if len == 0 {
                &[][..]
            } else {
                if off < TABLE_SIZE {
                    return Err(bad(format!("item {id} inside the table")));
                }
                region
                    .get(off..off.saturating_add(len))
                    .ok_or_else(|| bad(format!("item {id} past the region")))?
            };
            let known = [
                FILE_PARAMETERS,
                VIRTUAL_DISK_SIZE,
                PAGE_83_DATA,
                LOGICAL_SECTOR_SIZE,
                PHYSICAL_SECTOR_SIZE,
                PARENT_LOCATOR,
            ];
            if known.contains(&id) {
                found.push((id, item));
            } else if e.flags.get() & ENTRY_IS_REQUIRED != 0 {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("required VHDX metadata item {id}"),
                )
                .with_path(path));
            }
        }
        let get = |id: Uuid, len: usize| -> Result<&[u8]> {
            found
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, b)| *b)
                .filter(|b| b.len() >= len)
                .ok_or_else(|| bad(format!("missing or short item {id}")))
        };
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let params = get(FILE_PARAMETERS, 8)?;
        let block_size = u32_at(params, 0);
        let has_parent = u32_at(params, 4) & HAS_PARENT != 0;
        if !block_size.is_power_of_two() || !(1 << 20..=256 << 20).contains(&block_size) {
            return Err(bad(format!("block size {block_size}")));
        }
        let size = get(VIRTUAL_DISK_SIZE, 8)?;
        let mut size8 = [0u8; 8];
        size8.copy_from_slice(&size[..8]);
        let virtual_size = u64::from_le_bytes(size8);
        let mut id16 = [0u8; 16];
        id16.copy_from_slice(&get(PAGE_83_DATA, 16)?[..16]);
        let logical_sector_size = u32_at(get(LOGICAL_SECTOR_SIZE, 4)?, 0);
        let physical_sector_size = u32_at(get(PHYSICAL_SECTOR_SIZE, 4)?, 0);
        for s in [logical_sector_size, physical_sector_size] {
            if s != 512 && s != 4096 {
                return Err(bad(format!("sector size {s}")));
            }
        }
        if virtual_size == 0
            || virtual_size > MAX_SIZE
            || !virtual_size.is_multiple_of(u64::from(logical_sector_size))
        {
            return Err(bad(format!("virtual size {virtual_size}")));
        }
        let parent_locator = if has_parent {
            parse_locator(get(PARENT_LOCATOR, 20)?, path, at)?
        } else {
            Vec::new()
        };
        Ok(Metadata {
            block_size,
            has_parent,
            virtual_size,
            disk_id: guid_from(id16),
            logical_sector_size,
            physical_sector_size,
            parent_locator,
        })
    }

    /// The value of a parent locator key.
    pub fn locator(&self, key: &str) -> Option<&str> {
        self.parent_locator
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The metadata region (`len` bytes) describing this disk.
    pub fn to_region(&self, len: usize) -> Vec<u8> {
        let mut region = vec![0u8; len];
        let mut items: Vec<(Uuid, Vec<u8>, u32)> = vec![
            (
                FILE_PARAMETERS,
                [
                    self.block_size.to_le_bytes(),
                    (if self.has_parent { HAS_PARENT } else { 0 }).to_le_bytes(),
                ]
                .concat(),
                ENTRY_IS_REQUIRED,
            ),
            (
                VIRTUAL_DISK_SIZE,
                self.virtual_size.to_le_bytes().to_vec(),
                ENTRY_IS_REQUIRED | ENTRY_IS_VIRTUAL_DISK,
            ),
            (
                PAGE_83_DATA,
                guid_bytes(self.disk_id).to_vec(),
                ENTRY_IS_REQUIRED | ENTRY_IS_VIRTUAL_DISK,
            ),
            (
                LOGICAL_SECTOR_SIZE,
                self.logical_sector_size.to_le_bytes().to_vec(),
                ENTRY_IS_REQUIRED | ENTRY_IS_VIRTUAL_DISK,
            ),
            (
                PHYSICAL_SECTOR_SIZE,
                self.physical_sector_size.to_le_bytes().to_vec(),
                ENTRY_IS_REQUIRED | ENTRY_IS_VIRTUAL_DISK,
            ),
        ];
        if self.has_parent {
            items.push((PARENT_LOCATOR, self.locator_item(), ENTRY_IS_REQUIRED));
        }
        let mut h = TableHeader::new_zeroed();
        h.signature = METADATA_SIGNATURE;
        h.entry_count = (items.len() as u16).into();
        region[..32].copy_from_slice(h.as_bytes());
        let mut at = TABLE_SIZE;
        for (i, (id, data, flags)) in items.iter().enumerate() {
            let mut e = Entry::new_zeroed();
            e.item_id = guid_bytes(*id);
            e.offset = (at as u32).into();
            e.length = (data.len() as u32).into();
            e.flags = (*flags).into();
            region[32 + i * 32..64 + i * 32].copy_from_slice(e.as_bytes());
            region[at..at + data.len()].copy_from_slice(data);
            at += data.len().next_multiple_of(8);
        }
        region
    }

    fn locator_item(&self) -> Vec<u8> {
        let n = self.parent_locator.len();
        let mut h = LocatorHeader::new_zeroed();
        h.locator_type = guid_bytes(LOCATOR_TYPE_VHDX);
        h.key_value_count = (n as u16).into();
        let mut head = h.as_bytes().to_vec();
        let mut strings = Vec::new();
        let base = 20 + 12 * n;
        for (k, v) in &self.parent_locator {
            let (k, v) = (encode_utf16le(k), encode_utf16le(v));
            let mut e = LocatorEntry::new_zeroed();
            e.key_offset = ((base + strings.len()) as u32).into();
            e.key_length = (k.len() as u16).into();
            strings.extend_from_slice(&k);
            e.value_offset = ((base + strings.len()) as u32).into();
            e.value_length = (v.len() as u16).into();
            strings.extend_from_slice(&v);
            head.extend_from_slice(e.as_bytes());
        }
        head.extend_from_slice(&strings);
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_with_a_parent_locator() {
        let m = Metadata {
            block_size: 2 << 20,
            has_parent: true,
            virtual_size: 64 << 20,
            disk_id: Uuid::new_v4(),
            logical_sector_size: 512,
            physical_sector_size: 4096,
            parent_locator: vec![
                (
                    "parent_linkage".into(),
                    "{00000000-0000-0000-0000-000000000001}".into(),
                ),
                ("relative_path".into(), ".\\base.vhdx".into()),
            ],
        };
        let region = m.to_region(1 << 20);
        let back = Metadata::parse(&region, Path::new("x"), 0).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.locator("relative_path"), Some(".\\base.vhdx"));
        let mut broken = region.clone();
        broken[TABLE_SIZE] = 3; // block size 0x200003
        assert!(Metadata::parse(&broken, Path::new("x"), 0).is_err());
        assert!(Metadata::parse(&region[..100], Path::new("x"), 0).is_err());
    }
}
