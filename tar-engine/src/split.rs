//! Byte-exact layers: what an import needs to give its tar back byte for byte, as
//! containers/storage's tar-split keeps it.
//!
//! While [`crate::ingest()`] reads a tar, a [`Splitter`] watches the uncompressed stream
//! go by and parses its blocks on its own (it never decides anything: the entry stream
//! does). It records the stream as a list of [`Record`]s: the raw bytes of every header
//! block, PAX and GNU extension record, padding, the end-of-archive blocks and whatever
//! follows them, and, for the payload of each regular file, only a reference (the file's
//! path in the tree the import made, its size and its CRC-32). The payloads of entries
//! that do not land as a plain file of that name (sparse files, whiteouts, anything that
//! is not a regular file) are kept raw. The records end with the length and sha256 of the
//! whole stream.
//!
//! [`reassemble`] writes the tar back from the records and the tree: it first reads the
//! whole reconstruction once, checking every file's size and CRC-32 and the sha256 of the
//! result against what was recorded, and answers `None` (for the caller's deterministic
//! writer) when anything differs; only then does it write. So what it writes is always
//! exactly the tar that was imported. The tree must not have been written since the import
//! (a second diff, a writable mount): whoever owns the layer removes its records then,
//! because files *added* to the tree are not in them.
//!
//! The file is zstd-compressed: tar headers are mostly zeros and names.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};

use crate::confine::{normalize, os};
use storage_core::{IoContext, Op, Result};

/// The first bytes of a tar-split file.
const MAGIC: &[u8; 16] = b"strata-tarsplit1";
/// A raw segment: `u32` length, bytes.
const TAG_RAW: u8 = 1;
/// A file reference: `u32` path length, path, `u64` size, `u32` CRC-32.
const TAG_FILE: u8 = 2;
/// The end: `u64` length of the whole stream, its 32-byte sha256.
const TAG_END: u8 = 0xff;
/// Raw bytes are flushed as one record at most this long.
const MAX_RAW: usize = 1 << 20;
const BLOCK: usize = 512;

/// One piece of a recorded tar stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Bytes written as they are.
    Raw(Vec<u8>),
    /// The content of the file at `path` (relative to the layer's tree), `size` bytes long,
    /// whose CRC-32 is `crc`.
    File {
        /// The file's normalised path in the tree.
        path: Vec<u8>,
        /// Its length.
        size: u64,
        /// CRC-32 (IEEE) of its content.
        crc: u32,
    },
}

/// Writes records to a file as they come: `path.part` first, renamed over `path` by
/// [`SplitWriter::commit`] once the stream's digest is known.
pub struct SplitWriter {
    path: PathBuf,
    part: PathBuf,
    out: Option<zstd::Encoder<'static, BufWriter<File>>>,
    raw: Vec<u8>,
}

impl SplitWriter {
    /// Starts the records of a tar-split file to be committed at `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let file = File::create(&part).ctx(|| format!("create {}", part.display()))?;
        let mut out = zstd::Encoder::new(BufWriter::new(file), 3)
            .ctx(|| format!("start tar-split {}", part.display()))?;
        out.write_all(MAGIC)
            .ctx(|| format!("write {}", part.display()))?;
        Ok(SplitWriter {
            path: path.to_owned(),
            part,
            out: Some(out),
            raw: Vec::new(),
        })
    }

    fn out(&mut self) -> io::Result<&mut zstd::Encoder<'static, BufWriter<File>>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("tar-split already finished"))
    }

    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.raw.extend_from_slice(bytes);
        if self.raw.len() >= MAX_RAW {
            self.flush_raw()?;
        }
        Ok(())
    }

    fn flush_raw(&mut self) -> io::Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.raw);
        let out = self.out()?;
        out.write_all(&[TAG_RAW])?;
        out.write_all(
            &u32::try_from(raw.len())
                .map_err(io::Error::other)?
                .to_le_bytes(),
        )?;
        out.write_all(&raw)?;
        self.raw = raw;
        self.raw.clear();
        Ok(())
    }

    fn file(&mut self, path: &[u8], size: u64, crc: u32) -> io::Result<()> {
        self.flush_raw()?;
        let out = self.out()?;
        out.write_all(&[TAG_FILE])?;
        out.write_all(
            &u32::try_from(path.len())
                .map_err(io::Error::other)?
                .to_le_bytes(),
        )?;
        out.write_all(path)?;
        out.write_all(&size.to_le_bytes())?;
        out.write_all(&crc.to_le_bytes())
    }

    /// Ends the records with the stream's length and `sha256:<hex>` digest, makes the file
    /// durable and renames it into place.
    pub fn commit(mut self, size: u64, digest: &str) -> Result<()> {
        let part = self.part.clone();
        let ctx = || format!("write tar-split {}", part.display());
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let sum = hex::decode(hex)
            .ok()
            .filter(|s| s.len() == 32)
            .ok_or_else(|| io::Error::other(format!("{digest:?} is not a sha256 digest")))
            .ctx(ctx)?;
        self.flush_raw().ctx(ctx)?;
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("finished"))
            .ctx(ctx)?;
        out.write_all(&[TAG_END]).ctx(ctx)?;
        out.write_all(&size.to_le_bytes()).ctx(ctx)?;
        out.write_all(&sum).ctx(ctx)?;
        let file = out
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .ctx(ctx)?;
        file.sync_all().ctx(ctx)?;
        std::fs::rename(&self.part, &self.path)
            .ctx(|| format!("rename {} into place", self.part.display()))?;
        Ok(())
    }
}

impl Drop for SplitWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            // Not committed: nothing half-written stays.
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

/// What the splitter is in the middle of.
enum State {
    /// Gathering a header block.
    Header,
    /// Gathering one more block of an old GNU sparse header's extension.
    SparseExtension,
    /// The payload of an entry, `left` bytes to go, then `pad` bytes of padding.
    Payload { left: u64, pad: u64, how: Payload },
    /// Past the end-of-archive block: every byte is kept raw.
    Trailer,
}

/// What becomes of a payload's bytes.
enum Payload {
    /// Kept raw.
    Raw,
    /// Kept raw and gathered, for the next header: a PAX header (`x`) or GNU long name
    /// (`L`).
    Meta(u8, Vec<u8>),
    /// A file's content, referenced by path.
    File {
        path: Vec<u8>,
        size: u64,
        crc: crc32fast::Hasher,
    },
}

/// A reader over a tar stream that records it into a [`SplitWriter`] as it is read.
pub struct Splitter<R> {
    inner: R,
    out: SplitWriter,
    state: State,
    block: Vec<u8>,
    /// The records of the PAX header and the GNU long name read before the current
    /// header, for the entry they describe.
    pax: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    /// The payload that follows an old GNU sparse header's extension blocks.
    after_extension: Option<(u64, u64)>,
    /// The first write error; reported by [`Splitter::finish`].
    failed: Option<io::Error>,
}

impl<R: Read> Splitter<R> {
    /// Records the tar stream read through `inner` into `out`.
    pub fn new(inner: R, out: SplitWriter) -> Self {
        Splitter {
            inner,
            out,
            state: State::Header,
            block: Vec::with_capacity(BLOCK),
            pax: None,
            long_name: None,
            after_extension: None,
            failed: None,
        }
    }

    /// Reads what is left of the stream (the end-of-archive blocks and anything after
    /// them) into the records, and hands the writer back for its commit.
    pub fn finish(mut self) -> io::Result<SplitWriter> {
        io::copy(&mut self, &mut io::sink())?;
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        match std::mem::replace(&mut self.state, State::Trailer) {
            State::Payload {
                how: Payload::File { .. },
                ..
            } => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tar stream ends inside a file",
            )),
            _ => {
                let block = std::mem::take(&mut self.block);
                self.out.raw(&block)?;
                Ok(self.out)
            }
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Trailer => {
                    self.out.raw(bytes)?;
                    return Ok(());
                }
                State::Header | State::SparseExtension => {
                    let take = (BLOCK - self.block.len()).min(bytes.len());
                    self.block.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.block.len() == BLOCK {
                        let block = std::mem::take(&mut self.block);
                        self.out.raw(&block)?;
                        if matches!(self.state, State::Header) {
                            self.header(&block);
                        } else if block[504] != 1 {
                            // The last extension block: `tar` (the import's reader) reads on
                            // only while its `isextended` byte is exactly 1.
                            let (left, pad) = self.after_extension.take().unwrap_or((0, 0));
                            self.state = State::Payload {
                                left,
                                pad,
                                how: Payload::Raw,
                            };
                            self.settle();
                        }
                        self.block = block;
                        self.block.clear();
                    }
                }
                State::Payload { left, pad, how } => {
                    if *left > 0 {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(bytes.len());
                        let (now, rest) = bytes.split_at(take);
                        match how {
                            Payload::Raw => self.out.raw(now)?,
                            Payload::Meta(_, buf) => {
                                buf.extend_from_slice(now);
                                self.out.raw(now)?;
                            }
                            Payload::File { crc, .. } => crc.update(now),
                        }
                        *left -= take as u64;
                        bytes = rest;
                        if *left == 0
                            && matches!(how, Payload::File { .. })
                            && let Payload::File { path, size, crc } =
                                std::mem::replace(how, Payload::Raw)
                        {
                            self.out.file(&path, size, crc.finalize())?;
                        }
                    } else if *pad > 0 {
                        let take = usize::try_from(*pad).unwrap_or(usize::MAX).min(bytes.len());
                        self.out.raw(&bytes[..take])?;
                        *pad -= take as u64;
                        bytes = &bytes[take..];
                    }
                    self.settle();
                }
            }
        }
        Ok(())
    }

    /// Reads a header block (already recorded raw) and sets up its payload.
    ///
    /// Headers are read as `tar::Archive` reads them for the import, so that a file is
    /// recorded under the path it was written to: a GNU long name, GNU long link or PAX
    /// header in a ustar or GNU header describes the entry after it; the long name wins
    /// over a PAX `path`; a PAX `size` replaces the header's.
    fn header(&mut self, block: &[u8]) {
        if block.iter().all(|&b| b == 0) {
            self.state = State::Trailer;
            return;
        }
        let header = tar::Header::from_byte_slice(block);
        let kind = header.entry_type();
        let extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        // A size the import cannot read fails it; the records then go unused.
        let mut size = header.entry_size().unwrap_or(0);
        if !extension && let Some(s) = self.pax.as_deref().and_then(pax_size) {
            size = s;
        }
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        let how = if recognized && (kind.is_gnu_longname() || kind.is_pax_local_extensions()) {
            Payload::Meta(kind.as_byte(), Vec::new())
        } else if recognized && kind.is_gnu_longlink() {
            Payload::Raw
        } else {
            // The entry itself, which uses up what was said before it.
            let (long, pax) = (self.long_name.take(), self.pax.take());
            if kind.is_gnu_sparse() && header.as_gnu().is_some_and(|g| g.is_extended()) {
                self.after_extension = Some((size, pad));
                self.state = State::SparseExtension;
                return;
            }
            if kind.is_file() || kind == tar::EntryType::Continuous {
                let name = long
                    .or_else(|| pax.as_deref().and_then(pax_path).map(<[u8]>::to_vec))
                    .unwrap_or_else(|| header.path_bytes().into_owned());
                let path = normalize(&name);
                let base = path.rsplit(|&b| b == b'/').next().unwrap_or(&[]);
                let sparse = pax.as_deref().is_some_and(pax_sparse);
                if sparse || size == 0 || path.is_empty() || base.starts_with(b".wh.") {
                    Payload::Raw
                } else {
                    Payload::File {
                        path,
                        size,
                        crc: crc32fast::Hasher::new(),
                    }
                }
            } else {
                Payload::Raw
            }
        };
        self.state = State::Payload {
            left: size,
            pad,
            how,
        };
        self.settle();
    }

    /// Ends a payload that is all read: a PAX header or long name is remembered for the
    /// header that follows.
    fn settle(&mut self) {
        let State::Payload {
            left: 0, pad: 0, ..
        } = self.state
        else {
            return;
        };
        if let State::Payload {
            how: Payload::Meta(kind, mut data),
            ..
        } = std::mem::replace(&mut self.state, State::Header)
        {
            if kind == b'L' {
                // As `tar` takes it: without one trailing NUL.
                if data.last() == Some(&0) {
                    data.pop();
                }
                self.long_name = Some(data);
            } else {
                self.pax = Some(data);
            }
        }
    }
}

/// A PAX header's `path`, as `tar` takes it: the first well-formed record of it.
fn pax_path(pax: &[u8]) -> Option<&[u8]> {
    tar::PaxExtensions::new(pax)
        .filter_map(|r| r.ok())
        .find(|r| r.key_bytes() == b"path")
        .map(|r| r.value_bytes())
}

/// A PAX header's `size`, as `tar` takes it: the first record of it, unless a malformed
/// record comes first.
fn pax_size(pax: &[u8]) -> Option<u64> {
    for record in tar::PaxExtensions::new(pax) {
        let record = record.ok()?;
        if record.key_bytes() == b"size" {
            return std::str::from_utf8(record.value_bytes()).ok()?.parse().ok();
        }
    }
    None
}

/// Whether a PAX header describes a sparse file (`GNU.sparse.*`), whose data is kept raw.
fn pax_sparse(pax: &[u8]) -> bool {
    tar::PaxExtensions::new(pax)
        .filter_map(|r| r.ok())
        .any(|r| r.key_bytes().starts_with(b"GNU.sparse."))
}

impl<R: Read> Read for Splitter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.failed.is_none()
            && let Err(e) = self.feed(&buf[..n])
        {
            self.failed = Some(e);
        }
        Ok(n)
    }
}

/// Reads the records of a tar-split file.
pub struct SplitReader {
    input: zstd::Decoder<'static, BufReader<BufReader<File>>>,
    path: PathBuf,
}

/// One item of a tar-split file: a [`Record`], or its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A piece of the stream.
    Record(Record),
    /// The end: the whole stream's length and sha256.
    End {
        /// Length of the tar stream.
        size: u64,
        /// Its sha256.
        sha256: [u8; 32],
    },
}

impl SplitReader {
    /// Opens the tar-split file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).ctx(|| format!("open tar-split {}", path.display()))?;
        let mut input = zstd::Decoder::new(BufReader::new(file))
            .ctx(|| format!("read tar-split {}", path.display()))?;
        let mut magic = [0u8; 16];
        input
            .read_exact(&mut magic)
            .and_then(|()| {
                (&magic == MAGIC)
                    .then_some(())
                    .ok_or_else(|| io::Error::other("not a strata tar-split file"))
            })
            .ctx(|| format!("read tar-split {}", path.display()))?;
        Ok(SplitReader {
            input,
            path: path.to_owned(),
        })
    }

    /// The next item; an error at the end of the file, which must end with [`Item::End`].
    pub fn next_item(&mut self) -> Result<Item> {
        let ctx = || format!("read tar-split {}", self.path.display());
        let mut tag = [0u8; 1];
        self.input.read_exact(&mut tag).ctx(ctx)?;
        let u32_ = |r: &mut dyn Read| -> io::Result<u32> {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            Ok(u32::from_le_bytes(b))
        };
        let u64_ = |r: &mut dyn Read| -> io::Result<u64> {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            Ok(u64::from_le_bytes(b))
        };
        let bytes = |r: &mut dyn Read, n: u32| -> io::Result<Vec<u8>> {
            let mut v = Vec::new();
            r.take(u64::from(n)).read_to_end(&mut v)?;
            if v.len() != n as usize {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok(v)
        };
        let input: &mut dyn Read = &mut self.input;
        let item = match tag[0] {
            TAG_RAW => u32_(input).and_then(|n| bytes(input, n)).map(Record::Raw),
            TAG_FILE => u32_(input).and_then(|n| {
                let path = bytes(input, n)?;
                let size = u64_(input)?;
                let crc = u32_(input)?;
                Ok(Record::File { path, size, crc })
            }),
            TAG_END => {
                let size = u64_(input).ctx(ctx)?;
                let mut sha256 = [0u8; 32];
                input.read_exact(&mut sha256).ctx(ctx)?;
                return Ok(Item::End { size, sha256 });
            }
            other => Err(io::Error::other(format!("unknown record tag {other}"))),
        };
        item.map(Item::Record).ctx(ctx)
    }
}

/// Opens the regular file `path` of the tree at `root` (symlinks resolved inside it, the
/// last component never followed).
pub(crate) fn open_in(root: &File, path: &[u8]) -> io::Result<File> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd =
        crate::confine::openat2_in_root(root.as_fd(), os(path), how).map_err(io::Error::from)?;
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Writes the tar recorded in the tar-split file `split` to `out`, with file contents
/// read from the tree at `root`, and returns its length; or `Ok(None)`, having written
/// nothing, when the tree no longer holds what was imported (a file missing, of another
/// size or content) or the records are unreadable, so the caller writes the tree its own
/// way. What is written hashes to the digest recorded at import.
pub fn reassemble(op: &Op, root: &Path, split: &Path, out: &mut dyn Write) -> Result<Option<u64>> {
    let root_dir = File::open(root).ctx(|| format!("open layer tree {}", root.display()))?;
    // The first pass also proves the whole stream's sha256; the second checks sizes and
    // CRCs only.
    check_then_write(root, split, out, |out, first| {
        replay(op, &root_dir, split, out, first)
    })
}

/// One pass over recorded records (`first`: the one that writes nothing); the inner
/// `Err` says why the tree does not match them.
pub(crate) type PassResult = Result<std::result::Result<u64, String>>;

/// Replays the records `split` of the tree `root` in two passes: the first writes nothing
/// and checks everything; only when it found the tree as recorded does the second write
/// to `out`, and a difference found then (the tree changed meanwhile) is an error.
/// `Ok(None)`, nothing written, when the first pass finds the tree changed or the records
/// unusable: the caller writes the tree its own way.
pub(crate) fn check_then_write(
    root: &Path,
    split: &Path,
    out: &mut dyn Write,
    mut pass: impl FnMut(&mut dyn Write, bool) -> PassResult,
) -> Result<Option<u64>> {
    match pass(&mut io::sink(), true) {
        Ok(Ok(_)) => {}
        Ok(Err(why)) => {
            tracing::info!(
                "{}: not as {} recorded it any more ({why}); writing the tree instead",
                root.display(),
                split.display()
            );
            return Ok(None);
        }
        Err(e) => {
            if let storage_core::Error::Cancelled { .. } = e {
                return Err(e);
            }
            tracing::warn!(
                "{}: records {} unusable ({}); writing the tree instead",
                root.display(),
                split.display(),
                storage_core::Report(&e)
            );
            return Ok(None);
        }
    }
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let written = match pass(&mut out, false)? {
        Ok(n) => n,
        Err(why) => {
            return Err(storage_core::Error::io(
                format!("reassemble the tar of {}", root.display()),
                io::Error::other(format!("the tree changed while it was written: {why}")),
            ));
        }
    };
    out.flush()
        .ctx(|| format!("write the tar of {}", root.display()))?;
    Ok(Some(written))
}

/// Copies the regular file `path` of the tree at `root` to `out` through `buf`, handing
/// every piece to `seen` (a checksum) on the way. The inner `Err` says why the tree does
/// not hold what was recorded: the file is missing, is not `size` bytes, or shrank while
/// it was read.
pub(crate) fn copy_checked(
    root: &File,
    path: &[u8],
    size: u64,
    buf: &mut [u8],
    out: &mut dyn Write,
    mut seen: impl FnMut(&[u8]),
) -> Result<std::result::Result<(), String>> {
    let shown = String::from_utf8_lossy(path);
    let mut file = match open_in(root, path) {
        Ok(f) => f,
        Err(e) => return Ok(Err(format!("{shown}: {e}"))),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    if len != size {
        return Ok(Err(format!("{shown} is {len} bytes, was {size}")));
    }
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = file
            .read(&mut buf[..want])
            .ctx(|| format!("read {shown} of the layer"))?;
        if n == 0 {
            return Ok(Err(format!("{shown} shrank while it was read")));
        }
        seen(&buf[..n]);
        out.write_all(&buf[..n])
            .ctx(|| "write the reassembled tar".to_string())?;
        left -= n as u64;
    }
    Ok(Ok(()))
}

/// Writes the recorded stream to `out`, checking every file's size and CRC-32 and, with
/// `whole`, the sha256 of everything written; the inner `Err` says why the tree or the
/// result does not match the records.
fn replay(
    op: &Op,
    root: &File,
    split: &Path,
    out: &mut dyn Write,
    whole: bool,
) -> Result<std::result::Result<u64, String>> {
    let mut records = SplitReader::open(split)?;
    let mut hasher = whole.then(Sha256::new);
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let wctx = || "write the reassembled tar".to_string();
    loop {
        op.check()?;
        match records.next_item()? {
            Item::Record(Record::Raw(bytes)) => {
                if let Some(h) = &mut hasher {
                    h.update(&bytes);
                }
                out.write_all(&bytes).ctx(wctx)?;
                total += bytes.len() as u64;
            }
            Item::Record(Record::File { path, size, crc }) => {
                let mut sum = crc32fast::Hasher::new();
                let copied = copy_checked(root, &path, size, &mut buf, out, |data| {
                    sum.update(data);
                    if let Some(h) = &mut hasher {
                        h.update(data);
                    }
                })?;
                if let Err(why) = copied {
                    return Ok(Err(why));
                }
                if sum.finalize() != crc {
                    let shown = String::from_utf8_lossy(&path);
                    return Ok(Err(format!("{shown} has other content")));
                }
                total += size;
            }
            Item::End { size, sha256 } => {
                let hashed = hasher.map(|h| h.finalize());
                if total != size || hashed.is_some_and(|h| h[..] != sha256[..]) {
                    return Ok(Err(format!(
                        "the records give {total} bytes that do not hash to the imported digest"
                    )));
                }
                return Ok(Ok(total));
            }
        }
    }
}

/// The name of the tar-split file a layer store keeps beside a layer's data.
pub const FILE_NAME: &str = "tar-split";

/// A layer's diff over its parent: the imported tar byte for byte when the layer still
/// holds exactly what was imported and `opts` asks for the whole diff with data (no
/// filter), else [`crate::write_layer`] of `own` over `lowers`. `split` is the layer's
/// tar-split file, which may be absent.
pub fn write_layer_exact<W: Write>(
    op: &Op,
    own: &Path,
    lowers: &[PathBuf],
    split: &Path,
    opts: &storage_core::archive::ExportOptions,
    mut out: W,
) -> Result<W> {
    if opts.data && opts.filter.is_identity() && split.exists() {
        // `reassemble` writes nothing when it answers `None`.
        if reassemble(op, own, split, &mut out)?.is_some() {
            return Ok(out);
        }
    }
    crate::write_layer(op, own, lowers, opts, out)
}
