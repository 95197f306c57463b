//! Confined, fd-relative filesystem operations under one root directory.
//!
//! Every path is first normalised lexically (no leading `/`, `.` dropped, `..` clamped at
//! the root), then its parent directory is opened with `openat2(RESOLVE_IN_ROOT)`, so the
//! kernel resolves symlinks as if the root were `/`: an absolute symlink or a `..` chain
//! lands inside the root, never outside. The last component is then created, replaced or
//! removed relative to that directory's descriptor with no-follow calls. Nothing outside
//! the root can be reached, whatever the archive holds.
//!
//! Opened directories are cached by path; the whole cache is dropped whenever anything is
//! removed, since a removal is the only way a cached path can come to mean another directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat};

use storage_core::{Error, IoContext, Result};

/// Normalises an archive name lexically: drops empty and `.` components and any leading
/// `/`, and resolves `..` against the components before it, never going above the root.
/// The result has no leading or trailing `/`; the empty vector names the root itself.
pub fn normalize(name: &[u8]) -> Vec<u8> {
    let mut out: Vec<&[u8]> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join(&b'/')
}

pub use dirtree::is_plain_name;

/// Splits a normalised path into its parent and its last component.
pub fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// A path as the OS sees it.
pub fn os(path: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(path))
}

/// How many opened directories the cache keeps before it starts over.
const DIR_CACHE_MAX: usize = 1024;

/// A root directory and the directories opened below it.
///
/// It also knows how long each directory's real path below the root is (where it is once
/// symlinks are followed), so a writer can refuse an entry that would land deeper than
/// [`MAX_PATH`](crate::entry::MAX_PATH) however short its name in the archive.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// Opened directories by normalised path, with their real path's length.
    dirs: HashMap<Vec<u8>, (Rc<OwnedFd>, usize)>,
    /// The real path's length of every directory measured or made so far, by device and
    /// inode: what a symlink leads to is found here whatever name reached it.
    lens: HashMap<(u64, u64), usize>,
    /// The root as `/proc/self/fd` shows it, to measure directories made by others.
    shown: Option<Vec<u8>>,
    /// The directories [`Root::dir`] made because a path needed them.
    made: Vec<Vec<u8>>,
}

/// `openat2`, asked again while the kernel answers `EAGAIN`
/// ([`storage_core::file_stat::retry_raced`]).
pub fn openat2_in_root(dir: BorrowedFd<'_>, path: &Path, how: OpenHow) -> nix::Result<OwnedFd> {
    storage_core::file_stat::retry_raced(|| openat2(dir, path, how), |e| *e == Errno::EAGAIN)
}

fn dir_how() -> OpenHow {
    OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

impl Root {
    /// Opens `path`, which must be an existing directory.
    pub fn open(path: &Path) -> Result<Self> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open root directory {}", path.display()))?;
        let st =
            nix::sys::stat::fstat(&fd).ctx(|| format!("stat root directory {}", path.display()))?;
        Ok(Root {
            shown: proc_path(fd.as_fd()),
            fd,
            path: path.to_owned(),
            dirs: HashMap::new(),
            lens: HashMap::from([((st.st_dev, st.st_ino), 0)]),
            made: Vec::new(),
        })
    }

    /// The root's own descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The root's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `root/rel` for messages.
    pub fn display(&self, rel: &[u8]) -> String {
        self.path.join(os(rel)).display().to_string()
    }

    /// Forgets every cached directory (after anything was removed or replaced).
    pub fn invalidate(&mut self) {
        self.dirs.clear();
    }

    fn cache(&mut self, rel: &[u8], fd: OwnedFd) -> Result<(Rc<OwnedFd>, usize)> {
        if self.dirs.len() >= DIR_CACHE_MAX {
            self.dirs.clear();
        }
        let len = self.measure(fd.as_fd(), rel)?;
        let fd = Rc::new(fd);
        self.dirs.insert(rel.to_vec(), (fd.clone(), len));
        Ok((fd, len))
    }

    /// The length of the real path below the root of the directory `fd` (opened as `rel`).
    fn measure(&mut self, fd: BorrowedFd<'_>, rel: &[u8]) -> Result<usize> {
        let st = nix::sys::stat::fstat(fd).ctx(|| format!("stat {}", self.display(rel)))?;
        if let Some(&len) = self.lens.get(&(st.st_dev, st.st_ino)) {
            return Ok(len);
        }
        // Made before this writer came (a volume's or a layer's earlier content): ask the
        // kernel where it is. A path too long to show is too long to keep.
        let len = match (&self.shown, proc_path(fd)) {
            (Some(root), Some(here)) => match here.strip_prefix(root.as_slice()) {
                Some([]) => 0,
                Some([b'/', below @ ..]) => below.len(),
                _ => rel.len(),
            },
            (Some(_), None) => usize::MAX,
            (None, _) => rel.len(),
        };
        self.lens.insert((st.st_dev, st.st_ino), len);
        Ok(len)
    }

    /// Opens the directory `name` in the open directory `parent` (whose real path is
    /// `parent_len` bytes long), without following a symlink, and keeps it as `rel`: one
    /// `openat`, where looking `rel` up from the root would walk its whole depth again.
    pub fn open_child_dir(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_len: usize,
        name: &[u8],
        rel: &[u8],
    ) -> Result<Rc<OwnedFd>> {
        let fd = openat(
            parent,
            os(name),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open directory {}", self.display(rel)))?;
        if self.dirs.len() >= DIR_CACHE_MAX {
            self.dirs.clear();
        }
        let fd = Rc::new(fd);
        self.dirs
            .insert(rel.to_vec(), (fd.clone(), child_len(parent_len, name)));
        Ok(fd)
    }

    /// The directories [`Root::dir`] made because a path needed them (their paths as
    /// asked, which may cross symlinks), forgetting them.
    pub fn take_made(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.made)
    }

    /// Records the directory `name` just made in `parent`, whose real path is
    /// `parent_len` bytes long: returns the length of its own.
    pub fn made_dir(&mut self, parent: BorrowedFd<'_>, parent_len: usize, name: &[u8]) -> usize {
        let len = child_len(parent_len, name);
        if let Ok(st) = fstatat(parent, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
            self.lens.insert((st.st_dev, st.st_ino), len);
        }
        len
    }

    /// Opens the directory `rel` (normalised) inside the root, following symlinks as if
    /// the root were `/`. `Ok(None)` when it does not exist.
    pub fn lookup_dir(&mut self, rel: &[u8]) -> Result<Option<Rc<OwnedFd>>> {
        Ok(self.lookup(rel)?.map(|d| d.0))
    }

    /// [`Root::lookup_dir`], with the length of the directory's real path.
    fn lookup(&mut self, rel: &[u8]) -> Result<Option<(Rc<OwnedFd>, usize)>> {
        if let Some(d) = self.dirs.get(rel) {
            return Ok(Some(d.clone()));
        }
        let opened = if rel.is_empty() {
            self.fd
                .try_clone()
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
        } else {
            openat2_in_root(self.fd.as_fd(), os(rel), dir_how())
        };
        match opened {
            Ok(fd) => Ok(Some(self.cache(rel, fd)?)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(Error::io(
                format!("open directory {}", self.display(rel)),
                e,
            )),
        }
    }

    /// Whether the directory `rel` is reached without crossing a symlink: `Ok(true)` when it
    /// is, `Ok(false)` when a symlink is on the way; a missing component is neither (the
    /// directories [`Root::dir`] would make for it are plain), so it answers `Ok(true)`.
    pub fn reached_without_symlinks(&self, rel: &[u8]) -> Result<bool> {
        if rel.is_empty() {
            return Ok(true);
        }
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
        match openat2_in_root(self.fd.as_fd(), os(rel), how) {
            Ok(_) | Err(Errno::ENOENT) => Ok(true),
            Err(Errno::ELOOP) => Ok(false),
            Err(e) => Err(Error::io(
                format!("open directory {}", self.display(rel)),
                e,
            )),
        }
    }

    /// Opens the directory `rel`, creating it and any missing parents with mode 0755.
    pub fn dir(&mut self, rel: &[u8]) -> Result<Rc<OwnedFd>> {
        Ok(self.dir_len(rel)?.0)
    }

    /// [`Root::dir`], with the length of the directory's real path below the root.
    pub fn dir_len(&mut self, rel: &[u8]) -> Result<(Rc<OwnedFd>, usize)> {
        if let Some(d) = self.lookup(rel)? {
            return Ok(d);
        }
        // Walk down from the root, creating what is missing. Each prefix is reopened from
        // the root with RESOLVE_IN_ROOT so symlinks met on the way stay confined.
        let mut parent = self.lookup(b"")?.ok_or_else(|| {
            Error::io(format!("open root {}", self.path.display()), Errno::ENOENT)
        })?;
        let mut end = 0;
        while end < rel.len() {
            let next = rel[end..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(rel.len(), |i| end + i);
            let prefix = &rel[..next];
            let name = &rel[end..next];
            parent = match self.lookup(prefix)? {
                Some(d) => d,
                None => {
                    match mkdirat(parent.0.as_fd(), os(name), Mode::from_bits_truncate(0o755)) {
                        Ok(()) => {
                            self.made_dir(parent.0.as_fd(), parent.1, name);
                            self.made.push(prefix.to_vec());
                        }
                        Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(Error::io(
                                format!("create directory {}", self.display(prefix)),
                                e,
                            ));
                        }
                    }
                    self.lookup(prefix)?.ok_or_else(|| {
                        Error::io(
                            format!(
                                "open directory {} (a dangling symlink on the way?)",
                                self.display(prefix)
                            ),
                            Errno::ENOENT,
                        )
                    })?
                }
            };
            end = next + 1;
        }
        Ok(parent)
    }

    /// `lstat` of `name` in `dir`; `None` when it does not exist.
    pub fn stat_at(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<FileStat>> {
        match fstatat(dir, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(Error::io(
                format!("stat {}", String::from_utf8_lossy(name)),
                e,
            )),
        }
    }

    /// Removes `name` in `dir` and, for a directory, everything below it, never following
    /// a symlink. Returns whether anything was there. Drops the directory cache.
    pub fn remove_at(&mut self, dir: BorrowedFd<'_>, name: &[u8]) -> Result<bool> {
        self.invalidate();
        dirtree::remove_at(dir, name).map_err(|e| {
            Error::io(
                format!(
                    "remove {} below {}",
                    String::from_utf8_lossy(name),
                    self.path.display()
                ),
                e,
            )
        })
    }
}

/// The length of `name`'s path in a directory whose path is `parent_len` bytes long.
pub fn child_len(parent_len: usize, name: &[u8]) -> usize {
    match parent_len {
        0 => name.len(),
        n => n.saturating_add(1 + name.len()),
    }
}

/// Where the kernel says the open `fd` is (`/proc/self/fd`), `None` when it cannot say
/// (no `/proc`, or a path longer than `PATH_MAX`).
fn proc_path(fd: BorrowedFd<'_>) -> Option<Vec<u8>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStringExt;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ok()
        .map(|p| p.into_os_string().into_vec())
}

/// The file type bits of a `stat` result.
pub fn file_kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// The names in a directory (without `.` and `..`).
pub use dirtree::list as list_dir;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_clamps_dotdot_and_absolute_names_at_the_root() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a/b/c", b"a/b/c"),
            (b"./a//b/", b"a/b"),
            (b"/etc/passwd", b"etc/passwd"),
            (b"../escaped", b"escaped"),
            (b"a/../../x", b"x"),
            (b"a/b/../c", b"a/c"),
            (b"..", b""),
            (b"./", b""),
        ];
        for (input, want) in cases {
            assert_eq!(
                normalize(input),
                want.to_vec(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn split_last_separates_parent_and_name() {
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_last(b"c"), (&b""[..], &b"c"[..]));
    }

    #[test]
    fn dirs_resolve_symlinks_inside_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root_path = outer.path().join("root");
        std::fs::create_dir(&root_path).unwrap();
        std::os::unix::fs::symlink("/", root_path.join("abs")).unwrap();
        std::os::unix::fs::symlink("../..", root_path.join("up")).unwrap();
        let mut root = Root::open(&root_path).unwrap();
        // Both symlinks lead to the root itself; creating through them stays inside.
        let d = root.dir(b"abs/new/dir").unwrap();
        nix::sys::stat::mkdirat(d.as_fd(), "leaf", Mode::from_bits_truncate(0o755)).unwrap();
        assert!(root_path.join("new/dir/leaf").is_dir());
        root.dir(b"up/other").unwrap();
        assert!(root_path.join("other").is_dir());
        assert!(!outer.path().join("other").exists());
    }

    #[test]
    fn remove_at_refuses_dot_dotdot_and_empty_names() {
        let outer = tempfile::tempdir().unwrap();
        let root_path = outer.path().join("root");
        std::fs::create_dir_all(root_path.join("d")).unwrap();
        std::fs::write(outer.path().join("sibling"), b"keep").unwrap();
        std::fs::write(root_path.join("d/child"), b"keep").unwrap();
        let mut root = Root::open(&root_path).unwrap();
        let d = root.dir(b"d").unwrap();
        for name in [&b".."[..], b".", b"", b"a/b", b"a\0b"] {
            assert!(root.remove_at(d.as_fd(), name).is_err(), "{name:?}");
        }
        let top = root.dir(b"").unwrap();
        assert!(root.remove_at(top.as_fd(), b"..").is_err());
        assert!(outer.path().join("sibling").exists());
        assert!(root_path.join("d/child").exists());
    }

    #[test]
    fn remove_at_does_not_follow_symlinks() {
        let outer = tempfile::tempdir().unwrap();
        let keep = outer.path().join("keep");
        std::fs::create_dir(&keep).unwrap();
        std::fs::write(keep.join("precious"), b"x").unwrap();
        let root_path = outer.path().join("root");
        std::fs::create_dir_all(root_path.join("d")).unwrap();
        std::os::unix::fs::symlink(&keep, root_path.join("d/link")).unwrap();
        let mut root = Root::open(&root_path).unwrap();
        let top = root.dir(b"").unwrap();
        assert!(root.remove_at(top.as_fd(), b"d").unwrap());
        assert!(!root_path.join("d").exists());
        assert!(keep.join("precious").exists());
        assert!(!root.remove_at(top.as_fd(), b"d").unwrap());
    }
}
