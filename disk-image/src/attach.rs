//! Making a disk a block device: raw-addressable disks straight onto a loop device at
//! their offset and size limit; every other disk (sparse, dynamic, differencing, chains)
//! through the FUSE [block view](crate::block_view), whose one file is loop-attached.
//!
//! Each attach records itself in a state directory (under [`run_dir`]) holding the owner's
//! pid, the loop device, its backing file and the FUSE mountpoint, so that [`cleanup`] can
//! remove what a crashed process left behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, MountOption};
use loopdev::{LoopControl, LoopDevice};

use crate::block_view::{BlockView, FILE_NAME, SharedDisk};
use crate::disk::Disk;
use crate::error::{Error, ErrorKind, Result};

/// Environment variable overriding [`run_dir`].
pub const RUN_DIR_ENV: &str = "STRATA_DISK_IMAGE_RUN_DIR";
const DEFAULT_RUN_DIR: &str = "/run/strata-disk-image";
const EBUSY: i32 = 16;
/// How long a detach waits for the kernel to let go of the loop device.
const DETACH_WAIT: Duration = Duration::from_secs(10);

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

/// Attaches `file` from `offset` for `size` bytes to a free loop device.
fn attach_loop(
    file: &Path,
    offset: u64,
    size: u64,
    read_only: bool,
) -> Result<(LoopDevice, PathBuf)> {
    let control_path = Path::new("/dev/loop-control");
    let control = LoopControl::open().map_err(io_err(control_path, "opening loop control"))?;
    let mut attempt = 0;
    loop {
        let dev = control
            .next_free()
            .map_err(io_err(control_path, "finding a free loop device"))?;
        match dev
            .with()
            .offset(offset)
            .size_limit(size)
            .read_only(read_only)
            .attach(file)
        {
            Ok(()) => {
                let path = dev.path().ok_or_else(|| {
                    Error::new(ErrorKind::Io, "loop device has no path").with_path(file)
                })?;
                return Ok((dev, path));
            }
            // Another process took the device between next_free and attach.
            Err(e) if e.raw_os_error() == Some(EBUSY) && attempt < 16 => attempt += 1,
            Err(e) => return Err(Error::io(file, "attaching a loop device", e)),
        }
    }
}

/// The sysfs file naming the backing file of loop device `device`.
fn backing_file_of(device: &Path) -> Option<PathBuf> {
    let name = device.file_name()?;
    let sys = Path::new("/sys/block").join(name).join("loop/backing_file");
    let text = std::fs::read_to_string(sys).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

fn wait_detached(device: &Path) -> Result<()> {
    let start = Instant::now();
    while backing_file_of(device).is_some() {
        if start.elapsed() > DETACH_WAIT {
            return Err(Error::new(
                ErrorKind::Io,
                "loop device still in use (mounted or open) after detach",
            )
            .with_path(device));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
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
            let _ = std::fs::remove_dir_all(&state);
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
        let (dev, path) = attach_loop(&extent.path, extent.offset, extent.size, read_only)?;
        record(state, "device", &path)?;
        record(state, "backing", &extent.path)?;
        return Ok((path, dev, None));
    }
    let mnt = state.join("mnt");
    std::fs::create_dir_all(&mnt).map_err(io_err(&mnt, "creating block view mountpoint"))?;
    let size = disk.size();
    let shared: SharedDisk = Arc::new(Mutex::new(disk));
    let view = BlockView::new(shared.clone(), read_only, size);
    let mut options = vec![
        MountOption::FSName("strata-disk-image".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if read_only {
        options.push(MountOption::RO);
    }
    let session = fuser::spawn_mount2(view, &mnt, &options)
        .map_err(io_err(&mnt, "mounting the block view"))?;
    record(state, "mountpoint", &mnt)?;
    let file = mnt.join(FILE_NAME);
    let (dev, path) = attach_loop(&file, 0, size, read_only)?;
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
            dev.detach()
                .map_err(io_err(&self.device, "detaching loop device"))?;
            // The kernel defers the detach while any descriptor is open, ours included.
            drop(dev);
            if let Err(e) = wait_detached(&self.device) {
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
            let _ = std::fs::remove_dir_all(&state);
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
        if let (Some(device), Some(backing)) = (read("device"), read("backing"))
            && backing_file_of(&device).is_some_and(|b| b == backing)
            && let Ok(dev) = LoopDevice::open(&device)
        {
            dev.detach()
                .map_err(io_err(&device, "detaching stale loop device"))?;
            drop(dev);
            wait_detached(&device)?;
        }
        if let Some(mnt) = read("mountpoint") {
            // Not mounted any more is fine; anything else is reported.
            match nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(Error::io(&mnt, "unmounting stale block view", e.into())),
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => removed += 1,
            // Its owner (or another cleanup) got there first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&dir, "removing attach state", e)),
        }
    }
    Ok(removed)
}
