//! What every strata fuzz target shares.
//!
//! - **A cap on single allocations** ([`CappedAlloc`], the global allocator of every
//!   binary linking this crate). Without a sanitizer libFuzzer cannot see `malloc`, and a
//!   zeroed allocation is not resident until touched, so a `vec![0; n]` with `n` taken
//!   from the input would pass unnoticed. Here any single allocation over
//!   [`MAX_ALLOCATION`] fails, which aborts the process: libFuzzer reports it as a crash
//!   ("memory allocation of N bytes failed") and saves the input.
//! - **Dropping root** ([`drop_root`]) for targets that create files: a bug that lets an
//!   input escape its temporary directory must not be able to write anywhere that matters.
//!   Without root, a tree an input made read-only cannot be removed as it is:
//!   [`make_removable`] gives its directories their write permission back first.
#![deny(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, chown, geteuid, setgid, setgroups, setuid};

/// The largest single allocation a fuzz target may make (256 MiB). Nothing the libraries
/// allocate for a legitimate input of fuzzing size comes near it.
pub const MAX_ALLOCATION: usize = 256 << 20;

/// The system allocator, refusing any single allocation over [`MAX_ALLOCATION`].
pub struct CappedAlloc;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; refusing a request by returning null is allowed by that contract.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's guarantees for `layout` are those `System.alloc` needs.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` and `layout` come from this allocator, i.e. from `System`, and the
        // caller guarantees `new_size` is valid for `layout`'s alignment.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CappedAlloc = CappedAlloc;

/// The user targets run as once [`drop_root`] has run: `nobody:nogroup`.
pub const NOBODY: u32 = 65534;

/// When running as root, hands the directories libFuzzer writes to (the first corpus
/// directory, and the artifact directory of `-artifact_prefix=`) to `nobody`, then becomes
/// `nobody` for good. Call it from a target's `init`, before any input runs; without root
/// it does nothing.
///
/// # Panics
///
/// When root cannot give up its identity: running on as root is what this exists to stop.
pub fn drop_root() {
    if !geteuid().is_root() {
        return;
    }
    let (uid, gid) = (Uid::from_raw(NOBODY), Gid::from_raw(NOBODY));
    for dir in libfuzzer_writes(std::env::args().skip(1)) {
        if let Err(e) = chown(&dir, Some(uid), Some(gid)) {
            eprintln!(
                "fuzz-support: cannot hand {} to nobody ({e}); libFuzzer may fail to save inputs there",
                dir.display()
            );
        }
    }
    let dropped = setgroups(&[gid])
        .and_then(|()| setgid(gid))
        .and_then(|()| setuid(uid));
    if let Err(e) = dropped {
        panic!("fuzz-support: cannot drop root to nobody: {e}");
    }
}

/// Gives every directory below `dir` (and `dir`) mode 0700, never following a symlink, so
/// that removing the tree works without root even when an archive made a directory
/// read-only. Errors are ignored: this is best effort before a temporary directory goes.
pub fn make_removable(dir: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            make_removable(&e.path());
        }
    }
}

/// The directories libFuzzer writes to, from its command line: the first corpus directory
/// (new inputs go there) and the directory of `-artifact_prefix` (crashes go there).
fn libfuzzer_writes(args: impl Iterator<Item = String>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut corpus_seen = false;
    for arg in args {
        if let Some(prefix) = arg.strip_prefix("-artifact_prefix=") {
            // A prefix ending in `/` names a directory; otherwise its parent is one.
            let dir = if prefix.ends_with('/') {
                PathBuf::from(prefix)
            } else {
                Path::new(prefix)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            };
            if dir.is_dir() {
                dirs.push(dir);
            }
        } else if !arg.starts_with('-') && !corpus_seen {
            corpus_seen = true;
            let path = PathBuf::from(arg);
            if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_writes_names_first_corpus_and_artifact_dir() {
        let tmp = std::env::temp_dir();
        let t = tmp.display().to_string();
        let args = [
            format!("-artifact_prefix={t}/"),
            "-max_total_time=5".to_string(),
            t.clone(),
            "/".to_string(),
        ];
        assert_eq!(libfuzzer_writes(args.into_iter()), vec![tmp.clone(), tmp]);
    }

    #[test]
    fn make_removable_reopens_read_only_directories() {
        let base = std::env::temp_dir().join(format!("fuzz-support-{}", std::process::id()));
        let sub = base.join("a").join("b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("f"), b"x").unwrap();
        std::fs::set_permissions(base.join("a"), Permissions::from_mode(0o500)).unwrap();
        make_removable(&base);
        let mode = std::fs::metadata(base.join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn allocations_over_the_cap_fail_and_small_ones_succeed() {
        let mut v: Vec<u8> = Vec::new();
        assert!(v.try_reserve_exact(MAX_ALLOCATION + 1).is_err());
        assert!(v.try_reserve_exact(1 << 20).is_ok());
    }
}
