//! Hashed (htree) directories: a `dx_root` in the directory's first block, optional
//! `dx_node` blocks, then leaf blocks of ordinary entries sorted by name hash.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

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
