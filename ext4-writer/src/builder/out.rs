//! The image being written: a buffered output that only ever appends at its end, apart
//! from the holes it skips and the first blocks it fills in last.

use std::io::{Seek, SeekFrom, Write};

use crate::error::{Error, Result};
use crate::layout::{BLOCK_SIZE, BS};

/// Output buffer: data leaves in writes of this size.
const OUT_BUFFER: usize = 4 << 20;
/// File data is read from the tar in chunks of this size.
pub(super) const READ_CHUNK: usize = 1 << 20;

/// A block of zeros to compare against (slice equality is a `memcmp`).
pub(super) static ZERO_BLOCK: [u8; BS] = [0; BS];

/// The image being written, buffered, always appending at its end. The buffer stays
/// allocated (and initialized) at full size; `len` says how much of it is pending, so file
/// data can be read from the tar straight into it.
pub(super) struct Out<W> {
    inner: W,
    buf: Vec<u8>,
    /// Pending bytes at the start of `buf`.
    len: usize,
    /// Image offset of `buf[0]`.
    pos: u64,
}

impl<W: Write + Seek> Out<W> {
    /// Appends to `inner`, which is already positioned at `pos`.
    pub(super) fn new(inner: W, pos: u64) -> Self {
        Out {
            inner,
            buf: vec![0; OUT_BUFFER + READ_CHUNK],
            len: 0,
            pos,
        }
    }

    pub(super) fn next_block(&self) -> u64 {
        (self.pos + self.len as u64) / BLOCK_SIZE
    }

    pub(super) fn push(&mut self, data: &[u8]) -> Result<()> {
        if self.len + data.len() > self.buf.len() {
            self.flush()?;
        }
        if data.len() > self.buf.len() {
            self.inner.write_all(data).map_err(|source| Error::Write {
                offset: self.pos,
                source,
            })?;
            self.pos += data.len() as u64;
            return Ok(());
        }
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
        if self.len >= OUT_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends `data` padded with zeros to a whole number of blocks; returns its first block.
    pub(super) fn push_blocks(&mut self, data: &[u8]) -> Result<u64> {
        let first = self.next_block();
        self.push(data)?;
        let pad = (BS - data.len() % BS) % BS;
        self.push(&ZERO_BLOCK[..pad])?;
        Ok(first)
    }

    /// Makes sure `n` (at most [`READ_CHUNK`]) bytes after the pending ones are free.
    pub(super) fn make_room(&mut self, n: usize) -> Result<()> {
        if self.len + n > self.buf.len() {
            self.flush()?;
        }
        Ok(())
    }

    /// The free space after the pending bytes (call [`Out::make_room`] first).
    pub(super) fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// Marks `n` bytes written into [`Out::spare`] as pending.
    pub(super) fn commit(&mut self, n: usize) -> Result<()> {
        self.len += n;
        if self.len >= OUT_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<()> {
        self.inner
            .write_all(&self.buf[..self.len])
            .map_err(|source| Error::Write {
                offset: self.pos,
                source,
            })?;
        self.pos += self.len as u64;
        self.len = 0;
        Ok(())
    }

    /// Moves the end forward to `block` without writing (a hole in a fresh file).
    pub(super) fn skip_to(&mut self, block: u64) -> Result<()> {
        if block == self.next_block() {
            return Ok(());
        }
        self.flush()?;
        let offset = block * BLOCK_SIZE;
        self.inner
            .seek(SeekFrom::Start(offset))
            .map_err(|source| Error::Write { offset, source })?;
        self.pos = offset;
        Ok(())
    }

    pub(super) fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.flush()?;
        let err = |source| Error::Write { offset, source };
        self.inner.seek(SeekFrom::Start(offset)).map_err(err)?;
        self.inner.write_all(data).map_err(err)?;
        self.inner.seek(SeekFrom::Start(self.pos)).map_err(err)?;
        Ok(())
    }

    /// Flushes the target itself and hands it back. Call [`Out::flush`] or
    /// [`Out::write_at`] first: bytes still pending are not written. A failure is reported
    /// at offset 0, the flush having no one place.
    pub(super) fn into_inner(mut self) -> Result<W> {
        self.inner
            .flush()
            .map_err(|source| Error::Write { offset: 0, source })?;
        Ok(self.inner)
    }
}
