//! The rules every archive writer applies to an entry, decided once.
//!
//! A tar entry reaches a directory, an NFS volume or an ext4 image; what it may name, what
//! a whiteout is, which extended attributes never enter and how PAX values are read must not
//! depend on which. Writers ask here:
//! - [`check_name`], [`check_link_target`]: a name or link target holding NUL, or a name
//!   component longer than [`NAME_MAX`], is refused (no filesystem can store it, and a NUL
//!   would cut the name short in a C string);
//! - [`check_path_len`]: a path longer than [`MAX_PATH`] below the root is refused, both as
//!   the archive names it and where it lands after symlinks, so no archive builds a tree
//!   deeper than any walk of it will go;
//! - [`whiteout`]: `.wh.NAME` hides `NAME` below, `.wh..wh..opq` makes its directory
//!   opaque, other `.wh..wh.` names (aufs metadata) carry nothing and are left out, and
//!   `.wh.` followed by nothing, `.` or `..` is refused: it would name the directory
//!   itself or its parent;
//! - [`reserved_xattr`]: overlay markers (`trusted.overlay.*`, `user.overlay.*`) are the
//!   storage's own and never enter from an archive;
//! - [`pax_time`]: `[-]SECONDS[.FRACTION]`, with negative fractions counted down from the
//!   second below (`-1.5` is 1.5 s before the epoch); [`Time::clamped`]: times are kept
//!   within what ext4 stores (1901 to 2446), as the kernel clamps them on ext4.
//!
//! Whiteouts act on what lies *below* the archive (the lower layers, or what a volume
//! held before the import), never on what the same archive wrote, as the OCI image spec
//! says; [`Written`] keeps the record a writer needs for that. Two rules keep that record
//! true on every writer: a whiteout must reach its directory without crossing a symlink
//! ([`WHITEOUT_THROUGH_SYMLINK`]; through one it would name what its archive wrote by
//! another path), and an opaque marker for the root is refused (overlayfs ignores it on a
//! lower layer's root, so the stores that stack layers could not keep it).

use std::collections::HashSet;

use crate::confine::is_plain_name;
use storage_core::{Error, Result};

/// Prefix of an OCI whiteout file name.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name of the OCI opaque-directory marker.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Prefix of whiteout metadata names (aufs's `.wh..wh.plnk` and the like).
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// The overlay xattr that makes a directory opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The mark fuse-overlayfs sets itself on a directory made through its mount when it may
/// not set [`OVERLAY_OPAQUE_XATTR`].
pub const FUSE_OVERLAYFS_OPAQUE_XATTR: &str = "user.fuseoverlayfs.opaque";
/// The same mark in the `user.` namespace, which an unprivileged writer can set: what
/// containers-storage writes when rootless, read by fuse-overlayfs and by overlayfs
/// mounted with `userxattr`.
pub const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";
/// Why a whiteout whose directory is reached through a symlink is refused, on every writer.
/// What an archive wrote is known by its names, and through a symlink a whiteout would
/// name it otherwise: it could remove what its own archive wrote.
pub const WHITEOUT_THROUGH_SYMLINK: &str =
    "a whiteout or opaque marker must reach its directory without crossing a symlink";
/// Longest name component any writer stores (Linux's `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest path, in bytes, an entry may have below its root: Linux's `PATH_MAX` less its
/// NUL. It bounds the name in the archive and also where the entry lands once symlinks
/// inside the root are followed, which is what bounds a tree's depth (at most 2,048
/// levels): an archive cannot use symlinks to build a tree deeper than its names are
/// long. Every walk of a stored tree (changes, export, sizes) stops with a clear error at
/// the same limit, so what imports can be exported and imported again.
pub const MAX_PATH: usize = 4095;

/// A time: seconds since the epoch and nanoseconds (`0..1e9`) after them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time {
    /// Seconds since the epoch (negative before it).
    pub secs: i64,
    /// Nanoseconds after `secs`.
    pub nanos: u32,
}

impl Time {
    /// The earliest time stored: ext4's (and the kernel's clamp on ext4), 1901-12-13.
    pub const MIN: Time = Time {
        secs: -(1 << 31),
        nanos: 0,
    };
    /// The latest time stored: ext4's with 34-bit seconds, 2446-05-10.
    pub const MAX: Time = Time {
        secs: (1 << 34) - (1 << 31) - 1,
        nanos: 0,
    };

    /// `self` within [`Time::MIN`]..=[`Time::MAX`], as the kernel keeps a time on ext4: a
    /// time at either bound or past it is the bound itself, with no nanoseconds.
    pub fn clamped(self) -> Time {
        if self.secs <= Time::MIN.secs {
            Time::MIN
        } else if self.secs >= Time::MAX.secs {
            Time::MAX
        } else {
            self
        }
    }
}

/// What a whiteout entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// `.wh.NAME`: `NAME`, in the entry's directory, is hidden.
    Hides(&'a [u8]),
    /// `.wh..wh..opq`: whatever lies below in the entry's directory is hidden.
    Opaque,
    /// Another `.wh..wh.` name: metadata of other layer formats, left out.
    Meta,
}

/// Reads the last component `base` of the entry `raw` as a whiteout: `None` for an
/// ordinary name. Refuses `.wh.` followed by nothing, `.` or `..`.
pub fn whiteout<'a>(raw: &[u8], base: &'a [u8]) -> Result<Option<Whiteout<'a>>> {
    let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(None);
    };
    if base == OPAQUE_MARKER {
        return Ok(Some(Whiteout::Opaque));
    }
    if base.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(Some(Whiteout::Meta));
    }
    if !is_plain_name(hidden) {
        return Err(unsafe_entry(
            raw,
            "a whiteout must name one entry; `.wh.` followed by nothing, `.` or `..` would name the directory itself or its parent",
        ));
    }
    Ok(Some(Whiteout::Hides(hidden)))
}

/// Refuses an entry name that no writer can store as it is: one holding a NUL byte, or
/// with a component longer than [`NAME_MAX`] bytes.
pub fn check_name(raw: &[u8]) -> Result<()> {
    check_link_target(raw, "name", raw)?;
    if let Some(long) = raw.split(|&b| b == b'/').find(|c| c.len() > NAME_MAX) {
        return Err(invalid_entry(
            raw,
            format!(
                "its name has a component of {} bytes; at most {NAME_MAX} are stored",
                long.len()
            ),
        ));
    }
    Ok(())
}

/// Refuses an entry whose path below the root, `path` (normalised, or where the entry
/// lands after symlinks are followed), is longer than [`MAX_PATH`].
pub fn check_path_len(raw: &[u8], path_len: usize) -> Result<()> {
    if path_len > MAX_PATH {
        return Err(invalid_entry(
            raw,
            format!(
                "its path below the root is {path_len} bytes long (after following symlinks \
                 in the archive); at most {MAX_PATH} are stored"
            ),
        ));
    }
    Ok(())
}

/// Refuses a link target (`what`: "symlink target", "hard link target") of the entry
/// `raw` that holds a NUL byte, which would cut it short in a C string.
pub fn check_link_target(raw: &[u8], what: &str, target: &[u8]) -> Result<()> {
    if target.contains(&0) {
        return Err(invalid_entry(raw, format!("its {what} holds a NUL byte")));
    }
    Ok(())
}

fn invalid_entry(raw: &[u8], reason: String) -> Error {
    Error::InvalidArchive {
        entry: Some(String::from_utf8_lossy(raw).into_owned()),
        reason,
    }
}

/// True for xattrs the storage itself owns (overlay markers in the `trusted.` and
/// `user.` namespaces, which overlayfs reads from a lower layer, fuse-overlayfs's own
/// `user.fuseoverlayfs.*`, and the owner and mode an unprivileged writer records,
/// [`crate::override_stat`]): they never enter from an archive and never leave in one
/// (a recorded owner leaves as the entry's owner).
pub fn reserved_xattr(name: &[u8]) -> bool {
    if name == crate::override_stat::OVERRIDE_STAT_XATTR.as_bytes() {
        return true;
    }
    ["trusted.overlay", "user.overlay", "user.fuseoverlayfs"]
        .iter()
        .any(|p| {
            name.strip_prefix(p.as_bytes())
                .is_some_and(|rest| rest.is_empty() || rest[0] == b'.')
        })
}

/// Parses a PAX time, `[-]SECONDS[.FRACTION]`, into a normalised [`Time`] (nanoseconds in
/// `0..1e9`): `-1.5` is two seconds before the epoch plus half a second. Fractions past
/// nanoseconds are cut. `None` when it is not such a number or does not fit.
pub fn pax_time(v: &[u8]) -> Option<Time> {
    let s = std::str::from_utf8(v).ok()?;
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let nanos = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let (secs, nanos) = match (negative, nanos) {
        (false, n) => (secs, n),
        (true, 0) => (secs.checked_neg()?, 0),
        (true, n) => (secs.checked_neg()?.checked_sub(1)?, 1_000_000_000 - n),
    };
    Some(Time { secs, nanos })
}

/// The refusal of a hard link `raw` whose `target` is not in the target tree, the same on
/// every writer.
pub fn missing_link_target(raw: &[u8], target: &[u8]) -> Error {
    unsafe_entry(
        raw,
        format!(
            "hard link target {:?} does not exist in the target",
            String::from_utf8_lossy(target)
        ),
    )
}

/// An [`Error::UnsafeArchive`] about the entry `name`.
pub fn unsafe_entry(name: &[u8], reason: impl Into<String>) -> Error {
    Error::UnsafeArchive {
        entry: String::from_utf8_lossy(name).into_owned(),
        reason: reason.into(),
    }
}

/// The paths an archive has written, and their ancestors: a whiteout acts on what lies
/// below the archive, never on what the same archive wrote.
///
/// Every entry of every import is noted here, so the sets use foldhash, seeded per
/// process: several times faster than the standard SipHash on short paths, and still
/// keyed, so an archive cannot choose paths that collide.
#[derive(Debug, Default)]
pub struct Written {
    paths: PathSet,
    ancestors: PathSet,
}

/// A set of archive paths.
type PathSet = HashSet<Vec<u8>, foldhash::fast::RandomState>;

impl Written {
    /// Records that `rel` was written.
    pub fn note(&mut self, rel: Vec<u8>) {
        let mut end = rel.len();
        while let Some(i) = rel[..end].iter().rposition(|&b| b == b'/') {
            end = i;
            // Ancestors are noted from the deepest up, so the first one known ends the walk.
            if self.ancestors.contains(&rel[..end]) {
                break;
            }
            self.ancestors.insert(rel[..end].to_vec());
        }
        self.paths.insert(rel);
    }

    /// True when `rel` or something below it was written, so a whiteout must spare it.
    pub fn spares(&self, rel: &[u8]) -> bool {
        self.paths.contains(rel) || self.ancestors.contains(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_naming_the_directory_or_its_parent_are_refused() {
        for base in [&b".wh."[..], b".wh..", b".wh..."] {
            assert!(
                matches!(whiteout(base, base), Err(Error::UnsafeArchive { .. })),
                "{}",
                String::from_utf8_lossy(base)
            );
        }
        assert_eq!(
            whiteout(b"x", b".wh.x").unwrap(),
            Some(Whiteout::Hides(b"x"))
        );
        assert_eq!(
            whiteout(b"x", b".wh....").unwrap(),
            Some(Whiteout::Hides(b"..."))
        );
        assert_eq!(
            whiteout(b"x", b".wh..x").unwrap(),
            Some(Whiteout::Hides(b".x"))
        );
        assert_eq!(
            whiteout(b"x", OPAQUE_MARKER).unwrap(),
            Some(Whiteout::Opaque)
        );
        assert_eq!(
            whiteout(b"x", b".wh..wh.plnk").unwrap(),
            Some(Whiteout::Meta)
        );
        assert_eq!(whiteout(b"x", b".wh").unwrap(), None);
        assert_eq!(whiteout(b"x", b"a.wh.b").unwrap(), None);
    }

    #[test]
    fn names_with_nul_or_overlong_components_are_refused() {
        assert!(check_name(b"a\0b").is_err());
        assert!(check_name(&[b'x'; 256]).is_err());
        assert!(check_name(&[b'x'; 255]).is_ok());
        let mut deep = vec![b'x'; 255];
        deep.extend_from_slice(b"/y");
        assert!(check_name(&deep).is_ok());
        assert!(check_link_target(b"l", "symlink target", b"/a\0b").is_err());
        assert!(check_link_target(b"l", "symlink target", &[b'x'; 300]).is_ok());
    }

    #[test]
    fn overlay_markers_are_reserved_in_every_namespace_overlay_reads() {
        for name in [
            "trusted.overlay.opaque",
            "trusted.overlay.redirect",
            "trusted.overlay",
            "user.overlay.opaque",
            "user.overlay.origin",
            "user.overlay",
            "user.containers.override_stat",
            "user.fuseoverlayfs.override_stat",
            "user.fuseoverlayfs.opaque",
        ] {
            assert!(reserved_xattr(name.as_bytes()), "{name}");
        }
        for name in [
            "user.overlayfs",
            "trusted.overlayx.a",
            "security.overlay.opaque",
            "security.capability",
            "user.mime_type",
            "user.containers.override_statx",
        ] {
            assert!(!reserved_xattr(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn pax_times_count_negative_fractions_down_from_the_second_below() {
        let t = |s: &str| pax_time(s.as_bytes()).map(|t| (t.secs, t.nanos));
        assert_eq!(
            t("1600000000.123456789"),
            Some((1_600_000_000, 123_456_789))
        );
        assert_eq!(t("1600000000.5"), Some((1_600_000_000, 500_000_000)));
        assert_eq!(t("12"), Some((12, 0)));
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("-0.5"), Some((-1, 500_000_000)));
        assert_eq!(t("-1"), Some((-1, 0)));
        assert_eq!(t("-0"), Some((0, 0)));
        assert_eq!(t("1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(t("x"), None);
        assert_eq!(t(""), None);
        assert_eq!(t("-"), None);
        assert_eq!(t("1.5e3"), None);
        assert_eq!(t("+1"), None);
        assert_eq!(t("99999999999999999999"), None);
        assert_eq!(t("-9223372036854775808.5"), None);
    }
}
