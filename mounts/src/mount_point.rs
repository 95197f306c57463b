//! A mount point: is something mounted there, and taking it down.

use std::path::Path;

use storage_core::{Error, Result};

/// Unmounts `target` (lazily, so a busy mount goes once its users leave). Not being
/// mounted is not an error.
pub fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io(format!("unmount {}", target.display()), e)),
    }
}

/// True when something is mounted at `target`: its device differs from its parent's, or
/// it cannot be reached at all because it is a FUSE mount whose server died (`ENOTCONN`),
/// which is still mounted until someone unmounts it.
///
/// One `stat` of each, no read of the mount table: cheap enough to ask for every layer
/// of a store. A bind mount of a directory of the same filesystem is not seen; nothing
/// strata mounts is one.
pub fn is_mounted(target: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(Ok(parent)) = target.parent().map(std::fs::metadata) else {
        return false;
    };
    match std::fs::metadata(target) {
        Ok(me) => me.dev() != parent.dev(),
        Err(e) => e.raw_os_error() == Some(nix::errno::Errno::ENOTCONN as i32),
    }
}
