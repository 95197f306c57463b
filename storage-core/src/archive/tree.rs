//! Reading directory trees: sorted depth-first walks, metadata snapshots and xattrs.

use std::ffi::OsStr;
use std::fmt;
use std::fs::Metadata;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The type of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// FIFO.
    Fifo,
    /// Socket (never archived).
    Socket,
}

/// What a walk needs to know about one entry.
#[derive(Debug, Clone)]
pub struct Stat {
    /// Entry type.
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (files).
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: i64,
    /// Device number (devices).
    pub rdev: u64,
    /// Device of the filesystem holding the entry.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Link count.
    pub nlink: u64,
}

impl Stat {
    /// Snapshot of `lstat` metadata.
    pub fn from_metadata(m: &Metadata) -> Self {
        let ft = m.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else {
            Kind::File
        };
        Stat {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            rdev: m.rdev(),
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
        }
    }

    /// Snapshot of a `stat` result (from an fd-relative `fstatat`).
    pub fn from_file_stat(st: &nix::sys::stat::FileStat) -> Self {
        use nix::sys::stat::SFlag;
        let kind = match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            SFlag::S_IFCHR => Kind::Char,
            SFlag::S_IFBLK => Kind::Block,
            SFlag::S_IFIFO => Kind::Fifo,
            SFlag::S_IFSOCK => Kind::Socket,
            _ => Kind::File,
        };
        Stat {
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            rdev: st.st_rdev,
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
        }
    }

    /// True for an overlay whiteout: a character device 0:0.
    pub fn is_whiteout(&self) -> bool {
        self.kind == Kind::Char && self.rdev == 0
    }
}

/// `lstat(path)`, or `None` when nothing is there.
pub fn try_lstat(path: &Path) -> Result<Option<Stat>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(Stat::from_metadata(&m))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(20) => Ok(None), // ENOTDIR: a file on the way
        Err(e) => Err(Error::io_path("stat", path, e)),
    }
}

/// The entries of a directory with their `lstat` metadata, sorted by name. The metadata
/// comes from `statx` relative to the directory, without walking the path again.
pub fn sorted_entries(dir: &Path) -> Result<Vec<(Vec<u8>, Stat)>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        let md = entry
            .metadata()
            .ctx(|| format!("stat {}", entry.path().display()))?;
        entries.push((
            entry.file_name().as_bytes().to_vec(),
            Stat::from_metadata(&md),
        ));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// `dir/name` for a name given as bytes.
pub fn child(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

/// `rel/name` (relative archive path).
pub fn join_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        v.extend_from_slice(rel);
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

/// The entry's xattrs (without following a symlink), sorted by name, without the overlay's
/// own.
pub fn read_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    collect_xattrs(
        |buf| rustix::fs::llistxattr(path, buf),
        |name, buf| rustix::fs::lgetxattr(path, name, buf),
        &path.display(),
    )
}

/// The xattrs of an open file or directory, sorted by name, without the overlay's own.
/// The same as [`read_xattrs`] without looking the path up again.
pub fn read_xattrs_fd(
    fd: BorrowedFd<'_>,
    what: &dyn fmt::Display,
) -> Result<Vec<(String, Vec<u8>)>> {
    collect_xattrs(
        |buf| rustix::fs::flistxattr(fd, buf),
        |name, buf| rustix::fs::fgetxattr(fd, name, buf),
        what,
    )
}

/// Lists and reads xattrs through `list` and `get` (which fill a buffer and return the
/// length, as the `*listxattr`/`*getxattr` calls do). `what` names the entry in errors.
fn collect_xattrs(
    list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    get: impl Fn(&str, &mut [u8]) -> rustix::io::Result<usize>,
    what: &dyn fmt::Display,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut names = [0u8; 1024];
    let mut big = Vec::new();
    let list = match list(&mut names[..]) {
        Ok(n) => &names[..n],
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(rustix::io::Errno::RANGE) => loop {
            // A size-0 call reports the length needed; it may grow before the next call.
            let need = list(&mut []).map_err(|e| Error::io(format!("list xattrs of {what}"), e))?;
            big.resize(need.max(2 * names.len()), 0);
            match list(&mut big[..]) {
                Ok(n) => break &big[..n],
                Err(rustix::io::Errno::RANGE) => continue,
                Err(e) => return Err(Error::io(format!("list xattrs of {what}"), e)),
            }
        },
        Err(e) => return Err(Error::io(format!("list xattrs of {what}"), e)),
    };
    let mut out = Vec::new();
    for raw in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(raw) else {
            continue;
        };
        if super::entry::reserved_xattr(name.as_bytes()) {
            continue;
        }
        if let Some(v) = get_xattr_with(&get, name, what)? {
            out.push((name.to_owned(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// One xattr's value (without following a symlink), `None` when absent.
pub fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    get_xattr_with(
        &|name: &str, buf: &mut [u8]| rustix::fs::lgetxattr(path, name, buf),
        name,
        &path.display(),
    )
}

/// One xattr's value through `get` (see [`collect_xattrs`]), `None` when absent.
fn get_xattr_with(
    get: &impl Fn(&str, &mut [u8]) -> rustix::io::Result<usize>,
    name: &str,
    what: &dyn fmt::Display,
) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match get(name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::RANGE) => {
                let need = get(name, &mut [])
                    .map_err(|e| Error::io(format!("read xattr {name} of {what}"), e))?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(Error::io(format!("read xattr {name} of {what}"), e)),
        }
    }
}

/// True when an overlay upper/diff directory is marked opaque.
pub fn is_opaque(path: &Path) -> Result<bool> {
    Ok(get_xattr(path, super::entry::OVERLAY_OPAQUE_XATTR)?.is_some_and(|v| v == b"y"))
}
