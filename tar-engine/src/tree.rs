//! Reading directory trees: sorted depth-first walks, metadata snapshots and xattrs.

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use storage_core::archive::Stat;
use storage_core::{Error, IoContext, Result};

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
        if crate::entry::reserved_xattr(name.as_bytes()) {
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
pub(crate) fn get_xattr_with(
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

/// The xattrs that mark an overlay upper/diff directory opaque: the kernel's, in the
/// `trusted.` namespace, and with `unprivileged` the ones an unprivileged writer or
/// fuse-overlayfs sets in the `user.` namespace (which anyone owning the directory can
/// set, so a process running as root does not read them:
/// [`storage_core::archive::unprivileged_marks`]).
fn opaque_marks(unprivileged: bool) -> &'static [&'static str] {
    const ALL: [&str; 3] = [
        crate::entry::OVERLAY_OPAQUE_XATTR,
        crate::entry::USER_OPAQUE_XATTR,
        crate::entry::FUSE_OVERLAYFS_OPAQUE_XATTR,
    ];
    if unprivileged { &ALL } else { &ALL[..1] }
}

/// True when an overlay upper/diff directory is marked opaque ([`opaque_marks`]).
pub fn is_opaque(path: &Path, unprivileged: bool) -> Result<bool> {
    for name in opaque_marks(unprivileged) {
        if get_xattr(path, name)?.is_some_and(|v| v == b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// True when the open overlay upper/diff directory `dir` is marked opaque
/// ([`opaque_marks`]).
pub fn is_opaque_fd(dir: BorrowedFd<'_>, unprivileged: bool) -> bool {
    opaque_marks(unprivileged)
        .iter()
        .any(|name| flag_set(dir, name))
}

/// Whether the open `dir` carries the xattr `name` with the value `y`, as overlay's
/// marks are set.
fn flag_set(dir: BorrowedFd<'_>, name: &str) -> bool {
    let mut v = [0u8; 2];
    matches!(rustix::fs::fgetxattr(dir, name, &mut v[..]), Ok(1) if v[0] == b'y')
}

/// True when `name` in the directory `dir` is one of the marks fuse-overlayfs leaves in a
/// directory it made opaque through its mount besides its xattr (an empty file
/// `.wh..wh..opq` and a whiteout `.wh..opq`): the xattr already says the directory is
/// opaque, and these are not content. Only in a directory fuse-overlayfs marked, so a
/// file of that name anywhere else is kept.
pub fn is_fuse_overlayfs_mark(dir: BorrowedFd<'_>, name: &[u8], unprivileged: bool) -> bool {
    if !unprivileged || (name != b".wh..wh..opq" && name != b".wh..opq") {
        return false;
    }
    flag_set(dir, crate::entry::FUSE_OVERLAYFS_OPAQUE_XATTR)
}

/// Starts a walk of the stored tree `root`, limited to paths of
/// [`MAX_PATH`](crate::entry::MAX_PATH) bytes, as every walk of a stored tree is.
pub fn walk(root: &Path) -> Result<dirtree::Walk> {
    dirtree::Walk::open(root, crate::entry::MAX_PATH).map_err(walk_error)
}

/// A walk's error in the contract's terms: a path past the limit is
/// [`Error::Unsupported`] ([`too_long`]); anything else is the OS error it came from.
pub fn walk_error(e: dirtree::Error) -> Error {
    match e {
        dirtree::Error::TooLong {
            path, root, len, ..
        } => too_long(&root.display(), &path, len),
        e => Error::io("walk", e),
    }
}

/// The error for `path`, `len` bytes long below `root`, past
/// [`MAX_PATH`](crate::entry::MAX_PATH): what no walk of a stored tree reads.
pub fn too_long(root: &dyn fmt::Display, path: &Path, len: usize) -> Error {
    Error::Unsupported {
        what: format!(
            "a path {len} bytes long below {root} ({})",
            dirtree::abbreviated(path)
        ),
        reason: format!(
            "strata reads trees whose paths are at most {} bytes long",
            crate::entry::MAX_PATH
        ),
    }
}
