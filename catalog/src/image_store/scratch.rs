//! The `scratch` image: the root of every image store, carrying the port layer's base
//! filesystem structure.

use storage_core::error::{Error, Result};

/// The id of every image store's root image.
pub const SCRATCH: &str = "scratch";

/// Directories every image starts with.
const DIRS: &[&str] = &["etc", "lib", "lib/modules", "run", "proc", "sys"];

/// Empty files the runtime fills in.
const FILES: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// The tar stream of scratch's filesystem: the directories above, the empty files, and
/// `/etc/mtab -> /proc/mounts`. Times are zero so that every store's scratch is alike.
pub(crate) fn tar() -> Result<Vec<u8>> {
    let err = |e: std::io::Error| Error::io("build the scratch layer", e);
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h
    };
    for dir in DIRS {
        let mut h = header(tar::EntryType::Directory, 0o755);
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())
            .map_err(err)?;
    }
    for file in FILES {
        let mut h = header(tar::EntryType::Regular, 0o644);
        b.append_data(&mut h, file, std::io::empty()).map_err(err)?;
    }
    let mut h = header(tar::EntryType::Symlink, 0o777);
    b.append_link(&mut h, "etc/mtab", "/proc/mounts")
        .map_err(err)?;
    b.into_inner().map_err(err)
}
