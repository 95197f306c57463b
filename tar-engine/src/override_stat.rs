//! `user.containers.override_stat`: the owner, mode and type an unprivileged writer could
//! not give an entry, recorded on the entry itself as containers-storage records them.
//!
//! An unprivileged process cannot `chown` what it creates, nor make devices, so
//! containers-storage (`pkg/idtools`, `FormatContainersOverrideXattrDevice` and
//! `parseOverrideXattr`) keeps what the archive said in this xattr, and fuse-overlayfs
//! presents it as the entry's stat. The value is `UID:GID:MODE[:TYPE]`: decimal ids, the
//! permission bits with setuid, setgid and sticky in octal (written with four digits), and
//! the type: `file`, `dir`, `symlink`, `pipe`, `socket`, `block-MAJOR-MINOR` or
//! `char-MAJOR-MINOR` (without it, the entry's own type stands). Only regular files and
//! directories can carry a `user.*` xattr, so a device or FIFO is stored as an empty
//! regular file whose record names it, and a symlink's owner cannot be recorded at all.
//!
//! This module owns the value's format and reading and writing it on an open entry; what
//! is recorded when is the directory writer's ([`crate::apply`]), and how a recorded entry
//! leaves in a tar is the exporter's ([`crate::export`]).

use std::fmt;
use std::os::fd::BorrowedFd;

use storage_core::archive::{FileKind, Stat};
use storage_core::{Error, Result};

/// The xattr's name, as containers-storage and fuse-overlayfs spell it.
pub const OVERRIDE_STAT_XATTR: &str = "user.containers.override_stat";

/// The record fuse-overlayfs writes itself when mounted with `xattr_permissions=2`: the
/// owner and mode a process in the mount gave an entry it created, copied up or
/// changed, in the same `UID:GID:MODE` form. Where an entry has both, this one is the
/// newer (written through the mount) and is the one read, unless it names the entry's
/// real owner: fuse-overlayfs 1.10 copies a directory up with its real owner in its own
/// record and the image's record beside it, and the image's is then the true one.
pub const FUSE_OVERLAYFS_STAT_XATTR: &str = "user.fuseoverlayfs.override_stat";

/// What the record says an entry is, past its permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideKind {
    /// `file`: a regular file.
    File,
    /// `dir`: a directory.
    Dir,
    /// `symlink`: a symbolic link.
    Symlink,
    /// `pipe`: a FIFO.
    Pipe,
    /// `socket`: a socket.
    Socket,
    /// `block-MAJOR-MINOR`: a block device.
    Block {
        /// Major device number.
        major: u32,
        /// Minor device number.
        minor: u32,
    },
    /// `char-MAJOR-MINOR`: a character device.
    Char {
        /// Major device number.
        major: u32,
        /// Minor device number.
        minor: u32,
    },
}

/// One `user.containers.override_stat` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverrideStat {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits with setuid, setgid and sticky (`0o7777` at most).
    pub mode: u32,
    /// The entry's type; `None` when the record names none (the entry's own type stands).
    pub kind: Option<OverrideKind>,
}

impl fmt::Display for OverrideStat {
    /// The value as containers-storage writes it: `0:0:0755:dir`, `0:5:0620:char-136-0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{:04o}", self.uid, self.gid, self.mode & 0o7777)?;
        match self.kind {
            None => Ok(()),
            Some(OverrideKind::File) => f.write_str(":file"),
            Some(OverrideKind::Dir) => f.write_str(":dir"),
            Some(OverrideKind::Symlink) => f.write_str(":symlink"),
            Some(OverrideKind::Pipe) => f.write_str(":pipe"),
            Some(OverrideKind::Socket) => f.write_str(":socket"),
            Some(OverrideKind::Block { major, minor }) => write!(f, ":block-{major}-{minor}"),
            Some(OverrideKind::Char { major, minor }) => write!(f, ":char-{major}-{minor}"),
        }
    }
}

impl OverrideStat {
    /// Parses a record read from the entry `path` (named in the error). Read as
    /// containers-storage reads it: at least three `:`-separated fields, a type that
    /// starts with one of the known names, device numbers after the first two `-`
    /// (anything past them is ignored, for values written by a newer writer).
    pub fn parse(value: &[u8], path: &dyn fmt::Display) -> Result<OverrideStat> {
        let bad = |why: String| Error::InvalidArchive {
            entry: Some(path.to_string()),
            reason: format!(
                "its {OVERRIDE_STAT_XATTR} record {:?} is not UID:GID:MODE[:TYPE]: {why}",
                String::from_utf8_lossy(value)
            ),
        };
        let text = std::str::from_utf8(value).map_err(|_| bad("not UTF-8".into()))?;
        let fields: Vec<&str> = text.split(':').collect();
        if fields.len() < 3 {
            return Err(bad(format!("{} field(s), at least 3 needed", fields.len())));
        }
        let uid = fields[0]
            .parse::<u32>()
            .map_err(|e| bad(format!("owner {:?}: {e}", fields[0])))?;
        let gid = fields[1]
            .parse::<u32>()
            .map_err(|e| bad(format!("group {:?}: {e}", fields[1])))?;
        // Type bits past the permissions are ignored, as containers-storage and
        // fuse-overlayfs do (fuse-overlayfs writes a whole `st_mode`, `40755`).
        let mode = u32::from_str_radix(fields[2], 8)
            .map_err(|e| bad(format!("mode {:?}: {e}", fields[2])))?
            & 0o7777;
        let kind = match fields.get(3) {
            None => None,
            Some(t) => Some(parse_kind(t).map_err(bad)?),
        };
        Ok(OverrideStat {
            uid,
            gid,
            mode,
            kind,
        })
    }

    /// The stat an entry whose real stat is `real` is presented with: owner, group and
    /// mode from the record, and the type it names. A device, FIFO or socket is stored
    /// as an empty regular file; any other change of type (a record naming a directory
    /// on a file, say) is refused as an error naming `path`.
    pub fn apply(&self, real: &Stat, path: &dyn fmt::Display) -> Result<Stat> {
        let mut st = real.clone();
        st.uid = self.uid;
        st.gid = self.gid;
        st.mode = self.mode;
        let Some(kind) = self.kind else {
            return Ok(st);
        };
        let (named, rdev) = match kind {
            OverrideKind::File => (FileKind::File, 0),
            OverrideKind::Dir => (FileKind::Dir, 0),
            OverrideKind::Symlink => (FileKind::Symlink, 0),
            OverrideKind::Pipe => (FileKind::Fifo, 0),
            OverrideKind::Socket => (FileKind::Socket, 0),
            OverrideKind::Block { major, minor } => (
                FileKind::Block,
                nix::sys::stat::makedev(major.into(), minor.into()),
            ),
            OverrideKind::Char { major, minor } => (
                FileKind::Char,
                nix::sys::stat::makedev(major.into(), minor.into()),
            ),
        };
        let node = matches!(
            named,
            FileKind::Block | FileKind::Char | FileKind::Fifo | FileKind::Socket
        );
        if named == real.kind {
            st.rdev = rdev;
        } else if node && real.kind == FileKind::File && real.size == 0 {
            st.kind = named;
            st.rdev = rdev;
            st.size = 0;
        } else {
            return Err(Error::InvalidArchive {
                entry: Some(path.to_string()),
                reason: format!(
                    "its {OVERRIDE_STAT_XATTR} record says {self} but it is a {:?} of {} bytes",
                    real.kind, real.size
                ),
            });
        }
        Ok(st)
    }

    /// Writes this record on the open file or directory `fd` (`path` names it in errors),
    /// under containers-storage's name and under fuse-overlayfs's own: fuse-overlayfs
    /// before 1.14 (Debian 12 ships 1.10) reads its own first, and a layer it mounts as a
    /// writable upper with `xattr_permissions=2` must carry it on every entry, or
    /// listing and creating there fail. The value is the same; fuse-overlayfs reads
    /// `UID:GID:MODE` and leaves the type.
    pub fn set(&self, fd: BorrowedFd<'_>, path: &dyn fmt::Display) -> Result<()> {
        let value = self.to_string();
        for name in [OVERRIDE_STAT_XATTR, FUSE_OVERLAYFS_STAT_XATTR] {
            rustix::fs::fsetxattr(fd, name, value.as_bytes(), rustix::fs::XattrFlags::empty())
                .map_err(|e| {
                    Error::io(format!("record the owner and mode of {path} in {name}"), e)
                })?;
        }
        Ok(())
    }

    /// Reads the record of `entry` (which of fuse-overlayfs's and containers-storage's:
    /// [`FUSE_OVERLAYFS_STAT_XATTR`]), `None` when it has none. `owner` is the entry's real
    /// `(uid, gid)` when the caller has stat'ed it already; otherwise the entry is stat'ed,
    /// only when it carries both records. `path` names it in errors.
    pub fn get(
        entry: RecordOn<'_>,
        owner: Option<(u32, u32)>,
        path: &dyn fmt::Display,
    ) -> Result<Option<OverrideStat>> {
        let xattr = |name: &str, buf: &mut [u8]| match entry {
            RecordOn::Open(fd) => rustix::fs::fgetxattr(fd, name, buf),
            RecordOn::Path(p) => rustix::fs::lgetxattr(p, name, buf),
        };
        let read = |name: &str| -> Result<Option<OverrideStat>> {
            crate::tree::get_xattr_with(&xattr, name, path)?
                .map(|v| OverrideStat::parse(&v, path))
                .transpose()
        };
        let real = || -> Result<(u32, u32)> {
            if let Some(owner) = owner {
                return Ok(owner);
            }
            let st = match entry {
                RecordOn::Open(fd) => rustix::fs::fstat(fd),
                RecordOn::Path(p) => rustix::fs::lstat(p),
            };
            st.map(|st| (st.st_uid, st.st_gid))
                .map_err(|e| Error::io(format!("stat {path}"), e))
        };
        choose(
            read(FUSE_OVERLAYFS_STAT_XATTR)?,
            read(OVERRIDE_STAT_XATTR)?,
            real,
        )
    }
}

/// Where [`OverrideStat::get`] reads a record.
#[derive(Debug, Clone, Copy)]
pub enum RecordOn<'a> {
    /// An open file or directory.
    Open(BorrowedFd<'a>),
    /// The entry at a path, not followed if it is a symlink (which has no record).
    Path(&'a std::path::Path),
}

/// Which record stands, of fuse-overlayfs's and containers-storage's (see
/// [`FUSE_OVERLAYFS_STAT_XATTR`]); `real` gives the entry's real owner.
fn choose(
    fuse: Option<OverrideStat>,
    containers: Option<OverrideStat>,
    real: impl FnOnce() -> Result<(u32, u32)>,
) -> Result<Option<OverrideStat>> {
    Ok(match (fuse, containers) {
        (Some(f), Some(c)) if (f.uid, f.gid) == real()? => Some(c),
        (Some(f), Some(c)) => Some(OverrideStat {
            // fuse-overlayfs writes no type: the image's record still says what a
            // stored node is.
            kind: c.kind,
            ..f
        }),
        (f, c) => f.or(c),
    })
}

/// The type field of a record.
fn parse_kind(t: &str) -> std::result::Result<OverrideKind, String> {
    let device = |t: &str| -> std::result::Result<(u32, u32), String> {
        let mut parts = t.split('-').skip(1);
        let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
            return Err(format!("device type {t:?} has no MAJOR-MINOR"));
        };
        let num = |s: &str, what: &str| {
            s.parse::<u32>()
                .map_err(|e| format!("{what} number {s:?} of {t:?}: {e}"))
        };
        Ok((num(major, "major")?, num(minor, "minor")?))
    };
    // Prefixes, as containers-storage matches them.
    Ok(if t.starts_with("file") {
        OverrideKind::File
    } else if t.starts_with("dir") {
        OverrideKind::Dir
    } else if t.starts_with("symlink") {
        OverrideKind::Symlink
    } else if t.starts_with("pipe") {
        OverrideKind::Pipe
    } else if t.starts_with("socket") {
        OverrideKind::Socket
    } else if t.starts_with("block-") {
        let (major, minor) = device(t)?;
        OverrideKind::Block { major, minor }
    } else if t.starts_with("char-") {
        let (major, minor) = device(t)?;
        OverrideKind::Char { major, minor }
    } else {
        return Err(format!("unknown type {t:?}"));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(uid: u32, gid: u32, mode: u32, kind: Option<OverrideKind>) -> OverrideStat {
        OverrideStat {
            uid,
            gid,
            mode,
            kind,
        }
    }

    /// The values containers-storage's own test expects (`pkg/idtools/idtools_test.go`,
    /// `TestFormatContainersOverrideXattrDevice`), written and read back.
    #[test]
    fn formats_as_containers_storage_and_parses_back() {
        use OverrideKind::*;
        let cases = [
            (rec(1000, 1011, 0o644, Some(File)), "1000:1011:0644:file"),
            (rec(1001, 1012, 0o755, Some(Dir)), "1001:1012:0755:dir"),
            (
                rec(1002, 1013, 0o777, Some(Symlink)),
                "1002:1013:0777:symlink",
            ),
            (rec(1003, 1014, 0o666, Some(Pipe)), "1003:1014:0666:pipe"),
            (
                rec(1004, 1015, 0o700, Some(Socket)),
                "1004:1015:0700:socket",
            ),
            (
                rec(1005, 1016, 0o600, Some(Block { major: 8, minor: 0 })),
                "1005:1016:0600:block-8-0",
            ),
            (
                rec(1006, 1017, 0o600, Some(Char { major: 1, minor: 3 })),
                "1006:1017:0600:char-1-3",
            ),
            (rec(1012, 1022, 0o4755, Some(File)), "1012:1022:4755:file"),
            (rec(1013, 1023, 0o2755, Some(File)), "1013:1023:2755:file"),
            (rec(1014, 1024, 0o1777, Some(File)), "1014:1024:1777:file"),
            (rec(1042, 1052, 0o001, Some(File)), "1042:1052:0001:file"),
            (rec(0, 0, 0o755, None), "0:0:0755"),
            (rec(u32::MAX, 7, 0o7777, Some(Dir)), "4294967295:7:7777:dir"),
        ];
        for (stat, text) in cases {
            assert_eq!(stat.to_string(), text);
            assert_eq!(OverrideStat::parse(text.as_bytes(), &"x").unwrap(), stat);
        }
    }

    #[test]
    fn reads_what_other_writers_may_add() {
        // fuse-overlayfs writes modes without the leading zero; a newer writer may add
        // fields past the device numbers.
        let s = OverrideStat::parse(b"0:0:755:dir", &"d").unwrap();
        assert_eq!(s, rec(0, 0, 0o755, Some(OverrideKind::Dir)));
        // fuse-overlayfs's own records carry a whole st_mode and no type.
        let s = OverrideStat::parse(b"1000:1000:40755", &"d").unwrap();
        assert_eq!(s, rec(1000, 1000, 0o755, None));
        let s = OverrideStat::parse(b"5:6:0620:char-136-2-extra", &"tty").unwrap();
        assert_eq!(
            s.kind,
            Some(OverrideKind::Char {
                major: 136,
                minor: 2
            })
        );
    }

    #[test]
    fn refuses_garbage_naming_the_path_and_the_value() {
        for bad in [
            &b""[..],
            b"0:0",
            b"root:0:0755:file",
            b"0:-1:0755:file",
            b"0:0:0789:file",
            b"0:0:0644:door",
            b"0:0:0600:char-1",
            b"0:0:0600:block-x-1",
            b"0:0:0644:\xff",
            b"\xff:0:0644",
        ] {
            let err = OverrideStat::parse(bad, &"usr/bin/tool").unwrap_err();
            let text = storage_core::Report(&err).to_string();
            assert!(text.contains("usr/bin/tool"), "{text}");
            assert!(text.contains(OVERRIDE_STAT_XATTR), "{text}");
        }
    }

    #[test]
    fn a_record_written_through_the_mount_wins_unless_it_names_the_real_owner() {
        let image = rec(0, 0, 0o755, Some(OverrideKind::Dir));
        let chowned = rec(33, 33, 0o700, None);
        let copied_up = rec(1000, 1000, 0o755, None);
        let real = || Ok((1000, 1000));
        let got = choose(Some(chowned), Some(image), real).unwrap();
        assert_eq!(got, Some(rec(33, 33, 0o700, Some(OverrideKind::Dir))));
        assert_eq!(
            choose(Some(copied_up), Some(image), real).unwrap(),
            Some(image)
        );
        assert_eq!(
            choose(Some(copied_up), None, real).unwrap(),
            Some(copied_up)
        );
        assert_eq!(choose(None, Some(image), real).unwrap(), Some(image));
        assert_eq!(choose(None, None, real).unwrap(), None);
    }

    fn file_stat(kind: FileKind, size: u64) -> Stat {
        Stat {
            kind,
            mode: 0o600,
            uid: 1000,
            gid: 1000,
            size,
            mtime: 1,
            mtime_nsec: 0,
            rdev: 0,
            dev: 1,
            ino: 2,
            nlink: 1,
        }
    }

    #[test]
    fn a_node_stored_as_an_empty_file_comes_back_as_the_node() {
        let real = file_stat(FileKind::File, 0);
        let rec = OverrideStat::parse(b"0:0:0666:char-1-3", &"dev/null").unwrap();
        let st = rec.apply(&real, &"dev/null").unwrap();
        assert_eq!(st.kind, FileKind::Char);
        assert_eq!(st.rdev, nix::sys::stat::makedev(1, 3));
        assert_eq!((st.uid, st.gid, st.mode), (0, 0, 0o666));
    }

    #[test]
    fn a_record_that_changes_what_an_entry_is_is_refused() {
        let rec = OverrideStat::parse(b"0:0:0755:dir", &"etc").unwrap();
        let err = rec
            .apply(&file_stat(FileKind::File, 3), &"etc")
            .unwrap_err();
        assert!(storage_core::Report(&err).to_string().contains("etc"));
        let node = OverrideStat::parse(b"0:0:0600:char-1-3", &"n").unwrap();
        assert!(node.apply(&file_stat(FileKind::File, 3), &"n").is_err());
        assert!(node.apply(&file_stat(FileKind::Dir, 0), &"n").is_err());
    }
}
