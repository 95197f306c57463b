//! # syscalls: safe wrappers of the Linux calls that `nix` and `rustix` do not wrap
//!
//! Every library crate of strata says `#![forbid(unsafe_code)]`. A system call that has no
//! safe wrapper in `nix` or `rustix` gets one here, and only here, each `unsafe` block with
//! a `// SAFETY:` line, so the workspace's unsafe code is this one small file to review.
//!
//! It owns only the wrappers: no policy about when to call them.
//!
//! - [`sync_file_range`]: start writeback of a byte range, or wait for it, without making
//!   the file's metadata durable (`sync_file_range(2)`).
//! - [`loop_configure`]: attach a file to a loop device, with its offset, size limit and
//!   flags, in one `LOOP_CONFIGURE` ioctl (Linux 5.8+), instead of `LOOP_SET_FD` and then
//!   `LOOP_SET_STATUS64`, whose queue freeze on a live device costs milliseconds each.
//!
//! ```
//! use std::io::Write;
//! use std::os::fd::AsFd;
//! let mut f = tempfile::tempfile().unwrap();
//! f.write_all(&[1u8; 8192]).unwrap();
//! syscalls::sync_file_range(f.as_fd(), 0..8192, syscalls::SyncRange::START).unwrap();
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

use std::io;
use std::ops::{BitOr, Range};
use std::os::fd::{AsRawFd, BorrowedFd};

/// What [`sync_file_range`] does with the range: the `SYNC_FILE_RANGE_*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRange(libc::c_uint);

impl SyncRange {
    /// Start writeback of the range's dirty pages, without waiting (`WRITE`).
    pub const START: SyncRange = SyncRange(libc::SYNC_FILE_RANGE_WRITE);
    /// Wait for writeback already under way in the range before anything else
    /// (`WAIT_BEFORE`).
    pub const WAIT_BEFORE: SyncRange = SyncRange(libc::SYNC_FILE_RANGE_WAIT_BEFORE);
    /// Wait for the writeback to end afterwards (`WAIT_AFTER`).
    pub const WAIT_AFTER: SyncRange = SyncRange(libc::SYNC_FILE_RANGE_WAIT_AFTER);
    /// Write the range out and wait until it is written: all three flags.
    pub const WRITE_AND_WAIT: SyncRange = SyncRange(
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
    );
}

impl BitOr for SyncRange {
    type Output = SyncRange;

    fn bitor(self, other: SyncRange) -> SyncRange {
        SyncRange(self.0 | other.0)
    }
}

/// `sync_file_range(2)` over `range` of the file `fd`. Nothing it does makes data durable
/// (no metadata, no disk cache flush): it only decides when the kernel writes pages out.
/// A range past what the call can name (offsets beyond `i64::MAX`) is left alone.
pub fn sync_file_range(fd: BorrowedFd<'_>, range: Range<u64>, what: SyncRange) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(range.start),
        libc::off64_t::try_from(range.end.saturating_sub(range.start)),
    ) else {
        return Ok(());
    };
    // SAFETY: sync_file_range takes a file descriptor, two integers and flags, and reads or
    // writes no memory of ours; `fd` is borrowed, so it stays open for the call.
    #[allow(unsafe_code)]
    let r = unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, what.0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `LOOP_CONFIGURE` (`<linux/loop.h>`).
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
/// `LO_FLAGS_READ_ONLY`.
const LO_FLAGS_READ_ONLY: u32 = 1;

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// Where and how [`loop_configure`] attaches its backing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoopSetup {
    /// Where in the backing file the device starts.
    pub offset: u64,
    /// How many bytes of it the device shows (0: up to the end of the file).
    pub size_limit: u64,
    /// A read-only device.
    pub read_only: bool,
}

/// Attaches `backing` to the free loop device `device` as `setup` says, in one
/// `LOOP_CONFIGURE` ioctl. Fails with `ENOTTY` or `EINVAL` on a kernel older than 5.8,
/// with `EBUSY` when the device was taken meanwhile; both descriptors stay the caller's
/// (the kernel holds its own reference to the backing file).
pub fn loop_configure(
    device: &impl AsRawFd,
    backing: BorrowedFd<'_>,
    setup: LoopSetup,
) -> io::Result<()> {
    let fd = u32::try_from(backing.as_raw_fd())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let config = LoopConfig {
        fd,
        block_size: 0,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: setup.offset,
            lo_sizelimit: setup.size_limit,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: if setup.read_only {
                LO_FLAGS_READ_ONLY
            } else {
                0
            },
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which `config` is (its size
    // is asserted above) and which outlives the call; the device and the backing file are
    // borrowed, so both descriptors stay open for it.
    #[allow(unsafe_code)]
    let r = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE as _, &config) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn starting_and_waiting_for_a_written_range_succeed_and_a_pipe_fails() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 1 << 16]).unwrap();
        sync_file_range(f.as_fd(), 0..1 << 16, SyncRange::START).unwrap();
        sync_file_range(f.as_fd(), 0..1 << 16, SyncRange::WRITE_AND_WAIT).unwrap();
        sync_file_range(
            f.as_fd(),
            4096..8192,
            SyncRange::WAIT_BEFORE | SyncRange::WAIT_AFTER,
        )
        .unwrap();
        // A pipe has no pages to write: the kernel's error comes back as it is.
        let (reader, _writer) = std::io::pipe().unwrap();
        let err = sync_file_range(reader.as_fd(), 0..4096, SyncRange::START).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESPIPE));
    }

    #[test]
    fn configuring_what_is_not_a_loop_device_is_refused_by_the_kernel() {
        let device = tempfile::tempfile().unwrap();
        let backing = tempfile::tempfile().unwrap();
        let err = loop_configure(&device, backing.as_fd(), LoopSetup::default()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
    }

    /// What sysfs says of loop device `name` (`loop3`): `/sys/block/<name>/<key>`.
    fn sysfs(name: &str, key: &str) -> String {
        std::fs::read_to_string(format!("/sys/block/{name}/{key}"))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[test]
    fn a_loop_device_configured_in_one_call_shows_the_file_from_its_offset_for_its_size_read_only_needs_root_loop()
     {
        use std::io::{Read, Seek};
        use testkit::Requirement::{Path as DevPath, Root};
        if !testkit::require(
            "a_loop_device_configured_in_one_call_shows_the_file_from_its_offset_for_its_size_read_only_needs_root_loop",
            &[Root, DevPath("/dev/loop-control")],
        ) {
            return;
        }
        // 64 KiB of numbered 512-byte blocks; the device starts at block 16 and shows 32.
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for block in 0u8..128 {
            file.write_all(&[block; 512]).unwrap();
        }
        let backing = std::fs::File::open(file.path()).unwrap();
        let control = loopdev::LoopControl::open().unwrap();
        let setup = LoopSetup {
            offset: 16 * 512,
            size_limit: 32 * 512,
            read_only: true,
        };
        let device = loop {
            let device = control.next_free().unwrap();
            match loop_configure(&device, backing.as_fd(), setup) {
                // Taken by another process between next_free and configure.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                configured => break configured.map(|()| device).unwrap(),
            }
        };
        let path = device.path().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let seen = (
            sysfs(&name, "loop/backing_file"),
            sysfs(&name, "loop/offset"),
            sysfs(&name, "loop/sizelimit"),
            sysfs(&name, "ro"),
            sysfs(&name, "size"),
        );
        let mut contents = Vec::new();
        let mut reader = std::fs::File::open(&path).unwrap();
        reader.rewind().unwrap();
        reader.read_to_end(&mut contents).unwrap();
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut w| w.write_all(&[0xff; 512]).and_then(|()| w.sync_all()));
        drop(reader);
        device.detach().unwrap();
        assert_eq!(
            seen,
            (
                file.path().display().to_string(),
                "8192".to_owned(),
                "16384".to_owned(),
                "1".to_owned(),
                "32".to_owned()
            )
        );
        let expected: Vec<u8> = (16u8..48).flat_map(|b| [b; 512]).collect();
        assert!(
            contents == expected,
            "the device does not show blocks 16 to 47"
        );
        assert!(written.is_err(), "a read-only device took a write");
    }
}
