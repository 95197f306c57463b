//! Early writeback: long runs of written data are pushed toward the disk while the
//! writer goes on, so that the flush which ends a write waits for the last few mebibytes
//! instead of all of them (the copy and the disk then work side by side).
//!
//! `sync_file_range(2)` comes from the `syscalls` crate's safe wrapper. Nothing here makes
//! data durable: the flush's `fdatasync` still does, and this only decides how much is
//! left for it to do.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::os::fd::BorrowedFd;

use syscalls::{SyncRange, sync_file_range};

/// A contiguous run is started on its way to the disk once it is this long.
const WINDOW: u64 = 8 << 20;
/// Runs shorter than this (metadata, scattered small writes) are left to the flush.
const WORTH_STARTING: u64 = 1 << 20;
/// At most this much started writeback is left unwaited: beyond it the writer waits for
/// the oldest run, which keeps dirty memory bounded when the disk is the slower side.
const AHEAD: u64 = 64 << 20;

/// The runs written since the last flush, on their way to the disk.
#[derive(Debug, Default)]
pub(crate) struct Writeback {
    open: Option<Range<u64>>,
    started: VecDeque<Range<u64>>,
    in_flight: u64,
}

impl Writeback {
    /// Notes `len` bytes written at `offset` to `fd`, starting writeback of the run they
    /// extend once it is long enough.
    pub(crate) fn wrote(&mut self, fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
        match &mut self.open {
            Some(run) if run.end == offset => run.end += len,
            _ => {
                if let Some(run) = self.open.take() {
                    self.start(fd, run)?;
                }
                self.open = Some(offset..offset + len);
            }
        }
        if let Some(run) = self.open.take_if(|r| r.end - r.start >= WINDOW) {
            self.start(fd, run)?;
        }
        Ok(())
    }

    /// Forgets every run: the caller has just synced the file.
    pub(crate) fn synced(&mut self) {
        *self = Writeback::default();
    }

    fn start(&mut self, fd: BorrowedFd<'_>, run: Range<u64>) -> io::Result<()> {
        let len = run.end - run.start;
        if len < WORTH_STARTING {
            return Ok(());
        }
        sync_file_range(fd, run.clone(), SyncRange::START)?;
        self.in_flight += len;
        self.started.push_back(run);
        while self.in_flight > AHEAD {
            let Some(old) = self.started.pop_front() else {
                break;
            };
            sync_file_range(fd, old.clone(), SyncRange::WRITE_AND_WAIT)?;
            self.in_flight -= old.end - old.start;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    const MIB: u64 = 1 << 20;

    #[test]
    fn contiguous_writes_make_one_run_started_at_the_window() {
        let file = tempfile::tempfile().unwrap();
        let mut wb = Writeback::default();
        for i in 0..7 {
            wb.wrote(file.as_fd(), i * MIB, MIB).unwrap();
        }
        assert!(wb.started.is_empty());
        assert_eq!(wb.open, Some(0..7 * MIB));
        wb.wrote(file.as_fd(), 7 * MIB, MIB).unwrap();
        assert_eq!(
            Vec::from(wb.started.clone()),
            vec![Range {
                start: 0,
                end: 8 * MIB
            }]
        );
        assert_eq!(wb.open, None);
    }

    #[test]
    fn a_gap_starts_the_run_before_it_and_short_runs_are_left_to_the_flush() {
        let file = tempfile::tempfile().unwrap();
        let mut wb = Writeback::default();
        wb.wrote(file.as_fd(), 0, 2 * MIB).unwrap();
        wb.wrote(file.as_fd(), 10 * MIB, 4096).unwrap();
        assert_eq!(
            Vec::from(wb.started.clone()),
            vec![Range {
                start: 0,
                end: 2 * MIB
            }]
        );
        wb.wrote(file.as_fd(), 20 * MIB, MIB).unwrap();
        assert_eq!(
            Vec::from(wb.started.clone()),
            vec![Range {
                start: 0,
                end: 2 * MIB
            }],
            "a 4 KiB run is not started"
        );
        assert_eq!(wb.in_flight, 2 * MIB);
        wb.synced();
        assert!(wb.started.is_empty() && wb.open.is_none() && wb.in_flight == 0);
    }

    #[test]
    fn started_writeback_beyond_the_limit_is_waited_for_oldest_first() {
        let file = tempfile::tempfile().unwrap();
        let mut wb = Writeback::default();
        let total = AHEAD + 3 * WINDOW;
        let mut at = 0;
        while at < total {
            wb.wrote(file.as_fd(), at, MIB).unwrap();
            at += MIB;
        }
        assert!(wb.in_flight <= AHEAD, "{} in flight", wb.in_flight);
        assert_eq!(
            wb.started.front(),
            Some(&(total - AHEAD..total - AHEAD + WINDOW))
        );
    }
}
