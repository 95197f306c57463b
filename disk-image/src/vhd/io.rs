//! Fixed, dynamic and differencing VHDs as [`Disk`]s.

use std::ops::Range;
use std::path::{Path, PathBuf};

use zerocopy::IntoBytes;

use super::bat::{Bat, Bitmaps};
use super::footer::{
    DISK_DIFFERENCING, DISK_DYNAMIC, DISK_FIXED, Footer, MAX_SIZE, NO_DATA_OFFSET, VHD_EPOCH_UNIX,
};
use super::header::{
    DEFAULT_BLOCK_SIZE, DynamicHeader, MAX_LOCATOR_BYTES, PLATFORM_W2KU, PLATFORM_W2RU,
    decode_locator, encode_locator,
};
use crate::disk::{
    Disk, DiskId, Durability, Format, ParentLink, RawExtent, check_range, link_parent,
    read_parent_or_zero,
};
use crate::error::{Error, ErrorKind, Result};
use crate::file::ImageFile;

const SECTOR: u64 = 512;
const FOOTER_LEN: u64 = 512;
const HEADER_OFFSET: u64 = 512;
const BAT_OFFSET: u64 = 1536;

fn check_size(path: &Path, size: u64) -> Result<()> {
    if !size.is_multiple_of(SECTOR) || size == 0 || size > MAX_SIZE {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("VHD size {size} is not a non-zero multiple of 512 up to 2040 GiB"),
        )
        .with_path(path));
    }
    Ok(())
}

/// Reads the footer at the end of the file (or, for dynamic disks whose trailing footer
/// is damaged, the copy at offset 0). Returns it and whether it was the trailing one.
fn read_footer(file: &ImageFile, file_len: u64) -> Result<(Footer, bool)> {
    let path = file.path();
    if file_len < FOOTER_LEN {
        return Err(Error::corrupt(path, 0, "file is shorter than a VHD footer"));
    }
    let mut buf = [0u8; 512];
    file.read_exact_at(&mut buf, file_len - FOOTER_LEN)?;
    match Footer::parse(&buf, path, file_len - FOOTER_LEN) {
        Ok(f) => Ok((f, true)),
        Err(end_err) => {
            file.read_exact_at(&mut buf, 0)?;
            match Footer::parse(&buf, path, 0) {
                Ok(f) if f.disk_type.get() != DISK_FIXED => Ok((f, false)),
                _ => Err(end_err),
            }
        }
    }
}

/// A fixed VHD: the disk's bytes, then a footer.
#[derive(Debug)]
pub struct FixedVhd {
    file: ImageFile,
    footer: Footer,
    size: u64,
}

impl FixedVhd {
    /// Creates a fixed VHD of `size` bytes (sparse on the host); fails if `path` exists.
    pub fn create(path: &Path, size: u64) -> Result<Self> {
        check_size(path, size)?;
        let footer = Footer::new(size, DISK_FIXED, NO_DATA_OFFSET);
        let file = ImageFile::create(path)?;
        file.set_len(size + FOOTER_LEN)?;
        file.write_all_at(footer.as_bytes(), size)?;
        file.sync_data()?;
        Ok(FixedVhd { file, footer, size })
    }

    /// Turns an existing raw image into a fixed VHD in place, by appending a footer: the
    /// disk's bytes stay where they are, so the result is still raw-addressable (a loop
    /// device over its first `size` bytes sees the raw image). The raw size must be a
    /// multiple of 512 bytes.
    pub fn from_raw(path: &Path) -> Result<Self> {
        let file = ImageFile::open(path, false)?;
        let size = file.len()?;
        if size % 512 != 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("a fixed VHD holds whole sectors; the raw image has {size} bytes"),
            )
            .with_path(path));
        }
        check_size(path, size)?;
        let footer = Footer::new(size, DISK_FIXED, NO_DATA_OFFSET);
        file.write_all_at(footer.as_bytes(), size)?;
        file.sync_data()?;
        Ok(FixedVhd { file, footer, size })
    }

    /// Opens a fixed VHD.
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        let file = ImageFile::open(path, read_only)?;
        let file_len = file.len()?;
        let (footer, _) = read_footer(&file, file_len)?;
        if footer.disk_type.get() != DISK_FIXED {
            return Err(Error::new(ErrorKind::InvalidArgument, "not a fixed VHD").with_path(path));
        }
        let size = footer.current_size.get();
        if size > file_len - FOOTER_LEN {
            return Err(Error::corrupt(
                path,
                file_len - FOOTER_LEN,
                format!("fixed VHD of {size} bytes in a file of {file_len}"),
            ));
        }
        Ok(FixedVhd { file, footer, size })
    }
}

impl Disk for FixedVhd {
    fn format(&self) -> Format {
        Format::VhdFixed
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.file.path(), self.size, offset, buf.len())?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.file.path(), self.size, offset, buf.len())?;
        self.file.write_all_at(buf, offset)
    }

    fn flush(&mut self) -> Result<()> {
        self.file.sync_data()
    }

    fn set_durability(&mut self, durability: Durability) {
        self.file.set_durability(durability);
    }

    fn id(&self) -> Option<DiskId> {
        Some(DiskId::UniqueId(self.footer.unique_id))
    }

    fn raw_extent(&self) -> Option<RawExtent> {
        Some(RawExtent {
            path: self.file.path().to_path_buf(),
            offset: 0,
            size: self.size,
        })
    }
}

/// A dynamic or differencing VHD.
#[derive(Debug)]
pub struct DynamicVhd {
    file: ImageFile,
    footer: Footer,
    header: DynamicHeader,
    bat: Bat,
    bitmaps: Bitmaps,
    block: u64,
    bitmap_bytes: u64,
    size: u64,
    /// Where the trailing footer is, and where the next block goes.
    footer_pos: u64,
    parent: Option<Box<dyn Disk>>,
    data_dirty: bool,
}

/// How the disk names its parent when created.
struct ParentInfo {
    unique_id: [u8; 16],
    timestamp: u32,
    hint: String,
    absolute: PathBuf,
}

impl DynamicVhd {
    /// Creates a dynamic VHD of `size` bytes with 2 MiB blocks; fails if `path` exists.
    pub fn create(path: &Path, size: u64) -> Result<Self> {
        Self::create_with(path, size, None)
    }

    /// Creates a differencing VHD on `parent` (any VHD), recorded as `hint` relative to
    /// the child's directory (or absolute), and stacks it on the parent.
    pub fn create_child(path: &Path, parent: Box<dyn Disk>, hint: &str) -> Result<Self> {
        let Some(DiskId::UniqueId(unique_id)) = parent.id() else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "parent of a differencing VHD must be a VHD, not {}",
                    parent.format()
                ),
            )
            .with_path(parent.path()));
        };
        let meta = std::fs::metadata(parent.path())
            .map_err(|e| Error::io(parent.path(), "reading parent timestamp", e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let absolute = parent
            .path()
            .canonicalize()
            .map_err(|e| Error::io(parent.path(), "resolving parent path", e))?;
        let info = ParentInfo {
            unique_id,
            timestamp: u32::try_from(mtime.saturating_sub(VHD_EPOCH_UNIX)).unwrap_or(u32::MAX),
            hint: hint.to_string(),
            absolute,
        };
        let mut disk = Self::create_with(path, parent.size(), Some(info))?;
        disk.parent = Some(parent);
        Ok(disk)
    }

    fn create_with(path: &Path, size: u64, parent: Option<ParentInfo>) -> Result<Self> {
        check_size(path, size)?;
        let block = u64::from(DEFAULT_BLOCK_SIZE);
        let entries = size.div_ceil(block) as usize;
        let bat = Bat::new(BAT_OFFSET, entries);
        let bat_bytes = bat.to_bytes();
        let mut footer_pos = BAT_OFFSET + bat_bytes.len() as u64;
        let disk_type = if parent.is_some() {
            DISK_DIFFERENCING
        } else {
            DISK_DYNAMIC
        };
        let footer = Footer::new(size, disk_type, HEADER_OFFSET);
        let mut header = DynamicHeader::new(BAT_OFFSET, entries as u32, DEFAULT_BLOCK_SIZE);
        let mut locators = Vec::new();
        if let Some(p) = &parent {
            header.parent_unique_id = p.unique_id;
            header.parent_timestamp = p.timestamp.into();
            let name = Path::new(&p.hint)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            header.set_parent_name(&name);
            let mut payloads = vec![(PLATFORM_W2KU, encode_locator(&p.absolute.to_string_lossy()))];
            if Path::new(&p.hint).is_relative() {
                let rel = format!(".\\{}", p.hint.replace('/', "\\"));
                payloads.insert(0, (PLATFORM_W2RU, encode_locator(&rel)));
            }
            for (i, (code, data)) in payloads.into_iter().enumerate() {
                let space = (data.len() as u64).next_multiple_of(SECTOR);
                let loc = &mut header.parent_locators[i];
                loc.platform_code = code.into();
                loc.platform_data_space = (space as u32).into();
                loc.platform_data_length = (data.len() as u32).into();
                loc.platform_data_offset = footer_pos.into();
                locators.push((footer_pos, data));
                footer_pos += space;
            }
        }
        header.seal();
        let file = ImageFile::create(path)?;
        file.write_all_at(footer.as_bytes(), 0)?;
        file.write_all_at(header.as_bytes(), HEADER_OFFSET)?;
        file.write_all_at(&bat_bytes, BAT_OFFSET)?;
        for (at, data) in &locators {
            file.write_all_at(data, *at)?;
        }
        file.write_all_at(footer.as_bytes(), footer_pos)?;
        file.sync_data()?;
        Ok(DynamicVhd {
            file,
            footer,
            header,
            bat,
            bitmaps: Bitmaps::default(),
            block,
            bitmap_bytes: (block / SECTOR).div_ceil(8).next_multiple_of(SECTOR),
            size,
            footer_pos,
            parent: None,
            data_dirty: false,
        })
    }

    /// Opens a dynamic or differencing VHD (without its parent; see
    /// [`crate::open_chain`]).
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        let file = ImageFile::open(path, read_only)?;
        let file_len = file.len()?;
        let (footer, trailing) = read_footer(&file, file_len)?;
        let disk_type = footer.disk_type.get();
        if disk_type == DISK_FIXED {
            return Err(Error::new(ErrorKind::InvalidArgument, "not a dynamic VHD").with_path(path));
        }
        let size = footer.current_size.get();
        let hdr_off = footer.data_offset.get();
        if hdr_off.checked_add(1024).is_none_or(|end| end > file_len) {
            return Err(Error::corrupt(
                path,
                hdr_off,
                "VHD dynamic header past the end of the file",
            ));
        }
        let mut buf = [0u8; 1024];
        file.read_exact_at(&mut buf, hdr_off)?;
        let header = DynamicHeader::parse(&buf, path, hdr_off, size, file_len)?;
        let block = u64::from(header.block_size.get());
        let bitmap_bytes = (block / SECTOR).div_ceil(8).next_multiple_of(SECTOR);
        let bat = Bat::load(
            &file,
            header.table_offset.get(),
            header.max_table_entries.get() as usize,
        )?;
        bat.check(bitmap_bytes, 1536, file_len, path)?;
        let bitmaps = if disk_type == DISK_DIFFERENCING {
            Bitmaps::load(&file, &bat, bitmap_bytes, file_len)?
        } else {
            Bitmaps::default()
        };
        let footer_pos = if trailing {
            file_len - FOOTER_LEN
        } else {
            file_len.next_multiple_of(SECTOR)
        };
        Ok(DynamicVhd {
            file,
            footer,
            header,
            bat,
            bitmaps,
            block,
            bitmap_bytes,
            size,
            footer_pos,
            parent: None,
            data_dirty: false,
        })
    }

    fn differencing(&self) -> bool {
        self.footer.disk_type.get() == DISK_DIFFERENCING
    }

    fn data_offset(&self, sector: u32) -> u64 {
        u64::from(sector) * SECTOR + self.bitmap_bytes
    }

    /// Reads `out` from block `index` at `within`; the range lies in one block.
    fn read_block(&self, index: usize, within: u64, out: &mut [u8], at: u64) -> Result<()> {
        let Some(sector) = self.bat.get(index) else {
            return read_parent_or_zero(self.parent.as_deref(), out, at);
        };
        let data = self.data_offset(sector);
        if !self.differencing() {
            return self.file.read_zero_fill_at(out, data + within);
        }
        // Runs of sectors that are all in this file, or all in the parent.
        let mut pos = 0usize;
        while pos < out.len() {
            let off = within + pos as u64;
            let present = self.bitmaps.is_set(index, off / SECTOR);
            let mut end = ((off / SECTOR + 1) * SECTOR - within) as usize;
            while end < out.len()
                && self.bitmaps.is_set(index, (within + end as u64) / SECTOR) == present
            {
                end += SECTOR as usize;
            }
            let end = end.min(out.len());
            let chunk = &mut out[pos..end];
            if present {
                self.file.read_zero_fill_at(chunk, data + off)?;
            } else {
                read_parent_or_zero(self.parent.as_deref(), chunk, at + pos as u64)?;
            }
            pos = end;
        }
        Ok(())
    }

    /// Allocates block `index` at the end of the file and moves the footer after it.
    fn allocate_block(&mut self, index: usize) -> Result<u32> {
        let sector = u32::try_from(self.footer_pos / SECTOR).map_err(|_| {
            Error::new(ErrorKind::Unsupported, "VHD grows past 2 TiB").with_path(self.file.path())
        })?;
        let bitmap = if self.differencing() {
            self.bitmaps.add(index, self.bitmap_bytes);
            vec![0u8; self.bitmap_bytes as usize]
        } else {
            vec![0xffu8; self.bitmap_bytes as usize]
        };
        self.file.write_all_at(&bitmap, self.footer_pos)?;
        self.footer_pos += self.bitmap_bytes + self.block;
        self.file
            .write_all_at(self.footer.as_bytes(), self.footer_pos)?;
        self.bat.set(index, sector);
        Ok(sector)
    }

    /// Writes `data` into block `index` at `within`; the range lies in one block.
    fn write_block(&mut self, index: usize, within: u64, data: &[u8], at: u64) -> Result<()> {
        let sector = match self.bat.get(index) {
            Some(s) => s,
            None => self.allocate_block(index)?,
        };
        let base = self.data_offset(sector);
        if !self.differencing() {
            return self.file.write_all_at(data, base + within);
        }
        // Whole sectors: a partial sector not yet in this file is completed from the
        // parent, so that setting its bit does not hide the parent's bytes.
        let first = within / SECTOR;
        let last = (within + data.len() as u64).div_ceil(SECTOR);
        let start = first * SECTOR;
        let aligned = start == within && data.len().is_multiple_of(SECTOR as usize);
        if aligned {
            self.file.write_all_at(data, base + within)?;
        } else {
            let len = ((last - first) * SECTOR) as usize;
            let mut buf = vec![0u8; len];
            let block_start = at - within;
            for s in [first, last - 1] {
                let off = ((s - first) * SECTOR) as usize;
                let piece = &mut buf[off..off + SECTOR as usize];
                let visible = (self.size - (block_start + s * SECTOR)).min(SECTOR) as usize;
                self.read_block(
                    index,
                    s * SECTOR,
                    &mut piece[..visible],
                    block_start + s * SECTOR,
                )?;
            }
            let skip = (within - start) as usize;
            buf[skip..skip + data.len()].copy_from_slice(data);
            self.file.write_all_at(&buf, base + start)?;
        }
        self.bitmaps.set_range(index, first, last);
        Ok(())
    }

    fn locator_hints(&self) -> Vec<PathBuf> {
        let mut hints = Vec::new();
        let file_len = self.footer_pos + FOOTER_LEN;
        for code in [PLATFORM_W2RU, PLATFORM_W2KU] {
            for loc in &self.header.parent_locators {
                if loc.platform_code.get() != code {
                    continue;
                }
                let len = loc.platform_data_length.get();
                let off = loc.platform_data_offset.get();
                if len == 0
                    || len > MAX_LOCATOR_BYTES
                    || off
                        .checked_add(u64::from(len))
                        .is_none_or(|end| end > file_len)
                {
                    continue;
                }
                let mut buf = vec![0u8; len as usize];
                if self.file.read_exact_at(&mut buf, off).is_ok() {
                    hints.push(decode_locator(&buf));
                }
            }
        }
        let name = self.header.parent_name();
        if !name.is_empty() {
            hints.push(PathBuf::from(name));
        }
        hints
    }
}

impl Disk for DynamicVhd {
    fn format(&self) -> Format {
        if self.differencing() {
            Format::VhdDifferencing
        } else {
            Format::VhdDynamic
        }
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
            let within = at % self.block;
            let n = ((self.block - within) as usize).min(buf.len() - pos);
            self.read_block(
                (at / self.block) as usize,
                within,
                &mut buf[pos..pos + n],
                at,
            )?;
            pos += n;
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.file.path(), self.size, offset, buf.len())?;
        if !self.file.writable() {
            return Err(Error::new(ErrorKind::ReadOnly, "VHD opened read-only")
                .with_path(self.file.path())
                .with_offset(offset));
        }
        self.data_dirty = true;
        let mut pos = 0;
        while pos < buf.len() {
            let at = offset + pos as u64;
            let within = at % self.block;
            let n = ((self.block - within) as usize).min(buf.len() - pos);
            self.write_block((at / self.block) as usize, within, &buf[pos..pos + n], at)?;
            pos += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.file.writable() {
            return Ok(());
        }
        // Block data (and the moved footer) first, then the bitmaps and BAT naming it.
        if self.data_dirty || self.bat.dirty() || self.bitmaps.dirty() {
            self.file.sync_data()?;
            self.data_dirty = false;
        }
        if self.bat.dirty() || self.bitmaps.dirty() {
            self.bitmaps.write_back(&self.file, &self.bat)?;
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
        for i in 0..self.bat.len() {
            if self.bat.get(i).is_none() {
                continue;
            }
            let start = i as u64 * self.block;
            if start >= self.size {
                break;
            }
            let end = (start + self.block).min(self.size);
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
        self.differencing().then(|| ParentLink {
            hints: self.locator_hints(),
            expected: DiskId::UniqueId(self.header.parent_unique_id),
        })
    }

    fn id(&self) -> Option<DiskId> {
        Some(DiskId::UniqueId(self.footer.unique_id))
    }

    fn set_parent(&mut self, parent: Box<dyn Disk>) -> Result<()> {
        let link = self.parent_link();
        link_parent(self.file.path(), link, parent, &mut self.parent)
    }
}

impl Drop for DynamicVhd {
    fn drop(&mut self) {
        // Best effort: callers that need the error call flush() themselves.
        let _ = self.flush();
    }
}
