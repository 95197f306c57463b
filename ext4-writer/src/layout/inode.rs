//! Inodes: a 128-byte base and the extra fields that follow it (`i_extra_isize`).

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `i_mode` file type mask.
pub const S_IFMT: u16 = 0o170000;
/// FIFO.
pub const S_IFIFO: u16 = 0o010000;
/// Character device.
pub const S_IFCHR: u16 = 0o020000;
/// Directory.
pub const S_IFDIR: u16 = 0o040000;
/// Block device.
pub const S_IFBLK: u16 = 0o060000;
/// Regular file.
pub const S_IFREG: u16 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u16 = 0o120000;
/// Socket.
pub const S_IFSOCK: u16 = 0o140000;

/// `i_flags`: the inode uses extents.
pub const EXTENTS_FL: u32 = 0x80000;
/// `i_flags`: `i_blocks` counts file-system blocks, not 512-byte sectors.
pub const HUGE_FILE_FL: u32 = 0x40000;
/// `i_flags`: the inode holds its data inline.
pub const INLINE_DATA_FL: u32 = 0x1000_0000;
/// `i_flags`: the value of an xattr lives in this inode.
pub const EA_INODE_FL: u32 = 0x20_0000;
/// `i_flags`: hashed directory.
pub const INDEX_FL: u32 = 0x1000;

/// Bytes of the base inode (`EXT2_GOOD_OLD_INODE_SIZE`).
pub const BASE_SIZE: usize = 128;

/// The on-disk inode through `i_projid` (160 bytes). The in-inode xattr area follows it in
/// the inode-size slot.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug)]
#[repr(C)]
pub struct Inode {
    /// File type and permission bits.
    pub mode: U16,
    /// Owner uid, low 16 bits.
    pub uid: U16,
    /// Size in bytes, low 32 bits.
    pub size_lo: U32,
    /// Access time, seconds (low 32 bits).
    pub atime: U32,
    /// Change time, seconds (low 32 bits).
    pub ctime: U32,
    /// Modification time, seconds (low 32 bits).
    pub mtime: U32,
    /// Deletion time.
    pub dtime: U32,
    /// Group gid, low 16 bits.
    pub gid: U16,
    /// Hard link count.
    pub links_count: U16,
    /// Blocks used, in 512-byte units, low 32 bits.
    pub blocks_lo: U32,
    /// Inode flags.
    pub flags: U32,
    /// OS-dependent value 1 (`l_i_version`).
    pub osd1: U32,
    /// Block map, extent tree root, fast symlink target or device number.
    pub block: [u8; 60],
    /// File version (NFS).
    pub generation: U32,
    /// Extended attribute block, low 32 bits.
    pub file_acl_lo: U32,
    /// Size in bytes, high 32 bits.
    pub size_high: U32,
    /// Obsolete fragment address.
    pub obso_faddr: U32,
    /// Blocks used, high 16 bits.
    pub blocks_high: U16,
    /// Extended attribute block, high 16 bits.
    pub file_acl_high: U16,
    /// Owner uid, high 16 bits.
    pub uid_high: U16,
    /// Group gid, high 16 bits.
    pub gid_high: U16,
    /// Inode checksum, low 16 bits.
    pub checksum_lo: U16,
    /// Reserved.
    pub reserved: U16,
    /// Bytes of extra fields past the base 128.
    pub extra_isize: U16,
    /// Inode checksum, high 16 bits.
    pub checksum_hi: U16,
    /// Change time: epoch bits and nanoseconds.
    pub ctime_extra: U32,
    /// Modification time: epoch bits and nanoseconds.
    pub mtime_extra: U32,
    /// Access time: epoch bits and nanoseconds.
    pub atime_extra: U32,
    /// Creation time, seconds.
    pub crtime: U32,
    /// Creation time: epoch bits and nanoseconds.
    pub crtime_extra: U32,
    /// Version, high 32 bits.
    pub version_hi: U32,
    /// Project id.
    pub projid: U32,
}

const _: () = assert!(core::mem::size_of::<Inode>() == 160);
const _: () = assert!(core::mem::offset_of!(Inode, block) == 0x28);
const _: () = assert!(core::mem::offset_of!(Inode, extra_isize) == 0x80);

/// Encodes a time as (`i_*time`, `i_*time_extra`): the low 32 bits of the seconds, and two
/// epoch bits plus the nanoseconds shifted left by two.
pub fn encode_time(secs: i64, nanos: u32) -> (u32, u32) {
    let lo = secs as i32;
    let epoch = ((secs - i64::from(lo)) >> 32) as u32 & 3;
    (lo as u32, epoch | (nanos.min(999_999_999) << 2))
}

/// Decodes a time stored as (`i_*time`, `i_*time_extra`).
pub fn decode_time(lo: u32, extra: Option<u32>) -> (i64, u32) {
    let base = i64::from(lo as i32);
    match extra {
        Some(x) => (base + (i64::from(x & 3) << 32), (x >> 2).min(999_999_999)),
        None => (base, 0),
    }
}

/// Encodes a device number for `i_block` the way the kernel does: the old 16-bit form in
/// word 0 when it fits, else the new form in word 1.
pub fn encode_device(major: u32, minor: u32) -> [u32; 2] {
    if major < 256 && minor < 256 {
        [(major << 8) | minor, 0]
    } else {
        [
            0,
            (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12),
        ]
    }
}

/// Decodes a device number from the first two words of `i_block`.
pub fn decode_device(words: [u32; 2]) -> (u32, u32) {
    if words[0] != 0 {
        ((words[0] >> 8) & 0xff, words[0] & 0xff)
    } else {
        let w = words[1];
        ((w & 0xfff00) >> 8, (w & 0xff) | ((w >> 12) & 0xfff00))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_across_epochs() {
        for secs in [
            0i64,
            1,
            -1,
            1_600_000_000,
            0x7fff_ffff,
            0x8000_0000,
            4_000_000_000,
            -5,
        ] {
            let (lo, x) = encode_time(secs, 123_456_789);
            assert_eq!(decode_time(lo, Some(x)), (secs, 123_456_789), "{secs}");
        }
    }

    #[test]
    fn devices_round_trip_in_both_encodings() {
        for (ma, mi) in [(1, 3), (7, 200), (259, 1), (8, 300), (4095, 1_048_575)] {
            assert_eq!(decode_device(encode_device(ma, mi)), (ma, mi));
        }
    }
}
