//! Mounts for a user without privilege: a layer's stack mounted by `fuse-overlayfs`
//! and taken down with `fusermount3 -u`, as containers-storage mounts with its
//! `mount_program`.
//!
//! The kernel refuses overlay mounts to a process that is not root (outside a user
//! namespace of its own), so such a process stacks the same directories through
//! fuse-overlayfs, which runs as the user and presents each entry's recorded owner and
//! mode (`user.containers.override_stat`, written by the tar engine's unprivileged
//! import) in a layer whose root carries a record, and records what is written through
//! a container's mount itself (`xattr_permissions=2`). It owns the command lines and their
//! errors; which directories are stacked, and the counts, are the driver's and `mounts`'.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use storage_core::{Error, Result};

/// The program that mounts an unprivileged overlay (Debian package `fuse-overlayfs`).
pub const MOUNT_PROGRAM: &str = "fuse-overlayfs";
/// The program that takes a FUSE mount down without privilege (package `fuse3`).
pub const UNMOUNT_PROGRAM: &str = "fusermount3";

/// True when this process mounts through fuse-overlayfs: it is not root. Decided once
/// per process by the effective user; root keeps the kernel's overlay.
pub fn unprivileged() -> bool {
    storage_core::archive::unprivileged_marks()
}

/// Mounts `lowers` (topmost first; at least one) with `upper` and its work directory
/// when read-write, at `target`. fuse-overlayfs forks its server into the background
/// once the mount is up, so the mount is there when this returns.
pub fn mount(lowers: &[PathBuf], upper: Option<(&Path, &Path)>, target: &Path) -> Result<()> {
    let mut opts = String::from("lowerdir=");
    for (i, lower) in lowers.iter().enumerate() {
        if i > 0 {
            opts.push(':');
        }
        opts.push_str(option_path(lower)?);
    }
    if let Some((upper, work)) = upper {
        opts.push_str(",upperdir=");
        opts.push_str(option_path(upper)?);
        opts.push_str(",workdir=");
        opts.push_str(option_path(work)?);
        let has = |name| tar_engine::tree::get_xattr(upper, name).map(|v| v.is_some());
        if has(tar_engine::FUSE_OVERLAYFS_STAT_XATTR)? || !has(tar_engine::OVERRIDE_STAT_XATTR)? {
            // What processes in the mount create, copy up or chown is recorded by
            // fuse-overlayfs itself, in `user.fuseoverlayfs.override_stat`, which strata's
            // imports also write and its exports read. Not on a layer recorded only
            // under containers-storage's name (by containers-storage, say):
            // fuse-overlayfs 1.10 would read only its own records there and fail on
            // every entry.
            opts.push_str(",xattr_permissions=2");
        }
    }
    let what = format!("mount {} with {MOUNT_PROGRAM}", target.display());
    run(
        Command::new(MOUNT_PROGRAM).arg("-o").arg(&opts).arg(target),
        &what,
    )
}

/// Takes the FUSE mount at `target` down (lazily, as the kernel mounts are); nothing
/// mounted there is not an error.
pub fn unmount(target: &Path) -> Result<()> {
    if !mounts::is_mounted(target) {
        return Ok(());
    }
    let what = format!("unmount {} with {UNMOUNT_PROGRAM}", target.display());
    run(
        Command::new(UNMOUNT_PROGRAM)
            .arg("-u")
            .arg("-z")
            .arg(target),
        &what,
    )
}

/// A directory as fuse-overlayfs's options take it: `:` separates lowers and `,`
/// options, and the packaged version reads no escapes, so a path holding either is
/// refused by name.
fn option_path(path: &Path) -> Result<&str> {
    match path.to_str() {
        Some(s) if !s.contains([':', ',', '\\']) => Ok(s),
        _ => Err(Error::Unsupported {
            what: format!("mounting {} with {MOUNT_PROGRAM}", path.display()),
            reason: "its options cannot hold a path that is not UTF-8 or has ':', ',' or '\\'"
                .into(),
        }),
    }
}

/// Runs `command` to its end; a failure to start it or a non-zero exit is an error
/// saying `what` was done, with what the program wrote on standard error.
fn run(command: &mut Command, what: &str) -> Result<()> {
    let out = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::io(what.to_owned(), e))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(Error::io(
        what.to_owned(),
        std::io::Error::other(if said.is_empty() {
            format!("it exited with {}", out.status)
        } else {
            format!("it exited with {}: {said}", out.status)
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_the_options_cannot_hold_is_refused_by_name() {
        let err = mount(&[PathBuf::from("/s/a:b")], None, Path::new("/s/merged")).unwrap_err();
        let text = storage_core::Report(&err).to_string();
        assert!(text.contains("/s/a:b"), "{text}");
        assert!(option_path(Path::new("/s/x,y")).is_err());
        assert_eq!(option_path(Path::new("/s/l/ABC")).unwrap(), "/s/l/ABC");
    }
}
