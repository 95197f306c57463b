//! What the disk-image fuzz targets share: checksum repair, and the structure-aware
//! mutator of the multi-file image target.
//!
//! A byte-level fuzzer stops at checksums: any change to a VHD footer or a VHDX header
//! breaks its checksum, and the parser refuses the input before the changed field is
//! looked at. [`fix_checksums`] recomputes every checksum of a (sparse) image file after a
//! mutation, so the mutated fields reach the code that interprets them.

use disk_image::vhd::footer::checksum as vhd_checksum;
use disk_image::vhdx::header::{
    HEADER_OFFSETS, HEADER_SIGNATURE, REGION_SIGNATURE, REGION_TABLE_OFFSETS, REGION_TABLE_SIZE,
    crc_with_zero_field,
};
use disk_image::vhdx::log::{ENTRY_SIGNATURE, LOG_SECTOR, MAX_LOG_BYTES};
pub use testkit::fileset::Rng;
use testkit::fileset::{self, FileSet, SparseFile};

// With `fuzz_support` comes its capped global allocator, in every target (each links this
// crate).
pub use fuzz_support::drop_root;

/// Everything a caller does with an image file: opened with its chain and read (the start,
/// the end and the allocation map), then opened alone read-write, written in the middle
/// and flushed. Errors are the expected outcome for most inputs; only a panic, an abort or
/// a hang is a finding.
pub fn exercise_image(path: &std::path::Path) {
    // Parents are kept to the image's own directory, as a store keeps them to its root.
    let within = path.parent().unwrap_or(std::path::Path::new("."));
    if let Ok(disk) = disk_image::open_chain_within(path, true, within) {
        let size = disk.size();
        let mut buf = vec![0u8; size.min(1 << 20) as usize];
        let _ = disk.read_at(&mut buf, 0);
        let tail = size - buf.len() as u64;
        let _ = disk.read_at(&mut buf, tail);
        let _ = disk.allocated_ranges();
    }
    if let Ok(mut disk) = disk_image::open(path, false) {
        if disk.size() >= 4096 {
            let _ = disk.write_at(&[0xa5; 4096], disk.size() / 2 / 4096 * 4096);
        }
        let _ = disk.flush();
    }
}

/// Bytes of a VHD footer or of its copy at the start of a dynamic disk.
const VHD_FOOTER: usize = 512;
/// Bytes of a VHD dynamic header.
const VHD_HEADER: usize = 1024;
/// Bytes of a VHDX header.
const VHDX_HEADER: usize = 4096;

/// Sets the checksum of a VHD footer (`bytes`, 512) or dynamic header (1024), whose
/// big-endian checksum field is at `at`.
pub fn seal_vhd(bytes: &mut [u8], at: usize) {
    bytes[at..at + 4].fill(0);
    let sum = vhd_checksum(bytes);
    bytes[at..at + 4].copy_from_slice(&sum.to_be_bytes());
}

/// Sets the CRC-32C of a VHDX structure whose little-endian checksum field is at 4.
pub fn seal_vhdx(bytes: &mut [u8]) {
    let crc = crc_with_zero_field(bytes, 4);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Recomputes every checksum `file` holds: the VHD footer (at the end, and its copy at
/// the start) and dynamic header; the VHDX headers, region tables and log entries.
pub fn fix_checksums(file: &mut SparseFile) {
    fix_vhd(file);
    fix_vhdx(file);
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn fix_vhd(file: &mut SparseFile) {
    let mut footers = vec![0u64];
    if file.len >= VHD_FOOTER as u64 {
        footers.push(file.len - VHD_FOOTER as u64);
    }
    for at in footers {
        let mut footer = file.read(at, VHD_FOOTER);
        if &footer[..8] != b"conectix" {
            continue;
        }
        seal_vhd(&mut footer, 64);
        file.write(at, &footer);
        let data_offset = be_u64(&footer, 16);
        if data_offset < file.len {
            let mut header = file.read(data_offset, VHD_HEADER);
            if &header[..8] == b"cxsparse" {
                seal_vhd(&mut header, 36);
                file.write(data_offset, &header);
            }
        }
    }
}

fn fix_vhdx(file: &mut SparseFile) {
    if file.read(0, 8) != b"vhdxfile" {
        return;
    }
    let mut logs = Vec::new();
    for at in HEADER_OFFSETS {
        let mut h = file.read(at, VHDX_HEADER);
        if h[..4] == HEADER_SIGNATURE {
            seal_vhdx(&mut h);
            file.write(at, &h);
            // log_guid at 48, log_length at 68, log_offset at 72.
            if h[48..64] != [0; 16] {
                logs.push((le_u64(&h, 72), le_u32(&h, 68)));
            }
        }
    }
    for at in REGION_TABLE_OFFSETS {
        let mut t = file.read(at, REGION_TABLE_SIZE);
        if t[..4] == REGION_SIGNATURE {
            seal_vhdx(&mut t);
            file.write(at, &t);
        }
    }
    logs.sort_unstable();
    logs.dedup();
    for (offset, len) in logs {
        if len > MAX_LOG_BYTES || offset >= file.len {
            continue;
        }
        fix_log(file, offset, len as usize);
    }
}

/// Reseals every log entry that starts on a log sector and fits in the log.
fn fix_log(file: &mut SparseFile, offset: u64, len: usize) {
    let starts: Vec<u64> = file
        .chunks
        .iter()
        .flat_map(|c| {
            let first = c.offset.max(offset).next_multiple_of(LOG_SECTOR as u64);
            let end = (c.offset + c.data.len() as u64).min(offset + len as u64);
            (first..end).step_by(LOG_SECTOR)
        })
        .collect();
    for at in starts {
        let head = file.read(at, 12);
        if head[..4] != ENTRY_SIGNATURE {
            continue;
        }
        let entry_len = le_u32(&head, 8) as usize;
        let room = (offset + len as u64 - at) as usize;
        if entry_len < 64 || entry_len > room || !entry_len.is_multiple_of(LOG_SECTOR) {
            continue;
        }
        let mut entry = file.read(at, entry_len);
        seal_vhdx(&mut entry);
        file.write(at, &entry);
    }
}

/// Mutates a file set in place as [`testkit::fileset::mutate`] does (mostly the bytes of
/// one chunk, through `mutate_bytes`, libFuzzer's own mutator), then reseals every
/// checksum. Returns `false` when the set has nothing to mutate.
pub fn mutate_set(
    set: &mut FileSet,
    rng: &mut Rng,
    mutate_bytes: impl FnOnce(&mut Vec<u8>),
) -> bool {
    if !fileset::mutate(set, rng, mutate_bytes) {
        return false;
    }
    for file in &mut set.files {
        fix_checksums(file);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhd_footer_checksum_is_resealed_after_a_change() {
        let mut footer = vec![0u8; 512];
        footer[..8].copy_from_slice(b"conectix");
        footer[60..64].copy_from_slice(&2u32.to_be_bytes());
        footer[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
        let mut image = vec![0u8; 4096];
        image.extend_from_slice(&footer);
        let mut file = SparseFile::from_bytes(b"disk.vhd", &image);
        fix_checksums(&mut file);
        let sealed = file.read(4096, 512);
        let path = std::path::Path::new("x.vhd");
        assert!(disk_image::vhd::footer::Footer::parse(&sealed, path, 4096).is_ok());
    }
}
