//! Writing tar streams: deterministic, sorted, PAX where ustar is not enough.
//!
//! The same tree always gives the same bytes: entries come in sorted depth-first order,
//! user and group names are left empty, times are whole seconds, and PAX records are
//! written only when a ustar field cannot hold a value (long names, large ids or sizes) or
//! for xattrs and the change type of header-only exports.
//!
//! A file or directory recording its owner, mode and type in
//! `user.containers.override_stat` (what an unprivileged import keeps,
//! [`crate::override_stat`]) is written as the record says, and the record itself is not
//! written as an xattr.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use tar::EntryType;

use crate::changes::lower_exists;
use crate::entry::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::override_stat::{OverrideStat, RecordOn};
use crate::tree::{is_fuse_overlayfs_mark, is_opaque_fd, read_xattrs, read_xattrs_fd, walk_error};
use storage_core::FilterSpec;
use storage_core::Op;
use storage_core::archive::{Change, ChangeKind, ExportOptions};
use storage_core::archive::{FileKind, Stat};
use storage_core::{Error, IoContext, Result};

/// PAX record carrying an entry's change type (`A`, `C` or `D`) in header-only exports.
pub const CHANGE_TYPE_RECORD: &str = "STRATA.changetype";
/// PAX record carrying a file's real size in header-only exports (its header says 0).
pub const SIZE_RECORD: &str = "STRATA.size";

const BLOCK: usize = 512;

/// Writes `changes` as a tar stream to `out`: adds and modifies as entries, deletions as
/// `.wh.` files, opaque directories followed by `.wh..wh..opq`; hard links found among
/// the exported entries are written as links. Returns `out`.
pub fn write_changes<W: Write>(
    op: &Op,
    changes: &[Change],
    opts: &ExportOptions,
    out: W,
) -> Result<W> {
    let mut e = Emitter::new(opts, out);
    for change in changes {
        op.check()?;
        match (&change.source, &change.stat) {
            (Some(src), Some(st)) if change.kind != ChangeKind::Delete => e.entry(
                &change.path,
                change.kind,
                st,
                change.opaque,
                &PathSource(src),
            )?,
            _ => e.deletion(&change.path)?,
        }
    }
    e.w.finish()
}

/// Writes what an overlay diff directory changes over its lower diff directories (topmost
/// first) as a tar stream to `out`, in one walk: the same bytes as [`write_changes`] of
/// [`layer_changes`](crate::changes::layer_changes), without listing the changes first.
/// Every entry is reached relative to its open directory (`openat`, `fstatat`,
/// `flistxattr`), never by looking its whole path up again. Returns `out`.
pub fn write_layer<W: Write>(
    op: &Op,
    diff: &Path,
    lowers: &[PathBuf],
    opts: &ExportOptions,
    out: W,
) -> Result<W> {
    let mut walk = crate::tree::walk(diff)?;
    let mut e = Emitter::new(opts, out);
    // Sorted depth-first, as `layer_changes` lists the same tree; iterative, so a tree of
    // any depth (up to the path limit) is written without recursion.
    loop {
        op.check()?;
        let Some(entry) = walk.next_entry().map_err(walk_error)? else {
            break;
        };
        let rel = entry.rel.to_vec();
        let st = Stat::from_file_stat(&entry.stat);
        if st.kind == FileKind::Socket
            || is_fuse_overlayfs_mark(entry.dir, entry.name, opts.owner_records)
        {
            continue;
        }
        if st.is_whiteout() {
            e.deletion(&rel)?;
            continue;
        }
        let kind = if !lowers.is_empty() && lower_exists(lowers, &rel, opts.owner_records)? {
            ChangeKind::Modify
        } else {
            ChangeKind::Add
        };
        if st.kind == FileKind::Dir {
            // A filtered export does not walk a subtree it keeps nothing of.
            if !opts.filter.is_identity()
                && !opts
                    .filter
                    .may_include_below(&String::from_utf8_lossy(&rel))
            {
                continue;
            }
            let entered = walk.enter().map_err(walk_error)?;
            let src = AtSource {
                dir: entered.parent,
                name: entered.name,
                open_dir: Some(entered.dir),
                diff,
                rel: &rel,
            };
            e.entry(
                &rel,
                kind,
                &st,
                is_opaque_fd(entered.dir, opts.owner_records),
                &src,
            )?;
        } else {
            let src = AtSource {
                dir: entry.dir,
                name: entry.name,
                open_dir: None,
                diff,
                rel: &rel,
            };
            e.entry(&rel, kind, &st, false, &src)?;
        }
    }
    e.w.finish()
}

/// Where an entry's content, xattrs and link target are read from.
trait EntrySource {
    /// The entry's path, for messages and for the calls that only take a path.
    fn path(&self) -> PathBuf;
    /// Opens the (regular) file for reading.
    fn open(&self) -> Result<File>;
    /// The entry's xattrs, read through `open` when the file is already open.
    fn xattrs(&self, open: Option<&File>) -> Result<Vec<(String, Vec<u8>)>>;
    /// A symlink's target.
    fn read_link(&self) -> Result<Vec<u8>>;
    /// The owner, mode and type recorded on a file or directory whose real owner is
    /// `owner`, read through `open` when the file is already open.
    fn override_stat(&self, open: Option<&File>, owner: (u32, u32))
    -> Result<Option<OverrideStat>>;
}

/// Names an entry in messages, building its path only when a message is written.
struct Described<'a>(&'a dyn EntrySource);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.path().display().fmt(f)
    }
}

/// An entry named by its full path.
struct PathSource<'a>(&'a Path);

impl EntrySource for PathSource<'_> {
    fn path(&self) -> PathBuf {
        self.0.to_owned()
    }

    fn open(&self) -> Result<File> {
        File::open(self.0).ctx(|| format!("open {}", self.0.display()))
    }

    fn xattrs(&self, _open: Option<&File>) -> Result<Vec<(String, Vec<u8>)>> {
        read_xattrs(self.0)
    }

    fn read_link(&self) -> Result<Vec<u8>> {
        let target =
            std::fs::read_link(self.0).ctx(|| format!("read symlink {}", self.0.display()))?;
        Ok(target.into_os_string().into_vec())
    }

    fn override_stat(
        &self,
        open: Option<&File>,
        owner: (u32, u32),
    ) -> Result<Option<OverrideStat>> {
        let on = match open {
            Some(f) => RecordOn::Open(f.as_fd()),
            None => RecordOn::Path(self.0),
        };
        OverrideStat::get(on, Some(owner), &self.0.display())
    }
}

/// An entry named relative to its open directory, as [`write_layer`] reaches it.
struct AtSource<'a> {
    dir: BorrowedFd<'a>,
    name: &'a [u8],
    /// The entry itself, when it is a directory the walk has opened.
    open_dir: Option<BorrowedFd<'a>>,
    diff: &'a Path,
    rel: &'a [u8],
}

impl EntrySource for AtSource<'_> {
    fn path(&self) -> PathBuf {
        self.diff.join(crate::confine::os(self.rel))
    }

    fn open(&self) -> Result<File> {
        let fd = openat(
            self.dir,
            crate::confine::os(self.name),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("open {}", self.path().display()), e))?;
        Ok(File::from(fd))
    }

    fn xattrs(&self, open: Option<&File>) -> Result<Vec<(String, Vec<u8>)>> {
        match open.map(AsFd::as_fd).or(self.open_dir) {
            Some(fd) => read_xattrs_fd(fd, &Described(self)),
            // Symlinks and devices cannot be opened for this; they are few.
            None => read_xattrs(&self.path()),
        }
    }

    fn read_link(&self) -> Result<Vec<u8>> {
        let target = nix::fcntl::readlinkat(self.dir, crate::confine::os(self.name))
            .map_err(|e| Error::io(format!("read symlink {}", self.path().display()), e))?;
        Ok(target.into_vec())
    }

    fn override_stat(
        &self,
        open: Option<&File>,
        owner: (u32, u32),
    ) -> Result<Option<OverrideStat>> {
        let path;
        let on = match open.map(AsFd::as_fd).or(self.open_dir) {
            Some(fd) => RecordOn::Open(fd),
            None => {
                path = self.path();
                RecordOn::Path(&path)
            }
        };
        OverrideStat::get(on, Some(owner), &Described(self))
    }
}

/// Turns entries into tar records: renaming through the filter, finding hard links,
/// carrying xattrs and change types.
struct Emitter<'a, W: Write> {
    opts: &'a ExportOptions,
    w: TarWriter<W>,
    /// The first exported name of every multiply-linked inode seen, with the stat it
    /// was written with.
    links: HashMap<(u64, u64), (Vec<u8>, Stat)>,
}

impl<'a, W: Write> Emitter<'a, W> {
    fn new(opts: &'a ExportOptions, out: W) -> Self {
        Emitter {
            opts,
            w: TarWriter::new(out),
            links: HashMap::new(),
        }
    }

    /// Writes an added or modified entry found at `path` (relative to the root).
    fn entry(
        &mut self,
        path: &[u8],
        kind: ChangeKind,
        st: &Stat,
        opaque: bool,
        src: &dyn EntrySource,
    ) -> Result<()> {
        let Some(name) = rename(&self.opts.filter, path) else {
            return Ok(());
        };
        if name.is_empty() {
            return Ok(());
        }
        let (w, data) = (&mut self.w, self.opts.data);
        let mut pax = Vec::new();
        if !data {
            pax.push((CHANGE_TYPE_RECORD.to_owned(), vec![kind.letter() as u8]));
        }
        let hard = st.kind != FileKind::Dir && st.nlink > 1;
        if hard && let Some((first, first_st)) = self.links.get(&(st.dev, st.ino)) {
            return w.link(&name, first, first_st, pax);
        }
        let file = match st.kind {
            FileKind::File if data => Some(src.open()?),
            _ => None,
        };
        let recorded = match st.kind {
            FileKind::File | FileKind::Dir if self.opts.owner_records => {
                src.override_stat(file.as_ref(), (st.uid, st.gid))?
            }
            _ => None,
        };
        let st = match recorded {
            Some(rec) => Cow::Owned(rec.apply(st, &Described(src))?),
            None => Cow::Borrowed(st),
        };
        let st = st.as_ref();
        if hard {
            self.links
                .insert((st.dev, st.ino), (name.to_vec(), st.clone()));
        }
        let add_xattrs = |pax: &mut Vec<(String, Vec<u8>)>, x: Vec<(String, Vec<u8>)>| {
            pax.extend(x.into_iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v)));
        };
        match (st.kind, file) {
            (FileKind::File, Some(file)) => {
                add_xattrs(&mut pax, src.xattrs(Some(&file))?);
                w.file(&name, st, pax, file, &Described(src))
            }
            (FileKind::File, None) => {
                add_xattrs(&mut pax, src.xattrs(None)?);
                pax.push((SIZE_RECORD.to_owned(), st.size.to_string().into_bytes()));
                w.header(&name, EntryType::Regular, st, 0, None, pax)
            }
            (FileKind::Dir, _) => {
                add_xattrs(&mut pax, src.xattrs(None)?);
                let mut dir_name = name.to_vec();
                dir_name.push(b'/');
                w.header(&dir_name, EntryType::Directory, st, 0, None, pax)?;
                if opaque {
                    let marker = crate::tree::join_rel(&name, OPAQUE_MARKER);
                    w.marker(&marker, data)?;
                }
                Ok(())
            }
            (FileKind::Symlink, _) => {
                add_xattrs(&mut pax, src.xattrs(None)?);
                let target = src.read_link()?;
                w.header(&name, EntryType::Symlink, st, 0, Some(&target), pax)
            }
            (FileKind::Char | FileKind::Block | FileKind::Fifo, file) => {
                // A node stored as a file is read through the file already open.
                add_xattrs(&mut pax, src.xattrs(file.as_ref())?);
                let ty = match st.kind {
                    FileKind::Char => EntryType::Char,
                    FileKind::Block => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                w.header(&name, ty, st, 0, None, pax)
            }
            (FileKind::Socket, _) => Ok(()),
        }
    }

    /// Writes the deletion of `path` as a `.wh.` file.
    fn deletion(&mut self, path: &[u8]) -> Result<()> {
        let Some(name) = rename(&self.opts.filter, path) else {
            return Ok(());
        };
        if name.is_empty() {
            return Ok(());
        }
        let (parent, base) = crate::confine::split_last(&name);
        let mut wh = WHITEOUT_PREFIX.to_vec();
        wh.extend_from_slice(base);
        self.w
            .marker(&crate::tree::join_rel(parent, &wh), self.opts.data)
    }
}

/// The exported name of `path`, or `None` when the filter leaves it out.
fn rename<'a>(filter: &FilterSpec, path: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    if filter.is_identity() {
        return Some(Cow::Borrowed(path));
    }
    filter
        .apply(&String::from_utf8_lossy(path))
        .map(|n| Cow::Owned(n.into_bytes()))
}

/// A tar stream being written. It buffers by itself (pass it an unbuffered writer such as a
/// pipe): headers and small files are gathered into one buffer, small files read straight
/// into it, and large files go to `out` directly, spliced where `out` allows it.
pub struct TarWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

/// Files up to this size are read into the writer's buffer rather than spliced.
const SMALL_FILE: u64 = 256 << 10;
/// The size of the writer's buffer: what `out` gets per write.
const BUFFER: usize = 1 << 20;

fn io_err(what: &str, e: io::Error) -> Error {
    Error::io(format!("write tar stream ({what})"), e)
}

impl<W: Write> TarWriter<W> {
    /// Starts a stream on `out`.
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            buf: Vec::with_capacity(BUFFER),
        }
    }

    /// Appends `bytes` to the buffer, writing the buffer out first when they do not fit.
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buf.len() + bytes.len() > BUFFER {
            self.flush_buf()?;
        }
        if bytes.len() >= BUFFER {
            return self.out.write_all(bytes);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes out what the buffer holds.
    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes one header (after a PAX header when `pax` is not empty or a field overflows).
    pub fn header(
        &mut self,
        name: &[u8],
        ty: EntryType,
        st: &Stat,
        size: u64,
        link: Option<&[u8]>,
        mut pax: Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(ty);
        if !set_name(&mut h, name) {
            pax.push(("path".into(), name.to_vec()));
        }
        if let Some(link) = link {
            if link.len() > 100 {
                pax.push(("linkpath".into(), link.to_vec()));
            } else if let Some(u) = h.as_ustar_mut() {
                u.linkname[..link.len()].copy_from_slice(link);
            }
        }
        h.set_mode(st.mode);
        const MAX_ID: u32 = 0o7777777;
        if st.uid > MAX_ID {
            pax.push(("uid".into(), st.uid.to_string().into_bytes()));
        }
        if st.gid > MAX_ID {
            pax.push(("gid".into(), st.gid.to_string().into_bytes()));
        }
        h.set_uid(u64::from(st.uid.min(MAX_ID)));
        h.set_gid(u64::from(st.gid.min(MAX_ID)));
        const MAX_SIZE: u64 = 0o77777777777;
        if size > MAX_SIZE {
            pax.push(("size".into(), size.to_string().into_bytes()));
        }
        h.set_size(size);
        h.set_mtime(st.mtime.max(0) as u64);
        if matches!(ty, EntryType::Char | EntryType::Block) {
            let (major, minor) = (
                nix::sys::stat::major(st.rdev),
                nix::sys::stat::minor(st.rdev),
            );
            h.set_device_major(major as u32)
                .and_then(|()| h.set_device_minor(minor as u32))
                .map_err(|e| io_err("device number", e))?;
        }
        h.set_cksum();
        if !pax.is_empty() {
            self.pax(name, &pax)?;
        }
        self.put(h.as_bytes()).map_err(|e| io_err("header", e))
    }

    fn pax(&mut self, name: &[u8], records: &[(String, Vec<u8>)]) -> Result<()> {
        let mut body = Vec::new();
        for (k, v) in records {
            let base = k.len() + v.len() + 3;
            let mut len = base + 1;
            while len != base + len.to_string().len() {
                len = base + len.to_string().len();
            }
            body.extend_from_slice(len.to_string().as_bytes());
            body.push(b' ');
            body.extend_from_slice(k.as_bytes());
            body.push(b'=');
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        let base = crate::confine::split_last(name).1;
        let mut pax_name = b"PaxHeaders/".to_vec();
        pax_name.extend_from_slice(&base[..base.len().min(80)]);
        set_name(&mut h, &pax_name);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_cksum();
        self.put(h.as_bytes())
            .and_then(|()| self.put(&body))
            .and_then(|()| self.pad(body.len() as u64))
            .map_err(|e| io_err("PAX header", e))
    }

    fn pad(&mut self, written: u64) -> io::Result<()> {
        let rem = (written % BLOCK as u64) as usize;
        if rem != 0 {
            self.put(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Writes a regular file with its data, read from `data` (which must hold exactly
    /// `st.size` bytes): a local file, whose data is spliced where `out` allows, or any
    /// reader (a remote file).
    pub fn file(
        &mut self,
        name: &[u8],
        st: &Stat,
        pax: Vec<(String, Vec<u8>)>,
        data: impl Read,
        source: &dyn fmt::Display,
    ) -> Result<()> {
        self.header(name, EntryType::Regular, st, st.size, None, pax)?;
        let copy_err = |e| Error::io(format!("copy {source} into the tar stream"), e);
        let copied = if st.size <= SMALL_FILE {
            // Small files are read straight into the buffer: no copy, no splice per file.
            if self.buf.len() as u64 + st.size > BUFFER as u64 {
                self.flush_buf().map_err(copy_err)?;
            }
            let before = self.buf.len();
            data.take(st.size)
                .read_to_end(&mut self.buf)
                .map_err(copy_err)?;
            (self.buf.len() - before) as u64
        } else {
            // Large ones are spliced or copied in the kernel where `out` allows it.
            self.flush_buf().map_err(copy_err)?;
            io::copy(&mut data.take(st.size), &mut self.out).map_err(copy_err)?
        };
        if copied != st.size {
            return Err(Error::io(
                format!(
                    "copy {source} into the tar stream: it shrank from {} to {copied} bytes during the export",
                    st.size
                ),
                io::Error::from(io::ErrorKind::UnexpectedEof),
            ));
        }
        self.pad(copied).map_err(|e| io_err("padding", e))
    }

    /// Writes a hard link to an entry already in the stream.
    pub fn link(
        &mut self,
        name: &[u8],
        target: &[u8],
        st: &Stat,
        pax: Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        self.header(name, EntryType::Link, st, 0, Some(target), pax)
    }

    /// Writes an empty whiteout or opaque marker file.
    fn marker(&mut self, name: &[u8], data: bool) -> Result<()> {
        let st = Stat {
            kind: FileKind::File,
            mode: 0o600,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            mtime_nsec: 0,
            rdev: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
        };
        let pax = if data {
            Vec::new()
        } else {
            vec![(CHANGE_TYPE_RECORD.to_owned(), b"D".to_vec())]
        };
        self.header(name, EntryType::Regular, &st, 0, None, pax)
    }

    /// Ends the stream (two zero blocks), flushes and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.put(&[0u8; 2 * BLOCK])
            .and_then(|()| self.flush_buf())
            .and_then(|()| self.out.flush())
            .map_err(|e| io_err("end of archive", e))?;
        Ok(self.out)
    }
}

/// Puts `name` into the ustar name (and prefix) fields; false when it does not fit.
fn set_name(h: &mut tar::Header, name: &[u8]) -> bool {
    let Some(u) = h.as_ustar_mut() else {
        return false;
    };
    if name.len() <= 100 {
        u.name[..name.len()].copy_from_slice(name);
        return true;
    }
    // Split at a `/` so that the prefix holds at most 155 bytes and the rest 100.
    let split = name
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'/' && i <= 155 && name.len() - i - 1 <= 100 && i > 0)
        .map(|(i, _)| i)
        .next();
    match split {
        Some(i) => {
            u.prefix[..i].copy_from_slice(&name[..i]);
            u.name[..name.len() - i - 1].copy_from_slice(&name[i + 1..]);
            true
        }
        None => {
            u.name.copy_from_slice(&name[..100]);
            false
        }
    }
}
