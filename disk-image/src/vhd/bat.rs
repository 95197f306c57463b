//! The block allocation table and per-block sector bitmaps of a dynamic VHD, cached in
//! memory and written back on flush.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::header::BAT_UNUSED;
use crate::error::{Error, Result};
use crate::file::ImageFile;

const SECTOR: u64 = 512;

/// The BAT: for each block, the sector of its bitmap (followed by its data).
#[derive(Debug)]
pub struct Bat {
    offset: u64,
    entries: Vec<u32>,
    dirty_sectors: BTreeSet<usize>,
}

impl Bat {
    /// A table of `count` unused entries at file `offset`.
    pub fn new(offset: u64, count: usize) -> Self {
        Bat {
            offset,
            entries: vec![BAT_UNUSED; count],
            dirty_sectors: BTreeSet::new(),
        }
    }

    /// Reads `count` entries at `offset` (the header check bounded them by the file).
    pub fn load(file: &ImageFile, offset: u64, count: usize) -> Result<Self> {
        let mut buf = vec![0u8; count * 4];
        file.read_exact_at(&mut buf, offset)?;
        let entries = buf
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Bat {
            offset,
            entries,
            dirty_sectors: BTreeSet::new(),
        })
    }

    /// Checks that every allocated block's bitmap starts at or after `first` and ends by
    /// `file_len`.
    pub fn check(&self, bitmap_bytes: u64, first: u64, file_len: u64, path: &Path) -> Result<()> {
        for (i, &e) in self.entries.iter().enumerate() {
            if e == BAT_UNUSED {
                continue;
            }
            let at = u64::from(e) * SECTOR;
            if at < first || at + bitmap_bytes > file_len {
                return Err(Error::corrupt(
                    path,
                    self.offset + i as u64 * 4,
                    format!("BAT entry {i} points at byte {at}, outside the data area"),
                ));
            }
        }
        Ok(())
    }

    /// The sector of block `index`'s bitmap, if allocated.
    pub fn get(&self, index: usize) -> Option<u32> {
        self.entries
            .get(index)
            .copied()
            .filter(|&e| e != BAT_UNUSED)
    }

    /// Records block `index` at `sector`.
    pub fn set(&mut self, index: usize, sector: u32) {
        if let Some(e) = self.entries.get_mut(index) {
            *e = sector;
            self.dirty_sectors.insert(index * 4 / SECTOR as usize);
        }
    }

    /// The table as stored, padded with unused entries to whole sectors.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self.entries.iter().flat_map(|e| e.to_be_bytes()).collect();
        bytes.resize(bytes.len().next_multiple_of(SECTOR as usize), 0xff);
        bytes
    }

    /// True when entries changed since the last write-back.
    pub fn dirty(&self) -> bool {
        !self.dirty_sectors.is_empty()
    }

    /// Writes the changed sectors of the table.
    pub fn write_back(&mut self, file: &ImageFile) -> Result<()> {
        if self.dirty_sectors.is_empty() {
            return Ok(());
        }
        let bytes = self.to_bytes();
        for &s in &self.dirty_sectors {
            let start = s * SECTOR as usize;
            let end = (start + SECTOR as usize).min(bytes.len());
            file.write_all_at(&bytes[start..end], self.offset + start as u64)?;
        }
        self.dirty_sectors.clear();
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Sector bitmaps of allocated blocks (bit set: the sector is in this file), for
/// differencing disks, where unset sectors read from the parent.
#[derive(Debug, Default)]
pub struct Bitmaps {
    maps: HashMap<usize, Vec<u8>>,
    dirty: BTreeSet<usize>,
}

impl Bitmaps {
    /// Loads the bitmap of every allocated block; their total is bounded by the file.
    pub fn load(file: &ImageFile, bat: &Bat, bitmap_bytes: u64, file_len: u64) -> Result<Self> {
        let mut maps = HashMap::new();
        let mut total = 0u64;
        for i in 0..bat.len() {
            let Some(sector) = bat.get(i) else { continue };
            total += bitmap_bytes;
            if total > file_len {
                return Err(Error::corrupt(
                    file.path(),
                    u64::from(sector) * SECTOR,
                    "more block bitmaps than the file can hold",
                ));
            }
            let mut map = vec![0u8; bitmap_bytes as usize];
            file.read_exact_at(&mut map, u64::from(sector) * SECTOR)?;
            maps.insert(i, map);
        }
        Ok(Bitmaps {
            maps,
            dirty: BTreeSet::new(),
        })
    }

    /// Adds an all-clear bitmap for a new block.
    pub fn add(&mut self, block: usize, bitmap_bytes: u64) {
        self.maps.insert(block, vec![0; bitmap_bytes as usize]);
    }

    /// True when sector `sector` (within `block`) is stored in this file.
    pub fn is_set(&self, block: usize, sector: u64) -> bool {
        self.maps.get(&block).is_some_and(|m| {
            m.get((sector / 8) as usize)
                .is_some_and(|byte| byte & (0x80 >> (sector % 8)) != 0)
        })
    }

    /// Marks sectors `[from, to)` of `block` as stored in this file.
    pub fn set_range(&mut self, block: usize, from: u64, to: u64) {
        if let Some(m) = self.maps.get_mut(&block) {
            for s in from..to {
                if let Some(byte) = m.get_mut((s / 8) as usize) {
                    *byte |= 0x80 >> (s % 8);
                }
            }
            self.dirty.insert(block);
        }
    }

    /// Writes changed bitmaps, each to the sector its BAT entry names.
    pub fn write_back(&mut self, file: &ImageFile, bat: &Bat) -> Result<()> {
        for &block in &self.dirty {
            if let (Some(map), Some(sector)) = (self.maps.get(&block), bat.get(block)) {
                file.write_all_at(map, u64::from(sector) * SECTOR)?;
            }
        }
        self.dirty.clear();
        Ok(())
    }

    /// True when bitmaps changed since the last write-back.
    pub fn dirty(&self) -> bool {
        !self.dirty.is_empty()
    }
}
