//! What changed in a layer, as the contract hands it out: [`Change`]s of paths, each with
//! the [`Stat`] of its new content.

use std::fmt;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The kind of a change, as containers/storage names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChangeKind {
    /// The path is new.
    Add,
    /// The path existed below and differs now.
    Modify,
    /// The path existed below and is gone.
    Delete,
}

impl ChangeKind {
    /// `A`, `C` or `D`, the letter recorded in header-only exports.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Add => 'A',
            ChangeKind::Modify => 'C',
            ChangeKind::Delete => 'D',
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Add => "Add",
            ChangeKind::Modify => "Modify",
            ChangeKind::Delete => "Delete",
        })
    }
}

/// One changed path.
#[derive(Debug, Clone)]
pub struct Change {
    /// The path relative to the root, without a leading `/`.
    pub path: Vec<u8>,
    /// What happened to it.
    pub kind: ChangeKind,
    /// Where the new content is (adds and modifies).
    pub source: Option<PathBuf>,
    /// The new metadata (adds and modifies).
    pub stat: Option<Stat>,
    /// A directory whose lower contents are hidden (an overlay opaque directory).
    pub opaque: bool,
}

impl Change {
    /// The path as containers/storage prints it: absolute, lossy UTF-8.
    pub fn display_path(&self) -> String {
        format!("/{}", String::from_utf8_lossy(&self.path))
    }

    /// A deletion of `path`.
    pub fn deleted(path: Vec<u8>) -> Self {
        Change {
            path,
            kind: ChangeKind::Delete,
            source: None,
            stat: None,
            opaque: false,
        }
    }

    /// An add or a modification of `path`, whose new content is at `source`.
    pub fn present(path: Vec<u8>, kind: ChangeKind, source: PathBuf, stat: Stat) -> Self {
        Change {
            path,
            kind,
            source: Some(source),
            stat: Some(stat),
            opaque: false,
        }
    }
}

/// The type of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
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
    pub kind: FileKind,
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
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_char_device() {
            FileKind::Char
        } else if ft.is_block_device() {
            FileKind::Block
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_socket() {
            FileKind::Socket
        } else {
            FileKind::File
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
            SFlag::S_IFDIR => FileKind::Dir,
            SFlag::S_IFLNK => FileKind::Symlink,
            SFlag::S_IFCHR => FileKind::Char,
            SFlag::S_IFBLK => FileKind::Block,
            SFlag::S_IFIFO => FileKind::Fifo,
            SFlag::S_IFSOCK => FileKind::Socket,
            _ => FileKind::File,
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
        self.kind == FileKind::Char && self.rdev == 0
    }
}

/// The bytes of regular-file data the changes carry, each inode counted once.
pub fn changes_size(changes: &[Change]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    changes
        .iter()
        .filter_map(|c| c.stat.as_ref())
        .filter(|s| s.kind == FileKind::File)
        .filter(|s| s.nlink < 2 || seen.insert((s.dev, s.ino)))
        .map(|s| s.size)
        .sum()
}
