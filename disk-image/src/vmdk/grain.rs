//! The grain directory and grain tables of a sparse extent, cached in memory.
//!
//! A grain directory entry (GDE) is the sector of a grain table (GT); a grain table entry
//! (GTE) is the sector of a grain, 0 when unallocated, or 1 for a zero grain when the
//! header allows it. A redundant directory points at a second copy of every table; both
//! copies are kept in step.

use std::collections::BTreeSet;
use std::path::Path;

use super::header::{FLAG_REDUNDANT_GRAIN_TABLE, FLAG_ZERO_GRAIN_GTE, SECTOR, SparseExtentHeader};
use crate::error::{Error, Result};
use crate::file::ImageFile;

/// Where one grain's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// Not in this file: read the parent (or zeros).
    Unallocated,
    /// In this file as zeros, masking the parent.
    Zero,
    /// In this file at this sector.
    At(u64),
}

/// The grain directory (and its redundant copy) with every allocated grain table.
#[derive(Debug)]
pub struct GrainMap {
    gtes_per_gt: usize,
    zero_gte: bool,
    gd_offset: u64,
    rgd_offset: Option<u64>,
    gd: Vec<u32>,
    rgd: Vec<u32>,
    tables: Vec<Option<Vec<u32>>>,
    dirty_tables: BTreeSet<usize>,
    gd_dirty: bool,
}

fn le_u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn to_le_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

impl GrainMap {
    /// Bytes of one grain table.
    pub fn gt_bytes(&self) -> u64 {
        self.gtes_per_gt as u64 * 4
    }

    /// A map for a new disk whose tables are all preallocated, zeroed, at the given sectors.
    pub fn new_preallocated(
        header: &SparseExtentHeader,
        gd: Vec<u32>,
        rgd: Vec<u32>,
    ) -> Result<Self> {
        let gtes_per_gt = header.num_gtes_per_gt.get() as usize;
        let tables = gd.iter().map(|_| Some(vec![0u32; gtes_per_gt])).collect();
        Ok(GrainMap {
            gtes_per_gt,
            zero_gte: header.flags() & FLAG_ZERO_GRAIN_GTE != 0,
            gd_offset: header.gd_offset.get(),
            rgd_offset: (header.flags() & FLAG_REDUNDANT_GRAIN_TABLE != 0)
                .then(|| header.rgd_offset.get()),
            gd,
            rgd,
            tables,
            dirty_tables: BTreeSet::new(),
            gd_dirty: true,
        })
    }

    /// Loads the directory and every allocated table. Every offset is checked against
    /// the file length, and the tables together must fit in the file, so memory is bounded
    /// by the file's size.
    pub fn load(header: &SparseExtentHeader, file: &ImageFile, file_len: u64) -> Result<Self> {
        let path = file.path();
        let entries = header.gd_entries();
        let gd_bytes = entries * 4;
        let gtes_per_gt = header.num_gtes_per_gt.get() as usize;
        let gt_bytes = gtes_per_gt as u64 * 4;
        let redundant = header.flags() & FLAG_REDUNDANT_GRAIN_TABLE != 0;
        let read_dir = |sector: u64, what: &str| -> Result<Vec<u32>> {
            let off = sector
                .checked_mul(SECTOR)
                .filter(|o| o.checked_add(gd_bytes).is_some_and(|end| end <= file_len))
                .ok_or_else(|| Error::corrupt(path, 0, format!("{what} lies past end of file")))?;
            let mut buf = vec![0u8; gd_bytes as usize];
            file.read_exact_at(&mut buf, off)?;
            Ok(le_u32s(&buf))
        };
        let gd = read_dir(header.gd_offset.get(), "grain directory")?;
        let rgd = if redundant {
            read_dir(header.rgd_offset.get(), "redundant grain directory")?
        } else {
            Vec::new()
        };
        let mut tables = Vec::with_capacity(gd.len());
        let mut loaded = 0u64;
        for (i, &gde) in gd.iter().enumerate() {
            if gde == 0 {
                tables.push(None);
                continue;
            }
            let off = u64::from(gde) * SECTOR;
            loaded += gt_bytes;
            if off + gt_bytes > file_len || loaded > file_len {
                return Err(Error::corrupt(
                    path,
                    off,
                    format!("grain table {i} lies past the end of the file"),
                ));
            }
            let mut buf = vec![0u8; gt_bytes as usize];
            file.read_exact_at(&mut buf, off)?;
            tables.push(Some(le_u32s(&buf)));
        }
        if redundant && rgd.iter().zip(&gd).any(|(&r, &g)| (r == 0) != (g == 0)) {
            return Err(Error::corrupt(
                path,
                header.rgd_offset.get() * SECTOR,
                "redundant grain directory disagrees with the primary",
            ));
        }
        Ok(GrainMap {
            gtes_per_gt,
            zero_gte: header.flags() & FLAG_ZERO_GRAIN_GTE != 0,
            gd_offset: header.gd_offset.get(),
            rgd_offset: redundant.then(|| header.rgd_offset.get()),
            gd,
            rgd,
            tables,
            dirty_tables: BTreeSet::new(),
            gd_dirty: false,
        })
    }

    /// Where grain `index` is.
    pub fn get(&self, index: u64) -> Grain {
        let t = (index / self.gtes_per_gt as u64) as usize;
        let e = (index % self.gtes_per_gt as u64) as usize;
        match self.tables.get(t).and_then(|t| t.as_ref()) {
            None => Grain::Unallocated,
            Some(table) => match table[e] {
                0 => Grain::Unallocated,
                1 if self.zero_gte => Grain::Zero,
                s => Grain::At(u64::from(s)),
            },
        }
    }

    /// True when grain `index` has a table to record it in.
    pub fn has_table(&self, index: u64) -> bool {
        let t = (index / self.gtes_per_gt as u64) as usize;
        self.tables.get(t).is_some_and(|t| t.is_some())
    }

    /// Gives grain `index` a table at `sector` (and `redundant_sector` for the copy).
    pub fn add_table(&mut self, index: u64, sector: u32, redundant_sector: u32) {
        let t = (index / self.gtes_per_gt as u64) as usize;
        if let Some(slot) = self.tables.get_mut(t) {
            *slot = Some(vec![0; self.gtes_per_gt]);
            self.gd[t] = sector;
            if self.rgd_offset.is_some() {
                self.rgd[t] = redundant_sector;
            }
            self.dirty_tables.insert(t);
            self.gd_dirty = true;
        }
    }

    /// True when the directory keeps redundant tables.
    pub fn redundant(&self) -> bool {
        self.rgd_offset.is_some()
    }

    /// Records grain `index` at `sector`; its table must exist ([`GrainMap::has_table`]).
    pub fn set(&mut self, index: u64, sector: u32) {
        let t = (index / self.gtes_per_gt as u64) as usize;
        let e = (index % self.gtes_per_gt as u64) as usize;
        if let Some(Some(table)) = self.tables.get_mut(t) {
            table[e] = sector;
            self.dirty_tables.insert(t);
        }
    }

    /// True when tables or the directory changed since the last [`GrainMap::write_back`].
    pub fn dirty(&self) -> bool {
        self.gd_dirty || !self.dirty_tables.is_empty()
    }

    /// Writes changed tables (both copies), syncs, then the directories. The caller has
    /// synced the grain data the tables point at.
    pub fn write_back(&mut self, file: &ImageFile) -> Result<()> {
        for &t in &self.dirty_tables {
            if let Some(table) = &self.tables[t] {
                let bytes = to_le_bytes(table);
                file.write_all_at(&bytes, u64::from(self.gd[t]) * SECTOR)?;
                if self.rgd_offset.is_some() && self.rgd[t] != 0 {
                    file.write_all_at(&bytes, u64::from(self.rgd[t]) * SECTOR)?;
                }
            }
        }
        self.dirty_tables.clear();
        if self.gd_dirty {
            file.sync_data()?;
            if let Some(rgd_offset) = self.rgd_offset {
                file.write_all_at(&to_le_bytes(&self.rgd), rgd_offset * SECTOR)?;
            }
            file.write_all_at(&to_le_bytes(&self.gd), self.gd_offset * SECTOR)?;
            self.gd_dirty = false;
        }
        Ok(())
    }

    /// Checks that every allocated grain starts inside a file of `file_len` bytes.
    pub fn check_grains(&self, file_len: u64, path: &Path) -> Result<()> {
        for (t, table) in self.tables.iter().enumerate() {
            let Some(table) = table else { continue };
            for (e, &gte) in table.iter().enumerate() {
                let zero = gte == 1 && self.zero_gte;
                if gte != 0 && !zero && u64::from(gte) * SECTOR >= file_len {
                    return Err(Error::corrupt(
                        path,
                        u64::from(self.gd[t]) * SECTOR + e as u64 * 4,
                        format!(
                            "grain table entry points at sector {gte}, past the end of the file"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
