//! From the tar engine's entries to the in-memory tree: the [`Ingest`] sink, each entry
//! and whiteout added by path, and file data copied straight to the image as it arrives.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};

use tar_engine::Kind as EntryKind;
use tar_engine::confine::child_len;
use tar_engine::entry::{WHITEOUT_THROUGH_SYMLINK, check_path_len};
use tar_engine::ingest::Meta as EntryMeta;
use tar_engine::{Entry, EntrySink, Segment, Written};

use crate::error::{Error, Result};
use crate::layout::{BLOCK_SIZE, BS};
use crate::tree::{self, Kind, Meta, Node, NodeId, Run};

use super::out::{READ_CHUNK, ZERO_BLOCK};
use super::{Builder, Whiteouts, div_ceil};

/// `trusted.overlay.opaque`.
const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// True when the block is all zeros.
fn is_zero(block: &[u8]) -> bool {
    block == &ZERO_BLOCK[..block.len().min(BS)]
}

impl<W: Write + Seek> Builder<W> {
    /// Adds one entry of any kind but a whiteout; `false` when it is one (nothing added).
    fn add_entry(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<bool> {
        let name = lossy(&entry.raw);
        let meta = tree_meta(&entry.meta);
        let comps = tree::components(&entry.path);
        let Some((&last, parents)) = comps.split_last() else {
            // The root itself ("./"); the stream lets only directories name it.
            set_dir_meta(&mut self.tree.nodes[tree::ROOT], meta);
            return Ok(true);
        };
        let (parent, parent_len) = self.tree.resolve_dir_len(&name, parents, true)?;
        // Where it lands, not what the archive calls it: symlinks must not let a tree grow
        // deeper than names can reach.
        check_path_len(&entry.raw, child_len(parent_len, last))?;
        let mut meta = meta;
        let kind = match &entry.kind {
            EntryKind::Dir => {
                match self.tree.get(parent, last) {
                    Some(old) if self.tree.is_dir(old) => {
                        set_dir_meta(&mut self.tree.nodes[old], meta);
                        return Ok(true);
                    }
                    // A directory in place of a whiteout hides what lies below, as one
                    // made after a deletion does in overlayfs.
                    Some(old)
                        if self.options.whiteouts == Whiteouts::Overlay
                            && matches!(self.tree.nodes[old].kind, Kind::Char(0, 0)) =>
                    {
                        mark_opaque(&mut meta);
                    }
                    _ => {}
                }
                Kind::Dir(BTreeMap::new())
            }
            EntryKind::File { size, sparse } => {
                let whole = [Segment {
                    offset: 0,
                    len: *size,
                }];
                let segments = sparse.as_deref().unwrap_or(&whole);
                let runs = self.write_file_data(&name, data, *size, segments)?;
                Kind::File { size: *size, runs }
            }
            EntryKind::Symlink { target } => {
                // The kernel makes every symlink 0777, whatever an archive says.
                meta.perm = 0o777;
                Kind::Symlink(target.clone())
            }
            EntryKind::HardLink { target } => {
                let hl = |reason| Error::HardLinkTarget {
                    entry: name.clone(),
                    target: lossy(target),
                    reason,
                };
                let id = self
                    .tree
                    .lookup(&name, target)?
                    .ok_or_else(|| hl("does not exist"))?;
                if self.tree.is_dir(id) {
                    return Err(hl("is a directory"));
                }
                self.tree.link(parent, last.to_vec(), id);
                return Ok(true);
            }
            EntryKind::Char { major, minor } => Kind::Char(*major, *minor),
            EntryKind::Block { major, minor } => Kind::Block(*major, *minor),
            EntryKind::Fifo => Kind::Fifo,
            // The stream hands whiteouts to `EntrySink::whiteout`, never here.
            EntryKind::Whiteout | EntryKind::Opaque => return Ok(false),
        };
        let id = self.tree.add(Node { kind, meta });
        self.tree.link(parent, last.to_vec(), id);
        Ok(true)
    }

    /// Adds a whiteout as an overlay marker. It hides what lies below the archive: what
    /// the archive itself wrote stays, and a directory it wrote is made opaque instead, so
    /// the lower one's content is hidden.
    fn add_whiteout(&mut self, entry: &Entry, written: &Written) -> Result<()> {
        let comps = tree::components(&entry.path);
        if entry.kind == EntryKind::Opaque {
            let dir = self.whiteout_dir(entry, &comps)?;
            mark_opaque(&mut self.tree.nodes[dir].meta);
            return Ok(());
        }
        let Some((&last, parents)) = comps.split_last() else {
            return Ok(());
        };
        let parent = self.whiteout_dir(entry, parents)?;
        if written.spares(&entry.path) {
            if let Some(old) = self.tree.get(parent, last)
                && self.tree.is_dir(old)
            {
                mark_opaque(&mut self.tree.nodes[old].meta);
            }
            return Ok(());
        }
        let id = self.tree.add(Node {
            kind: Kind::Char(0, 0),
            meta: tree_meta(&entry.meta),
        });
        self.tree.link(parent, last.to_vec(), id);
        Ok(())
    }

    /// The directory `comps` of a whiteout, made when missing. A symlink on the way refuses
    /// it, as on every writer of the tar engine: through a symlink, the whiteout would name
    /// what its own archive wrote otherwise.
    fn whiteout_dir(&mut self, entry: &Entry, comps: &[&[u8]]) -> Result<NodeId> {
        let mut dir = tree::ROOT;
        for comp in comps {
            dir = match self.tree.get(dir, comp) {
                Some(next) if self.tree.is_dir(next) => next,
                Some(next) if matches!(self.tree.nodes[next].kind, Kind::Symlink(_)) => {
                    return Err(storage_core::Error::UnsafeArchive {
                        entry: lossy(&entry.raw),
                        reason: WHITEOUT_THROUGH_SYMLINK.into(),
                    }
                    .into());
                }
                Some(_) => {
                    return Err(Error::NotADirectory {
                        entry: lossy(&entry.raw),
                        component: lossy(comp),
                    });
                }
                None => {
                    let made = self.tree.add(Node::implied_dir());
                    self.tree.link(dir, comp.to_vec(), made);
                    made
                }
            };
        }
        Ok(dir)
    }

    /// Copies a file's data to the image; returns the runs it occupies. `r` holds the
    /// bytes of `segments` one after another (one segment of the whole `size` for a file
    /// that is not sparse). Only blocks a segment touches are read into and, unless they
    /// are all zeros, written: the rest of the file is holes, never made of zeros.
    fn write_file_data(
        &mut self,
        name: &str,
        r: &mut dyn Read,
        size: u64,
        segments: &[Segment],
    ) -> Result<Vec<Run>> {
        if div_ceil(size, BLOCK_SIZE) > u64::from(u32::MAX) {
            return Err(Error::TooLarge {
                entry: Some(name.to_string()),
                what: "a file larger than 16 TiB".into(),
            });
        }
        let total: u64 = segments.iter().map(|s| s.len).sum();
        let mut left = total;
        let mut runs: Vec<Run> = Vec::new();
        // The next byte to read: segment `seg`, `done` bytes into it.
        let (mut seg, mut done) = (0usize, 0u64);
        while seg < segments.len() {
            if segments[seg].len == done {
                (seg, done) = (seg + 1, 0);
                continue;
            }
            // A chunk: blocks from the one holding the next byte, up to READ_CHUNK bytes,
            // as long as segments keep to adjacent blocks (a whole block of hole ends it).
            let start = segments[seg].offset + done;
            let first_lblock = start / BLOCK_SIZE;
            let chunk_start = first_lblock * BLOCK_SIZE;
            let chunk_cap = chunk_start + READ_CHUNK as u64;
            self.out.make_room(READ_CHUNK)?;
            let first = self.out.next_block();
            let area = &mut self.out.spare()[..READ_CHUNK];
            let mut end = chunk_start; // end of what the area holds
            while seg < segments.len() {
                if segments[seg].len == done {
                    (seg, done) = (seg + 1, 0);
                    continue;
                }
                let at = segments[seg].offset + done;
                if at >= chunk_cap
                    || (end > chunk_start && at / BLOCK_SIZE > end.div_ceil(BLOCK_SIZE))
                {
                    break;
                }
                let n = (segments[seg].len - done).min(chunk_cap - at);
                let (from, to) = ((at - chunk_start) as usize, (at - chunk_start + n) as usize);
                area[(end - chunk_start) as usize..from].fill(0);
                r.read_exact(&mut area[from..to]).map_err(|e| {
                    storage_core::Error::InvalidArchive {
                        entry: Some(name.to_string()),
                        reason: if e.kind() == std::io::ErrorKind::UnexpectedEof {
                            format!("archive is truncated: {left} of {total} bytes missing")
                        } else {
                            storage_core::Report(&e).to_string()
                        },
                    }
                })?;
                left -= n;
                end = at + n;
                done += n;
                if done == segments[seg].len {
                    (seg, done) = (seg + 1, 0);
                }
            }
            let used = (end - chunk_start) as usize;
            let padded = used.div_ceil(BS) * BS;
            area[used..padded].fill(0);
            // Keep non-zero blocks, moved down over the zero ones (which become holes).
            let mut kept = 0usize;
            for i in 0..padded / BS {
                if is_zero(&area[i * BS..(i + 1) * BS]) {
                    continue;
                }
                if kept != i {
                    area.copy_within(i * BS..(i + 1) * BS, kept * BS);
                }
                let lblock = (first_lblock + i as u64) as u32;
                let pblock = first + kept as u64;
                match runs.last_mut() {
                    Some(r)
                        if r.logical + r.len == lblock
                            && r.physical + u64::from(r.len) == pblock =>
                    {
                        r.len += 1;
                    }
                    _ => runs.push(Run {
                        logical: lblock,
                        physical: pblock,
                        len: 1,
                    }),
                }
                kept += 1;
            }
            if first + kept as u64 > self.max_blocks {
                return Err(Error::TooLarge {
                    entry: Some(name.to_string()),
                    what: format!("the maximum size of {} bytes", self.options.max_size),
                });
            }
            self.out.commit(kept * BS)?;
        }
        Ok(runs)
    }
}

/// Sets `trusted.overlay.opaque=y`.
fn mark_opaque(meta: &mut Meta) {
    meta.xattrs.insert(OPAQUE_XATTR.to_vec(), b"y".to_vec());
}

/// A repeated directory entry updates the directory's metadata; an overlay opaque marker
/// set by an earlier whiteout stays.
fn set_dir_meta(node: &mut Node, mut meta: Meta) {
    if let Some(v) = node.meta.xattrs.get(OPAQUE_XATTR) {
        meta.xattrs
            .entry(OPAQUE_XATTR.to_vec())
            .or_insert_with(|| v.clone());
    }
    node.meta = meta;
}

/// An entry's metadata as the tree keeps it.
fn tree_meta(m: &EntryMeta) -> Meta {
    Meta {
        perm: (m.mode & 0o7777) as u16,
        uid: m.uid,
        gid: m.gid,
        mtime: m.mtime,
        atime: m.atime,
        ctime: m.ctime.unwrap_or(m.mtime),
        xattrs: m
            .xattrs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect(),
    }
}

/// The builder as a writer of the tar engine's entry stream.
pub(super) struct Ingest<'a, W: Write + Seek>(pub(super) &'a mut Builder<W>);

impl<W: Write + Seek> EntrySink for Ingest<'_, W> {
    type Error = Error;

    fn create(&mut self, entry: &Entry, data: &mut dyn Read, _: &Written) -> Result<bool> {
        self.0.add_entry(entry, data)
    }

    fn whiteout(&mut self, entry: &Entry, written: &Written) -> Result<()> {
        self.0.add_whiteout(entry, written)
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
