//! Block group descriptors: the table that starts in the block after the superblock.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A 32-byte group descriptor (`struct ext4_group_desc` without the 64-bit half), the
/// form our images use.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug, Default)]
#[repr(C)]
pub struct GroupDesc {
    /// Block bitmap location, low 32 bits.
    pub block_bitmap_lo: U32,
    /// Inode bitmap location, low 32 bits.
    pub inode_bitmap_lo: U32,
    /// Inode table location, low 32 bits.
    pub inode_table_lo: U32,
    /// Free blocks in the group, low 16 bits.
    pub free_blocks_count_lo: U16,
    /// Free inodes in the group, low 16 bits.
    pub free_inodes_count_lo: U16,
    /// Directories in the group, low 16 bits.
    pub used_dirs_count_lo: U16,
    /// Flags (`INODE_UNINIT`, ...).
    pub flags: U16,
    /// Snapshot exclusion bitmap, low 32 bits.
    pub exclude_bitmap_lo: U32,
    /// Block bitmap checksum, low 16 bits.
    pub block_bitmap_csum_lo: U16,
    /// Inode bitmap checksum, low 16 bits.
    pub inode_bitmap_csum_lo: U16,
    /// Unused inodes at the end of the inode table, low 16 bits.
    pub itable_unused_lo: U16,
    /// Descriptor checksum.
    pub checksum: U16,
}

const _: () = assert!(core::mem::size_of::<GroupDesc>() == 32);

/// The high half of a 64-byte descriptor (`64bit` feature), read but never written by us.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug, Default)]
#[repr(C)]
pub struct GroupDescHi {
    /// Block bitmap location, high 32 bits.
    pub block_bitmap_hi: U32,
    /// Inode bitmap location, high 32 bits.
    pub inode_bitmap_hi: U32,
    /// Inode table location, high 32 bits.
    pub inode_table_hi: U32,
    /// The remaining high halves, unused by the reader.
    pub rest: [u8; 20],
}

const _: () = assert!(core::mem::size_of::<GroupDescHi>() == 32);
