//! Linear directory entries (`struct ext4_dir_entry_2`).

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Directory entry file types (with the `filetype` feature).
pub mod file_type {
    /// Unknown.
    pub const UNKNOWN: u8 = 0;
    /// Regular file.
    pub const REG: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Character device.
    pub const CHR: u8 = 3;
    /// Block device.
    pub const BLK: u8 = 4;
    /// FIFO.
    pub const FIFO: u8 = 5;
    /// Socket.
    pub const SOCK: u8 = 6;
    /// Symbolic link.
    pub const SYMLINK: u8 = 7;
}

/// The fixed 8-byte head of a directory entry; the name follows, padded to 4 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug, Default)]
#[repr(C)]
pub struct DirEntryHead {
    /// Inode number (0: unused entry).
    pub inode: U32,
    /// Distance to the next entry.
    pub rec_len: U16,
    /// Name length.
    pub name_len: u8,
    /// File type ([`file_type`]).
    pub file_type: u8,
}

const _: () = assert!(core::mem::size_of::<DirEntryHead>() == 8);

/// Bytes an entry with a name of `name_len` bytes needs.
pub const fn entry_len(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}
