//! The levels of a walk: one per directory from the start down to where the walk is, on
//! the heap, with a descriptor only for the deepest [`OPEN_LEVELS`](crate::OPEN_LEVELS).

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat as Stat, Mode, fstatat};

use crate::OPEN_LEVELS;

/// One directory on the way down.
pub(crate) struct Level<T> {
    /// Open while the level is among the deepest; reopened through `..` when needed again.
    pub fd: Option<OwnedFd>,
    /// Device and inode, to recognise the directory when it is reopened.
    pub id: (u64, u64),
    /// What is left to visit in it.
    pub todo: Vec<T>,
    /// The length of the walk's path when this level is the current one.
    pub base: usize,
}

/// The levels, deepest last.
pub(crate) struct Levels<T> {
    levels: Vec<Level<T>>,
}

/// A `..` reopened to a directory other than the one left there.
pub(crate) struct Moved;

impl<T> Levels<T> {
    pub fn new() -> Self {
        Levels { levels: Vec::new() }
    }

    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// Goes one level down, closing the descriptor of the level that leaves the open window.
    pub fn push(&mut self, fd: OwnedFd, st: &Stat, todo: Vec<T>, base: usize) {
        if self.levels.len() >= OPEN_LEVELS {
            let i = self.levels.len() - OPEN_LEVELS;
            self.levels[i].fd = None;
        }
        self.levels.push(Level {
            fd: Some(fd),
            id: id(st),
            todo,
            base,
        });
    }

    pub fn top(&mut self) -> Option<&mut Level<T>> {
        self.levels.last_mut()
    }

    /// The deepest level's descriptor (always open).
    pub fn top_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd_above(0)
    }

    /// The descriptor of the level `up` levels above the deepest, when it is open.
    pub fn fd_above(&self, up: usize) -> Option<BorrowedFd<'_>> {
        let i = self.levels.len().checked_sub(up + 1)?;
        self.levels[i].fd.as_ref().map(AsFd::as_fd)
    }

    /// Goes one level up: returns the level left (its descriptor still open) after making
    /// sure the new deepest level is open, reopening it through the left one's `..`.
    pub fn pop(&mut self) -> Result<Option<Level<T>>, PopError> {
        let Some(left) = self.levels.pop() else {
            return Ok(None);
        };
        if let (Some(up), Some(fd)) = (self.levels.last_mut(), left.fd.as_ref())
            && up.fd.is_none()
        {
            let parent = open_dir(fd.as_fd(), b"..").map_err(PopError::Os)?;
            let st = nix::sys::stat::fstat(&parent).map_err(PopError::Os)?;
            if id(&st) != up.id {
                return Err(PopError::Moved(Moved));
            }
            up.fd = Some(parent);
        }
        Ok(Some(left))
    }
}

/// Why going up failed.
pub(crate) enum PopError {
    Os(Errno),
    Moved(Moved),
}

/// Device and inode of a `stat`.
pub(crate) fn id(st: &Stat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}

/// A byte name as a path.
pub(crate) fn os(name: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(name))
}

/// Opens the directory `name` in `dir` for reading, without following a symlink.
pub(crate) fn open_dir(dir: BorrowedFd<'_>, name: &[u8]) -> nix::Result<OwnedFd> {
    openat(
        dir,
        os(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// `lstat` of `name` in `dir`.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> nix::Result<Stat> {
    fstatat(dir, os(name), AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// The names in an open directory, without `.` and `..`.
pub fn list(dir: BorrowedFd<'_>) -> nix::Result<Vec<Vec<u8>>> {
    // A `Dir` owns its descriptor and reads from its current offset: give it a fresh one.
    let fd = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = Dir::from_fd(fd)?;
    let mut out = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(name.to_vec());
        }
    }
    Ok(out)
}

/// True for a directory's `stat`.
pub(crate) fn is_dir(st: &Stat) -> bool {
    st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR
}
