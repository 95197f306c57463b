//! Where everything goes: inode numbers for the tree's nodes, and the block-group geometry
//! that fits the finished image.

use std::collections::VecDeque;
use std::io::{Seek, Write};

use crate::error::{Error, Result};
use crate::layout::{BLOCK_SIZE, BLOCKS_PER_GROUP, FIRST_INO, INODE_SIZE, ROOT_INO};
use crate::tree::{self, Kind, NodeId, Tree};

use super::{Builder, div_ceil};

/// Largest block count without the `64bit` feature (`s_blocks_count_lo` is 32 bits).
pub(super) const MAX_BLOCKS: u64 = u32::MAX as u64;
/// Largest link count of a non-directory.
const MAX_LINKS: u32 = 65000;

/// Inode numbers: root 2, then breadth-first in name order from 11.
pub(super) struct Numbering {
    /// Node ids by inode: `order[0]` is the root, `order[i]` has inode `FIRST_INO + i - 1`.
    pub(super) order: Vec<NodeId>,
    /// Inode number of each node (0: unreachable).
    pub(super) ino: Vec<u32>,
    /// Parent directory of each directory node.
    pub(super) parent: Vec<NodeId>,
    /// Link count of each node.
    pub(super) links: Vec<u32>,
}

impl Numbering {
    /// The highest inode number in use.
    pub(super) fn last_ino(&self) -> u64 {
        u64::from(FIRST_INO) - 1 + self.order.len() as u64 - 1
    }
}

/// Numbers the nodes reachable from the root and counts their links; fails past 2^32
/// inodes or [`MAX_LINKS`] links to one file.
pub(super) fn number_inodes(t: &Tree) -> Result<Numbering> {
    let n = t.nodes.len();
    let mut num = Numbering {
        order: vec![tree::ROOT],
        ino: vec![0; n],
        parent: vec![tree::ROOT; n],
        links: vec![0; n],
    };
    num.ino[tree::ROOT] = ROOT_INO;
    let mut next = FIRST_INO;
    let mut queue = VecDeque::from([tree::ROOT]);
    while let Some(dir) = queue.pop_front() {
        let Kind::Dir(children) = &t.nodes[dir].kind else {
            continue;
        };
        let mut subdirs = 0u32;
        for &child in children.values() {
            num.links[child] += 1;
            if num.ino[child] != 0 {
                continue;
            }
            num.ino[child] = next;
            next = next.checked_add(1).ok_or_else(|| Error::TooLarge {
                entry: None,
                what: "more than 2^32 inodes".into(),
            })?;
            num.order.push(child);
            if t.is_dir(child) {
                subdirs += 1;
                num.parent[child] = dir;
                queue.push_back(child);
            }
        }
        num.links[dir] = 2 + subdirs;
        if num.links[dir] > MAX_LINKS {
            num.links[dir] = 1;
        }
    }
    for &id in &num.order {
        if !t.is_dir(id) && num.links[id] > MAX_LINKS {
            return Err(Error::TooLarge {
                entry: None,
                what: format!("more than {MAX_LINKS} hard links to one file"),
            });
        }
    }
    Ok(num)
}

/// Fewest blocks the last group gets.
const MIN_LAST_GROUP: u64 = 16;

/// Block-group geometry of the finished image.
pub(super) struct Geometry {
    pub(super) groups: u64,
    pub(super) ipg: u64,
    pub(super) total_blocks: u64,
    /// Free blocks left between the other metadata and the inode tables.
    pub(super) gap: (u64, u64),
    pub(super) inode_tables: u64,
    pub(super) block_bitmaps: u64,
    pub(super) inode_bitmaps: u64,
}

impl Geometry {
    /// Chooses the group count and inodes per group so that everything up to `meta_end`,
    /// the inode tables and the bitmaps fit, with at least `inodes` inodes, in at least
    /// `min_blocks` blocks.
    pub(super) fn compute(meta_end: u64, inodes: u64, min_blocks: u64) -> Option<Self> {
        let per_block = BLOCK_SIZE / INODE_SIZE;
        let mut groups = div_ceil(meta_end.max(min_blocks), BLOCKS_PER_GROUP).max(1);
        loop {
            if groups > MAX_BLOCKS / BLOCKS_PER_GROUP {
                return None;
            }
            let ipg =
                div_ceil(div_ceil(inodes.max(FIRST_INO.into()), groups), per_block) * per_block;
            if ipg > BLOCKS_PER_GROUP {
                groups += 1;
                continue;
            }
            let itable = groups * ipg / per_block;
            let total = meta_end + itable + 2 * groups;
            let need = div_ceil(total, BLOCKS_PER_GROUP);
            if need > groups {
                groups = need;
                continue;
            }
            // More groups than the blocks fill (inodes need them: at most 32768 per group):
            // a free gap before the inode tables gives the last group a few blocks.
            // A least size asked for is free space in the same gap.
            let min_total = ((groups - 1) * BLOCKS_PER_GROUP + MIN_LAST_GROUP).max(min_blocks);
            let gap = min_total.saturating_sub(total);
            let tables = meta_end + gap;
            return Some(Geometry {
                groups,
                ipg,
                total_blocks: total + gap,
                gap: (meta_end, tables),
                inode_tables: tables,
                block_bitmaps: tables + itable,
                inode_bitmaps: tables + itable + groups,
            });
        }
    }

    pub(super) fn inodes_count(&self) -> u64 {
        self.groups * self.ipg
    }

    pub(super) fn itable_blocks_per_group(&self) -> u64 {
        self.ipg / (BLOCK_SIZE / INODE_SIZE)
    }

    /// Blocks the group descriptors take (32 bytes each).
    pub(super) fn gdt_blocks(&self) -> u64 {
        div_ceil(self.groups * 32, BLOCK_SIZE)
    }
}

impl<W: Write + Seek> Builder<W> {
    /// The geometry of an image whose metadata before the inode tables ends at block
    /// `meta_end`, with inodes up to `last_ino` in use plus the headroom asked for. Fails
    /// past ext4's inode limits, the maximum size, or the room kept for descriptors.
    pub(super) fn geometry(&self, meta_end: u64, last_ino: u64) -> Result<Geometry> {
        let want_inodes = last_ino + u64::from(self.options.inode_headroom);
        let min_blocks = (self.options.min_size / BLOCK_SIZE).min(self.max_blocks);
        let geo = Geometry::compute(meta_end, want_inodes, min_blocks).ok_or_else(|| {
            Error::TooLarge {
                entry: None,
                what: "more inodes than ext4 allows".into(),
            }
        })?;
        if geo.inodes_count() > u64::from(u32::MAX) {
            return Err(Error::TooLarge {
                entry: None,
                what: "more than 2^32 inodes".into(),
            });
        }
        if geo.total_blocks > self.max_blocks || geo.gdt_blocks() > self.gdt_reserved {
            return Err(Error::TooLarge {
                entry: None,
                what: format!("the maximum size of {} bytes", self.options.max_size),
            });
        }
        Ok(geo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_fits_everything() {
        for (meta_end, inodes) in [
            (10, 20),
            (32768, 100),
            (32760, 5000),
            (1 << 20, 1 << 20),
            (10, 100_000),
        ] {
            let g = Geometry::compute(meta_end, inodes, 0).unwrap();
            assert!(g.inodes_count() >= inodes);
            assert_eq!(div_ceil(g.total_blocks, BLOCKS_PER_GROUP), g.groups);
            assert!(g.ipg <= BLOCKS_PER_GROUP && g.ipg.is_multiple_of(16));
        }
    }
}
