//! Attachments that outlive the process that made them, shared by reference count and
//! recorded in a registry directory (a store's run root keeps one under `disks/`).
//!
//! Each attachment has a directory named for its top disk, holding its [record](Record),
//! the block view's mount point and its server's log. Every change happens under the
//! registry's lock (`flock` on `lock`), in steps that each rewrite the record first, so
//! that whoever takes the lock next knows what a killed process left: a record in any
//! state but `attached` is a step cut short, a server that is gone took its device with
//! it, and a record from an earlier boot describes nothing. [`Attachments::check`] finds
//! these and, asked to, tears them down: filesystems still mounted from the dead device,
//! the loop device, the server, the view's mount, the record.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rustix::fs::FlockOperation;

use crate::attach::loop_device;
use crate::attach::process::ProcessId;
use crate::attach::record::{Record, State};
use crate::attach::server::{self, Server};
use crate::disk::{Disk, Format};
use crate::error::{Error, ErrorKind, Result};
use crate::{open_chain, open_chain_within};

/// How long a server may take to flush and stop once asked.
const STOP_PATIENCE: Duration = Duration::from_secs(120);
/// The file whose `flock` serialises every change to the registry.
const LOCK_FILE: &str = "lock";

/// One disk chain attached as a block device, as the registry records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attachment {
    /// The top disk of the chain (absolute, symlinks resolved).
    pub top: PathBuf,
    /// Every file of the chain, the top first.
    pub chain: Vec<PathBuf>,
    /// The top disk's format.
    pub format: Format,
    /// The virtual size in bytes.
    pub size: u64,
    /// Whether the device is read-only.
    pub read_only: bool,
    /// The block device (`/dev/loop3`).
    pub device: PathBuf,
    /// The process serving the block view; `None` for a raw-addressable disk, which the
    /// loop device reads directly.
    pub server: Option<ProcessId>,
    /// How many users hold it; the last [`Attachments::release`] detaches it.
    pub refs: u64,
    /// What is wrong with it, when [`Attachments::list`] finds it broken (a server gone, a
    /// step cut short, an earlier boot); `None` when it is sound.
    pub problem: Option<String>,
}

/// How to attach a chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions<'a> {
    /// Make the device read-only.
    pub read_only: bool,
    /// Require every parent to lie in this directory ([`open_chain_within`]): for disks
    /// that did not come from the caller.
    pub within: Option<&'a Path>,
}

/// What [`Attachments::release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Other users still hold the attachment; this many.
    Kept(u64),
    /// It was the last reference: the device is detached and the server stopped.
    Detached,
}

/// Something the registry found wrong, and whether it was set right.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The attachment's top disk, or its directory when not even that is known.
    pub disk: PathBuf,
    /// What was wrong, and what was done about it.
    pub detail: String,
    /// Whether it was torn down.
    pub repaired: bool,
}

/// The registry of shared, lasting attachments in one directory.
#[derive(Debug)]
pub struct Attachments {
    dir: PathBuf,
    boot_id: String,
    /// What was found and set right since the caller last asked.
    found: Mutex<Vec<Problem>>,
}

/// The registry lock, held until dropped.
struct Locked {
    _file: std::fs::File,
}

/// The name of the directory of the attachment whose top disk is `top`: a 64-bit FNV-1a
/// hash of the path, stable across builds (unlike std's hasher). The record holds the path
/// itself, so a collision is detected, not mistaken.
fn key_of(top: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in top.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Resolves `path` to the absolute, symlink-free name attachments are keyed by.
fn canonical(path: &Path) -> Result<PathBuf> {
    path.canonicalize()
        .map_err(|e| Error::io(path, "resolving the disk's path", e))
}

/// The files of the chain from `disk` down, the top first.
fn chain_files(disk: &dyn Disk) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut level = Some(disk);
    while let Some(d) = level {
        files.push(
            d.path()
                .canonicalize()
                .unwrap_or_else(|_| d.path().to_path_buf()),
        );
        level = d.parent();
    }
    files
}

impl Attachments {
    /// Opens (creating) the registry in `dir` and sets right whatever crashes, killed
    /// processes and reboots left in it; what was found is kept for [`Attachments::found`].
    pub fn open(dir: &Path) -> Result<Self> {
        let registry = Attachments::at(dir)?;
        let problems = registry.check(true)?;
        registry.note(problems);
        Ok(registry)
    }

    /// What the registry in `dir` records ([`Attachments::list`]); nothing, and nothing
    /// made, when there is no registry there yet.
    pub fn list_in(dir: &Path) -> Result<Vec<Attachment>> {
        if !dir.exists() {
            return Ok(Vec::new());
        }
        Attachments::at(dir)?.list()
    }

    /// What is wrong in the registry in `dir` ([`Attachments::check`]); nothing, and
    /// nothing made, when there is no registry there yet.
    pub fn check_in(dir: &Path, repair: bool) -> Result<Vec<Problem>> {
        if !dir.exists() {
            return Ok(Vec::new());
        }
        Attachments::at(dir)?.check(repair)
    }

    /// The registry in `dir` (created if missing) as it is, with nothing set right.
    pub fn at(dir: &Path) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        // Servers run from `/`: every path they are given is absolute.
        let dir = std::path::absolute(dir)
            .map_err(|e| Error::io(dir, "resolving the attachment registry's path", e))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(&dir, "creating the attachment registry", e))?;
        Ok(Attachments {
            dir,
            boot_id: storage_core::run_root::boot_id(),
            found: Mutex::default(),
        })
    }

    /// The registry's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What was found wrong and set right since the last call (at open, or met along the
    /// way by an attach or release): for the caller to report.
    pub fn found(&self) -> Vec<Problem> {
        std::mem::take(&mut *self.found.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn note(&self, problems: Vec<Problem>) {
        self.found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(problems);
    }

    fn lock(&self) -> Result<Locked> {
        let path = self.dir.join(LOCK_FILE);
        storage_core::run_root::flock_path(&path, FlockOperation::LockExclusive)
            .and_then(|held| held.ok_or_else(|| std::io::ErrorKind::WouldBlock.into()))
            .map(|file| Locked { _file: file })
            .map_err(|e| Error::io(&path, "locking the attachment registry", e))
    }

    fn state_dir(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Attaches the chain whose top disk is `path` as a block device, or takes one more
    /// reference on its attachment when it is attached already (with the same mode).
    ///
    /// A raw-addressable disk with no parent (raw, fixed VHD, flat VMDK) goes straight on
    /// a loop device; any other is served by a block view server started from `server`.
    /// Refused as [`ErrorKind::Busy`]: a disk attached in the other mode, a writable
    /// attach of a disk that is a parent of an attached chain, and any attach of a chain
    /// whose parent is attached writable.
    pub fn attach(
        &self,
        path: &Path,
        options: &AttachOptions<'_>,
        server: &Server,
    ) -> Result<Attachment> {
        let top = canonical(path)?;
        let key = key_of(&top);
        let dir = self.state_dir(&key);
        let _lock = self.lock()?;
        let recorded = Record::read(&dir).unwrap_or_else(|e| {
            // An unreadable record is torn down like any broken one.
            let problem = self.tear_down(&key, None, storage_core::Report(&e).to_string());
            self.note(vec![problem]);
            None
        });
        if let Some(mut record) = recorded {
            if record.top != top {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "its registry entry {} is taken by {}",
                        dir.display(),
                        record.top.display()
                    ),
                )
                .with_path(&top));
            }
            match self.fault(&key, &record) {
                None => {
                    if record.read_only != options.read_only {
                        return Err(busy_mode(&record));
                    }
                    if let Some(root) = options.within {
                        // Shared, the chain is not opened again: its recorded files
                        // must meet this caller's confinement too.
                        outside(&record.chain, root)?;
                    }
                    record.refs += 1;
                    record.write(&dir)?;
                    return self.public(&key, &record, None);
                }
                Some(fault) => {
                    let problem = self.tear_down(&key, Some(&record), fault);
                    self.note(vec![problem]);
                }
            }
        }
        let disk: Box<dyn Disk> = match options.within {
            Some(root) => open_chain_within(&top, true, root)?,
            None => open_chain(&top, true)?,
        };
        let chain = chain_files(disk.as_ref());
        self.check_conflicts(&top, &chain, options.read_only)?;
        let extent = disk.parent().is_none().then(|| disk.raw_extent()).flatten();
        let served = extent.is_none();
        let mnt = server::mountpoint(&dir);
        let (backing, offset) = match &extent {
            Some(e) => (
                e.path.canonicalize().unwrap_or_else(|_| e.path.clone()),
                e.offset,
            ),
            None => (mnt.join(crate::block_view::FILE_NAME), 0),
        };
        let mut record = Record {
            top: top.clone(),
            chain,
            format: disk.format().name().to_string(),
            size: disk.size(),
            read_only: options.read_only,
            within: options.within.map(Path::to_path_buf),
            state: State::Attaching,
            boot_id: self.boot_id.clone(),
            refs: 1,
            backing,
            offset,
            device: None,
            server: None,
        };
        drop(disk);
        let made = (|| {
            std::fs::create_dir(&dir)
                .map_err(|e| Error::io(&dir, "creating the attachment's directory", e))?;
            record.write(&dir)?;
            if served {
                std::fs::create_dir(&mnt)
                    .map_err(|e| Error::io(&mnt, "creating the block view's mount point", e))?;
                let id = server.start(&dir, &top, options.read_only, options.within, |id| {
                    record.state = State::Starting;
                    record.server = Some(id);
                    record.write(&dir)
                })?;
                record.server = Some(id);
            }
            let size = record.size;
            let (_dev, device) =
                loop_device::attach(&record.backing, record.offset, size, options.read_only)?;
            record.device = Some(device);
            record.state = State::Attached;
            record.write(&dir)
        })();
        match made {
            Ok(()) => self.public(&key, &record, None),
            Err(e) => {
                // Undo what was made; the error that stopped it is the one to report.
                let _ = self.tear_down(
                    &key,
                    Record::read(&dir).ok().flatten().as_ref(),
                    String::new(),
                );
                Err(e)
            }
        }
    }

    /// Refuses a chain that would write what another attachment reads, or read what
    /// another writes.
    ///
    /// A read-only disk with no parent conflicts with nothing (it reads only itself, and
    /// only a writable attach of the same disk, refused by mode, would write it), so it
    /// reads no other record: attaching the layers of a deep image one by one would
    /// otherwise read every record for each. A record is checked for soundness (which
    /// reads the device's state) only when it would conflict.
    fn check_conflicts(&self, top: &Path, chain: &[PathBuf], read_only: bool) -> Result<()> {
        if read_only && chain.len() <= 1 {
            return Ok(());
        }
        for (key, other) in self.records()? {
            let Some(other) = other else { continue };
            let writes_its_parent = !read_only && other.chain.iter().skip(1).any(|p| p == top);
            let reads_what_it_writes =
                !other.read_only && chain.iter().skip(1).any(|p| *p == other.top);
            if !(writes_its_parent || reads_what_it_writes) || self.fault(&key, &other).is_some() {
                continue;
            }
            if writes_its_parent {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "it is a parent of the attached {}, so it cannot be attached writable",
                        other.top.display()
                    ),
                )
                .with_path(top));
            }
            return Err(Error::new(
                ErrorKind::Busy,
                format!("its parent {} is attached writable", other.top.display()),
            )
            .with_path(top));
        }
        Ok(())
    }

    /// Drops one reference on the attachment of the chain whose top disk is `path`; the
    /// last one detaches the device and stops the server, which flushes the disk. Refused
    /// as [`ErrorKind::Busy`] while a filesystem is still mounted from the device.
    pub fn release(&self, path: &Path) -> Result<Released> {
        // A disk deleted under its attachment is still released by the name it had.
        let top = canonical(path).or_else(|e| std::path::absolute(path).map_err(|_| e))?;
        let key = key_of(&top);
        let dir = self.state_dir(&key);
        let _lock = self.lock()?;
        let Some(mut record) = Record::read(&dir)?.filter(|r| r.top == top) else {
            return Err(
                Error::new(ErrorKind::InvalidArgument, "the disk is not attached").with_path(&top),
            );
        };
        if let Some(fault) = self.fault(&key, &record) {
            // Its users lost it with its server; nothing is left to hand back.
            let problem = self.tear_down(&key, Some(&record), fault);
            self.note(vec![problem]);
            return Ok(Released::Detached);
        }
        if record.refs > 1 {
            record.refs -= 1;
            record.write(&dir)?;
            return Ok(Released::Kept(record.refs));
        }
        if let Some(device) = &record.device {
            let mounted = crate::attach::mounted_from(device)?;
            if !mounted.is_empty() {
                let points: Vec<String> = mounted.iter().map(|p| p.display().to_string()).collect();
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "{} is still mounted at {}",
                        device.display(),
                        points.join(", ")
                    ),
                )
                .with_path(&top));
            }
        }
        record.state = State::Detaching;
        record.write(&dir)?;
        if let Some(device) = &record.device {
            loop_device::detach(device, &record.backing, Some(record.offset))?;
        }
        let stopped = match record.server {
            Some(id) => server::stop(id, &dir, STOP_PATIENCE),
            None => Ok(()),
        };
        let _ = crate::attach::unmount(&server::mountpoint(&dir));
        remove_state(&dir)?;
        stopped.map(|()| Released::Detached)
    }

    /// Every attachment recorded, each with what is wrong with it, if anything. Takes no
    /// lock and changes nothing.
    pub fn list(&self) -> Result<Vec<Attachment>> {
        let mut out = Vec::new();
        for (key, record) in self.records()? {
            let Some(record) = record else { continue };
            let fault = self.fault(&key, &record);
            out.push(self.public(&key, &record, fault)?);
        }
        out.sort_by(|a, b| a.top.cmp(&b.top));
        Ok(out)
    }

    /// Every attachment that is broken: a server gone, a device detached behind the
    /// registry's back, a step a killed process cut short, a record from an earlier boot,
    /// a directory with no record. With `repair`, each is torn down.
    pub fn check(&self, repair: bool) -> Result<Vec<Problem>> {
        let _lock = self.lock()?;
        let mut problems = Vec::new();
        for (key, record) in self.records()? {
            let fault = match &record {
                Some(r) => self.fault(&key, r),
                None => Some("its directory holds no record (an attach was cut short)".into()),
            };
            let Some(fault) = fault else { continue };
            if repair {
                problems.push(self.tear_down(&key, record.as_ref(), fault));
            } else {
                problems.push(Problem {
                    disk: record.map_or_else(|| self.state_dir(&key), |r| r.top),
                    detail: fault,
                    repaired: false,
                });
            }
        }
        Ok(problems)
    }

    /// Each attachment directory, with its record if it has a readable one.
    fn records(&self) -> Result<Vec<(String, Option<Record>)>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io(&self.dir, "listing the attachment registry", e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(&self.dir, "listing the attachment registry", e))?;
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let key = entry.file_name().to_string_lossy().into_owned();
            // An unreadable record is as good as none: the directory is torn down.
            let record = Record::read(&entry.path()).ok().flatten();
            out.push((key, record));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// What is wrong with the attachment `key`, or `None` when it is sound.
    fn fault(&self, key: &str, record: &Record) -> Option<String> {
        if record.boot_id != self.boot_id {
            return Some("recorded in an earlier boot".into());
        }
        if record.state != State::Attached {
            return Some(format!(
                "left {} by a process killed midway",
                match record.state {
                    State::Attaching => "attaching",
                    State::Starting => "starting its server",
                    State::Detaching => "detaching",
                    State::Attached => "attached",
                }
            ));
        }
        if let Some(id) = record.server
            && !id.alive()
        {
            return Some(format!("its block view server (pid {}) is gone", id.pid));
        }
        let Some(device) = &record.device else {
            return Some("attached with no device recorded".into());
        };
        if !loop_device::is_backed_by(device, &record.backing, Some(record.offset)) {
            return Some(format!(
                "{} no longer reads {}",
                device.display(),
                record.backing.display()
            ));
        }
        if record.server.is_some() && !mounts::is_mounted(&server::mountpoint(&self.state_dir(key)))
        {
            return Some("its block view is no longer mounted".into());
        }
        None
    }

    /// Tears down whatever is left of the attachment `key`: filesystems mounted from its
    /// device, the device, the server, the view's mount, the directory. Each step is
    /// tried whatever the others did; the problem says what was done and what failed.
    fn tear_down(&self, key: &str, record: Option<&Record>, fault: String) -> Problem {
        let dir = self.state_dir(key);
        let mut done: Vec<String> = Vec::new();
        let mut failed: Vec<String> = Vec::new();
        let mut note = |result: Result<()>, what: String| match result {
            Ok(()) => done.push(what),
            Err(e) => failed.push(format!("{what}: {}", storage_core::Report(&e))),
        };
        let this_boot = record.is_some_and(|r| r.boot_id == self.boot_id);
        let mnt = server::mountpoint(&dir);
        let view = mnt.join(crate::block_view::FILE_NAME);
        if this_boot || record.is_none() {
            // The devices reading this attachment: the recorded one, and any attached
            // before a kill let it be recorded.
            let mut devices: Vec<(PathBuf, PathBuf, u64)> = loop_device::backed_by(&view, None)
                .into_iter()
                .map(|d| (d, view.clone(), 0))
                .collect();
            if let Some(r) = record {
                let recorded = r.device.iter().cloned();
                let unrecorded = if r.state == State::Attaching && r.server.is_none() {
                    loop_device::backed_by(&r.backing, Some(r.offset))
                } else {
                    Vec::new()
                };
                for device in recorded.chain(unrecorded) {
                    if !devices.iter().any(|(d, _, _)| *d == device) {
                        devices.push((device, r.backing.clone(), r.offset));
                    }
                }
            }
            for (device, backing, offset) in devices {
                if !loop_device::is_backed_by(&device, &backing, Some(offset)) {
                    continue;
                }
                let points = crate::attach::mounted_from(&device);
                for point in points.as_deref().unwrap_or_default() {
                    note(
                        crate::attach::unmount(point),
                        format!("unmounted {}, which stood on it", point.display()),
                    );
                }
                if let Err(e) = points {
                    note(
                        Err(e),
                        format!("listing what is mounted from {}", device.display()),
                    );
                }
                note(
                    loop_device::detach(&device, &backing, Some(offset)),
                    format!("detached {}", device.display()),
                );
            }
            match server::quiesce(&dir, record.and_then(|r| r.server)) {
                Ok(Some(id)) => note(Ok(()), format!("stopped its server (pid {})", id.pid)),
                Ok(None) => {}
                Err(e) => note(Err(e), "stopping its server".into()),
            }
            if mounts::is_mounted(&mnt) {
                note(
                    crate::attach::unmount(&mnt),
                    "unmounted its block view".into(),
                );
            }
        }
        note(remove_state(&dir), "removed its record".into());
        let mut detail = fault;
        for (label, list) in [("", &done), ("failed: ", &failed)] {
            if !list.is_empty() {
                if !detail.is_empty() {
                    detail.push_str("; ");
                }
                detail.push_str(label);
                detail.push_str(&list.join(", "));
            }
        }
        Problem {
            disk: record.map_or(dir, |r| r.top.clone()),
            detail,
            repaired: failed.is_empty(),
        }
    }

    /// The public face of a record.
    fn public(&self, key: &str, record: &Record, problem: Option<String>) -> Result<Attachment> {
        let format = record.format.parse().map_err(|_| {
            Error::new(
                ErrorKind::Corrupt,
                format!(
                    "attachment record names an unknown format {:?}",
                    record.format
                ),
            )
            .with_path(&self.state_dir(key))
        })?;
        Ok(Attachment {
            top: record.top.clone(),
            chain: record.chain.clone(),
            format,
            size: record.size,
            read_only: record.read_only,
            device: record.device.clone().unwrap_or_default(),
            server: record.server,
            refs: record.refs,
            problem,
        })
    }
}

/// Refuses a chain with a file outside the directory `root`, as [`open_chain_within`]
/// refuses it.
fn outside(chain: &[PathBuf], root: &Path) -> Result<()> {
    let root = root
        .canonicalize()
        .map_err(|e| Error::io(root, "resolving the directory disks must stay in", e))?;
    match chain.iter().find(|p| !p.starts_with(&root)) {
        None => Ok(()),
        Some(file) => {
            let e = Error::new(
                ErrorKind::Unsupported,
                format!(
                    "its chain holds {}, which lies outside {}",
                    file.display(),
                    root.display()
                ),
            );
            Err(match chain.first() {
                Some(top) => e.with_path(top),
                None => e,
            })
        }
    }
}

/// The error for attaching a disk in the mode it is not attached in.
fn busy_mode(record: &Record) -> Error {
    let (is, asked) = if record.read_only {
        ("read-only", "writable")
    } else {
        ("writable", "read-only")
    };
    Error::new(
        ErrorKind::Busy,
        format!(
            "it is attached {is} at {} by {} user(s), so it cannot also be attached {asked}",
            record.device.as_deref().unwrap_or(Path::new("?")).display(),
            record.refs
        ),
    )
    .with_path(&record.top)
}

/// Removes an attachment's directory: its files (record, log, exit note, and a temporary
/// record a kill left half-written) and its empty mount point.
pub(crate) fn remove_state(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, "listing attachment state", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "listing attachment state", e))?;
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            // The view's mount point, unmounted by now: a directory that is not empty is
            // left, and the error says where.
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| Error::io(&path, "removing attachment state", e))?;
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, "removing the attachment's directory", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_or_checking_where_no_registry_is_makes_none() {
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("attachments");
        assert!(Attachments::list_in(&registry).unwrap().is_empty());
        assert!(Attachments::check_in(&registry, true).unwrap().is_empty());
        assert!(!registry.exists(), "a listing made the registry");
    }

    #[test]
    fn keys_are_stable_and_differ_by_path() {
        assert_eq!(
            key_of(Path::new("/a/b.vmdk")),
            key_of(Path::new("/a/b.vmdk"))
        );
        assert_ne!(
            key_of(Path::new("/a/b.vmdk")),
            key_of(Path::new("/a/c.vmdk"))
        );
        // FNV-1a of the empty input is its offset basis.
        assert_eq!(key_of(Path::new("")), "cbf29ce484222325");
    }
}
