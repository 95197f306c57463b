//! The group metadata written last: block and inode bitmaps after the inode tables, then
//! the group descriptors and the superblock over the first blocks.

use std::io::{Seek, Write};

use zerocopy::IntoBytes;

use crate::error::{Error, Result};
use crate::layout::csum;
use crate::layout::group::GroupDesc;
use crate::layout::htree;
use crate::layout::superblock::{self as sbfmt, Superblock};
use crate::layout::{
    BLOCK_SIZE, BLOCKS_PER_GROUP, BS, EXTRA_ISIZE, FIRST_INO, INODE_SIZE, LOG_BLOCK_SIZE,
};
use crate::tree::Kind;

use super::Builder;
use super::geometry::{Geometry, Numbering};

impl<W: Write + Seek> Builder<W> {
    /// Writes the block bitmaps: everything is in use except the unused descriptor room,
    /// the gap before the inode tables and the data of files that later entries replaced.
    pub(super) fn write_block_bitmaps(
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
    pub(super) fn write_inode_bitmaps(
        &mut self,
        geo: &Geometry,
        last_ino: u64,
    ) -> Result<BitmapCounts> {
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
    pub(super) fn finish_appending(&mut self, geo: &Geometry) -> Result<()> {
        if self.out.next_block() != geo.total_blocks {
            return Err(Error::Write {
                offset: self.out.next_block() * BLOCK_SIZE,
                source: std::io::Error::other("layout mismatch: image end is not where planned"),
            });
        }
        self.out.flush()
    }

    /// Writes the group descriptors into the room kept for them after block 0.
    pub(super) fn write_group_descriptors(
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
    pub(super) fn write_superblock(
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
            volume_name: self.options.label,
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
}

/// What the group descriptors say of one kind of bitmap, group by group.
pub(super) struct BitmapCounts {
    /// Free blocks or inodes in each group.
    free: Vec<u32>,
    /// Each group's bitmap checksum; empty without `metadata_csum`.
    csums: Vec<u32>,
}

impl BitmapCounts {
    /// Free blocks or inodes in all groups.
    pub(super) fn total_free(&self) -> u64 {
        self.free.iter().map(|&f| u64::from(f)).sum()
    }
}

/// The htree hash seed (unused by the legacy hash, but e2fsck wants one): the UUID.
fn seed_from(uuid: &[u8; 16]) -> [zerocopy::little_endian::U32; 4] {
    let w = |i: usize| u32::from_le_bytes([uuid[i], uuid[i + 1], uuid[i + 2], uuid[i + 3]]).into();
    [w(0), w(4), w(8), w(12)]
}
