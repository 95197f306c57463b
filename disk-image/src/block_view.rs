//! The block view: a FUSE filesystem holding one file, `disk`, whose bytes are a [`Disk`]
//! (through its parents). Writes go to the top disk. A loop device over that file makes
//! any disk a block device.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::consts::FOPEN_DIRECT_IO;
use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request,
};

use crate::disk::Disk;

/// Name of the one file in the view.
pub const FILE_NAME: &str = "disk";
const ROOT_INO: u64 = 1;
const FILE_INO: u64 = 2;
const TTL: Duration = Duration::from_secs(1);
const EIO: i32 = 5;
const ENOENT: i32 = 2;
const EROFS: i32 = 30;
const ENOTDIR: i32 = 20;
/// Largest write the kernel is asked to send at once.
const MAX_WRITE: u32 = 1 << 20;

/// The options a block view is mounted with: no devices or set-id files (it holds one
/// plain file), read-only when the disk is.
pub fn mount_options(read_only: bool) -> Vec<MountOption> {
    let mut options = vec![
        MountOption::FSName("strata-disk-image".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if read_only {
        options.push(MountOption::RO);
    }
    options
}

/// A disk shared between the view and its owner.
pub type SharedDisk = Arc<Mutex<Box<dyn Disk>>>;

/// The FUSE filesystem serving one disk as the file [`FILE_NAME`].
pub struct BlockView {
    disk: SharedDisk,
    read_only: bool,
    size: u64,
    uid: u32,
    gid: u32,
}

impl BlockView {
    /// A view of `disk`; writes are refused when `read_only`.
    pub fn new(disk: SharedDisk, read_only: bool, size: u64) -> Self {
        let (uid, gid) = std::fs::metadata("/proc/self")
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.uid(), m.gid())
            })
            .unwrap_or((0, 0));
        BlockView {
            disk,
            read_only,
            size,
            uid,
            gid,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Box<dyn Disk>> {
        // A panic while holding the lock leaves the disk as consistent as its last
        // completed call; keep serving.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let now = SystemTime::now();
        let (kind, perm, size, nlink) = if ino == ROOT_INO {
            (FileType::Directory, 0o755, 0, 2)
        } else {
            let perm = if self.read_only { 0o400 } else { 0o600 };
            (FileType::RegularFile, perm, self.size, 1)
        };
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// The part of `[offset, offset + len)` inside the disk.
    fn clamp(&self, offset: i64, len: usize) -> Option<(u64, usize)> {
        let offset = u64::try_from(offset).ok()?;
        if offset >= self.size {
            return Some((offset, 0));
        }
        let n = (self.size - offset).min(len as u64) as usize;
        Some((offset, n))
    }
}

impl Filesystem for BlockView {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), i32> {
        let _ = config.set_max_write(MAX_WRITE);
        Ok(())
    }

    fn destroy(&mut self) {
        if !self.read_only {
            let _ = self.lock().flush();
        }
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if parent == ROOT_INO && name == FILE_NAME {
            reply.entry(&TTL, &self.attr(FILE_INO), 0);
        } else {
            reply.error(ENOENT);
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match ino {
            ROOT_INO | FILE_INO => reply.attr(&TTL, &self.attr(ino)),
            _ => reply.error(ENOENT),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let writing = flags & 0o3 != 0;
        if ino != FILE_INO {
            reply.error(ENOENT);
        } else if writing && self.read_only {
            reply.error(EROFS);
        } else {
            // Direct I/O: every read and write reaches the disk, nothing is cached twice.
            reply.opened(0, FOPEN_DIRECT_IO);
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        if ino != FILE_INO {
            return reply.error(ENOENT);
        }
        let Some((offset, n)) = self.clamp(offset, size as usize) else {
            return reply.error(EIO);
        };
        let mut buf = vec![0u8; n];
        match self.lock().read_at(&mut buf, offset) {
            Ok(()) => reply.data(&buf),
            Err(_) => reply.error(EIO),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        if ino != FILE_INO {
            return reply.error(ENOENT);
        }
        if self.read_only {
            return reply.error(EROFS);
        }
        let Some((offset, n)) = self.clamp(offset, data.len()) else {
            return reply.error(EIO);
        };
        match self.lock().write_at(&data[..n], offset) {
            Ok(()) => reply.written(n as u32),
            Err(_) => reply.error(EIO),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _owner: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        if self.read_only {
            return reply.ok();
        }
        match self.lock().flush() {
            Ok(()) => reply.ok(),
            Err(_) => reply.error(EIO),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        if ino != ROOT_INO {
            return reply.error(ENOTDIR);
        }
        let entries = [
            (ROOT_INO, FileType::Directory, "."),
            (ROOT_INO, FileType::Directory, ".."),
            (FILE_INO, FileType::RegularFile, FILE_NAME),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(*ino, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
