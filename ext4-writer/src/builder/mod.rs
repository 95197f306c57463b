//! [`Builder`]: tar entries in, an ext4 image out, in one pass.
//!
//! File data is appended to the image as it arrives, block-aligned and contiguous, skipping
//! all-zero blocks (they become holes). Everything else (directories, extent tree blocks,
//! long symlinks, xattr blocks, inode tables, bitmaps, group descriptors, superblock) is
//! written by [`Builder::finish`], after the data.
//!
//! Image layout (4 KiB blocks, `flex_bg`, `sparse_super2` with no backups, so nothing has to
//! sit at fixed places inside the data):
//!
//! ```text
//! block 0        boot area + superblock
//! 1 ..           group descriptors (room for `max_size`; the unused rest is free space)
//! data_start ..  file data, in tar order
//! ..             directory blocks, long symlinks, extent tree blocks, xattr blocks
//! ..             inode tables of all groups, block bitmaps, inode bitmaps
//! ```

mod geometry;
mod ingest;
mod out;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};

use zerocopy::IntoBytes;

use storage_core::Op;
use tar_engine::{ApplyReport, IngestOptions};

use crate::error::{Error, Result};
use crate::layout::csum;
use crate::layout::dir::{dir_blocks, file_type};
use crate::layout::extent::{
    self, EXTENTS_PER_BLOCK, Extent, idx, node_bytes, node_vec, sealed_node,
};
use crate::layout::group::GroupDesc;
use crate::layout::htree::{self, htree_blocks};
use crate::layout::inode::{self as inofmt, Inode};
use crate::layout::superblock::{self as sbfmt, Superblock};
use crate::layout::xattr::{self as xfmt, INLINE_XATTR_START, split_xattrs};
use crate::layout::{
    BLOCK_SIZE, BLOCKS_PER_GROUP, BS, EXTRA_ISIZE, FIRST_INO, INODE_SIZE, LOG_BLOCK_SIZE, ROOT_INO,
};
use crate::tree::{self, Kind, Meta, Node, NodeId, Run, Tree};

use geometry::{Geometry, MAX_BLOCKS, Numbering, number_inodes};
use ingest::Ingest;
use out::Out;

/// What to do with OCI whiteout files (`.wh.NAME`, `.wh..wh..opq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Whiteouts {
    /// Keep them as the plain files they are in the tar.
    #[default]
    Keep,
    /// Convert them to overlayfs markers: `.wh.NAME` becomes a character device 0:0 named
    /// `NAME`, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory; other
    /// `.wh..wh.*` entries are dropped.
    Overlay,
}

/// How the image is built.
#[derive(Clone, Debug)]
pub struct Options {
    /// Whiteout handling.
    pub whiteouts: Whiteouts,
    /// Largest image size in bytes; building fails past it. It also sizes the room kept for
    /// group descriptors (32 bytes per 128 MiB), so a larger value costs a little space.
    pub max_size: u64,
    /// Free inodes to leave beyond those the content needs.
    pub inode_headroom: u32,
    /// Set the `read-only` compatibility flag: kernels then refuse to mount it read-write.
    pub read_only: bool,
    /// The file system UUID.
    pub uuid: [u8; 16],
    /// Enable `metadata_csum`: CRC32C over the superblock, descriptors, bitmaps, inodes,
    /// directory blocks, htree indexes, extent blocks and xattr blocks, which the kernel
    /// then verifies on every read.
    pub metadata_csum: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            whiteouts: Whiteouts::Keep,
            max_size: 128 << 30,
            inode_headroom: 0,
            read_only: false,
            uuid: *b"strata-ext4-imag",
            metadata_csum: false,
        }
    }
}

/// What [`Builder::finish`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Image size in bytes.
    pub size: u64,
    /// Inodes in use (including the reserved ones).
    pub inodes_used: u64,
    /// Blocks in use.
    pub blocks_used: u64,
}

/// Streams tar entries into an ext4 image written to `W`.
///
/// ```no_run
/// # fn main() -> Result<(), ext4_writer::Error> {
/// let tar = std::fs::File::open("layer.tar").map_err(|e| ext4_writer::Error::Read { offset: 0, source: e })?;
/// let img = std::fs::File::create("layer.img").map_err(|e| ext4_writer::Error::Write { offset: 0, source: e })?;
/// let mut b = ext4_writer::Builder::new(img, ext4_writer::Options::default())?;
/// b.append_tar(tar)?;
/// let (_img, summary) = b.finish()?;
/// println!("{} bytes", summary.size);
/// # Ok(()) }
/// ```
pub struct Builder<W: Write + Seek> {
    out: Out<W>,
    options: Options,
    tree: Tree,
    /// Blocks kept for group descriptors.
    gdt_reserved: u64,
    /// First block of file data.
    data_start: u64,
    /// Block count the image may not exceed.
    max_blocks: u64,
    /// The `metadata_csum` seed, when enabled.
    csum: Option<u32>,
}

fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

impl<W: Write + Seek> Builder<W> {
    /// Starts an image on `out`, which should be empty (it is written from offset 0 and its
    /// old content past the image end is left alone).
    pub fn new(mut out: W, options: Options) -> Result<Self> {
        let max_blocks = (options.max_size / BLOCK_SIZE).min(MAX_BLOCKS);
        if max_blocks < 64 {
            return Err(Error::TooLarge {
                entry: None,
                what: format!("max_size {} is below the 256 KiB minimum", options.max_size),
            });
        }
        let groups = div_ceil(max_blocks, BLOCKS_PER_GROUP);
        let gdt_reserved = div_ceil(groups * 32, BLOCK_SIZE);
        let data_start = 1 + gdt_reserved;
        let pos = data_start * BLOCK_SIZE;
        out.seek(SeekFrom::Start(pos))
            .map_err(|source| Error::Write {
                offset: pos,
                source,
            })?;
        let csum = options.metadata_csum.then(|| csum::fs_seed(&options.uuid));
        Ok(Builder {
            out: Out::new(out, pos),
            tree: Tree::new(),
            gdt_reserved,
            data_start,
            max_blocks,
            csum,
            options,
        })
    }

    /// Reads a whole tar stream (plain, gzip or zstd) through the tar engine's one entry
    /// stream and adds its entries, with every rule of the engine applied (the same verdict
    /// and tree as the directory and NFS writers). Later entries replace earlier ones of
    /// the same path, also across calls; each call is one archive for whiteouts, which
    /// spare what the same archive wrote.
    pub fn append_tar<R: Read + Send>(&mut self, tar: R) -> Result<ApplyReport> {
        let op = Op::new("tar to ext4");
        let opts = IngestOptions {
            target: "ext4 image",
            literal_whiteouts: self.options.whiteouts == Whiteouts::Keep,
            ..IngestOptions::default()
        };
        tar_engine::ingest(&op, tar, opts, &mut Ingest(self))
    }

    /// Writes all metadata and returns the target with a summary.
    pub fn finish(mut self) -> Result<(W, Summary)> {
        self.add_lost_found();
        let numbering = number_inodes(&self.tree)?;
        let (plans, xattr_blocks) = self.plan_inodes(&numbering)?;
        let xattr_first = self.write_xattr_blocks(&xattr_blocks)?;
        let meta_end = self.out.next_block();
        let last_ino = numbering.last_ino();
        let geo = self.geometry(meta_end, last_ino)?;
        let dirs_per_group = self.write_inode_tables(&geo, &numbering, &plans, xattr_first)?;
        let blocks = self.write_block_bitmaps(&geo, &numbering)?;
        let inodes = self.write_inode_bitmaps(&geo, last_ino)?;
        self.finish_appending(&geo)?;
        self.write_group_descriptors(&geo, &blocks, &inodes, &dirs_per_group)?;
        let free_blocks = blocks.total_free();
        let free_inodes = geo.inodes_count() - last_ino;
        self.write_superblock(&geo, free_blocks, free_inodes)?;
        Ok((
            self.out.into_inner()?,
            Summary {
                size: geo.total_blocks * BLOCK_SIZE,
                inodes_used: last_ino,
                blocks_used: geo.total_blocks - free_blocks,
            },
        ))
    }

    /// Adds an empty `lost+found` (mode 0700) to the root, unless the root already has an
    /// entry of that name.
    fn add_lost_found(&mut self) {
        if self.tree.get(tree::ROOT, b"lost+found").is_none() {
            let id = self.tree.add(Node {
                kind: Kind::Dir(BTreeMap::new()),
                meta: Meta {
                    perm: 0o700,
                    ..Meta::default()
                },
            });
            self.tree.link(tree::ROOT, b"lost+found".to_vec(), id);
        }
    }

    /// Plans every inode in inode order, writing what each needs besides its table slot;
    /// xattr blocks are only collected, as their reference counts are not known yet.
    fn plan_inodes(&mut self, numbering: &Numbering) -> Result<(Vec<Plan>, XattrBlocks)> {
        let mut plans: Vec<Plan> = Vec::with_capacity(numbering.order.len());
        let mut xattr_blocks = XattrBlocks::default();
        for &id in &numbering.order {
            let plan = self.plan_inode(id, numbering, &mut xattr_blocks)?;
            plans.push(plan);
        }
        Ok((plans, xattr_blocks))
    }

    /// Writes the xattr blocks, now that their reference counts are known; returns the
    /// block of the first.
    fn write_xattr_blocks(&mut self, xattr_blocks: &XattrBlocks) -> Result<u64> {
        let xattr_first = self.out.next_block();
        for (content, refs) in &xattr_blocks.blocks {
            let mut b = content.clone();
            b[4..8].copy_from_slice(&refs.to_le_bytes());
            if let Some(seed) = self.csum {
                // Over the block number, then the block with `h_checksum` zero.
                let nr = self.out.next_block();
                let c = csum::crc32c(csum::crc32c(seed, &nr.to_le_bytes()), &b);
                b[16..20].copy_from_slice(&c.to_le_bytes());
            }
            self.out.push_blocks(&b)?;
        }
        Ok(xattr_first)
    }

    /// Writes the inode tables of all groups, after a gap (written as a hole) when the
    /// groups need one: used inodes from their plans, reserved (but the root) and free ones
    /// as zeros. Returns the number of directories in each group.
    fn write_inode_tables(
        &mut self,
        geo: &Geometry,
        numbering: &Numbering,
        plans: &[Plan],
        xattr_first: u64,
    ) -> Result<Vec<u32>> {
        self.out.skip_to(geo.inode_tables)?;
        let last_ino = numbering.last_ino();
        let mut dirs_per_group = vec![0u32; geo.groups as usize];
        let zero = [0u8; INODE_SIZE as usize];
        for ino in 1..=geo.inodes_count() {
            if (ino < u64::from(FIRST_INO) && ino != u64::from(ROOT_INO)) || ino > last_ino {
                self.out.push(&zero)?;
                continue;
            }
            let idx = if ino == u64::from(ROOT_INO) {
                0
            } else {
                (ino - u64::from(FIRST_INO)) as usize + 1
            };
            let node = &self.tree.nodes[numbering.order[idx]];
            if matches!(node.kind, Kind::Dir(_)) {
                dirs_per_group[((ino - 1) / geo.ipg) as usize] += 1;
            }
            let mut raw = inode_bytes(
                node,
                &plans[idx],
                numbering.links[numbering.order[idx]],
                xattr_first,
            );
            if let Some(seed) = self.csum {
                // Over the whole inode with both checksum halves zero.
                let c = csum::crc32c(csum::inode_seed(seed, ino as u32, 0), &raw);
                raw[0x7C..0x7E].copy_from_slice(&(c as u16).to_le_bytes());
                raw[0x82..0x84].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
            }
            self.out.push(&raw)?;
        }
        Ok(dirs_per_group)
    }

    /// Writes the block bitmaps: everything is in use except the unused descriptor room,
    /// the gap before the inode tables and the data of files that later entries replaced.
    fn write_block_bitmaps(
        &mut self,
        geo: &Geometry,
        numbering: &Numbering,
    ) -> Result<BitmapCounts> {
        let mut bitmap = vec![0xffu8; geo.groups as usize * BS];
        let mut free_ranges: Vec<(u64, u64)> =
            vec![(1 + geo.gdt_blocks(), self.data_start), geo.gap];
        for (id, node) in self.tree.nodes.iter().enumerate() {
            if numbering.ino[id] == 0
                && let Kind::File { runs, .. } = &node.kind
            {
                free_ranges.extend(
                    runs.iter()
                        .map(|r| (r.physical, r.physical + u64::from(r.len))),
                );
            }
        }
        for (start, end) in free_ranges {
            for b in start..end {
                bitmap[(b / 8) as usize] &= !(1 << (b % 8));
            }
        }
        let mut free_per_group = vec![0u32; geo.groups as usize];
        for (g, free) in free_per_group.iter_mut().enumerate() {
            let first = g as u64 * BLOCKS_PER_GROUP;
            let end = (first + BLOCKS_PER_GROUP).min(geo.total_blocks);
            *free = (first..end)
                .filter(|b| bitmap[(b / 8) as usize] & (1 << (b % 8)) == 0)
                .count() as u32;
        }
        let bb_csum: Vec<u32> = match self.csum {
            Some(seed) => bitmap.chunks(BS).map(|b| csum::crc32c(seed, b)).collect(),
            None => Vec::new(),
        };
        self.out.push(&bitmap)?;
        Ok(BitmapCounts {
            free: free_per_group,
            csums: bb_csum,
        })
    }

    /// Writes the inode bitmaps: inodes up to `last_ino` are in use, and so are the bits
    /// past the inodes of a group.
    fn write_inode_bitmaps(&mut self, geo: &Geometry, last_ino: u64) -> Result<BitmapCounts> {
        let mut ibitmap = vec![0u8; BS];
        let mut free_inodes_per_group = vec![0u32; geo.groups as usize];
        let mut ib_csum: Vec<u32> = Vec::new();
        for g in 0..geo.groups {
            ibitmap.fill(0);
            let mut free = 0;
            for i in 0..(BS as u64 * 8) {
                let ino = g * geo.ipg + i + 1;
                if i >= geo.ipg || ino <= last_ino {
                    ibitmap[(i / 8) as usize] |= 1 << (i % 8);
                } else {
                    free += 1;
                }
            }
            free_inodes_per_group[g as usize] = free;
            if let Some(seed) = self.csum {
                ib_csum.push(csum::crc32c(seed, &ibitmap[..(geo.ipg / 8) as usize]));
            }
            self.out.push(&ibitmap)?;
        }
        Ok(BitmapCounts {
            free: free_inodes_per_group,
            csums: ib_csum,
        })
    }

    /// Ends the appending: checks that the image ends where the geometry planned and
    /// flushes it. What is left to write goes over the first blocks.
    fn finish_appending(&mut self, geo: &Geometry) -> Result<()> {
        if self.out.next_block() != geo.total_blocks {
            return Err(Error::Write {
                offset: self.out.next_block() * BLOCK_SIZE,
                source: std::io::Error::other("layout mismatch: image end is not where planned"),
            });
        }
        self.out.flush()
    }

    /// Writes the group descriptors into the room kept for them after block 0.
    fn write_group_descriptors(
        &mut self,
        geo: &Geometry,
        blocks: &BitmapCounts,
        inodes: &BitmapCounts,
        dirs_per_group: &[u32],
    ) -> Result<()> {
        let mut gdt = vec![0u8; ((self.data_start - 1) * BLOCK_SIZE) as usize];
        for g in 0..geo.groups as usize {
            let mut d = GroupDesc {
                block_bitmap_lo: (geo.block_bitmaps + g as u64)
                    .try_into()
                    .unwrap_or(0u32)
                    .into(),
                inode_bitmap_lo: (geo.inode_bitmaps + g as u64)
                    .try_into()
                    .unwrap_or(0u32)
                    .into(),
                inode_table_lo: (geo.inode_tables + g as u64 * geo.itable_blocks_per_group())
                    .try_into()
                    .unwrap_or(0u32)
                    .into(),
                free_blocks_count_lo: (blocks.free[g] as u16).into(),
                free_inodes_count_lo: (inodes.free[g] as u16).into(),
                used_dirs_count_lo: (dirs_per_group[g] as u16).into(),
                ..GroupDesc::default()
            };
            if let Some(seed) = self.csum {
                d.block_bitmap_csum_lo = (blocks.csums[g] as u16).into();
                d.inode_bitmap_csum_lo = (inodes.csums[g] as u16).into();
                // Over the group number, then the descriptor with `bg_checksum` zero.
                let c = csum::crc32c(csum::crc32c(seed, &(g as u32).to_le_bytes()), d.as_bytes());
                d.checksum = (c as u16).into();
            }
            gdt[g * 32..(g + 1) * 32].copy_from_slice(d.as_bytes());
        }
        self.out.write_at(BLOCK_SIZE, &gdt)
    }

    /// Writes block 0: the zeroed boot area and the superblock, with its checksum when
    /// `metadata_csum` is on.
    fn write_superblock(
        &mut self,
        geo: &Geometry,
        free_blocks: u64,
        free_inodes: u64,
    ) -> Result<()> {
        let sb = self.superblock(geo, free_blocks, free_inodes);
        let mut block0 = vec![0u8; BS];
        block0[1024..2048].copy_from_slice(sb.as_bytes());
        if self.csum.is_some() {
            let end = 1024 + csum::SUPERBLOCK_CSUM_OFFSET;
            let c = csum::crc32c(!0, &block0[1024..end]);
            block0[end..end + 4].copy_from_slice(&c.to_le_bytes());
        }
        self.out.write_at(0, &block0)
    }

    fn superblock(&self, geo: &Geometry, free_blocks: u64, free_inodes: u64) -> Superblock {
        let mut ro =
            sbfmt::RO_COMPAT_LARGE_FILE | sbfmt::RO_COMPAT_DIR_NLINK | sbfmt::RO_COMPAT_EXTRA_ISIZE;
        if self.options.read_only {
            ro |= sbfmt::RO_COMPAT_READONLY;
        }
        if self.csum.is_some() {
            ro |= csum::RO_COMPAT_METADATA_CSUM;
        }
        Superblock {
            inodes_count: (geo.inodes_count() as u32).into(),
            blocks_count_lo: (geo.total_blocks as u32).into(),
            r_blocks_count_lo: 0.into(),
            free_blocks_count_lo: (free_blocks as u32).into(),
            free_inodes_count: (free_inodes as u32).into(),
            first_data_block: 0.into(),
            log_block_size: LOG_BLOCK_SIZE.into(),
            log_cluster_size: LOG_BLOCK_SIZE.into(),
            blocks_per_group: (BLOCKS_PER_GROUP as u32).into(),
            clusters_per_group: (BLOCKS_PER_GROUP as u32).into(),
            inodes_per_group: (geo.ipg as u32).into(),
            mtime: 0.into(),
            wtime: 0.into(),
            mnt_count: 0.into(),
            max_mnt_count: 0xffff.into(),
            magic: sbfmt::MAGIC.into(),
            state: sbfmt::STATE_CLEAN.into(),
            errors: sbfmt::ERRORS_CONTINUE.into(),
            minor_rev_level: 0.into(),
            lastcheck: 0.into(),
            checkinterval: 0.into(),
            creator_os: 0.into(),
            rev_level: sbfmt::REV_DYNAMIC.into(),
            def_resuid: 0.into(),
            def_resgid: 0.into(),
            first_ino: FIRST_INO.into(),
            inode_size: (INODE_SIZE as u16).into(),
            block_group_nr: 0.into(),
            feature_compat: (sbfmt::COMPAT_EXT_ATTR
                | sbfmt::COMPAT_SPARSE_SUPER2
                | sbfmt::COMPAT_DIR_INDEX)
                .into(),
            feature_incompat: (sbfmt::INCOMPAT_FILETYPE
                | sbfmt::INCOMPAT_EXTENTS
                | sbfmt::INCOMPAT_FLEX_BG)
                .into(),
            feature_ro_compat: ro.into(),
            uuid: self.options.uuid,
            volume_name: [0; 16],
            last_mounted: [0; 64],
            algorithm_usage_bitmap: 0.into(),
            prealloc_blocks: 0,
            prealloc_dir_blocks: 0,
            reserved_gdt_blocks: 0.into(),
            journal_uuid: [0; 16],
            journal_inum: 0.into(),
            journal_dev: 0.into(),
            last_orphan: 0.into(),
            hash_seed: seed_from(&self.options.uuid),
            def_hash_version: htree::HASH_LEGACY,
            jnl_backup_type: 0,
            desc_size: 0.into(),
            default_mount_opts: 0.into(),
            first_meta_bg: 0.into(),
            mkfs_time: 0.into(),
            jnl_blocks: [0.into(); 17],
            blocks_count_hi: 0.into(),
            r_blocks_count_hi: 0.into(),
            free_blocks_count_hi: 0.into(),
            min_extra_isize: EXTRA_ISIZE.into(),
            want_extra_isize: EXTRA_ISIZE.into(),
            flags: htree::FLAGS_UNSIGNED_HASH.into(),
            raid_stride: 0.into(),
            mmp_interval: 0.into(),
            mmp_block: 0.into(),
            raid_stripe_width: 0.into(),
            log_groups_per_flex: 4,
            checksum_type: if self.csum.is_some() {
                csum::CHECKSUM_TYPE_CRC32C
            } else {
                0
            },
            reserved_pad: 0.into(),
            kbytes_written: 0.into(),
            unused_snapshot_error: [0; 0x240 - 0x180],
            usr_quota_inum: 0.into(),
            grp_quota_inum: 0.into(),
            overhead_blocks: 0.into(),
            backup_bgs: [0.into(); 2],
            tail: [0; 1024 - 0x254],
        }
    }

    /// Writes what an inode needs besides its table slot (directory blocks, long symlink,
    /// extent tree blocks) and returns how to fill the slot.
    fn plan_inode(
        &mut self,
        id: NodeId,
        num: &Numbering,
        xattrs: &mut XattrBlocks,
    ) -> Result<Plan> {
        let node = &self.tree.nodes[id];
        let mut plan = Plan::default();
        let (inline, block) = split_xattrs(&node.meta.xattrs)?;
        plan.inline_xattrs = inline;
        if let Some(content) = block {
            plan.xattr_block = Some(xattrs.add(content));
            plan.blocks += 1;
        }
        let runs: Vec<Run> = match &node.kind {
            Kind::Dir(children) => {
                let parent = num.parent[id];
                let mut entries: Vec<(&[u8], u32, u8)> = Vec::with_capacity(children.len() + 2);
                entries.push((b".", num.ino[id], file_type::DIR));
                entries.push((b"..", num.ino[parent], file_type::DIR));
                for (name, &child) in children {
                    entries.push((
                        name,
                        num.ino[child],
                        dir_file_type(&self.tree.nodes[child].kind),
                    ));
                }
                let seed = self.csum.map(|s| csum::inode_seed(s, num.ino[id], 0));
                let mut data = dir_blocks(&entries, seed);
                if data.len() > BS
                    && let Some(hashed) = htree_blocks(&entries, seed)
                {
                    data = hashed;
                    plan.indexed = true;
                }
                let first = self.out.push_blocks(&data)?;
                let len = (data.len() / BS) as u32;
                plan.size = data.len() as u64;
                vec![Run {
                    logical: 0,
                    physical: first,
                    len,
                }]
            }
            Kind::File { size, runs } => {
                plan.size = *size;
                runs.clone()
            }
            Kind::Symlink(target) => {
                plan.size = target.len() as u64;
                if target.len() < 60 {
                    plan.block[..target.len()].copy_from_slice(target);
                    plan.fast = true;
                    return Ok(plan);
                }
                let target = target.clone();
                let first = self.out.push_blocks(&target)?;
                vec![Run {
                    logical: 0,
                    physical: first,
                    len: 1,
                }]
            }
            Kind::Char(ma, mi) | Kind::Block(ma, mi) => {
                let w = inofmt::encode_device(*ma, *mi);
                plan.block[0..4].copy_from_slice(&w[0].to_le_bytes());
                plan.block[4..8].copy_from_slice(&w[1].to_le_bytes());
                plan.fast = true;
                return Ok(plan);
            }
            Kind::Fifo => {
                plan.fast = true;
                return Ok(plan);
            }
        };
        plan.blocks += runs.iter().map(|r| u64::from(r.len)).sum::<u64>();
        let seed = self.csum.map(|s| csum::inode_seed(s, num.ino[id], 0));
        self.extent_tree(&runs, &mut plan, seed)?;
        Ok(plan)
    }

    /// Builds the extent tree of `runs`: in the inode when it fits, else with leaf (and
    /// index) blocks appended to the image.
    fn extent_tree(&mut self, runs: &[Run], plan: &mut Plan, seed: Option<u32>) -> Result<()> {
        let mut extents: Vec<Extent> = Vec::new();
        for r in runs {
            let mut done = 0u32;
            while done < r.len {
                let len = (r.len - done).min(extent::MAX_LEN);
                extents.push(Extent::new(
                    r.logical + done,
                    r.physical + u64::from(done),
                    len as u16,
                ));
                done += len;
            }
        }
        if extents.len() <= 4 {
            plan.block = node_bytes(0, 4, extents.iter().map(|e| e.as_bytes().to_vec()));
            return Ok(());
        }
        // Level 1: leaves.
        let mut level: Vec<(u32, u64)> = Vec::new();
        for chunk in extents.chunks(EXTENTS_PER_BLOCK) {
            let b = sealed_node(
                node_vec(
                    0,
                    EXTENTS_PER_BLOCK as u16,
                    chunk.iter().map(|e| e.as_bytes().to_vec()),
                ),
                seed,
            );
            let at = self.out.push_blocks(&b)?;
            plan.blocks += 1;
            level.push((chunk[0].block.get(), at));
        }
        let mut depth = 1u16;
        while level.len() > 4 {
            if depth >= 4 {
                return Err(Error::TooLarge {
                    entry: None,
                    what: "an extent tree deeper than 4 levels".into(),
                });
            }
            let mut next = Vec::new();
            for chunk in level.chunks(EXTENTS_PER_BLOCK) {
                let b = sealed_node(
                    node_vec(
                        depth,
                        EXTENTS_PER_BLOCK as u16,
                        chunk.iter().map(|&(l, at)| idx(l, at)),
                    ),
                    seed,
                );
                let at = self.out.push_blocks(&b)?;
                plan.blocks += 1;
                next.push((chunk[0].0, at));
            }
            level = next;
            depth += 1;
        }
        plan.block = node_bytes(depth, 4, level.iter().map(|&(l, at)| idx(l, at)));
        Ok(())
    }
}

/// What the group descriptors say of one kind of bitmap, group by group.
struct BitmapCounts {
    /// Free blocks or inodes in each group.
    free: Vec<u32>,
    /// Each group's bitmap checksum; empty without `metadata_csum`.
    csums: Vec<u32>,
}

impl BitmapCounts {
    /// Free blocks or inodes in all groups.
    fn total_free(&self) -> u64 {
        self.free.iter().map(|&f| u64::from(f)).sum()
    }
}

/// How to fill an inode slot, decided before the inode table is written.
struct Plan {
    /// `i_block`.
    block: [u8; 60],
    /// No extents (fast symlink, device, FIFO).
    fast: bool,
    /// A hashed directory.
    indexed: bool,
    /// `i_size`.
    size: u64,
    /// Blocks used (data, tree, xattr block).
    blocks: u64,
    /// The in-inode xattr area (after the magic), empty when none.
    inline_xattrs: Vec<u8>,
    /// Index into the xattr blocks.
    xattr_block: Option<u64>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            block: [0; 60],
            fast: false,
            indexed: false,
            size: 0,
            blocks: 0,
            inline_xattrs: Vec::new(),
            xattr_block: None,
        }
    }
}

/// Xattr blocks, shared between inodes with the same content.
#[derive(Default)]
struct XattrBlocks {
    blocks: Vec<(Vec<u8>, u32)>,
    by_content: HashMap<Vec<u8>, usize>,
}

impl XattrBlocks {
    fn add(&mut self, content: Vec<u8>) -> u64 {
        if let Some(&i) = self.by_content.get(&content) {
            self.blocks[i].1 += 1;
            return i as u64;
        }
        self.blocks.push((content.clone(), 1));
        self.by_content.insert(content, self.blocks.len() - 1);
        (self.blocks.len() - 1) as u64
    }
}

fn dir_file_type(k: &Kind) -> u8 {
    match k {
        Kind::Dir(_) => file_type::DIR,
        Kind::File { .. } => file_type::REG,
        Kind::Symlink(_) => file_type::SYMLINK,
        Kind::Char(..) => file_type::CHR,
        Kind::Block(..) => file_type::BLK,
        Kind::Fifo => file_type::FIFO,
    }
}

fn mode_type(k: &Kind) -> u16 {
    match k {
        Kind::Dir(_) => inofmt::S_IFDIR,
        Kind::File { .. } => inofmt::S_IFREG,
        Kind::Symlink(_) => inofmt::S_IFLNK,
        Kind::Char(..) => inofmt::S_IFCHR,
        Kind::Block(..) => inofmt::S_IFBLK,
        Kind::Fifo => inofmt::S_IFIFO,
    }
}

/// The htree hash seed (unused by the legacy hash, but e2fsck wants one): the UUID.
fn seed_from(uuid: &[u8; 16]) -> [zerocopy::little_endian::U32; 4] {
    let w = |i: usize| u32::from_le_bytes([uuid[i], uuid[i + 1], uuid[i + 2], uuid[i + 3]]).into();
    [w(0), w(4), w(8), w(12)]
}

/// The 256 bytes of one inode.
fn inode_bytes(
    node: &Node,
    plan: &Plan,
    links: u32,
    xattr_first: u64,
) -> [u8; INODE_SIZE as usize] {
    let m = &node.meta;
    let (atime, atime_x) = inofmt::encode_time(m.atime.secs, m.atime.nanos);
    let (mtime, mtime_x) = inofmt::encode_time(m.mtime.secs, m.mtime.nanos);
    let (ctime, ctime_x) = inofmt::encode_time(m.ctime.secs, m.ctime.nanos);
    let acl = plan.xattr_block.map(|i| xattr_first + i).unwrap_or(0);
    let sectors = plan.blocks * (BLOCK_SIZE / 512);
    let inode = Inode {
        mode: (mode_type(&node.kind) | (m.perm & 0o7777)).into(),
        uid: (m.uid as u16).into(),
        size_lo: (plan.size as u32).into(),
        atime: atime.into(),
        ctime: ctime.into(),
        mtime: mtime.into(),
        dtime: 0.into(),
        gid: (m.gid as u16).into(),
        links_count: (links as u16).into(),
        blocks_lo: (sectors as u32).into(),
        flags: ((if plan.fast { 0 } else { inofmt::EXTENTS_FL })
            | (if plan.indexed { inofmt::INDEX_FL } else { 0 }))
        .into(),
        osd1: 0.into(),
        block: plan.block,
        generation: 0.into(),
        file_acl_lo: (acl as u32).into(),
        size_high: ((plan.size >> 32) as u32).into(),
        obso_faddr: 0.into(),
        blocks_high: ((sectors >> 32) as u16).into(),
        file_acl_high: ((acl >> 32) as u16).into(),
        uid_high: ((m.uid >> 16) as u16).into(),
        gid_high: ((m.gid >> 16) as u16).into(),
        checksum_lo: 0.into(),
        reserved: 0.into(),
        extra_isize: EXTRA_ISIZE.into(),
        checksum_hi: 0.into(),
        ctime_extra: ctime_x.into(),
        mtime_extra: mtime_x.into(),
        atime_extra: atime_x.into(),
        crtime: ctime.into(),
        crtime_extra: ctime_x.into(),
        version_hi: 0.into(),
        projid: 0.into(),
    };
    let mut raw = [0u8; INODE_SIZE as usize];
    raw[..INLINE_XATTR_START].copy_from_slice(inode.as_bytes());
    if !plan.inline_xattrs.is_empty() {
        raw[INLINE_XATTR_START..INLINE_XATTR_START + 4].copy_from_slice(&xfmt::MAGIC.to_le_bytes());
        raw[INLINE_XATTR_START + 4..].copy_from_slice(&plan.inline_xattrs);
    }
    raw
}
