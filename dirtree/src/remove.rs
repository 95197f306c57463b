//! Removing a tree of any depth.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::level::{Levels, PopError, is_dir, list, open_dir, os, stat_at};
use crate::{Error, Result, is_plain_name};

/// Removes `name` in `dir` and, for a directory, everything below it, never following a
/// symlink. Returns whether anything was there. Refuses a name that is not plain
/// ([`is_plain_name`](crate::is_plain_name)). Paths in errors are relative to `dir`.
pub fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<bool> {
    remove_in(dir, name, Path::new(""))
}

/// Removes whatever is at `path` (a file, a symlink, or a directory with everything below
/// it), never following a symlink. Returns whether anything was there.
pub fn remove_all(path: &Path) -> Result<bool> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::NotPlainName {
            name: path.display().to_string(),
        });
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = match nix::fcntl::open(
        parent,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(Error::io("open", parent.to_owned(), e)),
    };
    remove_in(dir.as_fd(), name.as_bytes(), parent)
}

/// [`remove_at`], with `shown` the path of `dir` in errors.
fn remove_in(dir: BorrowedFd<'_>, name: &[u8], shown: &Path) -> Result<bool> {
    if !is_plain_name(name) {
        return Err(Error::NotPlainName {
            name: String::from_utf8_lossy(name).into_owned(),
        });
    }
    let mut path = shown.join(os(name));
    let st = match stat_at(dir, name) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(Error::io("stat", path, e)),
    };
    if !is_dir(&st) {
        return unlink(dir, name, UnlinkatFlags::NoRemoveDir, &path);
    }
    let fd = match open_dir(dir, name) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    // Each level holds the names left in it; `path` ends with the deepest level's own
    // name, which removes it once it is empty.
    let mut levels: Levels<Vec<u8>> = Levels::new();
    descend(&mut levels, fd, &path)?;
    loop {
        let next = levels.top().and_then(|l| l.todo.pop());
        match next {
            Some(child) => {
                path.push(os(&child));
                let Some(here) = levels.top_fd() else {
                    return Ok(true);
                };
                match remove_entry(here, &child, &path)? {
                    Some(sub) => descend(&mut levels, sub, &path)?,
                    None => {
                        path.pop();
                    }
                }
            }
            None => {
                let left = levels.pop().map_err(|e| match e {
                    PopError::Os(e) => Error::io("reopen the parent of", path.clone(), e),
                    PopError::Moved(_) => Error::Moved {
                        path: parent_of(&path),
                    },
                })?;
                drop(left);
                let own = path.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
                let parent = levels.top_fd().unwrap_or(dir);
                unlink(parent, own, UnlinkatFlags::RemoveDir, &path)?;
                path.pop();
                if levels.depth() == 0 {
                    return Ok(true);
                }
            }
        }
    }
}

/// Opens a level: lists the directory `fd` (at `path`).
fn descend(levels: &mut Levels<Vec<u8>>, fd: OwnedFd, path: &Path) -> Result<()> {
    let st = nix::sys::stat::fstat(&fd).map_err(|e| Error::io("stat", path.to_owned(), e))?;
    let todo = list(fd.as_fd()).map_err(|e| Error::io("list", path.to_owned(), e))?;
    levels.push(fd, &st, todo, 0);
    Ok(())
}

/// Removes `name` in `dir` when it is not a directory; returns the directory opened
/// when it is one (to be emptied first).
fn remove_entry(dir: BorrowedFd<'_>, name: &[u8], path: &Path) -> Result<Option<OwnedFd>> {
    match unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => {}
        Err(e) => return Err(Error::io("unlink", path.to_owned(), e)),
    }
    match open_dir(dir, name) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::io("open", path.to_owned(), e)),
    }
}

fn unlink(dir: BorrowedFd<'_>, name: &[u8], flags: UnlinkatFlags, path: &Path) -> Result<bool> {
    let what = match flags {
        UnlinkatFlags::RemoveDir => "remove directory",
        UnlinkatFlags::NoRemoveDir => "unlink",
    };
    match unlinkat(dir, os(name), flags) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(Error::io(what, path.to_owned(), e)),
    }
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_owned).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn removes_a_tree_far_deeper_than_the_stack_and_descriptor_limits_allow() {
        let tmp = tempfile::tempdir().expect("tempdir");
        testkit::deep_dirs(tmp.path(), 20_000);
        assert!(remove_all(&tmp.path().join("d")).expect("remove"));
        assert!(!tmp.path().join("d").exists());
        assert!(!remove_all(&tmp.path().join("d")).expect("second remove"));
    }

    #[test]
    fn removal_never_follows_a_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let keep = tmp.path().join("keep");
        std::fs::create_dir(&keep).expect("mkdir");
        std::fs::write(keep.join("precious"), b"x").expect("write");
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).expect("mkdir");
        symlink(&keep, tree.join("a/b/link")).expect("symlink");
        symlink(&keep, tmp.path().join("toplink")).expect("symlink");
        assert!(remove_all(&tree).expect("remove"));
        assert!(remove_all(&tmp.path().join("toplink")).expect("remove link"));
        assert!(keep.join("precious").exists());
    }

    #[test]
    fn removal_refuses_names_that_are_not_one_component() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("d")).expect("mkdir");
        let dir = nix::fcntl::open(
            &tmp.path().join("d"),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .expect("open");
        for name in [&b".."[..], b".", b"", b"a/b", b"a\0b"] {
            assert!(
                matches!(
                    remove_at(dir.as_fd(), name),
                    Err(Error::NotPlainName { .. })
                ),
                "{name:?}"
            );
        }
        assert!(tmp.path().join("d").exists());
    }

    #[test]
    fn removes_directories_with_thousands_of_entries() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("sub/sub")).expect("mkdir");
        for i in 0..2000 {
            std::fs::write(tree.join(format!("f{i}")), b"").expect("write");
        }
        std::fs::write(tree.join("sub/sub/f"), b"").expect("write");
        assert!(remove_all(&tree).expect("remove"));
        assert!(!tree.exists());
    }
}
