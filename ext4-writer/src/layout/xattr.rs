//! Extended attributes: in the inode after `i_extra_isize`, or in one xattr block. Holds
//! the structures, names, hashes and ACL form, and the encoder that splits a file's xattrs
//! between its inode and a block.

use std::collections::BTreeMap;

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{BS, EXTRA_ISIZE, INODE_SIZE};
use crate::error::{Error, Result};

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

/// Offset of the in-inode xattr area (after the 128-byte base and `i_extra_isize`).
pub(crate) const INLINE_XATTR_START: usize = 128 + EXTRA_ISIZE as usize;
/// Room for in-inode xattr entries and values, after the 4-byte magic.
const INLINE_XATTR_ROOM: usize = INODE_SIZE as usize - INLINE_XATTR_START - 4;

/// One encoded xattr: (index, suffix, disk value).
type XattrItem = (u8, Vec<u8>, Vec<u8>);

/// Splits xattrs between the inode (as many as fit, in order) and one block.
pub(crate) fn split_xattrs(
    xattrs: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    if xattrs.is_empty() {
        return Ok((Vec::new(), None));
    }
    let mut items: Vec<XattrItem> = Vec::new();
    for (name, value) in xattrs {
        let (index, suffix) = split_name(name);
        let value = if index == 2 || index == 3 {
            acl::to_disk(value).ok_or_else(|| invalid(name, "malformed POSIX ACL"))?
        } else {
            value.clone()
        };
        if suffix.len() > 255 {
            return Err(invalid(name, "xattr name longer than 255 bytes"));
        }
        items.push((index, suffix.to_vec(), value));
    }
    items.sort_by(|a, b| (a.0, a.1.len(), &a.1).cmp(&(b.0, b.1.len(), &b.1)));
    let mut inline: Vec<&XattrItem> = Vec::new();
    let mut block: Vec<&XattrItem> = Vec::new();
    let mut used = 4; // terminator
    for it in &items {
        let need = entry_len(it.1.len()) + value_len(it.2.len());
        if block.is_empty() && used + need <= INLINE_XATTR_ROOM {
            used += need;
            inline.push(it);
        } else {
            block.push(it);
        }
    }
    let inline_bytes = if inline.is_empty() {
        Vec::new()
    } else {
        xattr_area(&inline, INLINE_XATTR_ROOM, 0, false)
    };
    let block_bytes = if block.is_empty() {
        None
    } else {
        let need: usize = 32
            + 4
            + block
                .iter()
                .map(|it| entry_len(it.1.len()) + value_len(it.2.len()))
                .sum::<usize>();
        if need > BS {
            return Err(Error::TooLarge {
                entry: None,
                what: "xattrs of one file do not fit in a 4 KiB block".into(),
            });
        }
        Some(xattr_area(&block, BS, 32, true))
    };
    Ok((inline_bytes, block_bytes))
}

/// Lays entries out from `start` and values down from the end of a `size`-byte area.
/// Value offsets count from the area start (block) or the first entry (inode, start 0).
fn xattr_area(items: &[&XattrItem], size: usize, start: usize, is_block: bool) -> Vec<u8> {
    let mut area = vec![0u8; size];
    let mut pos = start;
    let mut vend = size;
    let mut hashes = Vec::new();
    for (index, suffix, value) in items {
        vend -= value_len(value.len());
        area[vend..vend + value.len()].copy_from_slice(value);
        let hash = entry_hash(suffix, value);
        hashes.push(hash);
        let head = EntryHead {
            name_len: suffix.len() as u8,
            name_index: *index,
            value_offs: (vend as u16).into(),
            value_inum: 0.into(),
            value_size: (value.len() as u32).into(),
            hash: hash.into(),
        };
        area[pos..pos + 16].copy_from_slice(head.as_bytes());
        area[pos + 16..pos + 16 + suffix.len()].copy_from_slice(suffix);
        pos += entry_len(suffix.len());
    }
    if is_block {
        let h = BlockHeader {
            magic: MAGIC.into(),
            refcount: 1.into(),
            blocks: 1.into(),
            hash: block_hash(&hashes).into(),
            ..BlockHeader::default()
        };
        area[..32].copy_from_slice(h.as_bytes());
    }
    area
}

/// The error for an xattr that ext4 cannot hold, named after the xattr.
fn invalid(name: &[u8], reason: &str) -> Error {
    Error::InvalidEntry {
        entry: String::from_utf8_lossy(name).into_owned(),
        reason: reason.to_string(),
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
