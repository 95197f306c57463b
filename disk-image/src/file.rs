//! Positional I/O on an image file, with errors that name the file and offset.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::disk::Durability;
use crate::error::{Error, ErrorKind, Result};
use crate::writeback::Writeback;

/// An open image file and its path.
#[derive(Debug)]
pub(crate) struct ImageFile {
    file: File,
    path: PathBuf,
    writable: bool,
    durability: Durability,
    /// What was written since the last sync, on its way to the disk.
    writeback: Mutex<Writeback>,
}

impl ImageFile {
    /// Opens an existing file, read-write unless `read_only`.
    pub(crate) fn open(path: &Path, read_only: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| Error::io(path, "opening image", e))?;
        Ok(ImageFile {
            file,
            path: path.to_path_buf(),
            writable: !read_only,
            durability: Durability::Synced,
            writeback: Mutex::default(),
        })
    }

    /// Creates a new file; fails if it exists.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, "creating image", e))?;
        Ok(ImageFile {
            file,
            path: path.to_path_buf(),
            writable: true,
            durability: Durability::Synced,
            writeback: Mutex::default(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// Whether [`ImageFile::sync_data`] waits for the disk.
    pub(crate) fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// The current length of the file in bytes.
    pub(crate) fn len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io(&self.path, "reading file size", e))
    }

    pub(crate) fn set_len(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::io(&self.path, "setting file size", e).with_offset(len))
    }

    /// Reads exactly `buf.len()` bytes at `offset`; a short file is `Corrupt`.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(
                    &self.path,
                    offset,
                    format!("file ends inside a {}-byte structure", buf.len()),
                )
            } else {
                Error::io(&self.path, "reading", e).with_offset(offset)
            }
        })
    }

    /// Reads up to `buf.len()` bytes at `offset`; bytes past the end of the file read as
    /// zeros (used for raw data areas that may be sparse at the end).
    pub(crate) fn read_zero_fill_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self
                .file
                .read_at(&mut buf[done..], offset + done as u64)
                .map_err(|e| Error::io(&self.path, "reading", e).with_offset(offset))?;
            if n == 0 {
                buf[done..].fill(0);
                break;
            }
            done += n;
        }
        Ok(())
    }

    pub(crate) fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::new(ErrorKind::ReadOnly, "image opened read-only")
                .with_path(&self.path)
                .with_offset(offset));
        }
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| Error::io(&self.path, "writing", e).with_offset(offset))?;
        if self.durability == Durability::Unsynced {
            return Ok(());
        }
        // A poisoned lock only means an earlier writer panicked; the runs it holds are
        // hints, so go on with them.
        let mut writeback = self.writeback.lock().unwrap_or_else(|p| p.into_inner());
        writeback
            .wrote(self.file.as_fd(), offset, buf.len() as u64)
            .map_err(|e| Error::io(&self.path, "starting writeback", e).with_offset(offset))
    }

    /// Flushes file data (not necessarily metadata such as mtime) to stable storage;
    /// nothing for a file that is read-only or [`Durability::Unsynced`].
    pub(crate) fn sync_data(&self) -> Result<()> {
        if !self.writable || self.durability == Durability::Unsynced {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, "syncing", e))?;
        self.writeback
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .synced();
        Ok(())
    }
}
