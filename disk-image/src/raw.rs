//! Raw images: the file is the disk.

use std::path::Path;

use crate::disk::{Disk, Durability, Format, RawExtent, check_range};
use crate::error::Result;
use crate::file::ImageFile;

/// A raw image file; its length is the disk's size.
#[derive(Debug)]
pub struct RawDisk {
    file: ImageFile,
    size: u64,
}

impl RawDisk {
    /// Opens an existing raw image.
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        let file = ImageFile::open(path, read_only)?;
        let size = file.len()?;
        Ok(RawDisk { file, size })
    }

    /// Creates a sparse raw image of `size` bytes; fails if `path` exists.
    pub fn create(path: &Path, size: u64) -> Result<Self> {
        let file = ImageFile::create(path)?;
        file.set_len(size)?;
        Ok(RawDisk { file, size })
    }
}

impl Disk for RawDisk {
    fn format(&self) -> Format {
        Format::Raw
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.file.path(), self.size, offset, buf.len())?;
        self.file.read_zero_fill_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.file.path(), self.size, offset, buf.len())?;
        self.file.write_all_at(buf, offset)
    }

    fn flush(&mut self) -> Result<()> {
        self.file.sync_data()
    }

    fn set_durability(&mut self, durability: Durability) {
        self.file.set_durability(durability);
    }

    fn raw_extent(&self) -> Option<RawExtent> {
        Some(RawExtent {
            path: self.file.path().to_path_buf(),
            offset: 0,
            size: self.size,
        })
    }
}
