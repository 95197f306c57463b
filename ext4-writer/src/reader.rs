//! [`Reader`]: any ext4 image in, a deterministic tar out, in user space.
//!
//! The `ext4-view` crate was considered and not used: it exposes neither extended
//! attributes nor device numbers, which a layer export needs. The reader shares the
//! [`layout`](crate::layout) structures with the builder instead.
//!
//! It reads images made by anyone (e.g. `mkfs.ext4 -d`): extents or block maps, 32- or
//! 64-byte group descriptors, hashed or linear directories, `metadata_csum` (checksums are
//! not verified), in-inode and block xattrs, `inline_data`, `meta_bg`. It refuses
//! encryption, casefold and xattr inodes with [`Error::Unsupported`]. Every offset and count
//! read from the image is bounds-checked: a corrupt image gives [`Error::Corrupt`], never a
//! panic or an allocation sized by the image.
//!
//! The tar lists the root as `./` first, then every entry depth-first with names sorted
//! bytewise. Later names of a multiply-linked inode are hard links to the first. An empty
//! `lost+found` at the root is left out. Xattrs go out as `SCHILY.xattr.*` PAX records and
//! modification times with nanoseconds as PAX `mtime`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use storage_core::Report;
use zerocopy::FromBytes;

use crate::error::{Error, Result};
use crate::layout::ROOT_INO;
use crate::layout::dir::DirEntryHead;
use crate::layout::extent::{self, Extent, ExtentHeader, ExtentIdx};
use crate::layout::group::{GroupDesc, GroupDescHi};
use crate::layout::inode::{self as inofmt};
use crate::layout::superblock::{self as sbfmt, Superblock};
use crate::layout::xattr::{self as xfmt, EntryHead};

/// Largest directory the reader will read (bytes); bigger ones are treated as corrupt.
const MAX_DIR_SIZE: u64 = 1 << 30;
/// Deepest extent tree accepted.
const MAX_EXTENT_DEPTH: u16 = 5;
/// Deepest directory nesting accepted.
const MAX_DEPTH: usize = 4096;
/// Where `inline_data` inodes keep the bytes past `i_block`.
const INLINE_XATTR: &[u8] = b"system.data";
/// `trusted.overlay.opaque`.
const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// How whiteouts leave the image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhiteoutsOut {
    /// As they are: overlay markers stay a character device 0:0 and an xattr.
    #[default]
    Keep,
    /// As OCI whiteouts: a char 0:0 device `NAME` becomes an empty file `.wh.NAME`, and a
    /// directory with `trusted.overlay.opaque=y` gets a `.wh..wh..opq` entry instead.
    Oci,
}

/// How the tar is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    /// Whiteout handling.
    pub whiteouts: WhiteoutsOut,
}

/// A parsed inode.
#[derive(Clone, Debug)]
pub struct InodeInfo {
    /// Inode number.
    pub ino: u32,
    /// `i_mode`.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Link count.
    pub links: u16,
    /// `i_flags`.
    pub flags: u32,
    /// `i_block`.
    pub block: [u8; 60],
    /// Xattr block, 0 when none.
    pub file_acl: u64,
    /// 512-byte sectors used (`i_blocks_lo`).
    pub sectors: u64,
    /// Byte offset of the inode in the image.
    pub offset: u64,
    /// The raw inode (for the in-inode xattr area).
    raw: Vec<u8>,
}

/// Where group descriptors live: one table after the superblock, or with `meta_bg` one
/// descriptor block at the start of each meta group (after that group's backup superblock).
struct DescLayout {
    gdt_at: u64,
    bs: u64,
    bpg: u64,
    first: u64,
    desc_size: u64,
    meta_bg: bool,
    first_meta_bg: u64,
    sparse_super2: bool,
    sparse_super: bool,
    backup_bgs: [u64; 2],
}

impl DescLayout {
    /// Does group `g` hold a superblock copy?
    fn has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if self.sparse_super2 {
            return g == self.backup_bgs[0] || g == self.backup_bgs[1];
        }
        if !self.sparse_super || g == 1 {
            return true;
        }
        [3u64, 5, 7].iter().any(|&base| {
            let mut p = base;
            while p < g {
                p = p.saturating_mul(base);
            }
            p == g
        })
    }

    /// Image offset of group `g`'s descriptor; `None` when a corrupt geometry puts it
    /// past what a `u64` holds.
    fn offset(&self, g: u64) -> Option<u64> {
        let per_block = self.bs / self.desc_size;
        let mg = g / per_block;
        if !self.meta_bg || mg < self.first_meta_bg {
            return self.gdt_at.checked_add(g.checked_mul(self.desc_size)?);
        }
        let g0 = mg * per_block;
        let block = self
            .first
            .checked_add(g0.checked_mul(self.bpg)?)?
            .checked_add(u64::from(self.has_super(g0)))?;
        block
            .checked_mul(self.bs)?
            .checked_add((g % per_block) * self.desc_size)
    }
}

/// A piece of a file: `len` bytes read from `src` (image offset) or zeros.
#[derive(Clone, Copy, Debug)]
struct Seg {
    len: u64,
    src: Option<u64>,
}

/// An ext4 image opened for reading.
pub struct Reader<R: Read + Seek> {
    img: R,
    bs: u64,
    inode_size: u64,
    ipg: u64,
    inodes_count: u64,
    blocks_count: u64,
    /// Blocks the image file really has: caps how much mapping one inode may claim.
    img_blocks: u64,
    /// Inode table block of each group.
    tables: Vec<u64>,
}

fn corrupt(offset: u64, what: impl Into<String>) -> Error {
    Error::Corrupt {
        offset,
        what: what.into(),
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

impl<R: Read + Seek> Reader<R> {
    /// Opens an image: reads and checks the superblock and group descriptors.
    pub fn open(mut img: R) -> Result<Self> {
        let mut raw = vec![0u8; 1024];
        read_at(&mut img, sbfmt::SUPERBLOCK_OFFSET, &mut raw)?;
        let sb = Superblock::read_from_bytes(&raw)
            .map_err(|_| corrupt(sbfmt::SUPERBLOCK_OFFSET, "short superblock"))?;
        let off = sbfmt::SUPERBLOCK_OFFSET;
        if sb.magic.get() != sbfmt::MAGIC {
            return Err(corrupt(off, "bad superblock magic (not ext2/3/4)"));
        }
        let incompat = sb.feature_incompat.get();
        let unsupported = incompat & !sbfmt::INCOMPAT_READ_SUPPORTED;
        if unsupported != 0 {
            return Err(Error::Unsupported {
                what: format!("incompatible features {unsupported:#x}"),
            });
        }
        let log = sb.log_block_size.get();
        if log > 6 {
            return Err(corrupt(off, format!("block size 1024 << {log}")));
        }
        let bs = 1024u64 << log;
        let inode_size = if sb.rev_level.get() == 0 {
            128
        } else {
            u64::from(sb.inode_size.get())
        };
        if inode_size < 128 || inode_size > bs || !inode_size.is_power_of_two() {
            return Err(corrupt(off, format!("inode size {inode_size}")));
        }
        let ipg = u64::from(sb.inodes_per_group.get());
        let bpg = u64::from(sb.blocks_per_group.get());
        if ipg == 0 || ipg > bs * 8 || bpg == 0 || bpg > bs * 8 {
            return Err(corrupt(off, "inodes or blocks per group out of range"));
        }
        let is64 = incompat & sbfmt::INCOMPAT_64BIT != 0;
        let blocks_count = u64::from(sb.blocks_count_lo.get())
            | if is64 {
                u64::from(sb.blocks_count_hi.get()) << 32
            } else {
                0
            };
        let first = u64::from(sb.first_data_block.get());
        if blocks_count <= first {
            return Err(corrupt(off, "block count below the first data block"));
        }
        // Every block number is checked against the count; with this, its byte offset
        // cannot overflow either.
        if blocks_count.checked_mul(bs).is_none() {
            return Err(corrupt(
                off,
                format!("{blocks_count} blocks of {bs} bytes: past 2^64 bytes"),
            ));
        }
        let groups = (blocks_count - first).div_ceil(bpg);
        let inodes_count = u64::from(sb.inodes_count.get());
        if inodes_count > groups.saturating_mul(ipg) || inodes_count < u64::from(ROOT_INO) {
            return Err(corrupt(off, "inode count does not match the groups"));
        }
        let desc_size = if is64 {
            u64::from(sb.desc_size.get())
        } else {
            32
        };
        if desc_size < 32 || desc_size > bs || !desc_size.is_power_of_two() {
            return Err(corrupt(off, format!("group descriptor size {desc_size}")));
        }
        // Only the groups holding inodes are needed; refuse tables bigger than the image
        // could hold before allocating them.
        let needed_groups = inodes_count.div_ceil(ipg);
        let img_len = img
            .seek(SeekFrom::End(0))
            .map_err(|source| Error::Read { offset: 0, source })?;
        let gdt_at = (first + 1) * bs;
        if needed_groups * desc_size > img_len {
            return Err(corrupt(
                gdt_at,
                "more group descriptors than the image holds",
            ));
        }
        let layout = DescLayout {
            gdt_at,
            bs,
            bpg,
            first,
            desc_size,
            meta_bg: incompat & sbfmt::INCOMPAT_META_BG != 0,
            first_meta_bg: u64::from(sb.first_meta_bg.get()),
            sparse_super2: sb.feature_compat.get() & sbfmt::COMPAT_SPARSE_SUPER2 != 0,
            sparse_super: sb.feature_ro_compat.get() & sbfmt::RO_COMPAT_SPARSE_SUPER != 0,
            backup_bgs: [
                u64::from(sb.backup_bgs[0].get()),
                u64::from(sb.backup_bgs[1].get()),
            ],
        };
        let mut tables = Vec::with_capacity(needed_groups as usize);
        let mut d = vec![0u8; desc_size as usize];
        for g in 0..needed_groups {
            let past_end = || corrupt(gdt_at, format!("group {g} descriptor past the end"));
            let at = layout.offset(g).ok_or_else(past_end)?;
            if at.checked_add(desc_size).is_none_or(|end| end > img_len) {
                return Err(past_end());
            }
            read_at(&mut img, at, &mut d)?;
            let lo = GroupDesc::read_from_bytes(&d[..32])
                .map_err(|_| corrupt(at, "short descriptor"))?;
            let mut table = u64::from(lo.inode_table_lo.get());
            if desc_size >= 64 {
                let hi = GroupDescHi::read_from_bytes(&d[32..64])
                    .map_err(|_| corrupt(at, "short descriptor"))?;
                table |= u64::from(hi.inode_table_hi.get()) << 32;
            }
            if table == 0 || table >= blocks_count {
                return Err(corrupt(
                    at,
                    format!("group {g} inode table at block {table}"),
                ));
            }
            tables.push(table);
        }
        Ok(Reader {
            img,
            bs,
            inode_size,
            ipg,
            inodes_count,
            blocks_count,
            img_blocks: img_len / bs,
            tables,
        })
    }

    /// Reads inode `ino`.
    pub fn inode(&mut self, ino: u32) -> Result<InodeInfo> {
        let ino64 = u64::from(ino);
        if ino == 0 || ino64 > self.inodes_count {
            return Err(corrupt(0, format!("inode number {ino} out of range")));
        }
        let g = ((ino64 - 1) / self.ipg) as usize;
        let idx = (ino64 - 1) % self.ipg;
        let table = *self
            .tables
            .get(g)
            .ok_or_else(|| corrupt(0, format!("inode {ino} in a missing group")))?;
        let at = (table * self.bs)
            .checked_add(idx * self.inode_size)
            .ok_or_else(|| {
                corrupt(
                    table * self.bs,
                    format!("inode {ino}: past 2^64 bytes (inode table at block {table})"),
                )
            })?;
        let mut raw = vec![0u8; self.inode_size as usize];
        read_at(&mut self.img, at, &mut raw)?;
        let extra = if self.inode_size > 128 {
            u64::from(le16(&raw, 0x80))
        } else {
            0
        };
        if 128 + extra > self.inode_size {
            return Err(corrupt(at, format!("inode {ino}: i_extra_isize {extra}")));
        }
        let has = |field_end: u64| 128 + extra >= field_end;
        let mtime = inofmt::decode_time(le32(&raw, 0x10), has(0x8C).then(|| le32(&raw, 0x88)));
        let mut block = [0u8; 60];
        block.copy_from_slice(&raw[0x28..0x28 + 60]);
        Ok(InodeInfo {
            ino,
            mode: le16(&raw, 0),
            uid: u32::from(le16(&raw, 2)) | (u32::from(le16(&raw, 0x78)) << 16),
            gid: u32::from(le16(&raw, 0x18)) | (u32::from(le16(&raw, 0x7A)) << 16),
            size: u64::from(le32(&raw, 4)) | (u64::from(le32(&raw, 0x6C)) << 32),
            mtime,
            links: le16(&raw, 0x1A),
            flags: le32(&raw, 0x20),
            block,
            file_acl: u64::from(le32(&raw, 0x68)) | (u64::from(le16(&raw, 0x76)) << 32),
            sectors: u64::from(le32(&raw, 0x1C)),
            offset: at,
            raw,
        })
    }

    /// The file's bytes as segments (data at an image offset, or zeros), covering exactly
    /// `size` bytes.
    fn segments(&mut self, ino: &InodeInfo) -> Result<Vec<Seg>> {
        let mut maps: Vec<(u64, u64, u64, bool)> = Vec::new(); // logical, physical, len, zero
        let nblocks = ino.size.div_ceil(self.bs);
        if ino.flags & inofmt::INLINE_DATA_FL != 0 {
            return Err(Error::Unsupported {
                what: format!("inode {}: inline data", ino.ino),
            });
        }
        // A file cannot map more blocks than the image has (nor more than its size needs):
        // that bounds both the work and the memory a corrupt tree can ask for.
        let cap = nblocks.min(self.img_blocks) + 16;
        if ino.flags & inofmt::EXTENTS_FL != 0 {
            let mut budget = cap;
            self.extent_node(
                ino.ino,
                ino.offset + 0x28,
                &ino.block,
                None,
                &mut maps,
                &mut budget,
            )?;
        } else {
            self.block_map(ino, nblocks.min(self.img_blocks + 16), &mut maps)?;
        }
        if maps.len() as u64 > cap {
            return Err(corrupt(
                ino.offset,
                format!("inode {}: more extents than blocks", ino.ino),
            ));
        }
        maps.sort_by_key(|m| m.0);
        let mut segs = Vec::new();
        let mut pos = 0u64; // bytes
        for (logical, physical, len, zero) in maps {
            let start = logical * self.bs;
            if start >= ino.size {
                break;
            }
            if start < pos {
                return Err(corrupt(
                    physical * self.bs,
                    format!("inode {}: overlapping extents", ino.ino),
                ));
            }
            if physical + len > self.blocks_count || physical == 0 {
                return Err(corrupt(
                    physical * self.bs,
                    format!("inode {}: extent outside the file system", ino.ino),
                ));
            }
            if start > pos {
                segs.push(Seg {
                    len: start - pos,
                    src: None,
                });
            }
            let bytes = (len * self.bs).min(ino.size - start);
            segs.push(Seg {
                len: bytes,
                src: if zero { None } else { Some(physical * self.bs) },
            });
            pos = start + bytes;
        }
        if pos < ino.size {
            segs.push(Seg {
                len: ino.size - pos,
                src: None,
            });
        }
        Ok(segs)
    }

    fn extent_node(
        &mut self,
        ino: u32,
        at: u64,
        node: &[u8],
        expect_depth: Option<u16>,
        maps: &mut Vec<(u64, u64, u64, bool)>,
        budget: &mut u64,
    ) -> Result<()> {
        let bad = |what: &str| corrupt(at, format!("inode {ino}: extent tree: {what}"));
        let h = ExtentHeader::read_from_prefix(node)
            .map_err(|_| bad("short node"))?
            .0;
        if h.magic.get() != extent::MAGIC {
            return Err(bad("bad magic"));
        }
        let depth = h.depth.get();
        if depth > MAX_EXTENT_DEPTH || expect_depth.is_some_and(|d| d != depth) {
            return Err(bad("bad depth"));
        }
        let n = usize::from(h.entries.get());
        let max = usize::from(h.max.get());
        if n > max || 12 + max * 12 > node.len() {
            return Err(bad("more entries than the node holds"));
        }
        for i in 0..n {
            let e = &node[12 + i * 12..24 + i * 12];
            if depth == 0 {
                let x = Extent::read_from_bytes(e).map_err(|_| bad("short extent"))?;
                let (len, uninit) = x.length();
                if *budget == 0 {
                    return Err(bad("more extents than blocks"));
                }
                *budget -= 1;
                maps.push((u64::from(x.block.get()), x.start(), u64::from(len), uninit));
            } else {
                let x = ExtentIdx::read_from_bytes(e).map_err(|_| bad("short index"))?;
                let leaf = x.leaf();
                if leaf == 0 || leaf >= self.blocks_count || *budget == 0 {
                    return Err(bad("index outside the file system"));
                }
                *budget -= 1;
                let mut child = vec![0u8; self.bs as usize];
                read_at(&mut self.img, leaf * self.bs, &mut child)?;
                self.extent_node(ino, leaf * self.bs, &child, Some(depth - 1), maps, budget)?;
            }
        }
        Ok(())
    }

    /// Old-style block maps: 12 direct pointers, then single, double, triple indirect.
    fn block_map(
        &mut self,
        ino: &InodeInfo,
        nblocks: u64,
        maps: &mut Vec<(u64, u64, u64, bool)>,
    ) -> Result<()> {
        let ptrs: Vec<u32> = (0..15).map(|i| le32(&ino.block, i * 4)).collect();
        let mut logical = 0u64;
        for &p in &ptrs[..12] {
            if logical >= nblocks {
                return Ok(());
            }
            if p != 0 {
                maps.push((logical, u64::from(p), 1, false));
            }
            logical += 1;
        }
        let per = self.bs / 4;
        for (level, &p) in ptrs[12..].iter().enumerate() {
            let span = per.pow(level as u32 + 1);
            if logical >= nblocks {
                return Ok(());
            }
            if p != 0 {
                self.indirect(ino.ino, u64::from(p), level as u32, logical, nblocks, maps)?;
            }
            logical += span;
        }
        Ok(())
    }

    fn indirect(
        &mut self,
        ino: u32,
        block: u64,
        level: u32,
        first: u64,
        nblocks: u64,
        maps: &mut Vec<(u64, u64, u64, bool)>,
    ) -> Result<()> {
        if block >= self.blocks_count {
            return Err(corrupt(
                block * self.bs,
                format!("inode {ino}: indirect block outside the file system"),
            ));
        }
        let mut buf = vec![0u8; self.bs as usize];
        read_at(&mut self.img, block * self.bs, &mut buf)?;
        let per = self.bs / 4;
        let span = per.pow(level);
        for i in 0..per {
            let logical = first + i * span;
            if logical >= nblocks {
                break;
            }
            let p = u64::from(le32(&buf, (i * 4) as usize));
            if p == 0 {
                continue;
            }
            if level == 0 {
                maps.push((logical, p, 1, false));
            } else {
                self.indirect(ino, p, level - 1, logical, nblocks, maps)?;
            }
        }
        Ok(())
    }

    /// A directory's entries (without `.` and `..`), sorted by name.
    pub fn read_dir(&mut self, ino: &InodeInfo) -> Result<BTreeMap<Vec<u8>, u32>> {
        if ino.size > MAX_DIR_SIZE {
            return Err(corrupt(
                ino.offset,
                format!("directory inode {} of {} bytes", ino.ino, ino.size),
            ));
        }
        let mut out = BTreeMap::new();
        if ino.flags & inofmt::INLINE_DATA_FL != 0 {
            // `i_block` holds the parent's inode number, then entries; `system.data`
            // holds more entries.
            let data = self
                .raw_xattrs(ino)?
                .remove(INLINE_XATTR)
                .unwrap_or_default();
            self.parse_dir_block(ino, ino.offset + 0x28 + 4, &ino.block[4..], &mut out)?;
            if !data.is_empty() {
                self.parse_dir_block(ino, ino.offset, &data, &mut out)?;
            }
            return Ok(out);
        }
        let segs = self.segments(ino)?;
        let mut block = vec![0u8; self.bs as usize];
        for seg in segs {
            let Some(src) = seg.src else { continue };
            let mut done = 0;
            while done < seg.len {
                let at = src + done;
                read_at(&mut self.img, at, &mut block)?;
                done += self.bs;
                self.parse_dir_block(ino, at, &block, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Parses the linear entries of one directory block (or inline area) at image offset `at`.
    fn parse_dir_block(
        &self,
        ino: &InodeInfo,
        at: u64,
        block: &[u8],
        out: &mut BTreeMap<Vec<u8>, u32>,
    ) -> Result<()> {
        let mut off = 0usize;
        while off + 8 <= block.len() {
            let (head, _) = DirEntryHead::read_from_prefix(&block[off..])
                .map_err(|_| corrupt(at, "short directory entry"))?;
            let rec = usize::from(head.rec_len.get());
            let nlen = usize::from(head.name_len);
            let bad = || {
                corrupt(
                    at + off as u64,
                    format!("directory inode {}: bad entry", ino.ino),
                )
            };
            if rec < 8 || off + rec > block.len() || 8 + nlen > rec {
                return Err(bad());
            }
            let child = head.inode.get();
            let name = &block[off + 8..off + 8 + nlen];
            if child != 0 && name != b"." && name != b".." {
                if u64::from(child) > self.inodes_count || nlen == 0 || name.contains(&b'/') {
                    return Err(bad());
                }
                out.insert(name.to_vec(), child);
            }
            off += rec;
        }
        Ok(())
    }

    /// The bytes of an `inline_data` inode: `i_block`, then the `system.data` xattr.
    fn inline_data(&mut self, ino: &InodeInfo) -> Result<Vec<u8>> {
        let mut data = ino.block.to_vec();
        data.extend(
            self.raw_xattrs(ino)?
                .remove(INLINE_XATTR)
                .unwrap_or_default(),
        );
        if (data.len() as u64) < ino.size {
            return Err(corrupt(
                ino.offset,
                format!("inode {}: inline data shorter than the size", ino.ino),
            ));
        }
        data.truncate(ino.size as usize);
        Ok(data)
    }

    /// An inode's extended attributes by full name (ACLs in their generic xattr form),
    /// without `system.data` (the tail of inline data, not an attribute of the file).
    pub fn xattrs(&mut self, ino: &InodeInfo) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        let mut all = self.raw_xattrs(ino)?;
        all.remove(INLINE_XATTR);
        Ok(all)
    }

    fn raw_xattrs(&mut self, ino: &InodeInfo) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        let mut out = BTreeMap::new();
        if self.inode_size > 128 {
            let extra = usize::from(le16(&ino.raw, 0x80));
            let start = 128 + extra;
            if start + 4 <= ino.raw.len() && le32(&ino.raw, start) == xfmt::MAGIC {
                let area = &ino.raw[start + 4..];
                parse_xattrs(ino.ino, area, 0, 0, &mut out)?;
            }
        }
        if ino.file_acl != 0 {
            if ino.file_acl >= self.blocks_count {
                return Err(corrupt(
                    ino.offset,
                    format!("inode {}: xattr block outside the file system", ino.ino),
                ));
            }
            let at = ino.file_acl * self.bs;
            let mut block = vec![0u8; self.bs as usize];
            read_at(&mut self.img, at, &mut block)?;
            if le32(&block, 0) != xfmt::MAGIC || le32(&block, 8) != 1 {
                return Err(corrupt(
                    at,
                    format!("inode {}: bad xattr block header", ino.ino),
                ));
            }
            parse_xattrs(ino.ino, &block, 32, at, &mut out)?;
        }
        Ok(out)
    }

    /// Writes the whole tree as a tar to `out` and returns it.
    pub fn write_tar<W: Write>(&mut self, out: W, options: ReadOptions) -> Result<W> {
        let mut tar = tar::Builder::new(out);
        let mut seen_dirs: HashSet<u32> = HashSet::new();
        let mut first_path: HashMap<u32, Vec<u8>> = HashMap::new();
        // (inode, path, depth)
        let mut stack: Vec<(u32, Vec<u8>, usize)> = vec![(ROOT_INO, Vec::new(), 0)];
        while let Some((ino_no, path, depth)) = stack.pop() {
            let ino = self.inode(ino_no)?;
            let kind = ino.mode & inofmt::S_IFMT;
            if kind == inofmt::S_IFDIR {
                if !seen_dirs.insert(ino_no) || depth > MAX_DEPTH {
                    return Err(corrupt(
                        ino.offset,
                        format!("directory loop at {:?}", show(&path)),
                    ));
                }
                let children = self.read_dir(&ino)?;
                if depth == 1 && path == b"lost+found" && children.is_empty() {
                    continue;
                }
                let mut xattrs = self.xattrs(&ino)?;
                let opaque = options.whiteouts == WhiteoutsOut::Oci
                    && xattrs.get(OPAQUE_XATTR).is_some_and(|v| v == b"y");
                if opaque {
                    xattrs.remove(OPAQUE_XATTR);
                }
                let name = if path.is_empty() {
                    b"./".to_vec()
                } else {
                    [path.as_slice(), b"/"].concat()
                };
                self.emit(&mut tar, &ino, &name, &xattrs, Emit::Dir)?;
                if opaque {
                    let wh = [name.as_slice(), b".wh..wh..opq"].concat();
                    self.emit(&mut tar, &ino, &wh, &BTreeMap::new(), Emit::EmptyFile)?;
                }
                for (child_name, child) in children.into_iter().rev() {
                    let cp = if path.is_empty() {
                        child_name
                    } else {
                        [path.as_slice(), b"/", child_name.as_slice()].concat()
                    };
                    // As every walk of a stored tree: what each pending entry keeps stays
                    // bounded, however deep the image's directories go.
                    if cp.len() > tar_engine::entry::MAX_PATH {
                        return Err(Error::Archive(tar_engine::tree::too_long(
                            &"the image's root",
                            tar_engine::confine::os(&cp),
                            cp.len(),
                        )));
                    }
                    stack.push((child, cp, depth + 1));
                }
                continue;
            }
            if ino.links > 1 {
                if let Some(target) = first_path.get(&ino_no) {
                    let target = target.clone();
                    self.emit(
                        &mut tar,
                        &ino,
                        &path,
                        &BTreeMap::new(),
                        Emit::HardLink(&target),
                    )?;
                    continue;
                }
                first_path.insert(ino_no, path.clone());
            }
            let xattrs = self.xattrs(&ino)?;
            match kind {
                inofmt::S_IFREG => self.emit(&mut tar, &ino, &path, &xattrs, Emit::File)?,
                inofmt::S_IFLNK => {
                    let target = self.symlink_target(&ino)?;
                    self.emit(&mut tar, &ino, &path, &xattrs, Emit::Symlink(&target))?
                }
                inofmt::S_IFCHR | inofmt::S_IFBLK => {
                    let w = [le32(&ino.block, 0), le32(&ino.block, 4)];
                    let (major, minor) = inofmt::decode_device(w);
                    if options.whiteouts == WhiteoutsOut::Oci
                        && kind == inofmt::S_IFCHR
                        && major == 0
                        && minor == 0
                    {
                        let wh = match path.iter().rposition(|&b| b == b'/') {
                            Some(i) => [&path[..=i], b".wh.", &path[i + 1..]].concat(),
                            None => [b".wh.".as_slice(), path.as_slice()].concat(),
                        };
                        self.emit(&mut tar, &ino, &wh, &BTreeMap::new(), Emit::EmptyFile)?;
                    } else {
                        let e = if kind == inofmt::S_IFCHR {
                            Emit::Device(tar::EntryType::Char, major, minor)
                        } else {
                            Emit::Device(tar::EntryType::Block, major, minor)
                        };
                        self.emit(&mut tar, &ino, &path, &xattrs, e)?;
                    }
                }
                inofmt::S_IFIFO => self.emit(&mut tar, &ino, &path, &xattrs, Emit::Fifo)?,
                inofmt::S_IFSOCK => {} // tar cannot hold sockets
                _ => {
                    return Err(corrupt(
                        ino.offset,
                        format!(
                            "inode {ino_no} at {:?}: bad mode {:o}",
                            show(&path),
                            ino.mode
                        ),
                    ));
                }
            }
        }
        tar.into_inner().map_err(|source| Error::TarWrite {
            entry: "(end of archive)".into(),
            source,
        })
    }

    fn symlink_target(&mut self, ino: &InodeInfo) -> Result<Vec<u8>> {
        if ino.size >= self.bs || ino.size == 0 {
            return Err(corrupt(
                ino.offset,
                format!("symlink inode {}: size {}", ino.ino, ino.size),
            ));
        }
        let acl_sectors = if ino.file_acl != 0 { self.bs / 512 } else { 0 };
        let fast = ino.flags & inofmt::EXTENTS_FL == 0
            && ino.size < 60
            && ino.sectors.saturating_sub(acl_sectors) == 0;
        if fast {
            return Ok(ino.block[..ino.size as usize].to_vec());
        }
        if ino.flags & inofmt::INLINE_DATA_FL != 0 {
            return self.inline_data(ino);
        }
        let mut out = Vec::new();
        for seg in self.segments(ino)? {
            let mut buf = vec![0u8; seg.len as usize];
            if let Some(src) = seg.src {
                read_at(&mut self.img, src, &mut buf)?;
            }
            out.extend_from_slice(&buf);
        }
        Ok(out)
    }

    fn emit<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        ino: &InodeInfo,
        path: &[u8],
        xattrs: &BTreeMap<Vec<u8>, Vec<u8>>,
        what: Emit<'_>,
    ) -> Result<()> {
        let werr = |source| Error::TarWrite {
            entry: show(path),
            source,
        };
        let path = Path::new(OsStr::from_bytes(path));
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if ino.mtime.1 != 0 && !matches!(what, Emit::HardLink(_)) {
            pax.push(("mtime".into(), format_time(ino.mtime).into_bytes()));
        }
        for (k, v) in xattrs {
            pax.push((
                format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
                v.clone(),
            ));
        }
        if !pax.is_empty() {
            tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(werr)?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(u32::from(ino.mode & 0o7777));
        h.set_uid(u64::from(ino.uid));
        h.set_gid(u64::from(ino.gid));
        h.set_mtime(ino.mtime.0.max(0) as u64);
        h.set_size(0);
        h.set_device_major(0).map_err(werr)?;
        h.set_device_minor(0).map_err(werr)?;
        match what {
            Emit::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut h, path, io::empty()).map_err(werr)
            }
            Emit::EmptyFile => {
                h.set_entry_type(tar::EntryType::Regular);
                tar.append_data(&mut h, path, io::empty()).map_err(werr)
            }
            Emit::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                tar.append_data(&mut h, path, io::empty()).map_err(werr)
            }
            Emit::Device(t, major, minor) => {
                h.set_entry_type(t);
                h.set_device_major(major).map_err(werr)?;
                h.set_device_minor(minor).map_err(werr)?;
                tar.append_data(&mut h, path, io::empty()).map_err(werr)
            }
            Emit::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = Path::new(OsStr::from_bytes(target));
                tar.append_link(&mut h, path, target).map_err(werr)
            }
            Emit::HardLink(target) => {
                h.set_entry_type(tar::EntryType::Link);
                let target = Path::new(OsStr::from_bytes(target));
                tar.append_link(&mut h, path, target).map_err(werr)
            }
            Emit::File if ino.flags & inofmt::INLINE_DATA_FL != 0 => {
                let data = self.inline_data(ino)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, path, data.as_slice()).map_err(werr)
            }
            Emit::File => {
                let segs = self.segments(ino)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(ino.size);
                let data = SegReader {
                    img: &mut self.img,
                    segs,
                    idx: 0,
                    done: 0,
                };
                tar.append_data(&mut h, path, data).map_err(werr)
            }
        }
    }
}

/// What kind of tar entry to emit.
enum Emit<'a> {
    Dir,
    File,
    EmptyFile,
    Fifo,
    Device(tar::EntryType, u32, u32),
    Symlink(&'a [u8]),
    HardLink(&'a [u8]),
}

/// A path for messages.
fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn format_time((secs, nanos): (i64, u32)) -> String {
    if secs < 0 && nanos > 0 {
        let s = secs + 1;
        let n = 1_000_000_000 - nanos;
        if s == 0 {
            format!("-0.{n:09}")
        } else {
            format!("{s}.{n:09}")
        }
    } else {
        format!("{secs}.{nanos:09}")
    }
}

/// Parses xattr entries from `area` starting at `start`; value offsets count from
/// `value_base` within `area` (0 for the inode, where `area` starts at the first entry).
fn parse_xattrs(
    ino: u32,
    area: &[u8],
    start: usize,
    at: u64,
    out: &mut BTreeMap<Vec<u8>, Vec<u8>>,
) -> Result<()> {
    let bad = |what: &str| corrupt(at, format!("inode {ino}: xattr {what}"));
    let mut pos = start;
    loop {
        if pos + 4 > area.len() {
            return Err(bad("entries run past their area"));
        }
        if le32(area, pos) == 0 {
            return Ok(());
        }
        let (head, _) =
            EntryHead::read_from_prefix(&area[pos..]).map_err(|_| bad("short entry"))?;
        let nlen = usize::from(head.name_len);
        let name = area
            .get(pos + 16..pos + 16 + nlen)
            .ok_or_else(|| bad("name runs past its area"))?;
        if head.value_inum.get() != 0 {
            return Err(Error::Unsupported {
                what: format!("inode {ino}: xattr value in an inode (ea_inode)"),
            });
        }
        let voff = usize::from(head.value_offs.get());
        let vsize = head.value_size.get() as usize;
        let value = area
            .get(voff..voff.saturating_add(vsize))
            .ok_or_else(|| bad("value runs past its area"))?;
        let index = head.name_index;
        if let Some(full) = xfmt::join_name(index, name) {
            let value = if index == 2 || index == 3 {
                xfmt::acl::from_disk(value).ok_or_else(|| bad("malformed ACL"))?
            } else {
                value.to_vec()
            };
            out.insert(full, value);
        }
        pos += xfmt::entry_len(nlen);
    }
}

/// Reads a file's segments from the image, zeros for holes.
struct SegReader<'a, R> {
    img: &'a mut R,
    segs: Vec<Seg>,
    idx: usize,
    done: u64,
}

impl<R: Read + Seek> Read for SegReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(seg) = self.segs.get(self.idx).copied() else {
                return Ok(0);
            };
            if self.done >= seg.len {
                self.idx += 1;
                self.done = 0;
                continue;
            }
            let n = (seg.len - self.done).min(buf.len() as u64) as usize;
            match seg.src {
                None => buf[..n].fill(0),
                Some(src) => {
                    self.img.seek(SeekFrom::Start(src + self.done))?;
                    self.img.read_exact(&mut buf[..n]).map_err(|e| {
                        let at = src + self.done;
                        io::Error::new(e.kind(), format!("image offset {at}: {}", Report(&e)))
                    })?;
                }
            }
            self.done += n as u64;
            return Ok(n);
        }
    }
}

fn read_at<R: Read + Seek>(img: &mut R, offset: u64, buf: &mut [u8]) -> Result<()> {
    img.seek(SeekFrom::Start(offset))
        .and_then(|_| img.read_exact(buf))
        .map_err(|source| Error::Read { offset, source })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use zerocopy::IntoBytes;

    use super::*;

    /// A 1 KiB-block image with one group descriptor (64-bit layout) and nothing else:
    /// `blocks_count` blocks claimed, the inode table at block `table`.
    fn geometry_only(blocks_count: u64, table: u64) -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        let Ok(mut sb) = Superblock::read_from_bytes(&[0u8; 1024]) else {
            unreachable!("a superblock is 1024 bytes")
        };
        sb.magic = sbfmt::MAGIC.into();
        sb.rev_level = 1.into();
        sb.inode_size = 128.into();
        sb.feature_incompat = sbfmt::INCOMPAT_64BIT.into();
        sb.desc_size = 64.into();
        sb.first_data_block = 1.into();
        sb.blocks_per_group = 8192.into();
        sb.inodes_per_group = 8192.into();
        sb.inodes_count = 8192.into();
        sb.blocks_count_lo = (blocks_count as u32).into();
        sb.blocks_count_hi = ((blocks_count >> 32) as u32).into();
        img[1024..2048].copy_from_slice(sb.as_bytes());
        // Group 0's descriptor, at block 2.
        img[2048 + 8..2048 + 12].copy_from_slice(&(table as u32).to_le_bytes());
        img[2048 + 40..2048 + 44].copy_from_slice(&((table >> 32) as u32).to_le_bytes());
        img
    }

    /// Found by the `reader_image` fuzz target: a 64-bit block count let an inode table
    /// sit at a block whose byte offset overflowed `u64` when an inode was located.
    #[test]
    fn block_count_past_2_64_bytes_is_corrupt_not_an_overflow() {
        let img = geometry_only(u64::MAX >> 1, 1 << 62);
        let res = Reader::open(Cursor::new(img))
            .and_then(|mut r| r.write_tar(std::io::sink(), ReadOptions::default()));
        assert!(
            matches!(&res, Err(Error::Corrupt { what, .. }) if what.contains("past 2^64 bytes")),
            "{:?}",
            res.err()
        );
    }

    /// An inode table just inside 2^64 bytes: a late inode of it would lie past.
    #[test]
    fn inode_offset_past_2_64_bytes_is_corrupt_not_an_overflow() {
        let blocks = (1u64 << 54) - 1;
        let img = geometry_only(blocks, blocks - 1);
        let mut r = match Reader::open(Cursor::new(img)) {
            Ok(r) => r,
            Err(e) => panic!("the geometry itself is valid: {e}"),
        };
        let res = r.inode(8000);
        assert!(
            matches!(&res, Err(Error::Corrupt { what, .. }) if what.contains("inode 8000: past")),
            "{:?}",
            res.err()
        );
        assert!(
            r.write_tar(std::io::sink(), ReadOptions::default())
                .is_err()
        );
    }
}
