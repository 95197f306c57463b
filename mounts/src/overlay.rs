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

use storage_core::{Error, IoContext, Result};

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
                MountApi::Legacy => {
                    let options: &[_] = match stack.upper {
                        Some(_) => &PLAIN_UPPER_OPTIONS,
                        None => &[],
                    };
                    legacy_options(stack, options).len() < LEGACY_OPTIONS_MAX
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
    let options = match &stack.upper {
        Some((upper, _)) => upper_options(upper)?,
        None => &[],
    };
    match api {
        MountApi::LowerdirPlus => mount_new(stack, options, target),
        MountApi::Legacy => mount_legacy(stack, options, target),
    }
}

fn fail(target: &Path, f: Failed) -> Error {
    Error::io(
        format!("mount overlay at {}: {}", target.display(), f.step),
        f.source,
    )
}

/// The file, beside an upper directory, that says the upper is a plain diff, so that its
/// writable mounts pass [`PLAIN_UPPER_OPTIONS`]: written at its first mount, when it
/// holds nothing those features made (a new upper, or an imported one: an import never
/// writes `trusted.overlay.*` xattrs).
pub const PLAIN_UPPER_MARK: &str = "plain-upper";

/// The file, beside an upper directory, that says the kernel's defaults made features'
/// xattrs in it (an earlier strata mounted it without options), so that it keeps them.
pub const DEFAULTS_UPPER_MARK: &str = "kernel-defaults-upper";

/// What keeps an upper directory the plain diff strata reads it as (change lists, diffs,
/// commits) whatever the kernel turns on by default: with `redirect_dir` a renamed
/// directory would be an xattr pointing into a lower, and with `metacopy` a chown or
/// chmod would copy up metadata only, leaving the upper file without its data. With both
/// off, renaming a lower directory fails with `EXDEV` (tools copy instead) and a copy-up
/// copies the data.
const PLAIN_UPPER_OPTIONS: [(&str, &str); 2] = [("redirect_dir", "off"), ("metacopy", "off")];

/// The options a writable mount of `upper` takes: [`PLAIN_UPPER_OPTIONS`], unless the
/// kernel's defaults wrote to it.
///
/// An upper is walked once, at its first mount, and the verdict kept beside it
/// ([`PLAIN_UPPER_MARK`], [`DEFAULTS_UPPER_MARK`]; a lost mark is only walked for again).
/// An upper written by an earlier strata, which mounted with the kernel's defaults, may
/// hold what those features left: a metacopy file, which a mount with `metacopy=off`
/// refuses to open with `EPERM`, or a redirected directory. It keeps the defaults it was
/// written under. A walk that cannot finish (an unreadable or too deep entry) keeps them
/// too, and is tried again at the next mount.
fn upper_options(upper: &Path) -> Result<&'static [(&'static str, &'static str)]> {
    let Some(dir) = upper.parent() else {
        return Ok(&[]);
    };
    if dir.join(PLAIN_UPPER_MARK).exists() {
        return Ok(&PLAIN_UPPER_OPTIONS);
    }
    if dir.join(DEFAULTS_UPPER_MARK).exists() {
        return Ok(&[]);
    }
    if !std::fs::symlink_metadata(upper)
        .ctx(|| format!("stat {}", upper.display()))?
        .is_dir()
    {
        return Ok(&[]);
    }
    let (mark, options): (_, &'static [_]) = match holds_feature_xattrs(upper) {
        Ok(false) => (PLAIN_UPPER_MARK, &PLAIN_UPPER_OPTIONS),
        Ok(true) => (DEFAULTS_UPPER_MARK, &[]),
        Err(_) => return Ok(&[]),
    };
    let mark = dir.join(mark);
    std::fs::File::create(&mark).ctx(|| format!("create {}", mark.display()))?;
    Ok(options)
}

/// The xattrs overlayfs leaves where `metacopy` or `redirect_dir` acted.
const FEATURE_XATTRS: [&str; 2] = ["trusted.overlay.metacopy", "trusted.overlay.redirect"];

/// Whether any entry under `upper` carries one of [`FEATURE_XATTRS`].
fn holds_feature_xattrs(upper: &Path) -> std::io::Result<bool> {
    let mut dirs = vec![upper.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if !kind.is_symlink() {
                for name in FEATURE_XATTRS {
                    let size_only: &mut [u8] = &mut [];
                    match rustix::fs::lgetxattr(&path, name, size_only) {
                        Ok(_) => return Ok(true),
                        Err(rustix::io::Errno::NODATA) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if kind.is_dir() {
                dirs.push(path);
            }
        }
    }
    Ok(false)
}

/// Mounts `stack` with the new mount API; `options` go with its upper.
fn mount_new(stack: &Stack, options: &[(&str, &str)], target: &Path) -> Result<()> {
    let mounted = || -> std::result::Result<(), Failed> {
        let fs = FsContext::open("overlay")?;
        for lower in &stack.lowers {
            fs.set("lowerdir+", lower)?;
        }
        if let Some((upper, work)) = &stack.upper {
            fs.set("upperdir", upper)?;
            fs.set("workdir", work)?;
            for (name, value) in options {
                fs.set(name, value)?;
            }
        }
        let what = format!("with {} lowers", stack.lowers.len());
        fs.mount_at(target, stack.upper.is_none(), &what)
    };
    mounted().map_err(|f| fail(target, f))
}

/// `lowerdir=a:b:c[,upperdir=u,workdir=w]`, then `options`.
fn legacy_options(stack: &Stack, options: &[(&str, &str)]) -> String {
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
    for (name, value) in options {
        data.push_str(&format!(",{name}={value}"));
    }
    data
}

/// Mounts `stack` with `mount(2)`; `options` go with its upper.
fn mount_legacy(stack: &Stack, options: &[(&str, &str)], target: &Path) -> Result<()> {
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
    let flags = match stack.upper {
        Some(_) => MsFlags::empty(),
        None => MsFlags::MS_RDONLY,
    };
    let attempt = |options: &[(&str, &str)]| {
        let data = legacy_options(stack, options);
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(data.as_str()),
        )
    };
    // A kernel older than an option lacks its feature: it refuses the option (`EINVAL`),
    // and is asked again without it. `metacopy` (4.19) goes first, `redirect_dir` (4.10)
    // after it.
    let mut kept = options.len();
    let mut mounted = attempt(options);
    while mounted == Err(nix::errno::Errno::EINVAL) && kept > 0 {
        kept -= 1;
        mounted = attempt(&options[..kept]);
    }
    mounted.map_err(|e| {
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
    fn an_upper_first_mounted_empty_is_marked_plain() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("diff");
        std::fs::create_dir(&upper).unwrap();
        assert_eq!(upper_options(&upper).unwrap(), PLAIN_UPPER_OPTIONS);
        assert!(dir.path().join(PLAIN_UPPER_MARK).exists());
    }

    #[test]
    fn an_unmarked_upper_with_plain_files_is_marked_and_mounted_plain() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("diff");
        std::fs::create_dir_all(upper.join("d/e")).unwrap();
        std::fs::write(upper.join("d/e/file"), b"written before the mark").unwrap();
        std::os::unix::fs::symlink("d/e/file", upper.join("link")).unwrap();
        assert_eq!(upper_options(&upper).unwrap(), PLAIN_UPPER_OPTIONS);
        assert!(dir.path().join(PLAIN_UPPER_MARK).exists());
    }

    /// An upper whose `d/e/file` carries feature xattr `xattr`.
    fn upper_with(xattr: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("diff");
        std::fs::create_dir_all(upper.join("d/e")).unwrap();
        std::fs::write(upper.join("d/e/file"), b"").unwrap();
        let value: &[u8] = if xattr.ends_with("redirect") {
            b"/x"
        } else {
            b""
        };
        rustix::fs::setxattr(
            upper.join("d/e/file"),
            xattr,
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        (dir, upper)
    }

    /// trusted.* xattrs are root's; the overlay tests run these as root in CI.
    fn is_root() -> bool {
        let root = rustix::process::geteuid().is_root();
        assert!(root || std::env::var_os("CI").is_none(), "needs root");
        root
    }

    #[test]
    fn an_unmarked_upper_a_feature_wrote_to_keeps_the_kernels_defaults_and_says_so() {
        if !is_root() {
            return;
        }
        for xattr in FEATURE_XATTRS {
            let (dir, upper) = upper_with(xattr);
            assert!(upper_options(&upper).unwrap().is_empty(), "{xattr}");
            assert!(!dir.path().join(PLAIN_UPPER_MARK).exists(), "{xattr}");
            assert!(dir.path().join(DEFAULTS_UPPER_MARK).exists(), "{xattr}");
        }
    }

    #[test]
    fn a_marked_upper_is_taken_at_its_mark_without_a_walk() {
        if !is_root() {
            return;
        }
        // What a walk would find contradicts each mark: the mark stands.
        let (dir, upper) = upper_with(FEATURE_XATTRS[0]);
        std::fs::write(dir.path().join(PLAIN_UPPER_MARK), b"").unwrap();
        assert_eq!(upper_options(&upper).unwrap(), PLAIN_UPPER_OPTIONS);
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("diff");
        std::fs::create_dir(&upper).unwrap();
        std::fs::write(dir.path().join(DEFAULTS_UPPER_MARK), b"").unwrap();
        assert!(upper_options(&upper).unwrap().is_empty());
    }

    #[test]
    fn a_missing_upper_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("gone");
        let err = upper_options(&upper).unwrap_err().to_string();
        assert!(err.contains(&upper.display().to_string()), "{err}");
    }

    #[test]
    fn legacy_options_list_lowers_then_upper_then_the_options() {
        let stack = Stack {
            lowers: vec![PathBuf::from("/l1"), PathBuf::from("/l2")],
            upper: Some((PathBuf::from("/u"), PathBuf::from("/w"))),
        };
        assert_eq!(
            legacy_options(&stack, &PLAIN_UPPER_OPTIONS),
            "lowerdir=/l1:/l2,upperdir=/u,workdir=/w,redirect_dir=off,metacopy=off"
        );
        assert_eq!(
            legacy_options(&stack, &[]),
            "lowerdir=/l1:/l2,upperdir=/u,workdir=/w"
        );
    }
}
