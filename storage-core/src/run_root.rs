//! The run root: per-boot state such as mount counts and import locks.
//!
//! Mount counts must not survive a reboot (nothing is mounted after one), so they live in
//! the run root (normally on tmpfs under `/run`), never in the catalog. The boot id is
//! recorded beside them: counts left by an earlier boot are dropped when the run root is
//! opened, even where the run root is not on tmpfs.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::error::{Error, IoContext, Result};

/// A store's run root.
#[derive(Debug, Clone)]
pub struct RunRoot {
    dir: PathBuf,
}

/// An exclusive lock on a name in the run root, held until dropped. Works across
/// processes (`flock` on a local file).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

impl RunRoot {
    /// Opens (creating) the run root at `dir`, dropping state from an earlier boot.
    pub fn open(dir: &Path) -> Result<Self> {
        let rr = RunRoot {
            dir: dir.to_owned(),
        };
        for sub in ["counts", "locks"] {
            std::fs::create_dir_all(dir.join(sub))
                .ctx(|| format!("create run root {}", dir.join(sub).display()))?;
        }
        let boot = std::fs::read_to_string(BOOT_ID).unwrap_or_default();
        let marker = dir.join("boot-id");
        let _guard = rr.lock("boot-id")?;
        let recorded = std::fs::read_to_string(&marker).unwrap_or_default();
        if recorded != boot {
            let counts = dir.join("counts");
            for entry in std::fs::read_dir(&counts).ctx(|| format!("list {}", counts.display()))? {
                let entry = entry.ctx(|| format!("list {}", counts.display()))?;
                let _ = std::fs::remove_file(entry.path());
            }
            write_atomic(&marker, boot.as_bytes())?;
        }
        Ok(rr)
    }

    /// The run root's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        let path = self.dir.join("locks").join(format!("{name}.lock"));
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("open lock {}", path.display()))
    }

    /// Takes the exclusive lock `name`, waiting for other holders.
    pub fn lock(&self, name: &str) -> Result<RunLock> {
        let file = self.lock_file(name)?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .ctx(|| format!("lock {name} in {}", self.dir.display()))?;
        Ok(RunLock { _file: file })
    }

    /// Takes the exclusive lock `name` if nobody holds it; `None` when someone does.
    pub fn try_lock(&self, name: &str) -> Result<Option<RunLock>> {
        let file = self.lock_file(name)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(RunLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(Error::io(
                format!("lock {name} in {}", self.dir.display()),
                e,
            )),
        }
    }

    /// Removes the lock file of `name` (after the object it guarded is gone).
    pub fn forget_lock(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join("locks").join(format!("{name}.lock")));
    }

    /// The mount count recorded for `key` (0 when none).
    pub fn count(&self, key: &str) -> Result<u64> {
        let path = self.dir.join("counts").join(key);
        match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map_err(|_| Error::CorruptStore {
                path: path.clone(),
                reason: format!("mount count file holds {s:?}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io_path("read mount count", &path, e)),
        }
    }

    /// Records the mount count of `key` (removing the record at 0).
    pub fn set_count(&self, key: &str, n: u64) -> Result<()> {
        let path = self.dir.join("counts").join(key);
        if n == 0 {
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io_path("remove mount count", &path, e)),
            }
        } else {
            write_atomic(&path, n.to_string().as_bytes())
        }
    }

    /// Every key with a non-zero count.
    pub fn counted(&self) -> Result<Vec<(String, u64)>> {
        let dir = self.dir.join("counts");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).ctx(|| format!("list {}", dir.display()))? {
            let entry = entry.ctx(|| format!("list {}", dir.display()))?;
            if let Some(key) = entry.file_name().to_str() {
                if key.ends_with(".tmp") {
                    continue;
                }
                let n = self.count(key)?;
                if n > 0 {
                    out.push((key.to_owned(), n));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Writes a small file atomically: a temporary file, fsync, rename, directory fsync.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let mut f = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("rename {} into place", path.display()))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .ctx(|| format!("sync directory {}", parent.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip_and_vanish_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let rr = RunRoot::open(dir.path()).unwrap();
        assert_eq!(rr.count("layer-a").unwrap(), 0);
        rr.set_count("layer-a", 2).unwrap();
        assert_eq!(rr.count("layer-a").unwrap(), 2);
        assert_eq!(rr.counted().unwrap(), vec![("layer-a".to_string(), 2)]);
        rr.set_count("layer-a", 0).unwrap();
        assert!(rr.counted().unwrap().is_empty());
    }

    #[test]
    fn counts_from_another_boot_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let rr = RunRoot::open(dir.path()).unwrap();
        rr.set_count("layer-a", 3).unwrap();
        std::fs::write(dir.path().join("boot-id"), "an-earlier-boot\n").unwrap();
        let rr = RunRoot::open(dir.path()).unwrap();
        assert_eq!(rr.count("layer-a").unwrap(), 0);
    }

    #[test]
    fn try_lock_sees_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let rr = RunRoot::open(dir.path()).unwrap();
        let held = rr.lock("import-x").unwrap();
        assert!(rr.try_lock("import-x").unwrap().is_none());
        drop(held);
        assert!(rr.try_lock("import-x").unwrap().is_some());
    }
}
