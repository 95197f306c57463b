//! `metadata_csum` checksums: CRC32C (Castagnoli) as ext4 uses it, a raw update with no
//! final inversion, seeded from the UUID.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = table();

/// Continues a CRC32C over `data` from `crc` (the kernel's `crc32c_le`: no pre- or
/// post-inversion; ext4 starts from `!0`).
pub fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// The file-system checksum seed: the CRC of the UUID.
pub fn fs_seed(uuid: &[u8; 16]) -> u32 {
    crc32c(!0, uuid)
}

/// An inode's checksum seed: the file-system seed over its number and generation.
pub fn inode_seed(fs_seed: u32, ino: u32, generation: u32) -> u32 {
    crc32c(
        crc32c(fs_seed, &ino.to_le_bytes()),
        &generation.to_le_bytes(),
    )
}

/// `s_feature_ro_compat`: metadata checksums.
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
/// `s_checksum_type` for CRC32C.
pub const CHECKSUM_TYPE_CRC32C: u8 = 1;
/// Offset of `s_checksum` in the superblock.
pub const SUPERBLOCK_CSUM_OFFSET: usize = 0x3FC;
/// Bytes of the checksum tail entry at the end of each linear directory block.
pub const DIR_TAIL_LEN: usize = 12;
/// `det_reserved_ft` of the directory tail entry.
pub const DIR_TAIL_FT: u8 = 0xDE;
/// Bytes of the `dx_tail` after an htree index.
pub const DX_TAIL_LEN: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_check_value() {
        // CRC-32C of "123456789" with the usual inversions is 0xE3069283.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }
}
