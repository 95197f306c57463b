//! What is mounted from a block device, read from `/proc/self/mountinfo`: a disk whose
//! server died takes every filesystem on its loop device with it, and those mounts have
//! to go before the device can.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The mount points (in this mount namespace) of filesystems on block device `device`,
/// deepest first, so that they can be unmounted in that order.
pub(crate) fn mounted_from(device: &Path) -> Result<Vec<PathBuf>> {
    let rdev = std::fs::metadata(device)
        .map_err(|e| Error::io(device, "reading the device number", e))?
        .rdev();
    let wanted = format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    );
    let table = Path::new("/proc/self/mountinfo");
    let text = std::fs::read(table).map_err(|e| Error::io(table, "reading", e))?;
    let mut found: Vec<PathBuf> = text
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            // mount id, parent id, major:minor, root, mount point, ...
            let mut fields = line.split(|&b| b == b' ');
            let number = fields.nth(2)?;
            let point = fields.nth(1)?;
            (number == wanted.as_bytes()).then(|| unescape(point))
        })
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(found)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Unmounts `target` lazily (it goes once its last user leaves). Not mounted is fine.
pub(crate) fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io(target, "unmounting", e.into())),
    }
}

/// True when something is mounted at `target` (its device differs from its parent's, or
/// it cannot be reached any more, as a FUSE mount whose server died).
pub(crate) fn is_mounted(target: &Path) -> bool {
    let Some(parent) = target.parent().and_then(|p| std::fs::metadata(p).ok()) else {
        return false;
    };
    match std::fs::metadata(target) {
        Ok(me) => me.dev() != parent.dev(),
        // ENOTCONN: a FUSE mount whose server is gone.
        Err(e) => e.raw_os_error() == Some(107),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_undone() {
        assert_eq!(
            unescape(br"/mnt/a\040b\134c\011"),
            PathBuf::from("/mnt/a b\\c\t")
        );
        assert_eq!(unescape(br"/x\04"), PathBuf::from(r"/x\04"));
    }
}
