//! A sorted depth-first cursor over a tree.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat as Stat, Mode, fstat};

use crate::level::{Levels, PopError, id, is_dir, list, open_dir, os, stat_at};
use crate::{Error, Result};

/// Walks a tree in sorted depth-first order, one entry at a time: [`Walk::next_entry`] gives the
/// next entry (with its `lstat`, and its directory's descriptor to read it by name), and
/// [`Walk::enter`] goes into the directory it just gave, whose entries then come next.
/// A directory not entered is skipped whole. Symlinks are never followed.
///
/// Paths are bytes relative to the root. A path longer than the walk's limit stops the walk
/// with [`Error::TooLong`], so what a caller keeps per entry stays bounded.
pub struct Walk {
    root: PathBuf,
    levels: Levels<Vec<u8>>,
    rel: Vec<u8>,
    max_path: usize,
    /// Where the last entry's name starts in `rel`, and its metadata.
    last: Option<(usize, Stat)>,
}

/// One entry of a [`Walk`].
pub struct Entry<'a> {
    /// Its path below the root.
    pub rel: &'a [u8],
    /// Its name (the last component of `rel`).
    pub name: &'a [u8],
    /// The directory it is in, to reach it with `*at` calls by `name`.
    pub dir: BorrowedFd<'a>,
    /// Its metadata (`lstat`).
    pub stat: Stat,
}

/// A directory a [`Walk`] just went into.
pub struct Entered<'a> {
    /// Its path below the root.
    pub rel: &'a [u8],
    /// Its name.
    pub name: &'a [u8],
    /// The directory it is in.
    pub parent: BorrowedFd<'a>,
    /// The directory itself, open.
    pub dir: BorrowedFd<'a>,
}

impl Walk {
    /// Starts a walk of the directory `root`; no path below it may be longer than
    /// `max_path` bytes.
    pub fn open(root: &Path, max_path: usize) -> Result<Walk> {
        let fd = nix::fcntl::open(
            root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open", root.to_owned(), e))?;
        let st = fstat(&fd).map_err(|e| Error::io("stat", root.to_owned(), e))?;
        let mut walk = Walk {
            root: root.to_owned(),
            levels: Levels::new(),
            rel: Vec::new(),
            max_path,
            last: None,
        };
        let todo = walk.sorted(fd.as_fd())?;
        walk.levels.push(fd, &st, todo, 0);
        Ok(walk)
    }

    /// The full path of `rel`, for messages.
    pub fn shown(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(os(rel))
        }
    }

    /// The next entry, `None` when the walk is over.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_>>> {
        loop {
            let Some(level) = self.levels.top() else {
                return Ok(None);
            };
            let base = level.base;
            let Some(name) = level.todo.pop() else {
                self.last = None;
                self.rel.truncate(base);
                if let Err(e) = self.levels.pop() {
                    let path = self.shown(&self.rel);
                    return Err(match e {
                        PopError::Os(e) => Error::io("reopen the parent of", path, e),
                        PopError::Moved(_) => Error::Moved {
                            path: path.parent().map(Path::to_owned).unwrap_or_default(),
                        },
                    });
                }
                continue;
            };
            self.rel.truncate(base);
            if base > 0 {
                self.rel.push(b'/');
            }
            let start = self.rel.len();
            self.rel.extend_from_slice(&name);
            if self.rel.len() > self.max_path {
                return Err(Error::TooLong {
                    path: self.shown(&self.rel),
                    root: self.root.clone(),
                    len: self.rel.len(),
                    limit: self.max_path,
                });
            }
            let Some(dir) = self.levels.top_fd() else {
                return Ok(None);
            };
            let stat = match stat_at(dir, &name) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(Error::io("stat", self.shown(&self.rel), e)),
            };
            self.last = Some((start, stat));
            let dir = self.levels.top_fd().ok_or_else(|| Error::Moved {
                path: self.root.clone(),
            })?;
            return Ok(Some(Entry {
                rel: &self.rel,
                name: &self.rel[start..],
                dir,
                stat,
            }));
        }
    }

    /// Goes into the directory [`Walk::next_entry`] gave last: its entries come next.
    pub fn enter(&mut self) -> Result<Entered<'_>> {
        let Some((start, st)) = self.last.take() else {
            return Err(Error::io(
                "enter",
                self.shown(&self.rel),
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            ));
        };
        if !is_dir(&st) {
            return Err(Error::io("enter", self.shown(&self.rel), Errno::ENOTDIR));
        }
        let Some(parent) = self.levels.top_fd() else {
            return Err(Error::Moved {
                path: self.root.clone(),
            });
        };
        let fd = open_dir(parent, &self.rel[start..])
            .map_err(|e| Error::io("open", self.shown(&self.rel), e))?;
        let now = fstat(&fd).map_err(|e| Error::io("stat", self.shown(&self.rel), e))?;
        if id(&now) != id(&st) {
            return Err(Error::Moved {
                path: self.shown(&self.rel),
            });
        }
        let todo = self.sorted(fd.as_fd())?;
        self.levels.push(fd, &now, todo, self.rel.len());
        let (Some(parent), Some(dir)) = (self.levels.fd_above(1), self.levels.top_fd()) else {
            return Err(Error::Moved {
                path: self.shown(&self.rel),
            });
        };
        Ok(Entered {
            rel: &self.rel,
            name: &self.rel[start..],
            parent,
            dir,
        })
    }

    /// The names in `dir` (at the walk's current path), sorted so that popping gives them
    /// in ascending order.
    fn sorted(&self, dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>> {
        let mut names = list(dir).map_err(|e| Error::io("list", self.shown(&self.rel), e))?;
        names.sort_unstable_by(|a, b| b.cmp(a));
        Ok(names)
    }
}

impl AsFd for Entry<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::is_dir;

    fn collect(root: &Path, max_path: usize) -> Result<Vec<String>> {
        let mut walk = Walk::open(root, max_path)?;
        let mut out = Vec::new();
        while let Some(e) = walk.next_entry()? {
            out.push(String::from_utf8_lossy(e.rel).into_owned());
            if is_dir(&e.stat) {
                walk.enter()?;
            }
        }
        Ok(out)
    }

    #[test]
    fn walks_in_sorted_depth_first_order_without_following_symlinks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let r = tmp.path();
        std::fs::create_dir_all(r.join("b/c")).expect("mkdir");
        std::fs::create_dir_all(r.join("a")).expect("mkdir");
        std::fs::write(r.join("b/c/f"), b"").expect("write");
        std::fs::write(r.join("b/a"), b"").expect("write");
        std::os::unix::fs::symlink("/", r.join("a/l")).expect("symlink");
        let got = collect(r, 4095).expect("walk");
        assert_eq!(got, ["a", "a/l", "b", "b/a", "b/c", "b/c/f"]);
    }

    #[test]
    fn walks_deeper_than_the_descriptor_window_and_comes_back_up() {
        let tmp = tempfile::tempdir().expect("tempdir");
        testkit::deep_dirs(tmp.path(), 3 * crate::OPEN_LEVELS + 5);
        std::fs::write(tmp.path().join("z"), b"").expect("write");
        let got = collect(tmp.path(), usize::MAX).expect("walk");
        assert_eq!(got.len(), 3 * crate::OPEN_LEVELS + 5 + 2);
        assert_eq!(got.last().map(String::as_str), Some("z"));
    }

    #[test]
    fn a_path_longer_than_the_limit_stops_the_walk_with_an_error_naming_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        testkit::deep_dirs(tmp.path(), 3000);
        match collect(tmp.path(), 4095) {
            Err(Error::TooLong { len, limit, .. }) => {
                assert_eq!(limit, 4095);
                assert!(len > limit);
            }
            other => panic!("expected TooLong, got {:?}", other.map(|v| v.len())),
        }
        crate::remove_all(&tmp.path().join("d")).expect("cleanup");
    }
}
