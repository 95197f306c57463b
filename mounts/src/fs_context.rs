//! The new mount API's filesystem context (`fsopen`, `fsconfig`, `fsmount`,
//! `move_mount`), with the messages the kernel leaves on it read into every failure.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create, fsconfig_set_flag,
    fsconfig_set_string, fsmount, fsopen, move_mount,
};

/// One filesystem being configured for a mount.
pub(crate) struct FsContext {
    fd: OwnedFd,
}

/// A step of the new mount API that failed: what was being done, with what the kernel
/// logged about it, and the OS error. Callers name the mount in front of it.
#[derive(Debug)]
pub(crate) struct Failed {
    /// The step (`fsconfig source=/dev/loop3`, `fsmount`…) and the kernel's messages.
    pub step: String,
    /// The OS error.
    pub source: std::io::Error,
}

impl FsContext {
    /// `fsopen(fstype)`.
    pub fn open(fstype: &str) -> Result<FsContext, Failed> {
        fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)
            .map(|fd| FsContext { fd })
            .map_err(|e| Failed {
                step: "fsopen".into(),
                source: e.into(),
            })
    }

    /// `fsconfig(FSCONFIG_SET_STRING, key, value)`.
    pub fn set(&self, key: &str, value: impl AsRef<Path>) -> Result<(), Failed> {
        let value = value.as_ref();
        fsconfig_set_string(&self.fd, key, value)
            .map_err(|e| self.failed(format!("fsconfig {key}={}", value.display()), e))
    }

    /// `fsconfig(FSCONFIG_SET_FLAG, key)`.
    pub fn flag(&self, key: &str) -> Result<(), Failed> {
        fsconfig_set_flag(&self.fd, key).map_err(|e| self.failed(format!("fsconfig {key}"), e))
    }

    /// Creates the superblock, makes a mount of it (read-only or not) and attaches it at
    /// `target`. `what` says what was configured, for the error of the create step.
    pub fn mount_at(self, target: &Path, read_only: bool, what: &str) -> Result<(), Failed> {
        fsconfig_create(&self.fd).map_err(|e| self.failed(format!("create {what}"), e))?;
        let attrs = if read_only {
            MountAttrFlags::MOUNT_ATTR_RDONLY
        } else {
            MountAttrFlags::empty()
        };
        let mnt = fsmount(&self.fd, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
            .map_err(|e| self.failed("fsmount".into(), e))?;
        move_mount(
            &mnt,
            "",
            rustix::fs::CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| Failed {
            step: "move_mount".into(),
            source: e.into(),
        })
    }

    fn failed(&self, step: String, e: rustix::io::Errno) -> Failed {
        let log = self.kernel_log();
        let step = if log.is_empty() {
            step
        } else {
            format!("{step} (kernel: {log})")
        };
        Failed {
            step,
            source: e.into(),
        }
    }

    /// Reads the messages the kernel left on the context (`e overlay: …` lines).
    fn kernel_log(&self) -> String {
        let Ok(dup) = self.fd.try_clone() else {
            return String::new();
        };
        let mut file = std::fs::File::from(dup);
        let mut lines = Vec::new();
        let mut buf = [0u8; 1024];
        // Each read returns one message; the context has no more when a read fails.
        for _ in 0..16 {
            match file.read(&mut buf) {
                Ok(n) if n > 0 => lines.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned()),
                _ => break,
            }
        }
        lines.join("; ")
    }
}
