//! The mount table of this process's mount namespace, as `/proc/self/mountinfo` lists
//! it, and the questions asked of it.
//!
//! A line reads `36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root
//! rw,errors=continue`: ids, device, root, mount point, mount options, optional fields
//! up to a lone `-`, filesystem type, source, superblock options. The kernel writes a
//! space, tab, newline or backslash in a field as a three-digit octal escape (`\040`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use storage_core::{Error, Result};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One mount of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id.
    pub id: u64,
    /// The id of the mount it sits on.
    pub parent: u64,
    /// The major number of the mounted filesystem's device (`st_dev` of its files).
    pub major: u32,
    /// The minor number of the mounted filesystem's device.
    pub minor: u32,
    /// The directory of the filesystem that is mounted (`/` unless only part of it is).
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The mount's own options (`rw,relatime`).
    pub mount_options: String,
    /// The filesystem type (`ext4`, `overlay`).
    pub fstype: String,
    /// The source as the filesystem names it (`/dev/loop3`, `overlay`, `none`).
    pub source: PathBuf,
    /// The superblock's options (`rw,errors=remount-ro`).
    pub super_options: String,
}

/// Reads this process's mount table.
pub fn read() -> Result<Vec<MountEntry>> {
    let text = std::fs::read(MOUNTINFO).map_err(|e| Error::io(format!("read {MOUNTINFO}"), e))?;
    parse(&text).map_err(|(line, reason)| {
        Error::io(
            format!("read {MOUNTINFO}: line {line}"),
            std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
        )
    })
}

/// Where the filesystem on the block device `device` is mounted, in the order the table
/// lists the mounts (unmount them in reverse to take a mount on top of another first).
///
/// A mount matches by device number (whatever path it was mounted through), or by its
/// source when `device` no longer exists. This is what a caller unmounts before it
/// detaches a loop device, or when the server behind one died.
pub fn mount_points_of(device: &Path) -> Result<Vec<PathBuf>> {
    let number = match std::fs::metadata(device) {
        Ok(m) if m.file_type().is_block_device() => {
            use std::os::unix::fs::MetadataExt;
            let rdev = m.rdev();
            Some((rustix::fs::major(rdev), rustix::fs::minor(rdev)))
        }
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io_path("stat", device, e)),
    };
    Ok(read()?
        .into_iter()
        .filter(|m| number == Some((m.major, m.minor)) || m.source == device)
        .map(|m| m.mount_point)
        .collect())
}

/// Parses a mount table; a malformed line is given as its number (from 1) and what is
/// wrong with it.
fn parse(text: &[u8]) -> std::result::Result<Vec<MountEntry>, (usize, String)> {
    text.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(n, line)| parse_line(line).map_err(|reason| (n + 1, reason)))
        .collect()
}

fn parse_line(line: &[u8]) -> std::result::Result<MountEntry, String> {
    let mut fields = line.split(|b| *b == b' ');
    let mut next = |what: &str| {
        fields
            .next()
            .ok_or_else(|| format!("it ends before its {what}"))
    };
    let number = |field: &[u8], what: &str| {
        std::str::from_utf8(field)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("its {what} is not a number"))
    };
    let id = number(next("mount id")?, "mount id")?;
    let parent = number(next("parent id")?, "parent id")?;
    let device = next("device")?;
    let (major, minor) = device
        .iter()
        .position(|b| *b == b':')
        .map(|at| (&device[..at], &device[at + 1..]))
        .ok_or("its device is not major:minor")?;
    let major = u32::try_from(number(major, "major")?).map_err(|e| e.to_string())?;
    let minor = u32::try_from(number(minor, "minor")?).map_err(|e| e.to_string())?;
    let root = path(next("root")?);
    let mount_point = path(next("mount point")?);
    let mount_options = text(next("mount options")?);
    // Optional fields (`shared:1`, `master:2`…) up to a lone `-`.
    while next("separator")? != b"-" {}
    let fstype = text(next("filesystem type")?);
    let source = path(next("source")?);
    let super_options = text(next("superblock options")?);
    Ok(MountEntry {
        id,
        parent,
        major,
        minor,
        root,
        mount_point,
        mount_options,
        fstype,
        source,
        super_options,
    })
}

fn path(field: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

/// Undoes the kernel's escapes: `\` and three octal digits is one byte.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[u8] = b"\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
36 35 7:3 / /mnt/with\\040space\\011and\\012lines rw,relatime shared:1 master:2 - ext4 /dev/loop3 rw,errors=remount-ro
37 35 0:55 /sub /mnt/back\\134slash ro - overlay overlay ro,lowerdir+=/a
";

    #[test]
    fn a_table_parses_with_its_optional_fields_and_escapes_undone() {
        let t = parse(TABLE).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].mount_point, Path::new("/proc"));
        assert_eq!(t[0].fstype, "proc");
        let disk = &t[1];
        assert_eq!(
            (disk.id, disk.parent, disk.major, disk.minor),
            (36, 35, 7, 3)
        );
        assert_eq!(disk.mount_point, Path::new("/mnt/with space\tand\nlines"));
        assert_eq!(disk.fstype, "ext4");
        assert_eq!(disk.source, Path::new("/dev/loop3"));
        assert_eq!(disk.super_options, "rw,errors=remount-ro");
        assert_eq!(t[2].root, Path::new("/sub"));
        assert_eq!(t[2].mount_point, Path::new("/mnt/back\\slash"));
        assert_eq!(t[2].mount_options, "ro");
    }

    #[test]
    fn a_backslash_that_starts_no_octal_escape_is_kept() {
        assert_eq!(unescape(b"a\\b\\0\\777\\1x"), b"a\\b\\0\\777\\1x".to_vec());
        assert_eq!(unescape(b"\\101\\102"), b"AB".to_vec());
    }

    #[test]
    fn a_truncated_line_is_refused_with_its_number() {
        let err = parse(b"22 1 0:21 / /proc rw shared:5 - proc proc rw\n23 1 0:22 / /x rw\n")
            .unwrap_err();
        assert_eq!(err.0, 2);
        assert!(err.1.contains("separator"), "{}", err.1);
        assert_eq!(parse(b"x 1 0:1 / / rw - a b c\n").unwrap_err().0, 1);
    }

    #[test]
    fn this_process_s_table_lists_the_root() {
        let t = read().unwrap();
        assert!(t.iter().any(|m| m.mount_point == Path::new("/")));
    }
}
