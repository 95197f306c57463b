//! Hashed (htree) directories: a `dx_root` in the directory's first block, optional
//! `dx_node` blocks, then leaf blocks of ordinary entries sorted by name hash. Holds the
//! structures, the hash, and the encoder of a whole hashed directory.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::dir::{self, DirEntryHead, DirItem, dir_blocks, file_type};
use super::{BS, csum};

/// `dx_root_info.hash_version`: the "legacy" hash (read as its unsigned variant when the
/// superblock has [`FLAGS_UNSIGNED_HASH`]).
pub const HASH_LEGACY: u8 = 0;
/// `s_flags`: directory hashes treat name bytes as unsigned.
pub const FLAGS_UNSIGNED_HASH: u32 = 0x2;

/// The info block after the `.` and `..` entries of a `dx_root` (at byte 24).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug, Default)]
#[repr(C)]
pub struct DxRootInfo {
    /// Always zero.
    pub reserved_zero: U32,
    /// Hash algorithm.
    pub hash_version: u8,
    /// Length of this info (8).
    pub info_length: u8,
    /// Levels of `dx_node` blocks below the root (0 or 1 without `largedir`).
    pub indirect_levels: u8,
    /// Unused.
    pub unused_flags: u8,
}

/// The head of an index: capacity and count, overlaying the hash of entry 0.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug, Default)]
#[repr(C)]
pub struct DxCountLimit {
    /// Capacity in entries.
    pub limit: U16,
    /// Entries used (including entry 0).
    pub count: U16,
}

/// An index entry: blocks from `hash` on live in directory block `block`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug, Default)]
#[repr(C)]
pub struct DxEntry {
    /// Lowest hash in the subtree (the low bit marks a collision continuation).
    pub hash: U32,
    /// Logical block within the directory.
    pub block: U32,
}

const _: () = assert!(core::mem::size_of::<DxRootInfo>() == 8);
const _: () = assert!(core::mem::size_of::<DxCountLimit>() == 4);
const _: () = assert!(core::mem::size_of::<DxEntry>() == 8);

/// The kernel's `dx_hack_hash_unsigned` plus the masking `ext4fs_dirhash` applies: the
/// hash the legacy algorithm gives `name`.
pub fn legacy_hash(name: &[u8]) -> u32 {
    let (mut h0, mut h1) = (0x12a3_fe2d_u32, 0x37ab_e8f9_u32);
    for &c in name {
        let mut h = h1.wrapping_add(h0 ^ u32::from(c).wrapping_mul(7_152_373));
        if h & 0x8000_0000 != 0 {
            h = h.wrapping_sub(0x7fff_ffff);
        }
        h1 = h0;
        h0 = h;
    }
    let hash = (h0 << 1) & !1;
    if hash == 0x7fff_ffff << 1 {
        (0x7fff_ffff - 1) << 1
    } else {
        hash
    }
}

/// A hashed directory: `entries` (`.` and `..` first) as a `dx_root`, one level of
/// `dx_node`s when needed, and leaves sorted by hash. Entries with the same hash stay in one
/// leaf, so no index entry needs the collision bit. `None` when the names do not fit two
/// index levels or one hash has more entries than a block holds (then the caller keeps the
/// linear form).
pub(crate) fn htree_blocks(entries: &[DirItem<'_>], seed: Option<u32>) -> Option<Vec<u8>> {
    let tail = if seed.is_some() { csum::DX_TAIL_LEN } else { 0 };
    let room = if seed.is_some() {
        BS - csum::DIR_TAIL_LEN
    } else {
        BS
    };
    let root_limit = (BS - 32 - tail) / 8;
    let node_limit = (BS - 8 - tail) / 8;
    let (dot, rest) = entries.split_first()?;
    let (dotdot, children) = rest.split_first()?;
    let leaves = hash_leaves(children, room, seed)?;
    let levels = if leaves.len() <= root_limit {
        0u8
    } else if leaves.len() <= root_limit * node_limit {
        1
    } else {
        return None;
    };
    let nodes = if levels == 0 {
        0
    } else {
        leaves.len().div_ceil(node_limit)
    };
    let first_leaf = 1 + nodes;
    // Index entries: (lowest hash, logical block).
    let leaf_index: Vec<(u32, u32)> = leaves
        .iter()
        .enumerate()
        .map(|(k, l)| (l.0, (first_leaf + k) as u32))
        .collect();
    let root_entries: Vec<(u32, u32)> = if levels == 0 {
        leaf_index.clone()
    } else {
        leaf_index
            .chunks(node_limit)
            .enumerate()
            .map(|(k, c)| (c[0].0, (1 + k) as u32))
            .collect()
    };
    let mut out = dx_root(dot.1, dotdot.1, levels, root_limit, &root_entries, seed);
    if levels == 1 {
        for chunk in leaf_index.chunks(node_limit) {
            out.extend_from_slice(&dx_node(node_limit, chunk, seed));
        }
    }
    for (_, leaf) in leaves {
        out.extend_from_slice(&leaf);
    }
    Some(out)
}

/// The children sorted by hash (then name) and packed into leaf blocks that hold at most
/// `room` bytes of entries, each leaf with its lowest hash. Entries with the same hash stay
/// in one leaf; `None` when they do not fit one.
fn hash_leaves(
    children: &[DirItem<'_>],
    room: usize,
    seed: Option<u32>,
) -> Option<Vec<(u32, Vec<u8>)>> {
    let mut items: Vec<(u32, &DirItem<'_>)> =
        children.iter().map(|e| (legacy_hash(e.0), e)).collect();
    items.sort_by(|a, b| (a.0, a.1.0).cmp(&(b.0, b.1.0)));
    let mut leaves: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut cur: Vec<(&[u8], u32, u8)> = Vec::new();
    let mut cur_hash = 0u32;
    let mut cur_size = 0usize;
    let mut i = 0;
    while i < items.len() {
        let h = items[i].0;
        let mut j = i;
        let mut size = 0;
        while j < items.len() && items[j].0 == h {
            size += dir::entry_len(items[j].1.0.len());
            j += 1;
        }
        if size > room {
            return None;
        }
        if cur_size + size > room {
            leaves.push((cur_hash, dir_blocks(&cur, seed)));
            cur.clear();
            cur_size = 0;
        }
        if cur.is_empty() {
            cur_hash = h;
        }
        cur.extend(items[i..j].iter().map(|x| *x.1));
        cur_size += size;
        i = j;
    }
    if !cur.is_empty() {
        leaves.push((cur_hash, dir_blocks(&cur, seed)));
    }
    Some(leaves)
}

/// The `dx_root` block: `.` and `..` (the latter stretched to the block end), the root
/// info with `levels` of `dx_node`s below, then the index.
fn dx_root(
    dot: u32,
    dotdot: u32,
    levels: u8,
    limit: usize,
    entries: &[(u32, u32)],
    seed: Option<u32>,
) -> Vec<u8> {
    let mut out = vec![0u8; BS];
    let head = |ino: u32, rec: u16, name: &[u8]| {
        let mut v = DirEntryHead {
            inode: ino.into(),
            rec_len: rec.into(),
            name_len: name.len() as u8,
            file_type: file_type::DIR,
        }
        .as_bytes()
        .to_vec();
        v.extend_from_slice(name);
        v.resize(12, 0);
        v
    };
    out[0..12].copy_from_slice(&head(dot, 12, b"."));
    out[12..24].copy_from_slice(&head(dotdot, (BS - 12) as u16, b".."));
    let info = DxRootInfo {
        reserved_zero: 0.into(),
        hash_version: HASH_LEGACY,
        info_length: 8,
        indirect_levels: levels,
        unused_flags: 0,
    };
    out[24..32].copy_from_slice(info.as_bytes());
    write_dx(&mut out, 32, limit, entries, seed);
    out
}

/// A `dx_node` block: an empty entry spanning the block, then the index.
fn dx_node(limit: usize, entries: &[(u32, u32)], seed: Option<u32>) -> Vec<u8> {
    let mut node = vec![0u8; BS];
    let fake = DirEntryHead {
        inode: 0.into(),
        rec_len: (BS as u16).into(),
        name_len: 0,
        file_type: 0,
    };
    node[0..8].copy_from_slice(fake.as_bytes());
    write_dx(&mut node, 8, limit, entries, seed);
    node
}

/// Writes an index at `count_offset` of `block`: count/limit over entry 0's hash, then the
/// entries, then (with `seed`) the `dx_tail` checksum after `limit` entries.
fn write_dx(
    block: &mut [u8],
    count_offset: usize,
    limit: usize,
    entries: &[(u32, u32)],
    seed: Option<u32>,
) {
    let area = &mut block[count_offset..];
    let cl = DxCountLimit {
        limit: (limit as u16).into(),
        count: (entries.len() as u16).into(),
    };
    area[0..4].copy_from_slice(cl.as_bytes());
    for (k, &(hash, block)) in entries.iter().enumerate() {
        let e = DxEntry {
            hash: hash.into(),
            block: block.into(),
        };
        let at = k * 8;
        if k == 0 {
            area[4..8].copy_from_slice(&block.to_le_bytes());
        } else {
            area[at..at + 8].copy_from_slice(e.as_bytes());
        }
    }
    if let Some(seed) = seed {
        let end = count_offset + entries.len() * 8;
        let t = count_offset + limit * 8;
        // Over the used part of the index, then the tail with `dt_checksum` still zero.
        let c = csum::crc32c(csum::crc32c(seed, &block[..end]), &block[t..t + 8]);
        block[t + 4..t + 8].copy_from_slice(&c.to_le_bytes());
    }
}
