//! `streamOptimized` VMDK: deflate-compressed grains behind markers, the grain tables and
//! directory written after the data, and a footer copy of the header at the end.
//!
//! Writes append: a rewritten grain gets a new compressed copy at the end of the data and
//! the tables written on flush point at the newest copy.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use zerocopy::{FromZeros, IntoBytes};

use super::descriptor::{Descriptor, Extent, NO_PARENT_CID};
use super::header::{
    DEFAULT_GRAIN_SECTORS, FLAG_COMPRESSED, FLAG_MARKERS, FLAG_NEWLINE_DETECT,
    FLAG_REDUNDANT_GRAIN_TABLE, GD_AT_END, GTES_PER_GT, MAX_CAPACITY_SECTORS, SECTOR, SPARSE_MAGIC,
    SparseExtentHeader,
};
use super::new_cid;
use crate::disk::{Disk, DiskId, Durability, Format, check_range};
use crate::error::{Error, ErrorKind, Result};
use crate::file::ImageFile;

/// `createType` of stream-optimized disks.
pub const CREATE_TYPE: &str = "streamOptimized";
/// Marker type: end of stream.
pub const MARKER_EOS: u32 = 0;
/// Marker type: grain table follows.
pub const MARKER_GT: u32 = 1;
/// Marker type: grain directory follows.
pub const MARKER_GD: u32 = 2;
/// Marker type: footer follows.
pub const MARKER_FOOTER: u32 = 3;
/// Bytes of a grain marker before its compressed data (`lba` u64, `size` u32).
const GRAIN_MARKER: usize = 12;
const DESCRIPTOR_SECTORS: u64 = 20;

/// A metadata marker sector: `num_sectors` u64, `size` u32 (0), `type` u32, padding.
fn marker(num_sectors: u64, kind: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[..8].copy_from_slice(&num_sectors.to_le_bytes());
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}

/// A stream-optimized VMDK.
#[derive(Debug)]
pub struct StreamVmdk {
    file: ImageFile,
    header: SparseExtentHeader,
    descriptor: Descriptor,
    grain: u64,
    size: u64,
    /// Grain index -> sector of its grain marker.
    grains: BTreeMap<u64, u64>,
    /// Where the next grain goes; the tables and footer follow the data from here.
    data_end: u64,
    tables_dirty: bool,
    cid_bumped: bool,
}

impl StreamVmdk {
    /// Creates an empty stream-optimized VMDK of `size` bytes; fails if `path` exists.
    pub fn create(path: &Path, size: u64) -> Result<Self> {
        if !size.is_multiple_of(SECTOR) || size / SECTOR > MAX_CAPACITY_SECTORS {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("VMDK size {size} is not a multiple of 512 up to 64 TiB"),
            )
            .with_path(path));
        }
        let mut header = SparseExtentHeader::new_zeroed();
        header.magic = SPARSE_MAGIC.into();
        header.version = 3.into();
        header.flags = (FLAG_NEWLINE_DETECT | FLAG_COMPRESSED | FLAG_MARKERS).into();
        header.capacity = (size / SECTOR).into();
        header.grain_size = DEFAULT_GRAIN_SECTORS.into();
        header.descriptor_offset = 1.into();
        header.descriptor_size = DESCRIPTOR_SECTORS.into();
        header.num_gtes_per_gt = GTES_PER_GT.into();
        header.gd_offset = GD_AT_END.into();
        header.overhead = DEFAULT_GRAIN_SECTORS.into();
        header.single_end_line_char = b'\n';
        header.non_end_line_char = b' ';
        header.double_end_line_char1 = b'\r';
        header.double_end_line_char2 = b'\n';
        header.compress_algorithm = 1.into();
        let descriptor = Descriptor {
            cid: new_cid(NO_PARENT_CID),
            parent_cid: NO_PARENT_CID,
            create_type: CREATE_TYPE.into(),
            parent_hint: None,
            extents: vec![Extent {
                access: "RW".into(),
                sectors: size / SECTOR,
                kind: "SPARSE".into(),
                file: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                offset: 0,
            }],
            ddb: Descriptor::default_ddb(size / SECTOR),
        };
        let file = ImageFile::create(path)?;
        file.write_all_at(header.as_bytes(), 0)?;
        let mut desc = descriptor.render().into_bytes();
        desc.resize((DESCRIPTOR_SECTORS * SECTOR) as usize, 0);
        file.write_all_at(&desc, SECTOR)?;
        let mut disk = StreamVmdk {
            file,
            grain: header.grain_bytes(),
            header,
            descriptor,
            size,
            grains: BTreeMap::new(),
            data_end: DEFAULT_GRAIN_SECTORS * SECTOR,
            tables_dirty: true,
            cid_bumped: true,
        };
        disk.flush()?;
        Ok(disk)
    }

    /// Opens a stream-optimized VMDK, finding its directory through the footer.
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        let file = ImageFile::open(path, read_only)?;
        let file_len = file.len()?;
        let mut first = [0u8; 512];
        file.read_exact_at(&mut first, 0)?;
        let header = SparseExtentHeader::parse(&first, path, file_len)?;
        let mut gd_header = header.clone();
        let mut data_end = file_len.next_multiple_of(SECTOR);
        if header.gd_offset.get() == GD_AT_END {
            if file_len < 1536 {
                return Err(Error::corrupt(
                    path,
                    0,
                    "stream VMDK too short for a footer",
                ));
            }
            let mut tail = [0u8; 1536];
            file.read_exact_at(&mut tail, file_len - 1536)?;
            let kind = u32::from_le_bytes([tail[12], tail[13], tail[14], tail[15]]);
            if kind != MARKER_FOOTER || tail[1024..].iter().any(|&b| b != 0) {
                return Err(Error::corrupt(
                    path,
                    file_len - 1536,
                    "stream VMDK does not end in footer marker, footer and end-of-stream marker",
                ));
            }
            gd_header = SparseExtentHeader::parse(&tail[512..1024], path, file_len)?;
            data_end = file_len - 1536;
        }
        if header.descriptor_offset.get() == 0 {
            return Err(Error::corrupt(path, 0, "stream VMDK without a descriptor"));
        }
        let desc_off = header.descriptor_offset.get() * SECTOR;
        let desc_len = (header.descriptor_size.get() * SECTOR)
            .min(super::descriptor::MAX_DESCRIPTOR_BYTES as u64);
        let mut desc = vec![0u8; desc_len as usize];
        file.read_exact_at(&mut desc, desc_off)?;
        let descriptor = Descriptor::parse(&desc, path, desc_off)?;
        if descriptor.parent_cid != NO_PARENT_CID {
            return Err(
                Error::new(ErrorKind::Unsupported, "a stream VMDK with a parent").with_path(path),
            );
        }
        let gd_off = gd_header.gd_offset.get();
        let entries = header.gd_entries();
        let gtes = u64::from(header.num_gtes_per_gt.get());
        let gd_bytes = entries * 4;
        if gd_off
            .checked_mul(SECTOR)
            .and_then(|o| o.checked_add(gd_bytes))
            .is_none_or(|end| end > file_len)
        {
            return Err(Error::corrupt(
                path,
                0,
                "grain directory past the end of the file",
            ));
        }
        let mut gd = vec![0u8; gd_bytes as usize];
        file.read_exact_at(&mut gd, gd_off * SECTOR)?;
        let mut grains = BTreeMap::new();
        let mut loaded = 0u64;
        for (t, gde) in gd.chunks_exact(4).enumerate() {
            let gde = u64::from(u32::from_le_bytes([gde[0], gde[1], gde[2], gde[3]]));
            if gde == 0 {
                continue;
            }
            loaded += gtes * 4;
            if loaded > file_len || gde * SECTOR + gtes * 4 > file_len {
                return Err(Error::corrupt(
                    path,
                    gde * SECTOR,
                    "grain table past the end of the file",
                ));
            }
            let mut gt = vec![0u8; (gtes * 4) as usize];
            file.read_exact_at(&mut gt, gde * SECTOR)?;
            for (e, gte) in gt.chunks_exact(4).enumerate() {
                let gte = u64::from(u32::from_le_bytes([gte[0], gte[1], gte[2], gte[3]]));
                if gte == 0 {
                    continue;
                }
                if gte * SECTOR >= file_len {
                    return Err(Error::corrupt(
                        path,
                        gde * SECTOR,
                        "grain past the end of the file",
                    ));
                }
                grains.insert(t as u64 * gtes + e as u64, gte);
            }
        }
        Ok(StreamVmdk {
            file,
            grain: header.grain_bytes(),
            size: header.capacity.get() * SECTOR,
            header,
            descriptor,
            grains,
            data_end,
            tables_dirty: false,
            cid_bumped: false,
        })
    }

    /// Reads and inflates grain `index` into `out` (one grain long).
    fn read_grain(&self, index: u64, out: &mut [u8]) -> Result<()> {
        let Some(&sector) = self.grains.get(&index) else {
            out.fill(0);
            return Ok(());
        };
        let at = sector * SECTOR;
        let mut m = [0u8; GRAIN_MARKER];
        self.file.read_exact_at(&mut m, at)?;
        let mut lba = [0u8; 8];
        lba.copy_from_slice(&m[..8]);
        let lba = u64::from_le_bytes(lba);
        let len = u32::from_le_bytes([m[8], m[9], m[10], m[11]]) as u64;
        if lba != index * (self.grain / SECTOR) || len == 0 || len > 2 * self.grain + 1024 {
            return Err(Error::corrupt(
                self.file.path(),
                at,
                format!("grain marker (lba {lba}, {len} bytes) does not match grain {index}"),
            ));
        }
        let mut compressed = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut compressed, at + GRAIN_MARKER as u64)?;
        let mut decoder = ZlibDecoder::new(&compressed[..]);
        let mut done = 0;
        while done < out.len() {
            match decoder.read(&mut out[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => {
                    return Err(Error::corrupt(
                        self.file.path(),
                        at,
                        format!("grain {index} does not inflate: {e}"),
                    ));
                }
            }
        }
        out[done..].fill(0);
        Ok(())
    }

    /// Appends grain `index` holding `data` (one grain) to `out`, whose first byte will
    /// be written at byte `base`.
    fn encode_grain(
        &mut self,
        index: u64,
        data: &[u8],
        base: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let mut enc = ZlibEncoder::new(Vec::with_capacity(data.len() / 2), Compression::default());
        let compressed = enc
            .write_all(data)
            .and_then(|()| enc.finish())
            .map_err(|e| Error::io(self.file.path(), "compressing grain", e))?;
        let at = base + out.len() as u64;
        out.extend_from_slice(&(index * (self.grain / SECTOR)).to_le_bytes());
        out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        out.extend_from_slice(&compressed);
        out.resize(out.len().next_multiple_of(SECTOR as usize), 0);
        self.grains.insert(index, at / SECTOR);
        Ok(())
    }

    fn bump_cid(&mut self) -> Result<()> {
        if !self.cid_bumped {
            self.descriptor.cid = new_cid(self.descriptor.cid);
            let mut desc = self.descriptor.render().into_bytes();
            let room = (self.header.descriptor_size.get() * SECTOR) as usize;
            if desc.len() > room {
                return Err(
                    Error::new(ErrorKind::InvalidArgument, "descriptor does not fit")
                        .with_path(self.file.path()),
                );
            }
            desc.resize(room, 0);
            self.file
                .write_all_at(&desc, self.header.descriptor_offset.get() * SECTOR)?;
            self.cid_bumped = true;
        }
        Ok(())
    }
}

impl Disk for StreamVmdk {
    fn format(&self) -> Format {
        Format::VmdkStream
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.file.path(), self.size, offset, buf.len())?;
        let mut grain = vec![0u8; self.grain as usize];
        let mut pos = 0;
        while pos < buf.len() {
            let at = offset + pos as u64;
            let index = at / self.grain;
            let within = (at % self.grain) as usize;
            let n = (self.grain as usize - within).min(buf.len() - pos);
            if within == 0 && n == grain.len() {
                self.read_grain(index, &mut buf[pos..pos + n])?;
            } else {
                self.read_grain(index, &mut grain)?;
                buf[pos..pos + n].copy_from_slice(&grain[within..within + n]);
            }
            pos += n;
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
        let mut out = Vec::new();
        let base = self.data_end;
        let mut grain = vec![0u8; self.grain as usize];
        let mut pos = 0;
        while pos < buf.len() {
            let at = offset + pos as u64;
            let index = at / self.grain;
            let within = (at % self.grain) as usize;
            let n = (self.grain as usize - within).min(buf.len() - pos);
            let data: &[u8] = if within == 0 && n == grain.len() {
                &buf[pos..pos + n]
            } else {
                self.read_grain(index, &mut grain)?;
                grain[within..within + n].copy_from_slice(&buf[pos..pos + n]);
                &grain
            };
            // A grain of zeros that was never stored stays unallocated.
            if self.grains.contains_key(&index) || data.iter().any(|&b| b != 0) {
                let data = data.to_vec();
                self.encode_grain(index, &data, base, &mut out)?;
            }
            pos += n;
        }
        if !out.is_empty() {
            self.file.write_all_at(&out, base)?;
            self.data_end += out.len() as u64;
            self.tables_dirty = true;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.file.writable() || !self.tables_dirty {
            return Ok(());
        }
        // Grain tables, directory, footer marker and footer, end-of-stream, after the data.
        // A file whose header points at a directory of its own (as qemu writes) is switched
        // to the footer's directory once that is durable.
        let switch_header = self.header.gd_offset.get() != GD_AT_END;
        self.header.gd_offset = GD_AT_END.into();
        self.header.rgd_offset = 0.into();
        self.header.flags = (self.header.flags() & !FLAG_REDUNDANT_GRAIN_TABLE).into();
        let gtes = u64::from(self.header.num_gtes_per_gt.get());
        let entries = self.header.gd_entries();
        let gt_sectors = (gtes * 4).div_ceil(SECTOR);
        let mut tail = Vec::new();
        let mut gd = vec![0u32; entries as usize];
        let grains: Vec<(u64, u64)> = self.grains.iter().map(|(&g, &s)| (g, s)).collect();
        let mut i = 0;
        while i < grains.len() {
            let table = grains[i].0 / gtes;
            let mut gt = vec![0u32; gtes as usize];
            while i < grains.len() && grains[i].0 / gtes == table {
                let (g, s) = grains[i];
                gt[(g % gtes) as usize] = u32::try_from(s).map_err(|_| {
                    Error::new(ErrorKind::Unsupported, "stream VMDK grows past 2 TiB")
                        .with_path(self.file.path())
                })?;
                i += 1;
            }
            tail.extend_from_slice(&marker(gt_sectors, MARKER_GT));
            gd[table as usize] = ((self.data_end + tail.len() as u64) / SECTOR) as u32;
            tail.extend(gt.iter().flat_map(|e| e.to_le_bytes()));
            tail.resize(tail.len().next_multiple_of(SECTOR as usize), 0);
        }
        let gd_sectors = (entries * 4).div_ceil(SECTOR);
        tail.extend_from_slice(&marker(gd_sectors, MARKER_GD));
        let gd_at = (self.data_end + tail.len() as u64) / SECTOR;
        tail.extend(gd.iter().flat_map(|e| e.to_le_bytes()));
        tail.resize(tail.len().next_multiple_of(SECTOR as usize), 0);
        tail.extend_from_slice(&marker(1, MARKER_FOOTER));
        let mut footer = self.header.clone();
        footer.gd_offset = gd_at.into();
        tail.extend_from_slice(footer.as_bytes());
        tail.extend_from_slice(&marker(0, MARKER_EOS));
        self.file.sync_data()?;
        self.file.write_all_at(&tail, self.data_end)?;
        self.file.set_len(self.data_end + tail.len() as u64)?;
        self.file.sync_data()?;
        if switch_header {
            self.file.write_all_at(self.header.as_bytes(), 0)?;
            self.file.sync_data()?;
        }
        self.tables_dirty = false;
        Ok(())
    }

    fn set_durability(&mut self, durability: Durability) {
        self.file.set_durability(durability);
    }

    fn allocated_ranges(&self) -> Result<Vec<Range<u64>>> {
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for &g in self.grains.keys() {
            let start = g * self.grain;
            let end = (start + self.grain).min(self.size);
            match ranges.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ => ranges.push(start..end),
            }
        }
        Ok(ranges)
    }

    fn id(&self) -> Option<DiskId> {
        Some(DiskId::VmdkCid(self.descriptor.cid))
    }
}

impl Drop for StreamVmdk {
    fn drop(&mut self) {
        // Best effort: callers that need the error call flush() themselves.
        let _ = self.flush();
    }
}
