//! [`DiskFile`]: a disk used as a file. `Read`, `Write` and `Seek` over any [`Disk`] or
//! chain, and positional I/O as `std::os::unix::fs::FileExt` has it, so that code written
//! for files (an ext4 builder, `io::copy`, a `BufReader`) reads and writes a VHDX, a sparse
//! VMDK or a differencing child directly, with no raw file in between.

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::disk::{Disk, check_range};
use crate::error::{Error, ErrorKind};

/// A [`Disk`] (or a chain, through its top disk) as a file: a cursor over the virtual
/// disk's bytes, with the semantics of a file of fixed length.
///
/// - Reads stop at the end of the disk: a read that starts at or past it returns 0 (end of
///   file), one that runs over it is short.
/// - Writes never grow the disk: one that does not fit whole between its offset and the
///   disk's end writes nothing and fails with [`io::ErrorKind::StorageFull`] (what a write
///   past the end of a block device gives, `ENOSPC`).
/// - [`SeekFrom::End`] counts from the virtual size; seeking past the end is allowed, as on
///   a file, and only reads (0) and writes (an error) there tell.
/// - [`Write::flush`] is [`Disk::flush`]: data, then the metadata pointing at it, made
///   durable (or only written, under [`crate::Durability::Unsynced`]).
///
/// Errors are [`io::Error`]s whose inner error is this crate's [`Error`], naming the disk's
/// path and offset; `io_error.downcast::<disk_image::Error>()` gives it back (see
/// [`Error`]'s conversion into `io::Error` for the kinds).
///
/// Data goes straight between the caller's buffer and the disk: nothing is buffered or
/// copied here, so large sequential writes (an ext4 builder writes 4 MiB at a time) reach
/// the format's block allocation whole. Small reads cost a call into the disk each: wrap
/// the file in a [`std::io::BufReader`] for those.
///
/// `D` is any [`Disk`]: a format's own type (`DiskFile<Vhdx>`), what [`crate::open_chain`]
/// and [`crate::create`] return (`Box<dyn Disk>`, the default), or a borrowed `&mut D`
/// that stays its owner's.
///
/// ```
/// use std::io::{Read, Seek, SeekFrom, Write};
/// use disk_image::{DiskFile, Format};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let disk = disk_image::create(&dir.path().join("a.vhdx"), Format::Vhdx, 1 << 20)?;
/// let mut file = DiskFile::new(disk);
/// file.seek(SeekFrom::End(-5))?;
/// file.write_all(b"hello")?;
/// assert!(file.write_all(b"!").is_err()); // a disk does not grow
/// file.flush()?;
///
/// file.seek(SeekFrom::End(-5))?;
/// let mut tail = Vec::new();
/// file.read_to_end(&mut tail)?; // stops at the end of the disk
/// assert_eq!(tail, b"hello");
/// let disk = file.into_inner();
/// assert_eq!(disk.size(), 1 << 20);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DiskFile<D = Box<dyn Disk>> {
    disk: D,
    pos: u64,
}

impl<D: Disk> DiskFile<D> {
    /// The disk as a file, its cursor at byte 0.
    pub fn new(disk: D) -> Self {
        DiskFile { disk, pos: 0 }
    }

    /// The disk.
    pub fn get_ref(&self) -> &D {
        &self.disk
    }

    /// The disk, to write or flush it directly (the cursor stays where it is).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let disk = disk_image::create(&dir.path().join("a.vmdk"), disk_image::Format::VmdkSparse, 1 << 20)?;
    /// let mut file = disk_image::DiskFile::new(disk);
    /// // A scratch image, rebuilt rather than recovered after a crash.
    /// file.get_mut().set_durability(disk_image::Durability::Unsynced);
    /// # Ok(()) }
    /// ```
    pub fn get_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    /// Gives the disk back. Nothing is pending here; what the disk itself holds is
    /// flushed by its own [`Disk::flush`] (or on drop, at best effort).
    pub fn into_inner(self) -> D {
        self.disk
    }

    /// Reads from `offset` into `buf`, up to the end of the disk, without moving the
    /// cursor; returns the number of bytes read: 0 at or past the end, fewer than
    /// `buf.len()` only there. As `FileExt::read_at`, through the disk's parents.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let disk = disk_image::create(&dir.path().join("a.vhdx"), disk_image::Format::Vhdx, 1 << 20)?;
    /// let file = disk_image::DiskFile::new(disk);
    /// let mut buf = [0xffu8; 8];
    /// assert_eq!(file.read_at(&mut buf, (1 << 20) - 3)?, 3);
    /// assert_eq!(file.read_at(&mut buf, 1 << 20)?, 0);
    /// # Ok(()) }
    /// ```
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let left = self.disk.size().saturating_sub(offset);
        let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        if n > 0 {
            self.disk.read_at(&mut buf[..n], offset)?;
        }
        Ok(n)
    }

    /// Fills `buf` from `offset`, without moving the cursor; a range that runs past the
    /// end of the disk reads nothing and fails with [`io::ErrorKind::UnexpectedEof`].
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.disk.path(), self.disk.size(), offset, buf.len())
            .map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, e))?;
        Ok(self.disk.read_at(buf, offset)?)
    }

    /// Writes all of `buf` at `offset`, into the top disk only, without moving the
    /// cursor, and returns `buf.len()`. A write that would reach past the end of the
    /// disk writes nothing and fails with [`io::ErrorKind::StorageFull`]; an empty one
    /// succeeds anywhere, as on a file.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let disk = disk_image::create(&dir.path().join("a.vhdx"), disk_image::Format::Vhdx, 1 << 20)?;
    /// let mut file = disk_image::DiskFile::new(disk);
    /// assert_eq!(file.write_at(b"abc", 512)?, 3);
    /// let err = file.write_at(b"abc", (1 << 20) - 2).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    /// let err = err.downcast::<disk_image::Error>().unwrap();
    /// assert_eq!(err.offset(), Some((1 << 20) - 2));
    /// # Ok(()) }
    /// ```
    pub fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        check_range(self.disk.path(), self.disk.size(), offset, buf.len())
            .map_err(|e| io::Error::new(io::ErrorKind::StorageFull, e))?;
        self.disk.write_at(buf, offset)?;
        Ok(buf.len())
    }

    /// [`DiskFile::write_at`], which writes all of `buf` or fails, for code written
    /// against `FileExt::write_all_at`.
    pub fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_at(buf, offset).map(|_| ())
    }
}

impl<D: Disk> Read for DiskFile<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<D: Disk> Write for DiskFile<D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.write_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(self.disk.flush()?)
    }
}

impl<D: Disk> Seek for DiskFile<D> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let to = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(delta) => self.disk.size().checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        let Some(to) = to else {
            let e = Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "seeking to {pos:?}, with the cursor at {} of {} bytes, lands before byte \
                     0 or past 2^64",
                    self.pos,
                    self.disk.size()
                ),
            )
            .with_path(self.disk.path());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
        };
        self.pos = to;
        Ok(to)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use storage_core::Report;

    use super::*;
    use crate::{Format, create, create_child, open, open_chain};

    /// Whole sectors, as every format wants, but not whole VHDX blocks (2 MiB), VMDK grains
    /// (64 KiB) or pages: the end falls inside all three.
    const SIZE: u64 = (5 << 20) + 1536;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    fn new_file(dir: &Path, name: &str, format: Format, size: u64) -> DiskFile {
        DiskFile::new(create(&dir.join(name), format, size).unwrap())
    }

    #[test]
    fn writes_and_reads_follow_the_cursor_and_seek_counts_from_the_virtual_size() {
        let dir = tempfile::tempdir().unwrap();
        for format in [
            Format::Raw,
            Format::Vhdx,
            Format::VmdkSparse,
            Format::VhdDynamic,
            Format::VhdFixed,
        ] {
            let mut f = new_file(dir.path(), &format!("a.{format}"), format, SIZE);
            assert_eq!(f.stream_position().unwrap(), 0);
            let a = pattern(3 << 20, 1);
            f.write_all(&a).unwrap();
            assert_eq!(f.stream_position().unwrap(), 3 << 20);
            assert_eq!(f.seek(SeekFrom::End(-4)).unwrap(), SIZE - 4);
            f.write_all(b"tail").unwrap();
            assert_eq!(f.stream_position().unwrap(), SIZE);
            assert_eq!(f.seek(SeekFrom::Start(100)).unwrap(), 100);
            assert_eq!(f.seek(SeekFrom::Current(-50)).unwrap(), 50);
            let mut buf = vec![0u8; 200];
            f.read_exact(&mut buf).unwrap();
            assert_eq!(buf, a[50..250], "{format}");
            assert_eq!(f.stream_position().unwrap(), 250);

            // Positional I/O leaves the cursor alone.
            f.write_all_at(b"xyz", 7).unwrap();
            let mut three = [0u8; 3];
            f.read_exact_at(&mut three, 7).unwrap();
            assert_eq!(&three, b"xyz");
            assert_eq!(f.stream_position().unwrap(), 250);

            f.rewind().unwrap();
            let mut all = Vec::new();
            f.read_to_end(&mut all).unwrap();
            let mut want = a.clone();
            want[7..10].copy_from_slice(b"xyz");
            want.resize(SIZE as usize - 4, 0);
            want.extend_from_slice(b"tail");
            assert!(all == want, "{format}: the disk reads back as written");
        }
    }

    #[test]
    fn reads_end_at_the_disk_end_short_then_zero_and_exact_reads_past_it_fail() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = new_file(dir.path(), "a.vhdx", Format::Vhdx, 1 << 20);
        let mut buf = vec![0xaau8; 4096];
        f.seek(SeekFrom::End(-1000)).unwrap();
        assert_eq!(f.read(&mut buf).unwrap(), 1000, "short at the end");
        assert!(buf[..1000].iter().all(|&b| b == 0));
        assert_eq!(buf[1000], 0xaa, "nothing past what was read is touched");
        assert_eq!(f.read(&mut buf).unwrap(), 0, "then end of file");
        f.seek(SeekFrom::Start(u64::MAX)).unwrap();
        assert_eq!(f.read(&mut buf).unwrap(), 0, "far past the end too");
        assert_eq!(f.read_at(&mut buf, 1 << 20).unwrap(), 0);
        assert_eq!(f.read_at(&mut [], 0).unwrap(), 0);

        let err = f.read_exact_at(&mut buf, (1 << 20) - 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            err.to_string().contains("a.vhdx") && err.to_string().contains("offset 1048566"),
            "{err}"
        );
    }

    #[test]
    fn a_write_past_the_end_writes_nothing_and_fails_as_storage_full_naming_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = new_file(dir.path(), "a.vhdx", Format::Vhdx, 1 << 20);
        f.seek(SeekFrom::End(-3)).unwrap();
        let err = f.write(b"four").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(f.stream_position().unwrap(), (1 << 20) - 3, "cursor kept");
        let mut tail = [0xffu8; 3];
        f.read_exact_at(&mut tail, (1 << 20) - 3).unwrap();
        assert_eq!(tail, [0; 3], "nothing of the refused write landed");

        // The disk's own error is inside, whole, and printed once.
        let printed = Report(&err).to_string();
        let path = dir.path().join("a.vhdx");
        assert_eq!(
            printed.matches(&*path.to_string_lossy()).count(),
            1,
            "{printed}"
        );
        assert!(printed.contains("at offset 1048573"), "{printed}");
        let inner = err.downcast::<Error>().unwrap();
        assert_eq!(inner.kind(), ErrorKind::OutOfRange);
        assert_eq!(inner.path(), Some(path.as_path()));
        assert_eq!(inner.offset(), Some((1 << 20) - 3));

        // Past the end entirely: refused as well; an empty write is fine anywhere.
        f.seek(SeekFrom::Start(2 << 20)).unwrap();
        assert_eq!(
            f.write_all(b"x").unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
        assert_eq!(f.write(&[]).unwrap(), 0);
        assert_eq!(
            f.write_all_at(b"x", 1 << 20).unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
    }

    #[test]
    fn seeking_before_the_start_or_past_two_to_the_64_fails_and_keeps_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = new_file(dir.path(), "a.raw", Format::Raw, 4096);
        for (from, bad) in [
            (10, SeekFrom::End(-4097)),
            (10, SeekFrom::Current(-11)),
            (u64::MAX - 5, SeekFrom::Current(6)),
        ] {
            f.seek(SeekFrom::Start(from)).unwrap();
            let err = f.seek(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert!(err.to_string().contains("a.raw"), "{err}");
            assert_eq!(f.stream_position().unwrap(), from);
        }
        assert_eq!(f.seek(SeekFrom::End(-4096)).unwrap(), 0);
    }

    #[test]
    fn flush_makes_the_writes_visible_to_another_opener_of_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.vhdx");
        let mut f = DiskFile::new(create(&path, Format::Vhdx, SIZE).unwrap());
        let data = pattern(3 << 20, 7);
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&data).unwrap();
        // A VHDX block is reachable only once its BAT entry is written, by the flush.
        let before = DiskFile::new(open(&path, true).unwrap());
        let mut seen = vec![0u8; data.len()];
        before.read_exact_at(&mut seen, 1 << 20).unwrap();
        assert!(seen.iter().all(|&b| b == 0), "not flushed yet");
        f.flush().unwrap();
        let after = DiskFile::new(open(&path, true).unwrap());
        after.read_exact_at(&mut seen, 1 << 20).unwrap();
        assert!(seen == data, "flushed");
    }

    #[test]
    fn a_read_only_disk_refuses_writes_as_a_read_only_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.vmdk");
        drop(create(&path, Format::VmdkSparse, 1 << 20).unwrap());
        let mut f = DiskFile::new(open(&path, true).unwrap());
        let err = f.write_all(b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ReadOnlyFilesystem);
        assert_eq!(err.downcast::<Error>().unwrap().kind(), ErrorKind::ReadOnly);
    }

    #[test]
    fn a_child_reads_through_its_parent_and_writes_land_in_the_child_only() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.vhdx");
        let child = dir.path().join("child.vhdx");
        let mut expected = pattern(SIZE as usize, 3);
        {
            let mut disk = create(&base, Format::Vhdx, SIZE).unwrap();
            // Borrowed: the disk stays here, and is flushed here.
            DiskFile::new(&mut disk).write_all(&expected).unwrap();
            disk.flush().unwrap();
        }
        let base_bytes = std::fs::read(&base).unwrap();
        drop(create_child(&child, &base).unwrap());

        let mut f = DiskFile::new(open_chain(&child, false).unwrap());
        assert!(
            f.get_ref().parent().is_some(),
            "the chain is under the file"
        );
        // Across a block boundary (2 MiB), not sector-aligned, in the child.
        let patch = pattern(5000, 9);
        let at = (2 << 20) - 2500;
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&patch).unwrap();
        expected[at as usize..at as usize + patch.len()].copy_from_slice(&patch);
        f.flush().unwrap();
        f.rewind().unwrap();
        let mut all = Vec::new();
        f.read_to_end(&mut all).unwrap();
        assert!(all == expected, "child over parent reads as written");
        let disk = f.into_inner();
        assert_eq!(disk.format(), Format::VhdxDifferencing);
        drop(disk);
        assert!(
            std::fs::read(&base).unwrap() == base_bytes,
            "parent untouched"
        );

        let reopened = DiskFile::new(open_chain(&child, true).unwrap());
        let mut again = vec![0u8; expected.len()];
        reopened.read_exact_at(&mut again, 0).unwrap();
        assert!(again == expected, "and so it reads once reopened");
    }
}
