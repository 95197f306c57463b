//! Extended attributes: in the inode after `i_extra_isize`, or in one xattr block.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Magic of both the in-inode area and xattr blocks.
pub const MAGIC: u32 = 0xEA02_0000;

/// Header of an xattr block (`struct ext4_xattr_header`); entries start right after it.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug, Default)]
#[repr(C)]
pub struct BlockHeader {
    /// [`MAGIC`].
    pub magic: U32,
    /// Inodes sharing this block.
    pub refcount: U32,
    /// Blocks used (always 1).
    pub blocks: U32,
    /// Hash of all entries' hashes.
    pub hash: U32,
    /// Block checksum (`metadata_csum`).
    pub checksum: U32,
    /// Reserved.
    pub reserved: [U32; 3],
}

/// Head of an xattr entry (`struct ext4_xattr_entry`); the name follows, padded to 4.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug, Default)]
#[repr(C)]
pub struct EntryHead {
    /// Name length.
    pub name_len: u8,
    /// Name prefix index (see [`split_name`]).
    pub name_index: u8,
    /// Offset of the value: from the block start, or from the first in-inode entry.
    pub value_offs: U16,
    /// Inode holding the value (`ea_inode`), else 0.
    pub value_inum: U32,
    /// Value size.
    pub value_size: U32,
    /// Hash of name and value.
    pub hash: U32,
}

const _: () = assert!(core::mem::size_of::<BlockHeader>() == 32);
const _: () = assert!(core::mem::size_of::<EntryHead>() == 16);

/// Bytes an entry with a name of `name_len` bytes needs.
pub const fn entry_len(name_len: usize) -> usize {
    (16 + name_len + 3) & !3
}

/// Bytes a value of `size` bytes needs.
pub const fn value_len(size: usize) -> usize {
    (size + 3) & !3
}

/// Name prefixes by index. POSIX ACLs (2 and 3) are whole names with a special value format.
const PREFIXES: &[(u8, &str)] = &[
    (2, "system.posix_acl_access"),
    (3, "system.posix_acl_default"),
    (1, "user."),
    (4, "trusted."),
    (6, "security."),
    (7, "system."),
];

/// Splits a full xattr name into (index, suffix) as ext4 stores it.
pub fn split_name(name: &[u8]) -> (u8, &[u8]) {
    for &(idx, prefix) in PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix.as_bytes()) {
            if idx == 2 || idx == 3 {
                if rest.is_empty() {
                    return (idx, rest);
                }
                continue;
            }
            return (idx, rest);
        }
    }
    (0, name)
}

/// Joins an (index, suffix) pair back into the full name; `None` for unknown indexes.
pub fn join_name(index: u8, suffix: &[u8]) -> Option<Vec<u8>> {
    if index == 0 {
        return Some(suffix.to_vec());
    }
    let prefix = PREFIXES.iter().find(|(i, _)| *i == index)?.1;
    let mut v = prefix.as_bytes().to_vec();
    v.extend_from_slice(suffix);
    Some(v)
}

/// The entry hash e2fsck checks (`ext2fs_ext_attr_hash_entry`): the name bytes as signed
/// chars, then the value in 32-bit little-endian words.
pub fn entry_hash(name: &[u8], value: &[u8]) -> u32 {
    let mut hash: u32 = 0;
    for &c in name {
        hash = (hash << 5) ^ (hash >> 27) ^ (c as i8 as i32 as u32);
    }
    let mut padded = value.chunks(4);
    for chunk in padded.by_ref() {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        hash = (hash << 16) ^ (hash >> 16) ^ u32::from_le_bytes(w);
    }
    hash
}

/// The block hash (`ext2fs_ext_attr_block_rehash`) over the entries' hashes.
pub fn block_hash(entry_hashes: &[u32]) -> u32 {
    let mut hash: u32 = 0;
    for &h in entry_hashes {
        if h == 0 {
            return 0;
        }
        hash = (hash << 16) ^ (hash >> 16) ^ h;
    }
    hash
}

/// POSIX ACL conversion between the generic xattr form (`system.posix_acl_*`: version 2,
/// 8-byte entries) and ext4's compact on-disk form (version 1, 4-byte entries for the
/// entries that carry no id).
pub mod acl {
    const XATTR_VERSION: u32 = 2;
    const EXT4_VERSION: u32 = 1;
    const USER: u16 = 0x02;
    const GROUP: u16 = 0x08;

    /// Generic xattr value -> ext4 disk value; `None` when malformed.
    pub fn to_disk(value: &[u8]) -> Option<Vec<u8>> {
        let body = value.strip_prefix(&XATTR_VERSION.to_le_bytes()[..])?;
        if body.len() % 8 != 0 {
            return None;
        }
        let mut out = EXT4_VERSION.to_le_bytes().to_vec();
        for e in body.chunks_exact(8) {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            out.extend_from_slice(&e[0..4]);
            if tag == USER || tag == GROUP {
                out.extend_from_slice(&e[4..8]);
            }
        }
        Some(out)
    }

    /// ext4 disk value -> generic xattr value; `None` when malformed.
    pub fn from_disk(value: &[u8]) -> Option<Vec<u8>> {
        let mut body = value.strip_prefix(&EXT4_VERSION.to_le_bytes()[..])?;
        let mut out = XATTR_VERSION.to_le_bytes().to_vec();
        while !body.is_empty() {
            let head = body.get(0..4)?;
            let tag = u16::from_le_bytes([head[0], head[1]]);
            out.extend_from_slice(head);
            if tag == USER || tag == GROUP {
                out.extend_from_slice(body.get(4..8)?);
                body = &body[8..];
            } else {
                out.extend_from_slice(&u32::MAX.to_le_bytes());
                body = &body[4..];
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_and_join() {
        for n in [
            "user.color",
            "trusted.overlay.opaque",
            "security.capability",
            "system.posix_acl_access",
            "odd",
        ] {
            let (i, s) = split_name(n.as_bytes());
            assert_eq!(join_name(i, s).unwrap(), n.as_bytes());
        }
        assert_eq!(split_name(b"user.x").0, 1);
        assert_eq!(split_name(b"system.posix_acl_access").0, 2);
    }

    #[test]
    fn acl_round_trips() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let disk = acl::to_disk(&v).unwrap();
        assert_eq!(disk.len(), 4 + 4 * 4 + 8);
        assert_eq!(acl::from_disk(&disk).unwrap(), v);
    }
}
