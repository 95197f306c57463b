//! [`FileStat`]: one path's metadata inside an object, as a data source or an image store
//! answers `stat`, and the confined lookup that local trees answer it with.

use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use crate::error::{Error, IoContext, ObjectKind, Result};

/// The metadata of one path inside an object (an image's tree, a volume), as VIC's
/// `DataSource.Stat` gave it: enough to tell what is there without exporting it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStat {
    /// The path asked for, as given.
    pub path: String,
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Length in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// The target, for a symlink.
    pub link_target: Option<String>,
}

/// Makes a confined lookup (`openat2` with `RESOLVE_IN_ROOT` or `RESOLVE_BENEATH`) again
/// while it fails with `EAGAIN` (`raced` tells), up to 64 times: the kernel answers so when
/// a rename or a mount anywhere on the system raced the lookup, which says nothing of the
/// path. Any other outcome is returned as it is.
pub fn retry_raced<T, E>(
    mut lookup: impl FnMut() -> std::result::Result<T, E>,
    raced: impl Fn(&E) -> bool,
) -> std::result::Result<T, E> {
    let mut tries = 0;
    loop {
        match lookup() {
            Err(e) if raced(&e) && tries < 64 => tries += 1,
            other => return other,
        }
    }
}

impl FileStat {
    /// The metadata of `path` in the tree at `root`, resolved as if `root` were `/`: `..`
    /// and symlinks on the way cannot leave it, and a symlink at the end is reported,
    /// not followed. A path that is not there is `NotFound` of `kind` (the object the
    /// tree belongs to) naming the path and the tree. Blocking: call it off the async
    /// runtime.
    pub fn in_root(root: &Path, path: &str, kind: ObjectKind) -> Result<FileStat> {
        let dir = std::fs::File::open(root).ctx(|| format!("open {}", root.display()))?;
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let fd = retry_raced(
            || {
                rustix::fs::openat2(
                    &dir,
                    rel,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT,
                )
            },
            |e| *e == rustix::io::Errno::AGAIN,
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => Error::NotFound {
                kind,
                id: format!("path {path} in {}", root.display()),
            },
            e => Error::io(format!("look up {path} in {}", root.display()), e),
        })?;
        let st = rustix::fs::fstat(&fd).ctx(|| format!("stat {path} in {}", root.display()))?;
        let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            let target = rustix::fs::readlinkat(&fd, "", Vec::new())
                .ctx(|| format!("read link {path} in {}", root.display()))?;
            Some(target.to_string_lossy().into_owned())
        } else {
            None
        };
        Ok(FileStat {
            path: path.to_owned(),
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            link_target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raced_lookup_is_made_again_and_given_up_after_64_more_tries() {
        let mut calls = 0;
        let found = retry_raced(
            || {
                calls += 1;
                if calls < 3 { Err("raced") } else { Ok(calls) }
            },
            |e| *e == "raced",
        );
        assert_eq!(found, Ok(3));
        let mut calls = 0;
        let gave_up: std::result::Result<(), &str> = retry_raced(
            || {
                calls += 1;
                Err("raced")
            },
            |e| *e == "raced",
        );
        assert_eq!((gave_up, calls), (Err("raced"), 65));
        let mut calls = 0;
        let other: std::result::Result<(), &str> = retry_raced(
            || {
                calls += 1;
                Err("missing")
            },
            |e| *e == "raced",
        );
        assert_eq!((other, calls), (Err("missing"), 1));
    }

    #[test]
    fn a_symlink_is_reported_not_followed_and_dotdot_stays_in_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), b"box\n").unwrap();
        std::fs::write(dir.path().join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();

        let file = FileStat::in_root(&root, "/etc/hostname", ObjectKind::Volume).unwrap();
        assert_eq!(file.size, 4);
        assert_eq!(file.mode & 0o170000, 0o100000);
        assert_eq!(file.link_target, None);

        let link = FileStat::in_root(&root, "link", ObjectKind::Volume).unwrap();
        assert_eq!(link.link_target.as_deref(), Some("/etc/hostname"));
        assert_eq!(link.mode & 0o170000, 0o120000);

        // Through a symlink on the way, resolved inside the root: `up/etc/hostname` is
        // the root's own file, and `../outside` is not the file beside the root.
        let through = FileStat::in_root(&root, "up/etc/hostname", ObjectKind::Volume).unwrap();
        assert_eq!(through.size, 4);
        let err = FileStat::in_root(&root, "../outside", ObjectKind::Volume).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotFound {
                    kind: ObjectKind::Volume,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("../outside"), "{err}");
    }
}
