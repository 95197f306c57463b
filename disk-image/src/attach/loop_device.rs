//! Loop devices: attaching a file (at an offset and size limit) to a free one, and finding,
//! checking and detaching them through sysfs.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loopdev::{LoopControl, LoopDevice};

use crate::error::{Error, ErrorKind, Result};

const EBUSY: i32 = 16;
const EINVAL: i32 = 22;
const ENOTTY: i32 = 25;
/// How long a detach waits for the kernel to let go of the loop device.
const DETACH_WAIT: Duration = Duration::from_secs(10);
/// Whether this kernel has `LOOP_CONFIGURE`: true until a loop device refuses it, then
/// false for the rest of the process, so an older kernel costs one refused ioctl, not one
/// per attach.
static ONE_CALL: AtomicBool = AtomicBool::new(true);

/// Attaches `file` from `offset` for `size` bytes to a free loop device.
///
/// In one `LOOP_CONFIGURE` where the kernel has it (5.8+): `LOOP_SET_FD` followed by
/// `LOOP_SET_STATUS64` freezes the live device's queue to set its offset, which takes
/// 10 to 20 ms each, most of the cost of attaching a deep image's layers.
pub(crate) fn attach(
    file: &Path,
    offset: u64,
    size: u64,
    read_only: bool,
) -> Result<(LoopDevice, PathBuf)> {
    let control_path = Path::new("/dev/loop-control");
    let control =
        LoopControl::open().map_err(|e| Error::io(control_path, "opening loop control", e))?;
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(file)
        .map_err(|e| Error::io(file, "opening the file to attach", e))?;
    let setup = syscalls::LoopSetup {
        offset,
        size_limit: size,
        read_only,
    };
    let mut configure = ONE_CALL.load(Ordering::Relaxed);
    let mut attempt = 0;
    loop {
        let dev = control
            .next_free()
            .map_err(|e| Error::io(control_path, "finding a free loop device", e))?;
        let path = dev
            .path()
            .ok_or_else(|| Error::new(ErrorKind::Io, "loop device has no path").with_path(file))?;
        let attached = if configure {
            syscalls::loop_configure(&dev, backing.as_fd(), setup)
        } else {
            dev.with()
                .offset(offset)
                .size_limit(size)
                .read_only(read_only)
                .attach_fd(backing.as_fd())
        };
        match attached {
            Ok(()) => {
                if !configure {
                    // The two steps worked where the one call was refused: this kernel
                    // lacks it. (A newer kernel refuses a bad backing file with EINVAL
                    // too, and the two steps then fail as well.)
                    ONE_CALL.store(false, Ordering::Relaxed);
                }
                return Ok((dev, path));
            }
            // Perhaps a kernel without LOOP_CONFIGURE: the two-step way, on the same device.
            Err(e) if configure && matches!(e.raw_os_error(), Some(ENOTTY) | Some(EINVAL)) => {
                configure = false;
            }
            // Another process took the device between next_free and attach.
            Err(e) if e.raw_os_error() == Some(EBUSY) && attempt < 16 => attempt += 1,
            Err(e) => return Err(Error::io(file, "attaching a loop device", e)),
        }
    }
}

/// The sysfs directory of loop device `device` (`/sys/block/loop3/loop`).
fn sysfs(device: &Path) -> Option<PathBuf> {
    Some(
        Path::new("/sys/block")
            .join(device.file_name()?)
            .join("loop"),
    )
}

/// The file loop device `device` is backed by, or `None` when it is free.
pub(crate) fn backing_file(device: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(sysfs(device)?.join("backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

/// Where in its backing file loop device `device` starts.
fn offset(device: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(sysfs(device)?.join("offset")).ok()?;
    text.trim().parse().ok()
}

/// True when `device` is attached to `file` at `at` (any offset when `None`).
pub(crate) fn is_backed_by(device: &Path, file: &Path, at: Option<u64>) -> bool {
    backing_file(device).is_some_and(|b| b == file)
        && at.is_none_or(|at| offset(device) == Some(at))
}

/// Every loop device attached to `file` (at `at`, when given).
pub(crate) fn backed_by(file: &Path, at: Option<u64>) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .map(|e| Path::new("/dev").join(e.file_name()))
        .filter(|dev| is_backed_by(dev, file, at))
        .collect();
    found.sort();
    found
}

/// Waits until `device` no longer reads `file` (at `at`): it is free, or another process
/// has attached it to something else since (the kernel hands out the lowest free
/// number, so a busy host reuses it at once, and waiting for it to be free would wait on
/// that other user).
pub(crate) fn wait_detached(device: &Path, file: &Path, at: Option<u64>) -> Result<()> {
    let start = Instant::now();
    while is_backed_by(device, file, at) {
        if start.elapsed() > DETACH_WAIT {
            return Err(Error::new(
                ErrorKind::Busy,
                "loop device still in use (mounted or open) after detach",
            )
            .with_path(device));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Detaches `device`, which must still be attached to `file` (a device another process
/// has since taken is left alone), and waits until the kernel lets go of it. A device
/// still open or mounted is detached by the kernel once it is closed (autoclear); then
/// the wait fails with `Busy`.
pub(crate) fn detach(device: &Path, file: &Path, at: Option<u64>) -> Result<()> {
    if !is_backed_by(device, file, at) {
        return Ok(());
    }
    let dev = LoopDevice::open(device).map_err(|e| Error::io(device, "opening loop device", e))?;
    match dev.detach() {
        Ok(()) => {}
        // ENXIO: it was detached in between.
        Err(e) if e.raw_os_error() == Some(6) => return Ok(()),
        Err(e) => return Err(Error::io(device, "detaching loop device", e)),
    }
    // The kernel defers the detach while any descriptor is open, ours included.
    drop(dev);
    wait_detached(device, file, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detach_wait_ends_when_the_device_reads_another_file_not_when_it_is_free_needs_root_loop() {
        use testkit::Requirement::{Path as DevPath, Root};
        if !testkit::require(
            "a_detach_wait_ends_when_the_device_reads_another_file_not_when_it_is_free_needs_root_loop",
            &[Root, DevPath("/dev/loop-control")],
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
        for file in [&ours, &theirs] {
            std::fs::write(file, vec![0u8; 64 << 10]).unwrap();
        }
        let theirs = theirs.canonicalize().unwrap();
        // The device we detached, taken at once by another process for its own file.
        let (dev, device) = attach(&theirs, 0, 64 << 10, true).unwrap();
        let waited = wait_detached(&device, &ours.canonicalize().unwrap(), None);
        // Still reading our file, it is waited for (and here never let go).
        let held = std::thread::spawn({
            let (device, theirs) = (device.clone(), theirs.clone());
            move || wait_detached(&device, &theirs, None)
        });
        std::thread::sleep(Duration::from_millis(200));
        let still_waiting = !held.is_finished();
        dev.detach().unwrap();
        drop(dev);
        let after = held.join().unwrap();
        assert!(waited.is_ok(), "{waited:?}");
        assert!(still_waiting);
        assert!(after.is_ok(), "{after:?}");
    }
}
