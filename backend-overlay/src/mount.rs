//! Mounting overlay stacks: the new mount API with one `lowerdir+` per layer where the
//! kernel has it (Linux 6.8+), classic `mount(2)` with a `lowerdir=` list otherwise.
//!
//! The kernel stacks at most 500 lower layers in one overlay, and a classic mount's option
//! string must fit in a page. Deeper chains are nested by the driver: groups of layers are
//! mounted as read-only overlays first and passed as single lowers.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create,
    fsconfig_set_string, fsmount, fsopen, move_mount,
};
use storage_core::{Error, Result};

/// How overlays get mounted on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountApi {
    /// `fsopen`/`fsconfig("lowerdir+")`/`fsmount`/`move_mount`.
    LowerdirPlus,
    /// `mount(2)` with a `lowerdir=a:b:c` option string.
    Legacy,
}

/// The most lower layers one overlay mount takes (the kernel's `OVL_MAX_STACK`).
pub const KERNEL_MAX_LOWERS: usize = 500;

/// The option string of a classic mount must fit in one page.
const LEGACY_OPTIONS_MAX: usize = 4096;

impl MountApi {
    /// Probes the kernel once: does overlay accept `lowerdir+`?
    pub fn detect() -> MountApi {
        static API: OnceLock<MountApi> = OnceLock::new();
        *API.get_or_init(|| {
            let Ok(fs) = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) else {
                return MountApi::Legacy;
            };
            match fsconfig_set_string(&fs, "lowerdir+", "/") {
                Ok(()) => MountApi::LowerdirPlus,
                Err(_) => MountApi::Legacy,
            }
        })
    }

    /// How many lowers one mount can take when each lower path is `path_len` bytes long.
    pub fn max_lowers(self, path_len: usize) -> usize {
        match self {
            MountApi::LowerdirPlus => KERNEL_MAX_LOWERS,
            MountApi::Legacy => {
                // Room for upperdir=,workdir= and their paths, then `path:` per layer.
                let room = LEGACY_OPTIONS_MAX.saturating_sub(2 * path_len + 64);
                (room / (path_len + 1)).clamp(2, KERNEL_MAX_LOWERS)
            }
        }
    }

    /// A name for `strata status`.
    pub fn describe(self) -> &'static str {
        match self {
            MountApi::LowerdirPlus => "fsopen/fsconfig lowerdir+",
            MountApi::Legacy => "mount(2) lowerdir=",
        }
    }
}

/// One overlay mount to make.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Lower directories, topmost first.
    pub lowers: Vec<PathBuf>,
    /// Upper and work directories; `None` mounts read-only.
    pub upper: Option<(PathBuf, PathBuf)>,
}

/// Mounts `stack` at `target`.
pub fn mount(api: MountApi, stack: &Stack, target: &Path) -> Result<()> {
    match api {
        MountApi::LowerdirPlus => mount_new(stack, target),
        MountApi::Legacy => mount_legacy(stack, target),
    }
}

fn fail(target: &Path, what: String, e: impl Into<std::io::Error>) -> Error {
    Error::io(
        format!("mount overlay at {}: {what}", target.display()),
        e.into(),
    )
}

/// Reads the messages the kernel left on an fs context (`e overlay: …` lines).
fn kernel_log(fs: &OwnedFd) -> String {
    let Ok(dup) = fs.try_clone() else {
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

fn mount_new(stack: &Stack, target: &Path) -> Result<()> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| fail(target, "fsopen".into(), e))?;
    let set = |key: &str, value: &Path| {
        fsconfig_set_string(&fs, key, value).map_err(|e| {
            fail(
                target,
                format!("{key}={} ({})", value.display(), kernel_log(&fs)),
                e,
            )
        })
    };
    for lower in &stack.lowers {
        set("lowerdir+", lower)?;
    }
    if let Some((upper, work)) = &stack.upper {
        set("upperdir", upper)?;
        set("workdir", work)?;
    }
    fsconfig_create(&fs).map_err(|e| {
        fail(
            target,
            format!(
                "create with {} lowers ({})",
                stack.lowers.len(),
                kernel_log(&fs)
            ),
            e,
        )
    })?;
    let attrs = if stack.upper.is_none() {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| fail(target, "fsmount".into(), e))?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| fail(target, "move_mount".into(), e))
}

fn mount_legacy(stack: &Stack, target: &Path) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    let lowers: Vec<String> = stack
        .lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut data = format!("lowerdir={}", lowers.join(":"));
    if let Some((upper, work)) = &stack.upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            upper.display(),
            work.display()
        ));
    }
    let flags = if stack.upper.is_none() {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| {
        fail(
            target,
            format!("mount(2) with {} lowers", stack.lowers.len()),
            e,
        )
    })
}

/// Unmounts `target` (lazily, so a busy mount goes once its users leave). Not being
/// mounted is not an error.
pub fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io(format!("unmount {}", target.display()), e)),
    }
}

/// True when something is mounted at `target` (its device differs from its parent's).
pub fn is_mounted(target: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(me), Some(Ok(parent))) = (
        std::fs::metadata(target),
        target.parent().map(std::fs::metadata),
    ) else {
        return false;
    };
    me.dev() != parent.dev()
}
