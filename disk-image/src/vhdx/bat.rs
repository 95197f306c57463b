//! The VHDX block allocation table (MS-VHDX 2.5): payload block entries interleaved, every
//! `chunk_ratio` entries, with a sector bitmap block entry.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{Error, Result};
use crate::file::ImageFile;

/// Payload block state: not present (parent's or zeros).
pub const PAYLOAD_NOT_PRESENT: u64 = 0;
/// Payload block state: undefined contents.
pub const PAYLOAD_UNDEFINED: u64 = 1;
/// Payload block state: zeros.
pub const PAYLOAD_ZERO: u64 = 2;
/// Payload block state: unmapped (trimmed).
pub const PAYLOAD_UNMAPPED: u64 = 3;
/// Payload block state: all sectors in this file.
pub const PAYLOAD_FULLY_PRESENT: u64 = 6;
/// Payload block state: the sector bitmap says which sectors are in this file.
pub const PAYLOAD_PARTIALLY_PRESENT: u64 = 7;
/// Sector bitmap block state: present.
pub const SB_PRESENT: u64 = 6;
/// Bytes in a sector bitmap block.
pub const SECTOR_BITMAP_BYTES: u64 = 1 << 20;
/// Mask of the state bits.
pub const STATE_MASK: u64 = 7;
/// Mask of the file offset bits (1 MiB units from bit 20).
pub const OFFSET_MASK: u64 = !((1 << 20) - 1);

/// The BAT, cached.
#[derive(Debug)]
pub struct Bat {
    offset: u64,
    entries: Vec<u64>,
    chunk_ratio: u64,
    dirty: BTreeSet<usize>,
}

/// Entries a BAT needs for `blocks` payload blocks.
pub fn entry_count(blocks: u64, chunk_ratio: u64, has_parent: bool) -> u64 {
    let chunks = blocks.div_ceil(chunk_ratio);
    if has_parent {
        chunks * (chunk_ratio + 1)
    } else {
        blocks + blocks.saturating_sub(1) / chunk_ratio
    }
}

impl Bat {
    /// An empty table.
    pub fn new(offset: u64, count: usize, chunk_ratio: u64) -> Self {
        Bat {
            offset,
            entries: vec![0; count],
            chunk_ratio,
            dirty: BTreeSet::new(),
        }
    }

    /// Loads `count` entries from `offset` (the region check bounded them by the file) and
    /// checks every present block lies in a file of `file_len` bytes.
    pub fn load(
        file: &ImageFile,
        offset: u64,
        count: usize,
        chunk_ratio: u64,
        block_size: u64,
        file_len: u64,
    ) -> Result<Self> {
        let mut buf = vec![0u8; count * 8];
        file.read_exact_at(&mut buf, offset)?;
        let entries: Vec<u64> = buf
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        let bat = Bat {
            offset,
            entries,
            chunk_ratio,
            dirty: BTreeSet::new(),
        };
        bat.check(block_size, file_len, file.path())?;
        Ok(bat)
    }

    fn check(&self, block_size: u64, file_len: u64, path: &Path) -> Result<()> {
        for (i, &e) in self.entries.iter().enumerate() {
            let bitmap = (i as u64 + 1).is_multiple_of(self.chunk_ratio + 1);
            let state = e & STATE_MASK;
            let present = if bitmap {
                state == SB_PRESENT
            } else {
                state == PAYLOAD_FULLY_PRESENT || state == PAYLOAD_PARTIALLY_PRESENT
            };
            let len = if bitmap {
                SECTOR_BITMAP_BYTES
            } else {
                block_size
            };
            let at = e & OFFSET_MASK;
            if present
                && (at < 1 << 20 || at.saturating_add(len) > file_len.next_multiple_of(1 << 20))
            {
                return Err(Error::corrupt(
                    path,
                    self.offset + i as u64 * 8,
                    format!("BAT entry {i} points at byte {at}, outside the file"),
                ));
            }
        }
        Ok(())
    }

    fn payload_index(&self, block: u64) -> usize {
        (block + block / self.chunk_ratio) as usize
    }

    fn bitmap_index(&self, chunk: u64) -> usize {
        (chunk * (self.chunk_ratio + 1) + self.chunk_ratio) as usize
    }

    /// The state and file offset of payload block `block`.
    pub fn payload(&self, block: u64) -> (u64, u64) {
        let e = self
            .entries
            .get(self.payload_index(block))
            .copied()
            .unwrap_or(0);
        (e & STATE_MASK, e & OFFSET_MASK)
    }

    /// The file offset of chunk `chunk`'s sector bitmap, if present.
    pub fn bitmap(&self, chunk: u64) -> Option<u64> {
        let e = self.entries.get(self.bitmap_index(chunk)).copied()?;
        (e & STATE_MASK == SB_PRESENT).then_some(e & OFFSET_MASK)
    }

    /// Sets payload block `block`.
    pub fn set_payload(&mut self, block: u64, state: u64, offset: u64) {
        let i = self.payload_index(block);
        if let Some(e) = self.entries.get_mut(i) {
            *e = offset | state;
            self.dirty.insert(i);
        }
    }

    /// Sets chunk `chunk`'s sector bitmap as present at `offset`.
    pub fn set_bitmap(&mut self, chunk: u64, offset: u64) {
        let i = self.bitmap_index(chunk);
        if let Some(e) = self.entries.get_mut(i) {
            *e = offset | SB_PRESENT;
            self.dirty.insert(i);
        }
    }

    /// True when entries changed since the last write-back.
    pub fn dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Writes the 4 KiB pages of the table that hold changed entries.
    pub fn write_back(&mut self, file: &ImageFile) -> Result<()> {
        let pages: BTreeSet<usize> = self.dirty.iter().map(|i| i / 512).collect();
        for p in pages {
            let start = p * 512;
            let end = (start + 512).min(self.entries.len());
            let bytes: Vec<u8> = self.entries[start..end]
                .iter()
                .flat_map(|e| e.to_le_bytes())
                .collect();
            file.write_all_at(&bytes, self.offset + start as u64 * 8)?;
        }
        self.dirty.clear();
        Ok(())
    }
}
