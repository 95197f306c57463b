//! Mounting overlay stacks: the new mount API with one `lowerdir+` per layer where the
//! kernel has it (Linux 6.8+), classic `mount(2)` with a `lowerdir=` list otherwise.
//!
//! The kernel stacks at most 500 lower layers in one overlay, and a classic mount's option
//! string must fit in a page. Deeper chains are nested ([`CountedMounts::plan_overlay`]):
//! groups of layers are mounted as read-only overlays first and passed as single lowers.
//!
//! [`CountedMounts::plan_overlay`]: crate::CountedMounts::plan_overlay

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use storage_core::{Error, Result};

use crate::fs_context::{Failed, FsContext};

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
            let Ok(fs) = FsContext::open("overlay") else {
                return MountApi::Legacy;
            };
            match fs.set("lowerdir+", "/") {
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

    /// True when one mount takes `stack`: at most [`KERNEL_MAX_LOWERS`] lowers, and for
    /// `mount(2)` an option string that fits in a page (the kernel would cut it short).
    pub fn takes(self, stack: &Stack) -> bool {
        stack.lowers.len() <= KERNEL_MAX_LOWERS
            && match self {
                MountApi::LowerdirPlus => true,
                MountApi::Legacy => legacy_options(stack).len() < LEGACY_OPTIONS_MAX,
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
        MountApi::LowerdirPlus => mount_new(stack, target).map_err(|f| fail(target, f)),
        MountApi::Legacy => mount_legacy(stack, target),
    }
}

fn fail(target: &Path, f: Failed) -> Error {
    Error::io(
        format!("mount overlay at {}: {}", target.display(), f.step),
        f.source,
    )
}

/// The overlay features the kernel turns on by default, per its module's parameters,
/// that make an upper directory something other than the plain diff strata reads it as
/// (change lists, diffs, commits): with `redirect_dir` a renamed directory is an xattr
/// pointing into a lower, and with `metacopy` a chown or chmod copies up metadata only,
/// leaving the upper file without its data. A mount with an upper turns each of them off
/// (renaming a lower directory then fails with `EXDEV`, and tools copy instead).
fn upper_options() -> Vec<(&'static str, &'static str)> {
    turned_off(|name| {
        std::fs::read_to_string(Path::new("/sys/module/overlay/parameters").join(name)).ok()
    })
}

/// [`upper_options`] for the module parameters `param` reads.
fn turned_off(param: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, &'static str)> {
    ["redirect_dir", "metacopy"]
        .into_iter()
        .filter(|name| param(name).is_some_and(|v| matches!(v.trim(), "Y" | "y" | "1" | "on")))
        .map(|name| (name, "off"))
        .collect()
}

fn mount_new(stack: &Stack, target: &Path) -> std::result::Result<(), Failed> {
    let fs = FsContext::open("overlay")?;
    for lower in &stack.lowers {
        fs.set("lowerdir+", lower)?;
    }
    if let Some((upper, work)) = &stack.upper {
        fs.set("upperdir", upper)?;
        fs.set("workdir", work)?;
        for (name, value) in upper_options() {
            fs.set(name, value)?;
        }
    }
    let what = format!("with {} lowers", stack.lowers.len());
    fs.mount_at(target, stack.upper.is_none(), &what)
}

/// `lowerdir=a:b:c[,upperdir=u,workdir=w]`.
fn legacy_options(stack: &Stack) -> String {
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
        for (name, value) in upper_options() {
            data.push_str(&format!(",{name}={value}"));
        }
    }
    data
}

fn mount_legacy(stack: &Stack, target: &Path) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    if !MountApi::Legacy.takes(stack) {
        return Err(Error::Unsupported {
            what: format!(
                "mounting an overlay of {} lowers at {} with mount(2)",
                stack.lowers.len(),
                target.display()
            ),
            reason: format!("its options do not fit in {LEGACY_OPTIONS_MAX} bytes"),
        });
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
        Some(legacy_options(stack).as_str()),
    )
    .map_err(|e| {
        fail(
            target,
            Failed {
                step: format!("mount(2) with {} lowers", stack.lowers.len()),
                source: e.into(),
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_mount_turns_off_what_the_module_turns_on_and_nothing_else() {
        let params = |on: &'static [&'static str]| {
            move |name: &str| Some(if on.contains(&name) { "Y\n" } else { "N\n" }.to_owned())
        };
        assert!(turned_off(params(&[])).is_empty());
        assert_eq!(turned_off(params(&["metacopy"])), [("metacopy", "off")]);
        assert_eq!(
            turned_off(params(&["redirect_dir", "metacopy"])),
            [("redirect_dir", "off"), ("metacopy", "off")]
        );
        // A kernel without the parameters has neither feature.
        assert!(turned_off(|_: &str| None).is_empty());
        let stack = Stack {
            lowers: vec![PathBuf::from("/l")],
            upper: Some((PathBuf::from("/u"), PathBuf::from("/w"))),
        };
        assert!(legacy_options(&stack).starts_with("lowerdir=/l,upperdir=/u,workdir=/w"));
    }
}
