//! Writing tar streams: deterministic, sorted, PAX where ustar is not enough.
//!
//! The same tree always gives the same bytes: entries come in sorted depth-first order,
//! user and group names are left empty, times are whole seconds, and PAX records are
//! written only when a ustar field cannot hold a value (long names, large ids or sizes) or
//! for xattrs and the change type of header-only exports.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};

use tar::EntryType;

use super::apply::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use super::changes::{Change, ChangeKind};
use super::tree::{Kind, Stat, read_xattrs};
use crate::error::{Error, IoContext, Result};
use crate::filter::FilterSpec;
use crate::op::Op;

/// PAX record carrying an entry's change type (`A`, `C` or `D`) in header-only exports.
pub const CHANGE_TYPE_RECORD: &str = "STRATA.changetype";
/// PAX record carrying a file's real size in header-only exports (its header says 0).
pub const SIZE_RECORD: &str = "STRATA.size";

const BLOCK: usize = 512;

/// What an export writes.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Which entries are kept and how they are renamed.
    pub filter: FilterSpec,
    /// Write file contents (`true`) or headers only, each with its change type (`false`).
    pub data: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            filter: FilterSpec::default(),
            data: true,
        }
    }
}

/// Writes `changes` as a tar stream to `out`: adds and modifies as entries, deletions as
/// `.wh.` files, opaque directories followed by `.wh..wh..opq`; hard links found among
/// the exported entries are written as links. Returns `out`.
pub fn write_changes<W: Write>(
    op: &Op,
    changes: &[Change],
    opts: &ExportOptions,
    out: W,
) -> Result<W> {
    let mut w = TarWriter::new(out);
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for change in changes {
        op.check()?;
        let Some(name) = rename(&opts.filter, &change.path) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let kind = change.kind;
        let mut pax = Vec::new();
        if !opts.data {
            pax.push((CHANGE_TYPE_RECORD.to_owned(), vec![kind.letter() as u8]));
        }
        match (&change.source, &change.stat) {
            (Some(src), Some(st)) if kind != ChangeKind::Delete => {
                let hard = st.kind != Kind::Dir && st.nlink > 1;
                if hard {
                    if let Some(first) = links.get(&(st.dev, st.ino)) {
                        let first = first.clone();
                        w.link(&name, &first, st, pax)?;
                        continue;
                    }
                    links.insert((st.dev, st.ino), name.clone());
                }
                for x in read_xattrs(src)? {
                    pax.push((format!("SCHILY.xattr.{}", x.0), x.1));
                }
                match st.kind {
                    Kind::File if opts.data => {
                        let file = File::open(src).ctx(|| format!("open {}", src.display()))?;
                        w.file(&name, st, pax, file, &src.display().to_string())?;
                    }
                    Kind::File => {
                        pax.push((SIZE_RECORD.to_owned(), st.size.to_string().into_bytes()));
                        w.header(&name, EntryType::Regular, st, 0, None, pax)?;
                    }
                    Kind::Dir => {
                        let mut dir_name = name.clone();
                        dir_name.push(b'/');
                        w.header(&dir_name, EntryType::Directory, st, 0, None, pax)?;
                        if change.opaque {
                            let marker = super::tree::join_rel(&name, OPAQUE_MARKER);
                            w.marker(&marker, opts.data)?;
                        }
                    }
                    Kind::Symlink => {
                        let target = std::fs::read_link(src)
                            .ctx(|| format!("read symlink {}", src.display()))?;
                        use std::os::unix::ffi::OsStrExt;
                        let target = target.as_os_str().as_bytes().to_vec();
                        w.header(&name, EntryType::Symlink, st, 0, Some(&target), pax)?;
                    }
                    Kind::Char => w.header(&name, EntryType::Char, st, 0, None, pax)?,
                    Kind::Block => w.header(&name, EntryType::Block, st, 0, None, pax)?,
                    Kind::Fifo => w.header(&name, EntryType::Fifo, st, 0, None, pax)?,
                    Kind::Socket => {}
                }
            }
            _ => {
                let (parent, base) = super::confine::split_last(&name);
                let mut wh = WHITEOUT_PREFIX.to_vec();
                wh.extend_from_slice(base);
                w.marker(&super::tree::join_rel(parent, &wh), opts.data)?;
            }
        }
    }
    w.finish()
}

/// The exported name of `path`, or `None` when the filter leaves it out.
fn rename(filter: &FilterSpec, path: &[u8]) -> Option<Vec<u8>> {
    if filter.is_identity() {
        return Some(path.to_vec());
    }
    filter
        .apply(&String::from_utf8_lossy(path))
        .map(String::into_bytes)
}

/// A tar stream being written.
pub struct TarWriter<W: Write> {
    out: W,
    small: Vec<u8>,
}

/// Files up to this size are copied through the writer's buffer rather than spliced.
const SMALL_FILE: u64 = 256 << 10;

fn io_err(what: &str, e: io::Error) -> Error {
    Error::io(format!("write tar stream ({what})"), e)
}

impl<W: Write> TarWriter<W> {
    /// Starts a stream on `out`.
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            small: Vec::new(),
        }
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
        self.out
            .write_all(h.as_bytes())
            .map_err(|e| io_err("header", e))
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
        let base = super::confine::split_last(name).1;
        let mut pax_name = b"PaxHeaders/".to_vec();
        pax_name.extend_from_slice(&base[..base.len().min(80)]);
        set_name(&mut h, &pax_name);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_cksum();
        self.out
            .write_all(h.as_bytes())
            .and_then(|()| self.out.write_all(&body))
            .and_then(|()| self.pad(body.len() as u64))
            .map_err(|e| io_err("PAX header", e))
    }

    fn pad(&mut self, written: u64) -> io::Result<()> {
        let rem = (written % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
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
        source: &str,
    ) -> Result<()> {
        self.header(name, EntryType::Regular, st, st.size, None, pax)?;
        let copy_err = |e| Error::io(format!("copy {source} into the tar stream"), e);
        let copied = if st.size <= SMALL_FILE {
            // Small files go through the buffer: no flush, no splice per file.
            self.small.clear();
            data.take(st.size)
                .read_to_end(&mut self.small)
                .map_err(copy_err)?;
            self.out.write_all(&self.small).map_err(copy_err)?;
            self.small.len() as u64
        } else {
            // Large ones are spliced or copied in the kernel where `out` allows it.
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
            kind: Kind::File,
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
        self.out
            .write_all(&[0u8; 2 * BLOCK])
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
