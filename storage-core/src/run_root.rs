//! The run root: per-boot state such as mount counts and import locks.
//!
//! Mount counts must not survive a reboot (nothing is mounted after one), so they live in
//! the run root (normally on tmpfs under `/run`), never in the catalog. The boot id is
//! recorded beside them: counts left by an earlier boot are dropped when the run root is
//! opened, even where the run root is not on tmpfs.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// [`RunRoot::attachments`] of the run root at `dir`, for callers that only list it.
pub fn attachments_in(dir: &Path) -> PathBuf {
    dir.join("disks")
}

/// The kernel's id of this boot (empty where the kernel does not say): per-boot state
/// records it, and state recorded under another id describes nothing that still exists.
pub fn boot_id() -> String {
    std::fs::read_to_string(BOOT_ID).unwrap_or_default()
}

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
        let boot = boot_id();
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

    /// Where the block-device attachments of this run root are recorded (`disks/`): one
    /// registry that every backend attaching disks, and `strata status`, share.
    pub fn attachments(&self) -> PathBuf {
        attachments_in(&self.dir)
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.dir.join("locks").join(format!("{name}.lock"))
    }

    /// Takes the exclusive lock `name`, waiting for other holders.
    pub fn lock(&self, name: &str) -> Result<RunLock> {
        let path = self.lock_path(name);
        // A blocking flock does not answer "busy"; if it ever did, that is an OS error.
        flock_path(&path, FlockOperation::LockExclusive)
            .and_then(|held| held.ok_or_else(|| io::ErrorKind::WouldBlock.into()))
            .map(|file| RunLock { _file: file })
            .map_err(|e| Error::io_path("lock", &path, e))
    }

    /// Takes the exclusive lock `name` if nobody holds it; `None` when someone does.
    pub fn try_lock(&self, name: &str) -> Result<Option<RunLock>> {
        let path = self.lock_path(name);
        flock_path(&path, FlockOperation::NonBlockingLockExclusive)
            .map(|held| held.map(|file| RunLock { _file: file }))
            .map_err(|e| Error::io_path("lock", &path, e))
    }

    /// Removes the lock file of `name` (after the object it guarded is gone).
    pub fn forget_lock(&self, name: &str) {
        let _ = std::fs::remove_file(self.lock_path(name));
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
    write_file_atomic(path, data, 0o644).map_err(|f| Error::io_path(f.step, &f.path, f.source))
}

/// Where [`write_file_atomic`] failed: the step, the file or directory it was working on,
/// and the OS error. Callers turn it into their own error type (the sandbox store into
/// its `SandboxError`, [`write_atomic`] into [`Error::Io`]).
#[derive(Debug)]
pub struct AtomicWriteError {
    /// What was being done: "create", "write", "rename into place", "sync directory".
    pub step: &'static str,
    /// The temporary file, the destination or the directory the step worked on.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `data` so that a reader (or a crash) sees the old content or the
/// new, never a mix: `data` goes to a new temporary file in the same directory, is
/// fsynced, renamed over `path`, and the directory is fsynced.
///
/// The temporary file is `.<name>.<pid>.<seq>.tmp`: hidden, ending in `.tmp`, and unique
/// per process and call, so concurrent writers (threads or processes) never share one.
/// A crash can leave one behind; it is never mistaken for `path`. The file gets `mode`
/// (less the umask). [`write_atomic`] is this with mode 0644 and the contract's error.
pub fn write_file_atomic(
    path: &Path,
    data: &[u8],
    mode: u32,
) -> std::result::Result<(), AtomicWriteError> {
    let fail = |step, at: &Path| {
        let at = at.to_owned();
        move |source| AtomicWriteError {
            step,
            path: at,
            source,
        }
    };
    let Some(name) = path.file_name() else {
        return Err(fail("write", path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path has no file name",
        )));
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail("create", &tmp))?;
    let written = f
        .write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(fail("write", &tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(fail("rename into place", path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("sync directory", dir))
}

/// Opens (creating) the lock file at `path` and applies `op` to it. `None` when a
/// non-blocking `op` finds the lock held.
///
/// A waiter can be granted the lock on a file that was unlinked (or replaced) while it
/// waited, by whoever removed the object the lock guarded; a later locker would then
/// open a new file and hold "the same" lock at the same time. So after locking, the
/// file open here must still be the one at `path`; when it is not, the lock is dropped
/// and taken again.
///
/// The run root's locks ([`RunRoot::lock`]) and the sandbox store's item locks are taken
/// this way; the lock is held until the returned file is closed.
pub fn flock_path(path: &Path, op: FlockOperation) -> io::Result<Option<File>> {
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(path)?;
        match rustix::fs::flock(&file, op) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let held = rustix::fs::fstat(&file)?;
        match rustix::fs::stat(path) {
            Ok(now) if now.st_dev == held.st_dev && now.st_ino == held.st_ino => {
                return Ok(Some(file));
            }
            Ok(_) | Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        }
    }
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

    #[test]
    fn a_waiter_on_a_forgotten_lock_does_not_share_it_with_a_newcomer() {
        let dir = tempfile::tempdir().unwrap();
        let rr = RunRoot::open(dir.path()).unwrap();
        let held = rr.lock("import-y").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let waiter = {
            let rr = rr.clone();
            std::thread::spawn(move || {
                let lock = rr.lock("import-y").unwrap();
                tx.send(()).unwrap();
                let _ = release_rx.recv();
                drop(lock);
            })
        };
        // The holder removes the lock file (its object is gone) and lets go; the waiter,
        // granted the unlinked file, must take the lock again on the file now at the path.
        rr.forget_lock("import-y");
        drop(held);
        rx.recv().unwrap();
        assert!(rr.try_lock("import-y").unwrap().is_none());
        release_tx.send(()).unwrap();
        waiter.join().unwrap();
        assert!(rr.try_lock("import-y").unwrap().is_some());
    }

    #[test]
    fn atomic_writes_from_many_threads_to_one_file_never_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("value");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let path = &path;
                s.spawn(move || {
                    let data = vec![b'a' + t; 256 * 1024];
                    for _ in 0..20 {
                        write_atomic(path, &data).unwrap();
                    }
                });
            }
        });
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 256 * 1024);
        assert!(data.iter().all(|b| *b == data[0]));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("value")]);
    }
}
