//! Extent trees: a 12-byte header followed by leaf extents or index entries. Holds the
//! structures and the encoders of tree nodes, in the inode or in a block of their own.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{BS, csum};

/// `eh_magic`.
pub const MAGIC: u16 = 0xF30A;
/// Longest initialized extent, in blocks.
pub const MAX_LEN: u32 = 32768;
/// Extents in a 4 KiB tree block.
pub(crate) const EXTENTS_PER_BLOCK: usize = (BS - 12) / 12;

/// `struct ext4_extent_header`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug, Default)]
#[repr(C)]
pub struct ExtentHeader {
    /// [`MAGIC`].
    pub magic: U16,
    /// Valid entries following the header.
    pub entries: U16,
    /// Capacity in entries.
    pub max: U16,
    /// 0 for leaves, else the depth of the tree below.
    pub depth: U16,
    /// Generation (unused).
    pub generation: U32,
}

/// `struct ext4_extent`: a leaf entry mapping file blocks to disk blocks.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug, Default)]
#[repr(C)]
pub struct Extent {
    /// First file block covered.
    pub block: U32,
    /// Length in blocks (above 32768: uninitialized, length - 32768).
    pub len: U16,
    /// First disk block, high 16 bits.
    pub start_hi: U16,
    /// First disk block, low 32 bits.
    pub start_lo: U32,
}

/// `struct ext4_extent_idx`: an index entry pointing at the next level.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug, Default)]
#[repr(C)]
pub struct ExtentIdx {
    /// First file block covered by the subtree.
    pub block: U32,
    /// Disk block of the subtree, low 32 bits.
    pub leaf_lo: U32,
    /// Disk block of the subtree, high 16 bits.
    pub leaf_hi: U16,
    /// Unused.
    pub unused: U16,
}

const _: () = assert!(core::mem::size_of::<ExtentHeader>() == 12);
const _: () = assert!(core::mem::size_of::<Extent>() == 12);
const _: () = assert!(core::mem::size_of::<ExtentIdx>() == 12);

impl Extent {
    /// A leaf entry for `len` (<= [`MAX_LEN`]) blocks starting at disk block `start`.
    pub fn new(logical: u32, start: u64, len: u16) -> Self {
        Extent {
            block: logical.into(),
            len: len.into(),
            start_hi: ((start >> 32) as u16).into(),
            start_lo: (start as u32).into(),
        }
    }

    /// First disk block.
    pub fn start(&self) -> u64 {
        (u64::from(self.start_hi.get()) << 32) | u64::from(self.start_lo.get())
    }

    /// (initialized length in blocks, whether the extent is uninitialized, i.e. reads as zeros).
    pub fn length(&self) -> (u32, bool) {
        let l = u32::from(self.len.get());
        if l > MAX_LEN {
            (l - MAX_LEN, true)
        } else {
            (l, false)
        }
    }
}

impl ExtentIdx {
    /// Disk block of the subtree.
    pub fn leaf(&self) -> u64 {
        (u64::from(self.leaf_hi.get()) << 32) | u64::from(self.leaf_lo.get())
    }
}

/// An extent tree block padded to a block, with its `metadata_csum` tail (after `eh_max`
/// entries) when `seed` is given.
pub(crate) fn sealed_node(mut b: Vec<u8>, seed: Option<u32>) -> Vec<u8> {
    b.resize(BS, 0);
    if let Some(seed) = seed {
        let tail = 12 + 12 * EXTENTS_PER_BLOCK;
        let c = csum::crc32c(seed, &b[..tail]);
        b[tail..tail + 4].copy_from_slice(&c.to_le_bytes());
    }
    b
}

pub(crate) fn idx(logical: u32, at: u64) -> Vec<u8> {
    ExtentIdx {
        block: logical.into(),
        leaf_lo: (at as u32).into(),
        leaf_hi: ((at >> 32) as u16).into(),
        unused: 0.into(),
    }
    .as_bytes()
    .to_vec()
}

/// The in-inode extent tree root (`i_block`): header then up to four entries, zero-padded.
pub(crate) fn node_bytes<T: Iterator<Item = Vec<u8>>>(
    depth: u16,
    max: u16,
    entries: T,
) -> [u8; 60] {
    let v = node_vec(depth, max, entries);
    let mut out = [0u8; 60];
    let n = v.len().min(60);
    out[..n].copy_from_slice(&v[..n]);
    out
}

/// An extent tree block (leaf or index): header then entries.
pub(crate) fn node_vec<T: Iterator<Item = Vec<u8>>>(depth: u16, max: u16, entries: T) -> Vec<u8> {
    let body: Vec<Vec<u8>> = entries.collect();
    let h = ExtentHeader {
        magic: MAGIC.into(),
        entries: (body.len() as u16).into(),
        max: max.into(),
        depth: depth.into(),
        generation: 0.into(),
    };
    let mut v = h.as_bytes().to_vec();
    for e in body {
        v.extend_from_slice(&e);
    }
    v
}
