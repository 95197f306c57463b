//! Linear directory entries (`struct ext4_dir_entry_2`), and the encoder that packs them
//! into directory blocks.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{BS, csum};

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

/// A directory entry to write: (name, inode, file type).
pub(crate) type DirItem<'a> = (&'a [u8], u32, u8);

/// Linear directory blocks: entries packed in order, the last of each block stretched to
/// its end.
///
/// With `seed` (`metadata_csum`), each block ends in a 12-byte tail entry holding the
/// block's checksum.
pub(crate) fn dir_blocks(entries: &[(&[u8], u32, u8)], seed: Option<u32>) -> Vec<u8> {
    let room = if seed.is_some() {
        BS - csum::DIR_TAIL_LEN
    } else {
        BS
    };
    let mut out: Vec<u8> = Vec::with_capacity(BS);
    let mut block_start = 0usize;
    let mut last = 0usize;
    let close = |out: &mut Vec<u8>, block_start: usize, last: usize| {
        let end = block_start + room;
        let rec = (end - last) as u16;
        out[last + 4..last + 6].copy_from_slice(&rec.to_le_bytes());
        out.resize(end, 0);
        if let Some(seed) = seed {
            let c = csum::crc32c(seed, &out[block_start..end]);
            let tail = DirEntryHead {
                inode: 0.into(),
                rec_len: (csum::DIR_TAIL_LEN as u16).into(),
                name_len: 0,
                file_type: csum::DIR_TAIL_FT,
            };
            out.extend_from_slice(tail.as_bytes());
            out.extend_from_slice(&c.to_le_bytes());
        }
    };
    for &(name, ino, ft) in entries {
        let need = entry_len(name.len());
        if out.len() + need > block_start + room {
            close(&mut out, block_start, last);
            block_start += BS;
        }
        last = out.len();
        let head = DirEntryHead {
            inode: ino.into(),
            rec_len: (need as u16).into(),
            name_len: name.len() as u8,
            file_type: ft,
        };
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(name);
        out.resize(last + need, 0);
    }
    close(&mut out, block_start, last);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_blocks_end_exactly_at_block_ends() {
        let names: Vec<Vec<u8>> = (0..1000)
            .map(|i| format!("name-{i}").into_bytes())
            .collect();
        let entries: Vec<(&[u8], u32, u8)> = names.iter().map(|n| (n.as_slice(), 12, 1)).collect();
        let data = dir_blocks(&entries, None);
        assert_eq!(data.len() % BS, 0);
        let mut seen = 0;
        for block in data.chunks(BS) {
            let mut off = 0;
            while off < BS {
                let rec = u16::from_le_bytes([block[off + 4], block[off + 5]]) as usize;
                assert!(rec >= 8);
                off += rec;
                seen += 1;
            }
            assert_eq!(off, BS);
        }
        assert_eq!(seen, 1000);
    }
}
