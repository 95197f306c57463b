//! Making a disk a block device: raw-addressable disks straight onto a loop device at
//! their offset and size limit; every other disk (sparse, dynamic, differencing, chains)
//! through the FUSE [block view](crate::block_view), whose one file is loop-attached.
//!
//! Two ways, for two kinds of caller:
//! - [`Attachments`]: attachments that outlive the process that made them, for stores
//!   whose commands are short processes. A block view is served by a detached
//!   [server](Server) process; each attachment is recorded in a registry directory,
//!   shared by reference count (one chain used by several layers or processes is attached
//!   once), and whatever a crash, a kill or a reboot leaves is found and torn down by the
//!   next process that opens the registry.
//! - [`attach()`]: an attachment that lasts as long as its [`Attached`] value in this
//!   process, served by this process, for tools and tests. Its state directory (under
//!   [`run_dir`]) records the owner's pid so that [`cleanup`] can remove what a crashed
//!   process left behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fuser::BackgroundSession;
use loopdev::LoopDevice;

use crate::block_view::{self, BlockView, FILE_NAME, SharedDisk};
use crate::disk::Disk;
use crate::error::{Error, Result};

mod loop_device;
pub mod process;
mod record;
mod registry;
mod server;

pub use process::ProcessId;

/// An error of the `mounts` crate (the mount table, an unmount) as this crate's, its
/// text whole: it names its object already.
fn mount_error(e: storage_core::Error) -> Error {
    Error::new(crate::ErrorKind::Io, storage_core::Report(&e).to_string())
}

/// Unmounts `target` lazily; not mounted is fine.
pub(crate) fn unmount(target: &Path) -> Result<()> {
    mounts::unmount(target).map_err(mount_error)
}

/// Where filesystems on block device `device` are mounted, the last mounted first (the
/// order to unmount them in).
pub(crate) fn mounted_from(device: &Path) -> Result<Vec<PathBuf>> {
    let mut points = mounts::mountinfo::mount_points_of(device).map_err(mount_error)?;
    points.reverse();
    Ok(points)
}
pub use registry::{AttachOptions, Attachment, Attachments, Problem, Released};
pub use server::{Server, serve};

/// Environment variable overriding [`run_dir`].
pub const RUN_DIR_ENV: &str = "STRATA_DISK_IMAGE_RUN_DIR";
const DEFAULT_RUN_DIR: &str = "/run/strata-disk-image";

/// Where attach state directories live: `$STRATA_DISK_IMAGE_RUN_DIR` or
/// `/run/strata-disk-image`.
pub fn run_dir() -> PathBuf {
    std::env::var_os(RUN_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR))
}

/// A disk attached as a block device. Dropping it detaches the loop device, flushes the
/// disk and unmounts the block view; [`Attached::detach`] does the same and reports errors.
#[derive(Debug)]
pub struct Attached {
    device: PathBuf,
    loop_dev: Option<LoopDevice>,
    session: Option<BackgroundSession>,
    disk: Option<SharedDisk>,
    state: Option<PathBuf>,
}

fn io_err(path: &Path, what: &str) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    let what = what.to_string();
    move |e| Error::io(&path, what, e)
}

fn new_state_dir() -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = run_dir();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io_err(&dir, "creating attach state directory"))?;
    let pid = dir.join("pid");
    std::fs::write(&pid, std::process::id().to_string()).map_err(io_err(&pid, "recording pid"))?;
    Ok(dir)
}

fn record(state: &Path, name: &str, value: &Path) -> Result<()> {
    let file = state.join(name);
    std::fs::write(&file, value.as_os_str().as_encoded_bytes())
        .map_err(io_err(&file, "recording attach state"))
}

/// Makes `disk` (and its parents) a block device, read-only or read-write. Writes through
/// the device go to the top disk only.
pub fn attach(disk: Box<dyn Disk>, read_only: bool) -> Result<Attached> {
    let state = new_state_dir()?;
    let result = attach_in(disk, read_only, &state);
    match result {
        Ok((device, loop_dev, session)) => {
            let shared = session.as_ref().map(|(_, d)| d.clone());
            Ok(Attached {
                device,
                loop_dev: Some(loop_dev),
                session: session.map(|(s, _)| s),
                disk: shared,
                state: Some(state),
            })
        }
        Err(e) => {
            let _ = registry::remove_state(&state);
            Err(e)
        }
    }
}

type Served = (BackgroundSession, SharedDisk);

fn attach_in(
    mut disk: Box<dyn Disk>,
    read_only: bool,
    state: &Path,
) -> Result<(PathBuf, LoopDevice, Option<Served>)> {
    if disk.parent().is_none()
        && let Some(extent) = disk.raw_extent()
    {
        disk.flush()?;
        let (dev, path) = loop_device::attach(&extent.path, extent.offset, extent.size, read_only)?;
        record(state, "device", &path)?;
        record(state, "backing", &extent.path)?;
        return Ok((path, dev, None));
    }
    let mnt = state.join("mnt");
    std::fs::create_dir_all(&mnt).map_err(io_err(&mnt, "creating block view mountpoint"))?;
    let size = disk.size();
    let shared: SharedDisk = Arc::new(Mutex::new(disk));
    let view = BlockView::new(shared.clone(), read_only, size);
    let session = fuser::spawn_mount2(view, &mnt, &block_view::mount_options(read_only))
        .map_err(io_err(&mnt, "mounting the block view"))?;
    record(state, "mountpoint", &mnt)?;
    let file = mnt.join(FILE_NAME);
    let (dev, path) = loop_device::attach(&file, 0, size, read_only)?;
    record(state, "device", &path)?;
    record(state, "backing", &file)?;
    Ok((path, dev, Some((session, shared))))
}

impl Attached {
    /// The block device, e.g. `/dev/loop3`.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Detaches the loop device, flushes the disk and unmounts the block view.
    pub fn detach(mut self) -> Result<()> {
        self.release()
    }

    fn release(&mut self) -> Result<()> {
        if let Some(dev) = self.loop_dev.take() {
            // What the kernel names its backing file while it is certainly ours (open).
            let ours = loop_device::backing_file(&self.device);
            dev.detach()
                .map_err(io_err(&self.device, "detaching loop device"))?;
            // The kernel defers the detach while any descriptor is open, ours included.
            drop(dev);
            let waited = match &ours {
                Some(file) => loop_device::wait_detached(&self.device, file, None),
                None => Ok(()),
            };
            if let Err(e) = waited {
                // Still busy: keep serving the view so the holder can finish; cleanup()
                // removes it once this process is gone.
                if let Some(session) = self.session.take() {
                    std::mem::forget(session);
                }
                self.state = None;
                return Err(e);
            }
        }
        let mut result = Ok(());
        if let Some(disk) = self.disk.take() {
            let mut disk = disk.lock().unwrap_or_else(|e| e.into_inner());
            result = disk.flush();
        }
        // Dropping the session unmounts the view.
        drop(self.session.take());
        if let Some(state) = self.state.take() {
            let _ = registry::remove_state(&state);
        }
        result
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

fn process_alive(pid: &str) -> bool {
    pid.trim()
        .parse::<u32>()
        .is_ok_and(|p| Path::new("/proc").join(p.to_string()).exists())
}

/// How long an attach may take to record its pid before its state counts as stale.
const STATE_SETUP_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// True when `path` was last modified longer than `age` ago.
fn older_than(path: &Path, age: std::time::Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|e| e > age)
}

/// Removes the attaches of processes that are gone: detaches their loop devices (when
/// still backed by the recorded file), unmounts their block views and deletes their state
/// directories. Returns how many were removed.
pub fn cleanup() -> Result<usize> {
    let base = run_dir();
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(&base, "listing attach state", e)),
    };
    let mut removed = 0;
    for entry in entries {
        let dir = entry.map_err(io_err(&base, "listing attach state"))?.path();
        // A directory without a pid file is being set up by a live attach (or was left
        // by a crash in the moment between the two); only an old one is stale.
        let pid = match std::fs::read_to_string(dir.join("pid")) {
            Ok(pid) => pid,
            Err(_) if !older_than(&dir, STATE_SETUP_GRACE) => continue,
            Err(_) => String::new(),
        };
        if process_alive(&pid) {
            continue;
        }
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .ok()
                .map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()))
        };
        if let (Some(device), Some(backing)) = (read("device"), read("backing")) {
            loop_device::detach(&device, &backing, None)?;
        }
        if let Some(mnt) = read("mountpoint") {
            unmount(&mnt)?;
        }
        if dir.exists() {
            registry::remove_state(&dir)?;
            removed += 1;
        }
    }
    Ok(removed)
}
