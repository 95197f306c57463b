//! The scratch disk: the root of every chain, a sparse VMDK holding an ext4 with a label
//! and an empty `rootfs/`, built with ext4-writer straight into the disk (no `mkfs`).

use std::path::Path;

use disk_image::{DiskFile, Format};
use ext4_writer::{Builder, Options, Whiteouts};
use storage_core::{Error, IoContext, Result};

use crate::layout::ROOTFS;

/// VIC's default capacity of a scratch disk: 8 GB.
pub const DEFAULT_CAPACITY: u64 = 8 << 30;
/// The scratch file system's label.
pub const LABEL: &str = "strata-scratch";
/// Bytes of capacity per inode the scratch file system gets.
const BYTES_PER_INODE: u64 = 64 << 10;
/// The smallest capacity a scratch disk may have.
pub const MIN_CAPACITY: u64 = 16 << 20;

/// Parses a capacity: bytes, or a number with a `K`, `M`, `G` or `T` suffix (powers of
/// 1024).
pub fn parse_capacity(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last()?.to_ascii_uppercase() {
        'K' => (&text[..text.len() - 1], 10),
        'M' => (&text[..text.len() - 1], 20),
        'G' => (&text[..text.len() - 1], 30),
        'T' => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// A tar holding one empty directory, `rootfs/`.
fn rootfs_tar() -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
        .set_path(format!("{ROOTFS}/"))
        .map_err(|e| Error::io("name the scratch disk's rootfs directory", e))?;
    header.set_cksum();
    tar.append(&header, std::io::empty())
        .map_err(|e| Error::io("write the scratch disk's rootfs directory", e))?;
    tar.into_inner()
        .map_err(|e| Error::io("finish the scratch disk's tar", e))
}

/// Creates the scratch disk at `path` with `capacity` bytes: a sparse VMDK whose ext4
/// fills it. The file is removed again when building fails.
pub fn create(path: &Path, capacity: u64) -> Result<()> {
    create_ext4_disk(path, capacity, LABEL)
}

/// Creates a sparse VMDK of `capacity` bytes at `path` holding an ext4 labelled `label`
/// that fills it, with an empty `rootfs/`. The file is removed again when building fails.
pub fn create_ext4_disk(path: &Path, capacity: u64, label: &str) -> Result<()> {
    let built = build(path, capacity, label);
    if built.is_err() {
        let _ = std::fs::remove_file(path);
    }
    built
}

fn build(path: &Path, capacity: u64, label: &str) -> Result<()> {
    if capacity < MIN_CAPACITY {
        return Err(Error::Unsupported {
            what: format!("a disk of {capacity} bytes at {}", path.display()),
            reason: format!("an ext4 disk holds at least {MIN_CAPACITY} bytes"),
        });
    }
    let disk = disk_image::create(path, Format::VmdkSparse, capacity)?;
    let options = Options {
        whiteouts: Whiteouts::Overlay,
        max_size: capacity,
        min_size: capacity,
        inode_headroom: u32::try_from(capacity / BYTES_PER_INODE).unwrap_or(u32::MAX),
        uuid: storage_core::id::random_bytes::<16>()?,
        ..Options::default()
    }
    .with_label(label)?;
    let mut builder = Builder::new(DiskFile::new(disk), options)?;
    builder.append_tar(std::io::Cursor::new(rootfs_tar()?))?;
    let (file, _summary) = builder.finish()?;
    let mut disk = file.into_inner();
    disk.flush()?;
    drop(disk);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_parse_with_binary_suffixes() {
        assert_eq!(parse_capacity("8G"), Some(8 << 30));
        assert_eq!(parse_capacity("512m"), Some(512 << 20));
        assert_eq!(parse_capacity("4096"), Some(4096));
        assert_eq!(parse_capacity("G"), None);
        assert_eq!(parse_capacity("x"), None);
        assert_eq!(parse_capacity("99999999999T"), None);
    }
}
