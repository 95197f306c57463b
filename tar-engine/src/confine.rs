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
use nix::unistd::{UnlinkatFlags, unlinkat};

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

/// True for a name that can stand as one directory entry: not empty, not `.` or `..`, and
/// free of `/` and NUL. Every removal by name checks it, so no name, whatever an archive
/// made of it, can reach a directory itself or its parent.
pub fn is_plain_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}

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
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    dirs: HashMap<Vec<u8>, Rc<OwnedFd>>,
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
        Ok(Root {
            fd,
            path: path.to_owned(),
            dirs: HashMap::new(),
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

    fn cache(&mut self, rel: &[u8], fd: OwnedFd) -> Rc<OwnedFd> {
        if self.dirs.len() >= DIR_CACHE_MAX {
            self.dirs.clear();
        }
        let fd = Rc::new(fd);
        self.dirs.insert(rel.to_vec(), fd.clone());
        fd
    }

    /// Opens the directory `rel` (normalised) inside the root, following symlinks as if
    /// the root were `/`. `Ok(None)` when it does not exist.
    pub fn lookup_dir(&mut self, rel: &[u8]) -> Result<Option<Rc<OwnedFd>>> {
        if let Some(fd) = self.dirs.get(rel) {
            return Ok(Some(fd.clone()));
        }
        let opened = if rel.is_empty() {
            self.fd
                .try_clone()
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
        } else {
            openat2(self.fd.as_fd(), os(rel), dir_how())
        };
        match opened {
            Ok(fd) => Ok(Some(self.cache(rel, fd))),
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
        match openat2(self.fd.as_fd(), os(rel), how) {
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
        if let Some(fd) = self.lookup_dir(rel)? {
            return Ok(fd);
        }
        // Walk down from the root, creating what is missing. Each prefix is reopened from
        // the root with RESOLVE_IN_ROOT so symlinks met on the way stay confined.
        let mut parent = self.lookup_dir(b"")?.ok_or_else(|| {
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
            parent = match self.lookup_dir(prefix)? {
                Some(fd) => fd,
                None => {
                    match mkdirat(parent.as_fd(), os(name), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(Error::io(
                                format!("create directory {}", self.display(prefix)),
                                e,
                            ));
                        }
                    }
                    self.lookup_dir(prefix)?.ok_or_else(|| {
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
        remove_tree(dir, name)
    }
}

/// The file type bits of a `stat` result.
pub fn file_kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn is_dir(st: &FileStat) -> bool {
    file_kind(st) == SFlag::S_IFDIR
}

/// Removes `name` below `dir` recursively (fd-relative, no-follow). Refuses a name that
/// is not plain ([`is_plain_name`]): `..` would name the parent of `dir`, `.` `dir` itself.
fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> Result<bool> {
    if !is_plain_name(name) {
        return Err(Error::io(
            format!(
                "remove {:?}: not a plain name (empty, `.`, `..`, or holding `/` or NUL)",
                String::from_utf8_lossy(name)
            ),
            Errno::EINVAL,
        ));
    }
    let st = match fstatat(dir, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => {
            return Err(Error::io(
                format!("stat {} for removal", String::from_utf8_lossy(name)),
                e,
            ));
        }
    };
    if is_dir(&st) {
        let sub = openat(
            dir,
            os(name),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {} for removal", String::from_utf8_lossy(name)))?;
        let children = list_dir(sub.as_fd())
            .map_err(|e| Error::io(format!("list {}", String::from_utf8_lossy(name)), e))?;
        for child in children {
            remove_tree(sub.as_fd(), &child)?;
        }
        unlinkat(dir, os(name), UnlinkatFlags::RemoveDir)
            .ctx(|| format!("remove directory {}", String::from_utf8_lossy(name)))?;
    } else {
        unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir)
            .ctx(|| format!("remove {}", String::from_utf8_lossy(name)))?;
    }
    Ok(true)
}

/// The names in a directory (without `.` and `..`).
pub fn list_dir(dir: BorrowedFd<'_>) -> std::result::Result<Vec<Vec<u8>>, Errno> {
    // Dir takes ownership of a descriptor and rewinds nothing, so give it a fresh one.
    let fd = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

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
