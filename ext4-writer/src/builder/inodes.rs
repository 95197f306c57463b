//! Inodes in their final form: each planned in inode order, with what it needs besides
//! its table slot (directory blocks, long symlink, extent tree blocks, xattr blocks)
//! appended after the file data, then encoded into the inode tables.

use std::collections::{BTreeMap, HashMap};
use std::io::{Seek, Write};

use zerocopy::IntoBytes;

use crate::error::{Error, Result};
use crate::layout::csum;
use crate::layout::dir::{dir_blocks, file_type};
use crate::layout::extent::{
    self, EXTENTS_PER_BLOCK, Extent, idx, node_bytes, node_vec, sealed_node,
};
use crate::layout::htree::htree_blocks;
use crate::layout::inode::{self as inofmt, Inode};
use crate::layout::xattr::{self as xfmt, INLINE_XATTR_START, split_xattrs};
use crate::layout::{BLOCK_SIZE, BS, EXTRA_ISIZE, FIRST_INO, INODE_SIZE, ROOT_INO};
use crate::tree::{Kind, Node, NodeId, Run, Tree};

use super::Builder;
use super::geometry::{Geometry, Numbering};

impl<W: Write + Seek> Builder<W> {
    /// Plans every inode in inode order, writing what each needs besides its table slot;
    /// xattr blocks are only collected, as their reference counts are not known yet.
    pub(super) fn plan_inodes(
        &mut self,
        numbering: &Numbering,
    ) -> Result<(Vec<Plan>, XattrBlocks)> {
        let mut plans: Vec<Plan> = Vec::with_capacity(numbering.order.len());
        let mut xattr_blocks = XattrBlocks::default();
        for &id in &numbering.order {
            let plan = self.plan_inode(id, numbering, &mut xattr_blocks)?;
            plans.push(plan);
        }
        Ok((plans, xattr_blocks))
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
                let seed = self.csum.map(|s| csum::inode_seed(s, num.ino[id], 0));
                let (data, indexed) = lay_out_dir(&self.tree, num, id, children, seed);
                plan.indexed = indexed;
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

    /// Writes the xattr blocks, now that their reference counts are known; returns the
    /// block of the first.
    pub(super) fn write_xattr_blocks(&mut self, xattr_blocks: &XattrBlocks) -> Result<u64> {
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
    pub(super) fn write_inode_tables(
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
        let per_block = BLOCK_SIZE / INODE_SIZE;
        for ino in 1..=geo.inodes_count() {
            if ino > last_ino && (ino - 1) % per_block == 0 {
                // Whole blocks of free inodes to the end of the tables: holes, which read
                // as the zeros they would be (a filled image has many).
                self.out
                    .skip_to(geo.inode_tables + geo.inodes_count() / per_block)?;
                break;
            }
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
}

/// A directory's blocks: `.`, `..` and the children in name order, hashed (an htree) when
/// they take more than one block and the htree can hold them; true when hashed. With
/// `seed` (`metadata_csum`), every block carries its checksum.
fn lay_out_dir(
    tree: &Tree,
    num: &Numbering,
    id: NodeId,
    children: &BTreeMap<Vec<u8>, NodeId>,
    seed: Option<u32>,
) -> (Vec<u8>, bool) {
    let parent = num.parent[id];
    let mut entries: Vec<(&[u8], u32, u8)> = Vec::with_capacity(children.len() + 2);
    entries.push((b".", num.ino[id], file_type::DIR));
    entries.push((b"..", num.ino[parent], file_type::DIR));
    for (name, &child) in children {
        entries.push((name, num.ino[child], dir_file_type(&tree.nodes[child].kind)));
    }
    let data = dir_blocks(&entries, seed);
    if data.len() > BS
        && let Some(hashed) = htree_blocks(&entries, seed)
    {
        return (hashed, true);
    }
    (data, false)
}

/// How to fill an inode slot, decided before the inode table is written.
pub(super) struct Plan {
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
pub(super) struct XattrBlocks {
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
