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
}
