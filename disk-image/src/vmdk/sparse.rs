//! A `monolithicSparse` VMDK as a [`Disk`]: create, open, read, write, flush.

use std::ops::Range;
use std::path::Path;

use zerocopy::{FromZeros, IntoBytes};

use super::descriptor::{Descriptor, Extent, NO_PARENT_CID};
use super::grain::{Grain, GrainMap};
use super::header::{
    DEFAULT_GRAIN_SECTORS, FLAG_COMPRESSED, FLAG_MARKERS, FLAG_NEWLINE_DETECT,
    FLAG_REDUNDANT_GRAIN_TABLE, GD_AT_END, GTES_PER_GT, MAX_CAPACITY_SECTORS, SECTOR, SPARSE_MAGIC,
    SparseExtentHeader,
};
use super::new_cid;
use crate::disk::{
    Disk, DiskId, Durability, Format, ParentLink, check_range, link_parent, read_parent_or_zero,
};
use crate::error::{Error, ErrorKind, Result};
use crate::file::ImageFile;

/// Sectors reserved for the embedded descriptor in disks this crate creates.
const DESCRIPTOR_SECTORS: u64 = 20;
const CREATE_TYPE: &str = "monolithicSparse";

/// A VMDK hosted sparse extent with an embedded descriptor (`monolithicSparse`), possibly
/// a delta disk on a parent.
#[derive(Debug)]
pub struct SparseVmdk {
    file: ImageFile,
    header: SparseExtentHeader,
    descriptor: Descriptor,
    map: GrainMap,
    grain: u64,
    size: u64,
    /// First free sector at the end of the file, where new tables and grains go.
    next_free: u64,
    parent: Option<Box<dyn Disk>>,
    cid_bumped: bool,
    data_dirty: bool,
}

/// What a read or write of one run of the disk meets.
enum Run {
    /// Grains stored contiguously in the file from this byte offset.
    File(u64),
    /// Grains that read as zeros in this file.
    Zero,
    /// Grains this file does not hold.
    Unallocated,
}

impl SparseVmdk {
    /// Creates a base disk of `size` bytes (a multiple of 512); fails if `path` exists.
    pub fn create(path: &Path, size: u64) -> Result<Self> {
        Self::create_with(path, size, None)
    }

    /// Creates a delta disk on `parent`, recorded as `hint` (relative to the child's
    /// directory, or absolute). The child has the parent's size and reads through to it.
    pub fn create_child(path: &Path, parent: Box<dyn Disk>, hint: &str) -> Result<Self> {
        let Some(DiskId::VmdkCid(cid)) = parent.id() else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "parent of a VMDK delta must be a VMDK, not {}",
                    parent.format()
                ),
            )
            .with_path(parent.path()));
        };
        let mut disk = Self::create_with(path, parent.size(), Some((hint.to_string(), cid)))?;
        disk.parent = Some(parent);
        Ok(disk)
    }

    fn create_with(path: &Path, size: u64, parent: Option<(String, u32)>) -> Result<Self> {
        if !size.is_multiple_of(SECTOR) || size / SECTOR > MAX_CAPACITY_SECTORS {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("VMDK size {size} is not a multiple of 512 up to 64 TiB"),
            )
            .with_path(path));
        }
        let capacity = size / SECTOR;
        let mut header = SparseExtentHeader::new_zeroed();
        header.magic = SPARSE_MAGIC.into();
        header.version = 1.into();
        header.flags = (FLAG_NEWLINE_DETECT | FLAG_REDUNDANT_GRAIN_TABLE).into();
        header.capacity = capacity.into();
        header.grain_size = DEFAULT_GRAIN_SECTORS.into();
        header.descriptor_offset = 1.into();
        header.descriptor_size = DESCRIPTOR_SECTORS.into();
        header.num_gtes_per_gt = GTES_PER_GT.into();
        header.single_end_line_char = b'\n';
        header.non_end_line_char = b' ';
        header.double_end_line_char1 = b'\r';
        header.double_end_line_char2 = b'\n';
        // Layout as qemu and VMware write it: descriptor, redundant directory and tables,
        // directory and tables, then grains from the next grain boundary.
        let gd_entries = header.gd_entries();
        let gd_sectors = (gd_entries * 4).div_ceil(SECTOR);
        let gt_sectors = u64::from(GTES_PER_GT) * 4 / SECTOR;
        let rgd_offset = 1 + DESCRIPTOR_SECTORS;
        let gd_offset = rgd_offset + gd_sectors + gd_entries * gt_sectors;
        let overhead = (gd_offset + gd_sectors + gd_entries * gt_sectors)
            .next_multiple_of(DEFAULT_GRAIN_SECTORS);
        header.rgd_offset = rgd_offset.into();
        header.gd_offset = gd_offset.into();
        header.overhead = overhead.into();
        let sector_u32 = |s: u64| {
            u32::try_from(s).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    "disk too large for a sparse VMDK",
                )
                .with_path(path)
            })
        };
        let mut rgd = Vec::with_capacity(gd_entries as usize);
        let mut gd = Vec::with_capacity(gd_entries as usize);
        for i in 0..gd_entries {
            rgd.push(sector_u32(rgd_offset + gd_sectors + i * gt_sectors)?);
            gd.push(sector_u32(gd_offset + gd_sectors + i * gt_sectors)?);
        }
        let (parent_hint, parent_cid) = match parent {
            Some((hint, cid)) => (Some(hint), cid),
            None => (None, NO_PARENT_CID),
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let descriptor = Descriptor {
            cid: new_cid(NO_PARENT_CID),
            parent_cid,
            create_type: CREATE_TYPE.into(),
            parent_hint,
            extents: vec![Extent {
                access: "RW".into(),
                sectors: capacity,
                kind: "SPARSE".into(),
                file: file_name,
                offset: 0,
            }],
            ddb: Descriptor::default_ddb(capacity),
        };
        let file = ImageFile::create(path)?;
        let map = GrainMap::new_preallocated(&header, gd, rgd)?;
        let mut disk = SparseVmdk {
            file,
            grain: header.grain_bytes(),
            header,
            descriptor,
            map,
            size,
            next_free: overhead,
            parent: None,
            // A new disk's CID is already fresh.
            cid_bumped: true,
            data_dirty: false,
        };
        disk.file.set_len(overhead * SECTOR)?;
        disk.write_descriptor()?;
        disk.file.write_all_at(disk.header.as_bytes(), 0)?;
        disk.flush()?;
        Ok(disk)
    }

    /// Opens an existing `monolithicSparse` VMDK (without its parent; see
    /// [`crate::open_chain`]).
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        let file = ImageFile::open(path, read_only)?;
        let file_len = file.len()?;
        let mut first = [0u8; 512];
        file.read_exact_at(&mut first, 0)?;
        let header = SparseExtentHeader::parse(&first, path, file_len)?;
        if header.flags() & (FLAG_COMPRESSED | FLAG_MARKERS) != 0
            || header.gd_offset.get() == GD_AT_END
        {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "stream-optimized VMDK (compressed grains)",
            )
            .with_path(path));
        }
        if header.descriptor_offset.get() == 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "sparse extent without an embedded descriptor (open its descriptor file)",
            )
            .with_path(path));
        }
        let desc_off = header.descriptor_offset.get() * SECTOR;
        let desc_len = (header.descriptor_size.get() * SECTOR)
            .min(super::descriptor::MAX_DESCRIPTOR_BYTES as u64);
        let mut desc = vec![0u8; desc_len as usize];
        file.read_exact_at(&mut desc, desc_off)?;
        let descriptor = Descriptor::parse(&desc, path, desc_off)?;
        if descriptor.create_type != CREATE_TYPE {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("VMDK createType {:?}", descriptor.create_type),
            )
            .with_path(path));
        }
        let map = GrainMap::load(&header, &file, file_len)?;
        map.check_grains(file_len, path)?;
        Ok(SparseVmdk {
            grain: header.grain_bytes(),
            size: header.capacity.get() * SECTOR,
            next_free: file_len.div_ceil(SECTOR),
            file,
            header,
            descriptor,
            map,
            parent: None,
            cid_bumped: false,
            data_dirty: false,
        })
    }

    /// The parsed descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    fn write_descriptor(&self) -> Result<()> {
        let text = self.descriptor.render();
        let room = self.header.descriptor_size.get() * SECTOR;
        if text.len() as u64 > room {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("descriptor of {} bytes does not fit in {room}", text.len()),
            )
            .with_path(self.file.path()));
        }
        let mut buf = vec![0u8; room as usize];
        buf[..text.len()].copy_from_slice(text.as_bytes());
        self.file
            .write_all_at(&buf, self.header.descriptor_offset.get() * SECTOR)
    }

    /// The longest run from `offset` (at most `max` bytes) that reads the same way.
    fn run(&self, offset: u64, max: usize) -> (Run, usize) {
        let grain_of = |off: u64| (self.map.get(off / self.grain), off % self.grain);
        let (first, within) = grain_of(offset);
        let mut len = ((self.grain - within) as usize).min(max);
        let kind = match first {
            Grain::At(s) => Run::File(s * SECTOR + within),
            Grain::Zero => Run::Zero,
            Grain::Unallocated => Run::Unallocated,
        };
        while len < max {
            let next = offset + len as u64;
            let (g, _) = grain_of(next);
            let same = match (&kind, g) {
                (Run::File(start), Grain::At(s)) => s * SECTOR == start + len as u64,
                (Run::Zero, Grain::Zero) | (Run::Unallocated, Grain::Unallocated) => true,
                _ => false,
            };
            if !same {
                break;
            }
            len = (len + self.grain as usize).min(max);
        }
        (kind, len)
    }

    fn bump_cid(&mut self) -> Result<()> {
        if !self.cid_bumped {
            self.descriptor.cid = new_cid(self.descriptor.cid);
            self.write_descriptor()?;
            self.cid_bumped = true;
        }
        Ok(())
    }

    /// Appends `sectors` at the end of the file and returns the first one.
    fn allocate(&mut self, sectors: u64) -> Result<u32> {
        let end = self.next_free.saturating_add(sectors);
        let at = u32::try_from(self.next_free)
            .ok()
            .filter(|_| end <= u64::from(u32::MAX))
            .ok_or_else(|| {
                Error::new(ErrorKind::Unsupported, "sparse VMDK grows past 2 TiB")
                    .with_path(self.file.path())
            })?;
        self.next_free += sectors;
        Ok(at)
    }

    /// Makes sure the grain table covering grain `index` exists.
    fn ensure_table(&mut self, index: u64) -> Result<()> {
        if self.map.has_table(index) {
            return Ok(());
        }
        let gt_sectors = self.map.gt_bytes().div_ceil(SECTOR);
        let primary = self.allocate(gt_sectors)?;
        let redundant = if self.map.redundant() {
            self.allocate(gt_sectors)?
        } else {
            0
        };
        self.map.add_table(index, primary, redundant);
        Ok(())
    }

    /// Writes `data` (a whole number of grains, from grain `first`) into new grains at
    /// the end of the file.
    fn write_new_grains(&mut self, first: u64, data: &[u8]) -> Result<()> {
        let count = (data.len() as u64).div_ceil(self.grain);
        for g in first..first + count {
            self.ensure_table(g)?;
        }
        let gs = self.grain / SECTOR;
        let start = self.allocate(count * gs)?;
        self.file.write_all_at(data, u64::from(start) * SECTOR)?;
        for (i, g) in (first..first + count).enumerate() {
            self.map.set(g, start + (i as u64 * gs) as u32);
        }
        Ok(())
    }
}

impl Disk for SparseVmdk {
    fn format(&self) -> Format {
        Format::VmdkSparse
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.file.path(), self.size, offset, buf.len())?;
        let mut pos = 0;
        while pos < buf.len() {
            let at = offset + pos as u64;
            let (run, len) = self.run(at, buf.len() - pos);
            let out = &mut buf[pos..pos + len];
            match run {
                Run::File(file_off) => self.file.read_zero_fill_at(out, file_off)?,
                Run::Zero => out.fill(0),
                Run::Unallocated => read_parent_or_zero(self.parent.as_deref(), out, at)?,
            }
            pos += len;
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.file.path(), self.size, offset, buf.len())?;
        if !self.file.writable() {
            return Err(Error::new(ErrorKind::ReadOnly, "VMDK opened read-only")
                .with_path(self.file.path())
                .with_offset(offset));
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.bump_cid()?;
        self.data_dirty = true;
        let grain = self.grain as usize;
        let mut pos = 0;
        while pos < buf.len() {
            let at = offset + pos as u64;
            let (run, len) = self.run(at, buf.len() - pos);
            match run {
                Run::File(file_off) => {
                    self.file.write_all_at(&buf[pos..pos + len], file_off)?;
                    pos += len;
                }
                Run::Zero | Run::Unallocated => {
                    let index = at / self.grain;
                    let within = (at % self.grain) as usize;
                    let grain_start = index * self.grain;
                    let whole = len / grain * grain;
                    if within == 0 && whole > 0 && grain_start + whole as u64 <= self.size {
                        // Whole grains: straight from the caller's buffer, one write.
                        self.write_new_grains(index, &buf[pos..pos + whole])?;
                        pos += whole;
                    } else {
                        // Part of one grain: fill the rest from what reads there now.
                        let n = (grain - within).min(buf.len() - pos);
                        let mut data = vec![0u8; grain];
                        let visible = (self.size - grain_start).min(self.grain) as usize;
                        if matches!(run, Run::Unallocated) {
                            read_parent_or_zero(
                                self.parent.as_deref(),
                                &mut data[..visible],
                                grain_start,
                            )?;
                        }
                        data[within..within + n].copy_from_slice(&buf[pos..pos + n]);
                        self.write_new_grains(index, &data)?;
                        pos += n;
                    }
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.file.writable() {
            return Ok(());
        }
        // Grain data first, then the tables that point at it, then the directory.
        if self.data_dirty || self.map.dirty() {
            self.file.sync_data()?;
            self.data_dirty = false;
        }
        if self.map.dirty() {
            self.map.write_back(&self.file)?;
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn set_durability(&mut self, durability: Durability) {
        self.file.set_durability(durability);
    }

    fn allocated_ranges(&self) -> Result<Vec<Range<u64>>> {
        let mut ranges: Vec<Range<u64>> = Vec::new();
        let grains = self.size.div_ceil(self.grain);
        for g in 0..grains {
            if self.map.get(g) == Grain::Unallocated {
                continue;
            }
            let start = g * self.grain;
            let end = (start + self.grain).min(self.size);
            match ranges.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ => ranges.push(start..end),
            }
        }
        Ok(ranges)
    }

    fn parent(&self) -> Option<&dyn Disk> {
        self.parent.as_deref()
    }

    fn parent_link(&self) -> Option<ParentLink> {
        if self.descriptor.parent_cid == NO_PARENT_CID && self.descriptor.parent_hint.is_none() {
            return None;
        }
        Some(ParentLink {
            hints: self.descriptor.parent_hint.iter().map(Into::into).collect(),
            expected: DiskId::VmdkCid(self.descriptor.parent_cid),
        })
    }

    fn id(&self) -> Option<DiskId> {
        Some(DiskId::VmdkCid(self.descriptor.cid))
    }

    fn set_parent(&mut self, parent: Box<dyn Disk>) -> Result<()> {
        let link = self.parent_link();
        link_parent(self.file.path(), link, parent, &mut self.parent)
    }
}

impl Drop for SparseVmdk {
    fn drop(&mut self) {
        // Best effort: callers that need the error call flush() themselves.
        let _ = self.flush();
    }
}
