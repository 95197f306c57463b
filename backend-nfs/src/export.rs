//! A volume out over NFS as a deterministic tar stream.
//!
//! The tree is walked by handles in sorted depth-first order (the order of the archive
//! engine's exports), and written with the engine's [`TarWriter`]: same headers, same PAX
//! rules, hard links found per export, and with `data = false` headers only, each
//! carrying its change type and real size. File data is read ahead, several READs in
//! flight.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::sync::Arc;

use nfs3_client::nfs3_types::nfs3::{fattr3, ftype3};
use storage_core::archive::{FileKind, Stat};
use storage_core::{Error, FilterSpec, Op, Result};
use tar::EntryType;
use tar_engine::entry::MAX_PATH;
use tar_engine::export::{CHANGE_TYPE_RECORD, SIZE_RECORD};
use tar_engine::tree::{join_rel, too_long};
use tar_engine::{ArchiveStream, TarWriter};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::error::NfsError;
use crate::session::{DirEntry, Fh};
use crate::volumes::Store;

/// READs in flight per file being exported.
const READ_AHEAD: usize = 8;

/// Starts exporting the tree at `root` as a tar stream.
pub(crate) fn export(
    op: &Op,
    store: Arc<Store>,
    root: Fh,
    spec: &FilterSpec,
    data: bool,
) -> Result<ArchiveStream> {
    let op = op.clone();
    let spec = spec.clone();
    let rt = Handle::current();
    ArchiveStream::spawn(move |pipe| {
        let mut w = Walk {
            op: &op,
            rt,
            store,
            spec,
            data,
            links: HashMap::new(),
            out: TarWriter::new(io::BufWriter::with_capacity(1 << 20, pipe)),
        };
        w.tree(&root)?;
        w.out.finish()?;
        Ok(())
    })
}

/// The archive engine's view of an entry's attributes.
fn stat(a: &fattr3) -> Stat {
    Stat {
        kind: match a.type_ {
            ftype3::NF3REG => FileKind::File,
            ftype3::NF3DIR => FileKind::Dir,
            ftype3::NF3LNK => FileKind::Symlink,
            ftype3::NF3CHR => FileKind::Char,
            ftype3::NF3BLK => FileKind::Block,
            ftype3::NF3FIFO => FileKind::Fifo,
            ftype3::NF3SOCK => FileKind::Socket,
        },
        mode: a.mode & 0o7777,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        mtime: i64::from(a.mtime.seconds),
        mtime_nsec: i64::from(a.mtime.nseconds),
        rdev: nix_makedev(a.rdev.specdata1, a.rdev.specdata2),
        dev: a.fsid,
        ino: a.fileid,
        nlink: u64::from(a.nlink),
    }
}

/// `makedev` as glibc encodes it, so the tar writer's `major`/`minor` split it back.
fn nix_makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0x0000_0fff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0x0000_00ff)
}

struct Walk<'a, W: io::Write> {
    op: &'a Op,
    rt: Handle,
    store: Arc<Store>,
    spec: FilterSpec,
    data: bool,
    links: HashMap<(u64, u64), Vec<u8>>,
    out: TarWriter<W>,
}

impl<W: io::Write> Walk<'_, W> {
    fn block<T>(&self, f: impl Future<Output = std::result::Result<T, NfsError>>) -> Result<T> {
        self.rt.block_on(f).map_err(Error::from)
    }

    fn rename(&self, path: &[u8]) -> Option<Vec<u8>> {
        if self.spec.is_identity() {
            return Some(path.to_vec());
        }
        self.spec
            .apply(&String::from_utf8_lossy(path))
            .map(String::into_bytes)
    }

    /// Writes everything below the directory `root`, in sorted depth-first order. One level
    /// per directory on the way down is kept on the heap, whatever the depth; paths past
    /// [`MAX_PATH`] stop the export with a clear error, as every walk of a stored tree does.
    fn tree(&mut self, root: &Fh) -> Result<()> {
        /// A directory's entries left to write (next last), and its path.
        struct Level {
            todo: Vec<DirEntry>,
            rel: Vec<u8>,
        }
        let mut levels = vec![Level {
            todo: self.sorted(root, b"")?,
            rel: Vec::new(),
        }];
        while let Some(level) = levels.last_mut() {
            let Some(e) = level.todo.pop() else {
                levels.pop();
                continue;
            };
            self.op.check()?;
            let path = join_rel(&level.rel, &e.name);
            if path.len() > MAX_PATH {
                return Err(too_long(
                    &format!("nfs://{}", self.store.session.server()),
                    tar_engine::confine::os(&path),
                    path.len(),
                ));
            }
            let st = stat(&e.attr);
            if st.kind == FileKind::Socket {
                continue;
            }
            if let Some(name) = self.rename(&path).filter(|n| !n.is_empty()) {
                self.entry(&e, &name, &st, &path)?;
            }
            if st.kind == FileKind::Dir
                && (self.spec.is_identity()
                    || self.spec.may_include_below(&String::from_utf8_lossy(&path)))
            {
                let todo = self.sorted(&e.fh, &path)?;
                levels.push(Level { todo, rel: path });
            }
        }
        Ok(())
    }

    /// The entries of the directory `fh` (at `rel`), sorted so that the first is last.
    fn sorted(&self, fh: &Fh, rel: &[u8]) -> Result<Vec<DirEntry>> {
        let store = self.store.clone();
        let mut entries: Vec<DirEntry> = self.block(store.session.readdir(fh, rel))?;
        entries.sort_by(|a, b| b.name.cmp(&a.name));
        Ok(entries)
    }

    fn entry(&mut self, e: &DirEntry, name: &[u8], st: &Stat, rel: &[u8]) -> Result<()> {
        let mut pax = Vec::new();
        if !self.data {
            pax.push((CHANGE_TYPE_RECORD.to_owned(), b"A".to_vec()));
        }
        if st.kind != FileKind::Dir && st.nlink > 1 {
            if let Some(first) = self.links.get(&(st.dev, st.ino)) {
                let first = first.clone();
                return self.out.link(name, &first, st, pax);
            }
            self.links.insert((st.dev, st.ino), name.to_vec());
        }
        match st.kind {
            FileKind::File if self.data => {
                let reader = RemoteFile::new(
                    self.rt.clone(),
                    self.store.clone(),
                    e.fh.clone(),
                    st.size,
                    rel,
                );
                let source = format!(
                    "nfs://{}/{}",
                    self.store.session.server(),
                    String::from_utf8_lossy(rel)
                );
                self.out.file(name, st, pax, reader, &source)
            }
            FileKind::File => {
                pax.push((SIZE_RECORD.to_owned(), st.size.to_string().into_bytes()));
                self.out.header(name, EntryType::Regular, st, 0, None, pax)
            }
            FileKind::Dir => {
                let mut dir_name = name.to_vec();
                dir_name.push(b'/');
                self.out
                    .header(&dir_name, EntryType::Directory, st, 0, None, pax)
            }
            FileKind::Symlink => {
                let store = self.store.clone();
                let target = self.block(store.session.readlink(&e.fh, rel))?;
                self.out
                    .header(name, EntryType::Symlink, st, 0, Some(&target), pax)
            }
            FileKind::Char => self.out.header(name, EntryType::Char, st, 0, None, pax),
            FileKind::Block => self.out.header(name, EntryType::Block, st, 0, None, pax),
            FileKind::Fifo => self.out.header(name, EntryType::Fifo, st, 0, None, pax),
            FileKind::Socket => Ok(()),
        }
    }
}

/// What one READ gives: data, and whether it ends the file.
type ReadReply = std::result::Result<(Vec<u8>, bool), NfsError>;

/// A remote file read with READs in flight ahead of the reader.
struct RemoteFile {
    rt: Handle,
    store: Arc<Store>,
    fh: Fh,
    size: u64,
    name: Vec<u8>,
    next: u64,
    ahead: VecDeque<JoinHandle<ReadReply>>,
    chunk: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl RemoteFile {
    fn new(rt: Handle, store: Arc<Store>, fh: Fh, size: u64, name: &[u8]) -> Self {
        RemoteFile {
            rt,
            store,
            fh,
            size,
            name: name.to_vec(),
            next: 0,
            ahead: VecDeque::new(),
            chunk: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    fn fill(&mut self) {
        let rsize = self.store.session.rsize;
        while self.ahead.len() < READ_AHEAD && self.next < self.size {
            let (store, fh, name, at) = (
                self.store.clone(),
                self.fh.clone(),
                self.name.clone(),
                self.next,
            );
            self.ahead.push_back(
                self.rt
                    .spawn(async move { store.session.read(&fh, at, rsize, &name).await }),
            );
            self.next += u64::from(rsize);
        }
    }
}

impl Read for RemoteFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.eof {
                return Ok(0);
            }
            self.fill();
            let Some(next) = self.ahead.pop_front() else {
                return Ok(0);
            };
            let (data, eof) = self
                .rt
                .block_on(next)
                .map_err(io::Error::other)?
                .map_err(|e| io::Error::other(Error::from(e)))?;
            // A short read inside the file (not at its end) would shift everything after
            // it: the read-ahead offsets assume whole chunks.
            let rsize = self.store.session.rsize as usize;
            if data.len() < rsize && !eof && !self.ahead.is_empty() {
                return Err(io::Error::other(format!(
                    "short NFS READ of {} inside the file",
                    String::from_utf8_lossy(&self.name)
                )));
            }
            self.eof = eof || data.is_empty();
            self.chunk = data;
            self.pos = 0;
        }
        let n = (self.chunk.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for RemoteFile {
    fn drop(&mut self) {
        for h in &self.ahead {
            h.abort();
        }
    }
}
