//! A dynamic or differencing VHDX as a [`Disk`].

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use uuid::Uuid;
use zerocopy::{FromZeros, IntoBytes};

use super::bat::{
    Bat, PAYLOAD_FULLY_PRESENT, PAYLOAD_NOT_PRESENT, PAYLOAD_PARTIALLY_PRESENT, PAYLOAD_UNDEFINED,
    PAYLOAD_UNMAPPED, PAYLOAD_ZERO, SECTOR_BITMAP_BYTES, entry_count,
};
use super::header::{
    FILE_SIGNATURE, FileIdentifier, HEADER_OFFSETS, HEADER_SIGNATURE, Header, REGION_TABLE_OFFSETS,
    REGION_TABLE_SIZE, Regions, guid_bytes, guid_from,
};
use super::log;
use super::metadata::{MAX_SIZE, Metadata};
use crate::disk::{
    Disk, DiskId, Durability, Format, ParentLink, check_range, link_parent, read_parent_or_zero,
};
use crate::error::{Error, ErrorKind, Result};
use crate::file::ImageFile;

const MIB: u64 = 1 << 20;
const LOG_OFFSET: u64 = MIB;
const LOG_LENGTH: u32 = MIB as u32;
const METADATA_OFFSET: u64 = 2 * MIB;
const METADATA_LENGTH: u32 = MIB as u32;
const BAT_OFFSET: u64 = 3 * MIB;
/// Block size of disks this crate creates (as Hyper-V uses for differencing disks).
const BLOCK_SIZE: u32 = 2 << 20;
/// Sector bitmaps are written back in pages of this many bytes.
const BITMAP_PAGE: u64 = 4096;
/// Largest metadata region read.
const MAX_METADATA_BYTES: u32 = 256 << 20;

/// A dynamic or differencing VHDX.
#[derive(Debug)]
pub struct Vhdx {
    file: ImageFile,
    header: Header,
    meta: Metadata,
    bat: Bat,
    bitmaps: HashMap<u64, Vec<u8>>,
    /// Changed 4 KiB pages of sector bitmaps: (chunk, page).
    dirty_bitmaps: BTreeSet<(u64, u64)>,
    block: u64,
    sector: u64,
    chunk_ratio: u64,
    next_free: u64,
    parent: Option<Box<dyn Disk>>,
    guid_bumped: bool,
    data_dirty: bool,
}

/// Writes `header` with the next sequence number to both header slots, oldest first, so
/// that one valid header exists at every moment.
fn update_headers(file: &ImageFile, header: &mut Header) -> Result<()> {
    for slot in HEADER_OFFSETS {
        header.sequence_number = (header.sequence_number.get() + 1).into();
        header.seal();
        file.write_all_at(header.as_bytes(), slot)?;
        file.sync_data()?;
    }
    Ok(())
}

fn new_guid() -> [u8; 16] {
    guid_bytes(Uuid::new_v4())
}

impl Vhdx {
    /// Creates a dynamic VHDX of `size` bytes; fails if `path` exists.
    pub fn create(path: &Path, size: u64) -> Result<Self> {
        Self::create_with(path, size, Vec::new())
    }

    /// Creates a differencing VHDX on `parent` (a VHDX), recorded as `hint` (relative to
    /// the child's directory, or absolute), and stacks it on the parent.
    pub fn create_child(path: &Path, parent: Box<dyn Disk>, hint: &str) -> Result<Self> {
        let (Format::Vhdx | Format::VhdxDifferencing, Some(DiskId::UniqueId(id))) =
            (parent.format(), parent.id())
        else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "parent of a differencing VHDX must be a VHDX, not {}",
                    parent.format()
                ),
            )
            .with_path(parent.path()));
        };
        let absolute = parent
            .path()
            .canonicalize()
            .map_err(|e| Error::io(parent.path(), "resolving parent path", e))?;
        let mut locator = vec![(
            "parent_linkage".to_string(),
            Uuid::from_bytes(id).braced().to_string(),
        )];
        if Path::new(hint).is_relative() {
            locator.push((
                "relative_path".into(),
                format!(".\\{}", hint.replace('/', "\\")),
            ));
        }
        locator.push((
            "absolute_win32_path".into(),
            absolute.to_string_lossy().into_owned(),
        ));
        let mut disk = Self::create_with(path, parent.size(), locator)?;
        disk.parent = Some(parent);
        Ok(disk)
    }

    fn create_with(path: &Path, size: u64, locator: Vec<(String, String)>) -> Result<Self> {
        if size == 0 || !size.is_multiple_of(512) || size > MAX_SIZE {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("VHDX size {size} is not a non-zero multiple of 512 up to 64 TiB"),
            )
            .with_path(path));
        }
        let has_parent = !locator.is_empty();
        let meta = Metadata {
            block_size: BLOCK_SIZE,
            has_parent,
            virtual_size: size,
            disk_id: Uuid::new_v4(),
            logical_sector_size: 512,
            physical_sector_size: 4096,
            parent_locator: locator,
        };
        let block = u64::from(BLOCK_SIZE);
        let chunk_ratio = (1u64 << 23) * 512 / block;
        let count = entry_count(size.div_ceil(block), chunk_ratio, has_parent);
        let bat_len = (count * 8).next_multiple_of(MIB);
        let bat_len32 = u32::try_from(bat_len).map_err(|_| {
            Error::new(ErrorKind::InvalidArgument, "VHDX BAT too large").with_path(path)
        })?;
        let regions = Regions {
            bat: (BAT_OFFSET, bat_len32),
            metadata: (METADATA_OFFSET, METADATA_LENGTH),
        };
        let mut ident = FileIdentifier::new_zeroed();
        ident.signature = FILE_SIGNATURE;
        for (i, u) in "strata disk-image".encode_utf16().enumerate() {
            ident.creator[i * 2..i * 2 + 2].copy_from_slice(&u.to_le_bytes());
        }
        let mut header = Header::new_zeroed();
        header.signature = HEADER_SIGNATURE;
        header.file_write_guid = new_guid();
        header.data_write_guid = new_guid();
        header.version = 1.into();
        header.log_length = LOG_LENGTH.into();
        header.log_offset = LOG_OFFSET.into();
        let file = ImageFile::create(path)?;
        let next_free = BAT_OFFSET + bat_len;
        file.set_len(next_free)?;
        file.write_all_at(ident.as_bytes(), 0)?;
        let table = regions.to_table();
        for at in REGION_TABLE_OFFSETS {
            file.write_all_at(&table, at)?;
        }
        file.write_all_at(&meta.to_region(METADATA_LENGTH as usize), METADATA_OFFSET)?;
        update_headers(&file, &mut header)?;
        Ok(Vhdx {
            file,
            header,
            bat: Bat::new(BAT_OFFSET, count as usize, chunk_ratio),
            meta,
            bitmaps: HashMap::new(),
            dirty_bitmaps: BTreeSet::new(),
            block,
            sector: 512,
            chunk_ratio,
            next_free,
            parent: None,
            // A new disk's data write GUID is already fresh.
            guid_bumped: true,
            data_dirty: false,
        })
    }

    /// Opens a VHDX (without its parent; see [`crate::open_chain`]). A log with entries
    /// is replayed first, which needs the file writable; read-only, such a file is
    /// refused rather than read stale.
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        let file = ImageFile::open(path, read_only)?;
        let file_len = file.len()?;
        let mut sig = [0u8; 8];
        file.read_exact_at(&mut sig, 0)?;
        if sig != FILE_SIGNATURE {
            return Err(Error::corrupt(path, 0, "no VHDX file signature"));
        }
        let mut headers = Vec::new();
        let mut first_err = None;
        for at in HEADER_OFFSETS {
            let mut buf = vec![0u8; 4096];
            let parsed = file
                .read_exact_at(&mut buf, at)
                .and_then(|()| Header::parse(&buf, path, at, file_len));
            match parsed {
                Ok(h) => headers.push(h),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let Some(mut header) = headers.into_iter().max_by_key(|h| h.sequence_number.get()) else {
            return Err(first_err.unwrap_or_else(|| Error::corrupt(path, 0, "no VHDX header")));
        };
        if header.log_guid != [0; 16] {
            if read_only {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "the VHDX log holds entries to replay; open the file read-write to replay it",
                )
                .with_path(path));
            }
            log::replay(
                &file,
                header.log_offset.get(),
                header.log_length.get(),
                &header.log_guid,
            )?;
            header.log_guid = [0; 16];
            update_headers(&file, &mut header)?;
        }
        let file_len = file.len()?;
        let mut regions = None;
        let mut region_err = None;
        for at in REGION_TABLE_OFFSETS {
            let mut buf = vec![0u8; REGION_TABLE_SIZE];
            match file
                .read_exact_at(&mut buf, at)
                .and_then(|()| Regions::parse(&buf, path, at, file_len))
            {
                Ok(r) => {
                    regions = Some(r);
                    break;
                }
                Err(e) => {
                    region_err.get_or_insert(e);
                }
            }
        }
        let Some(regions) = regions else {
            return Err(region_err.unwrap_or_else(|| Error::corrupt(path, 0, "no region table")));
        };
        let (meta_off, meta_len) = regions.metadata;
        if meta_len > MAX_METADATA_BYTES {
            return Err(Error::corrupt(
                path,
                meta_off,
                "VHDX metadata region over 256 MiB",
            ));
        }
        let mut region = vec![0u8; meta_len as usize];
        file.read_exact_at(&mut region, meta_off)?;
        let meta = Metadata::parse(&region, path, meta_off)?;
        let block = u64::from(meta.block_size);
        let sector = u64::from(meta.logical_sector_size);
        let chunk_ratio = (1u64 << 23) * sector / block;
        let count = entry_count(
            meta.virtual_size.div_ceil(block),
            chunk_ratio,
            meta.has_parent,
        );
        let (bat_off, bat_len) = regions.bat;
        if count * 8 > u64::from(bat_len) {
            return Err(Error::corrupt(
                path,
                bat_off,
                format!("BAT region of {bat_len} bytes cannot hold {count} entries"),
            ));
        }
        let bat = Bat::load(&file, bat_off, count as usize, chunk_ratio, block, file_len)?;
        let mut bitmaps = HashMap::new();
        if meta.has_parent {
            let chunks = meta.virtual_size.div_ceil(block).div_ceil(chunk_ratio);
            for c in 0..chunks {
                if let Some(at) = bat.bitmap(c) {
                    // Distinct bitmaps cannot hold more than the file does.
                    if (bitmaps.len() as u64 + 1) * SECTOR_BITMAP_BYTES > file_len {
                        return Err(Error::corrupt(
                            path,
                            at,
                            "more sector bitmaps than the file holds",
                        ));
                    }
                    let mut map = vec![0u8; SECTOR_BITMAP_BYTES as usize];
                    file.read_zero_fill_at(&mut map, at)?;
                    bitmaps.insert(c, map);
                }
            }
        }
        Ok(Vhdx {
            next_free: file_len.next_multiple_of(MIB),
            file,
            header,
            meta,
            bat,
            bitmaps,
            dirty_bitmaps: BTreeSet::new(),
            block,
            sector,
            chunk_ratio,
            parent: None,
            guid_bumped: false,
            data_dirty: false,
        })
    }

    /// The parsed metadata (block size, sizes, page 83 id, parent locator).
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// Bit index of `within` (byte offset in block `block`) in its chunk's bitmap.
    fn bit(&self, block: u64, within: u64) -> u64 {
        (block % self.chunk_ratio) * (self.block / self.sector) + within / self.sector
    }

    fn is_set(&self, block: u64, within: u64) -> bool {
        let bit = self.bit(block, within);
        self.bitmaps
            .get(&(block / self.chunk_ratio))
            .and_then(|m| m.get((bit / 8) as usize))
            .is_some_and(|b| b & (1 << (bit % 8)) != 0)
    }

    fn read_block(&self, block: u64, within: u64, out: &mut [u8], at: u64) -> Result<()> {
        let (state, off) = self.bat.payload(block);
        match state {
            PAYLOAD_FULLY_PRESENT => self.file.read_zero_fill_at(out, off + within),
            PAYLOAD_PARTIALLY_PRESENT => {
                let mut pos = 0usize;
                while pos < out.len() {
                    let w = within + pos as u64;
                    let present = self.is_set(block, w);
                    let mut end = ((w / self.sector + 1) * self.sector - within) as usize;
                    while end < out.len() && self.is_set(block, within + end as u64) == present {
                        end += self.sector as usize;
                    }
                    let end = end.min(out.len());
                    if present {
                        self.file.read_zero_fill_at(&mut out[pos..end], off + w)?;
                    } else {
                        read_parent_or_zero(
                            self.parent.as_deref(),
                            &mut out[pos..end],
                            at + pos as u64,
                        )?;
                    }
                    pos = end;
                }
                Ok(())
            }
            PAYLOAD_NOT_PRESENT if self.meta.has_parent => {
                read_parent_or_zero(self.parent.as_deref(), out, at)
            }
            PAYLOAD_NOT_PRESENT | PAYLOAD_ZERO | PAYLOAD_UNMAPPED | PAYLOAD_UNDEFINED => {
                out.fill(0);
                Ok(())
            }
            other => Err(Error::corrupt(
                self.file.path(),
                at,
                format!("BAT state {other} for payload block {block}"),
            )),
        }
    }

    fn allocate(&mut self, len: u64) -> Result<u64> {
        let at = self.next_free;
        self.next_free += len.next_multiple_of(MIB);
        self.file.set_len(self.next_free)?;
        Ok(at)
    }

    fn bump_guid(&mut self) -> Result<()> {
        if !self.guid_bumped {
            self.header.file_write_guid = new_guid();
            self.header.data_write_guid = new_guid();
            update_headers(&self.file, &mut self.header)?;
            self.guid_bumped = true;
        }
        Ok(())
    }

    fn write_block(&mut self, block: u64, within: u64, data: &[u8], at: u64) -> Result<()> {
        let (mut state, mut off) = self.bat.payload(block);
        if state != PAYLOAD_FULLY_PRESENT && state != PAYLOAD_PARTIALLY_PRESENT {
            let whole = within == 0 && data.len() as u64 == self.block;
            off = self.allocate(self.block)?;
            state = if self.meta.has_parent && state == PAYLOAD_NOT_PRESENT && !whole {
                let chunk = block / self.chunk_ratio;
                if self.bat.bitmap(chunk).is_none() {
                    let map_at = self.allocate(SECTOR_BITMAP_BYTES)?;
                    self.bat.set_bitmap(chunk, map_at);
                    // New space at the end of the file already reads as zeros.
                    self.bitmaps
                        .insert(chunk, vec![0u8; SECTOR_BITMAP_BYTES as usize]);
                }
                PAYLOAD_PARTIALLY_PRESENT
            } else {
                PAYLOAD_FULLY_PRESENT
            };
            self.bat.set_payload(block, state, off);
        }
        if state == PAYLOAD_FULLY_PRESENT {
            return self.file.write_all_at(data, off + within);
        }
        // Partially present: whole sectors, completing partial ones from the parent.
        let sector = self.sector;
        let first = within / sector;
        let last = (within + data.len() as u64).div_ceil(sector);
        let start = first * sector;
        if start == within && (data.len() as u64).is_multiple_of(sector) {
            self.file.write_all_at(data, off + within)?;
        } else {
            let mut buf = vec![0u8; ((last - first) * sector) as usize];
            let block_start = at - within;
            for s in [first, last - 1] {
                let o = ((s - first) * sector) as usize;
                let piece = &mut buf[o..o + sector as usize];
                self.read_block(block, s * sector, piece, block_start + s * sector)?;
            }
            let skip = (within - start) as usize;
            buf[skip..skip + data.len()].copy_from_slice(data);
            self.file.write_all_at(&buf, off + start)?;
        }
        let chunk = block / self.chunk_ratio;
        let (b0, b1) = (self.bit(block, start), self.bit(block, last * sector));
        if let Some(map) = self.bitmaps.get_mut(&chunk) {
            for bit in b0..b1 {
                if let Some(byte) = map.get_mut((bit / 8) as usize) {
                    *byte |= 1 << (bit % 8);
                }
            }
            for page in (b0 / 8 / BITMAP_PAGE)..=((b1 - 1) / 8 / BITMAP_PAGE) {
                self.dirty_bitmaps.insert((chunk, page));
            }
        }
        Ok(())
    }

    fn locator_hints(&self) -> Vec<PathBuf> {
        ["relative_path", "volume_path", "absolute_win32_path"]
            .iter()
            .filter_map(|k| self.meta.locator(k))
            .map(|v| {
                let v = v.replace('\\', "/");
                PathBuf::from(v.strip_prefix("./").unwrap_or(&v))
            })
            .collect()
    }
}

impl Disk for Vhdx {
    fn format(&self) -> Format {
        if self.meta.has_parent {
            Format::VhdxDifferencing
        } else {
            Format::Vhdx
        }
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    fn size(&self) -> u64 {
        self.meta.virtual_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.file.path(), self.size(), offset, buf.len())?;
        let mut pos = 0;
        while pos < buf.len() {
            let at = offset + pos as u64;
            let within = at % self.block;
            let n = ((self.block - within) as usize).min(buf.len() - pos);
            self.read_block(at / self.block, within, &mut buf[pos..pos + n], at)?;
            pos += n;
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.file.path(), self.size(), offset, buf.len())?;
        if !self.file.writable() {
            return Err(Error::new(ErrorKind::ReadOnly, "VHDX opened read-only")
                .with_path(self.file.path())
                .with_offset(offset));
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.bump_guid()?;
        self.data_dirty = true;
        let mut pos = 0;
        while pos < buf.len() {
            let at = offset + pos as u64;
            let within = at % self.block;
            let n = ((self.block - within) as usize).min(buf.len() - pos);
            self.write_block(at / self.block, within, &buf[pos..pos + n], at)?;
            pos += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.file.writable() {
            return Ok(());
        }
        let meta_dirty = self.bat.dirty() || !self.dirty_bitmaps.is_empty();
        // Payload data first, then the sector bitmaps and BAT entries that expose it.
        if self.data_dirty || meta_dirty {
            self.file.sync_data()?;
            self.data_dirty = false;
        }
        if meta_dirty {
            for &(chunk, page) in &self.dirty_bitmaps {
                if let (Some(map), Some(at)) = (self.bitmaps.get(&chunk), self.bat.bitmap(chunk)) {
                    let start = (page * BITMAP_PAGE) as usize;
                    let end = (start + BITMAP_PAGE as usize).min(map.len());
                    self.file
                        .write_all_at(&map[start..end], at + start as u64)?;
                }
            }
            self.dirty_bitmaps.clear();
            self.bat.write_back(&self.file)?;
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn set_durability(&mut self, durability: Durability) {
        self.file.set_durability(durability);
    }

    fn allocated_ranges(&self) -> Result<Vec<Range<u64>>> {
        let mut ranges: Vec<Range<u64>> = Vec::new();
        let size = self.size();
        for b in 0..size.div_ceil(self.block) {
            let (state, _) = self.bat.payload(b);
            let masks_parent = state != PAYLOAD_NOT_PRESENT;
            if !masks_parent {
                continue;
            }
            let start = b * self.block;
            let end = (start + self.block).min(size);
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
        if !self.meta.has_parent {
            return None;
        }
        let expected = self
            .meta
            .locator("parent_linkage")
            .and_then(|s| Uuid::parse_str(s).ok())
            .unwrap_or(Uuid::nil());
        Some(ParentLink {
            hints: self.locator_hints(),
            expected: DiskId::UniqueId(*expected.as_bytes()),
        })
    }

    fn id(&self) -> Option<DiskId> {
        Some(DiskId::UniqueId(
            *guid_from(self.header.data_write_guid).as_bytes(),
        ))
    }

    fn set_parent(&mut self, parent: Box<dyn Disk>) -> Result<()> {
        let link = self.parent_link();
        link_parent(self.file.path(), link, parent, &mut self.parent)
    }
}

impl Drop for Vhdx {
    fn drop(&mut self) {
        // Best effort: callers that need the error call flush() themselves.
        let _ = self.flush();
    }
}
