//! Applying a tar stream to a volume over NFS, confined to it.
//!
//! Entries come from the tar engine's one entry stream ([`ingest()`]: compression, digests,
//! names normalised and filtered, every rule about whiteouts, xattrs and PAX values); this
//! module is an [`EntrySink`] that only decides where they go. There is no local directory
//! to `openat2` in, so confinement is done here, by file handles:
//! - names arrive normalised lexically: `..` never climbs above the volume, absolute
//!   names are relative;
//! - every directory on an entry's path is walked from the volume's handle with LOOKUP,
//!   component by component; a symlink met there is read (READLINK) and followed as if the
//!   volume were `/`, as the directory writer's `openat2(RESOLVE_IN_ROOT)` does, so the
//!   same archive gives the same tree on both: an absolute target starts again from the
//!   volume, `..` never climbs above it, and the last component is never followed;
//! - hard link targets are archive names, resolved the same way inside the volume.
//!
//! Whiteouts are applied as deletions (a volume is a whole filesystem), sparing what the
//! archive itself wrote. Files are created with the store's uid/gid (the URL's), the
//! archive's mode and times. NFSv3 has no xattrs: they are dropped, with a warning. Device
//! nodes need the server's permission (root credentials): when the server refuses one, it
//! is counted in `skipped` and named in a warning.
//!
//! Throughput comes from overlap: small files are sent as independent jobs (create,
//! writes, times) many at a time, large files as many WRITEs in flight, all unstable; the
//! data is committed at the end, and a write verifier that changed in between (the server
//! restarted and may have lost unstable data) fails the import, which can be run again
//! over what it left. Entries that depend on earlier ones (links, whiteouts, a name
//! written twice, a directory made where a file may be on its way) first wait for the jobs
//! in flight.
//!
//! This module holds the sink and the bookkeeping of jobs and commits; `paths` resolves
//! and clears where entries go, `files` writes regular files, `entries` makes the other
//! kinds.

mod entries;
mod files;
mod paths;

use entries::times;
use paths::Resolve;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use nfs3_client::nfs3_types::nfs3::{Nfs3Option, sattr3, writeverf3};
use storage_core::{Error, FilterSpec, Op, Result, TarReader};
use tar_engine::confine::{child_len, split_last};
use tar_engine::entry::{Written, check_path_len};
use tar_engine::{ApplyReport, Entry, EntrySink, IngestOptions, Kind, Meta, ingest};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::NfsError;
use crate::session::{Fh, Session};
use crate::tree::join_all;
use crate::volumes::Store;

/// Bytes of file data read but not yet written, at most.
const BYTES_IN_FLIGHT: usize = 64 << 20;
/// The byte budget is counted in units of this size.
pub(super) const UNIT: usize = 4096;

/// Imports `tar` into the volume whose data directory is `root`.
pub(crate) async fn import(
    op: &Op,
    store: Arc<Store>,
    root: Fh,
    location: PathBuf,
    spec: &FilterSpec,
    tar: TarReader,
) -> Result<ApplyReport> {
    let op = op.clone();
    let spec = spec.clone();
    let handle = Handle::current();
    let input = tokio_util::io::SyncIoBridge::new(tar);
    tokio::task::spawn_blocking(move || {
        let _span = op.span().enter();
        let target = location.display().to_string();
        let mut applier = Applier::new(handle, store, root, location);
        let opts = IngestOptions {
            filter: Some(&spec),
            expected_digest: None,
            target: &target,
            literal_whiteouts: false,
            skip_digests: false,
            tar_split: None,
        };
        let report = ingest(&op, input, opts, &mut applier);
        // Whatever happened, no job may outlive the import.
        let drained = applier.drain();
        let result = report.and_then(|r| drained.map(|()| r));
        if result.is_err() {
            applier.roll_back();
        }
        result
    })
    .await
    .map_err(|e| Error::io("NFS import task", std::io::Error::other(e)))?
}

/// A file whose unstable writes must be committed before the import is done.
struct Uncommitted {
    fh: Fh,
    name: Vec<u8>,
    verf: writeverf3,
}

struct Applier {
    rt: Handle,
    store: Arc<Store>,
    location: PathBuf,
    /// Directory handles by normalised path ("" is the volume), with the length of each
    /// one's real path (where it is once symlinks are followed).
    dirs: HashMap<Vec<u8>, (Fh, usize)>,
    /// Directory modes and times, set once every child exists (so a read-only directory
    /// can still be filled).
    dir_attrs: HashMap<Vec<u8>, (Fh, Meta)>,
    /// Small-file jobs in flight.
    jobs: JoinSet<Result<JobDone>>,
    budget: Arc<Semaphore>,
    uncommitted: Vec<Uncommitted>,
    xattrs_dropped: u64,
    /// Paths of the small-file jobs spawned since every job was last waited for: an entry
    /// below one of them must wait (the job may still replace what is there).
    in_flight: HashSet<Vec<u8>, foldhash::fast::RandomState>,
    /// Entries made where nothing was (paths in the volume, the way they were reached),
    /// to take back if the import fails: a volume outlives a failed import.
    created: Vec<Vec<u8>>,
}

/// What a small-file job reports: the write to commit, and whether it made the file
/// where nothing was.
struct JobDone {
    uncommitted: Option<Uncommitted>,
    created: Option<Vec<u8>>,
}

impl Applier {
    fn new(rt: Handle, store: Arc<Store>, root: Fh, location: PathBuf) -> Self {
        let mut dirs = HashMap::new();
        dirs.insert(Vec::new(), (root, 0));
        Applier {
            rt,
            store,
            location,
            dirs,
            dir_attrs: HashMap::new(),
            jobs: JoinSet::new(),
            budget: Arc::new(Semaphore::new(BYTES_IN_FLIGHT / UNIT)),
            uncommitted: Vec::new(),
            xattrs_dropped: 0,
            in_flight: HashSet::default(),
            created: Vec::new(),
        }
    }

    /// Takes a finished job's report into the import's books.
    fn took(&mut self, done: JobDone) {
        self.uncommitted.extend(done.uncommitted);
        self.created.extend(done.created);
    }

    /// Removes what this import made where nothing was, deepest first. Best effort: the
    /// import's own error is what the caller reports.
    fn roll_back(&mut self) {
        let mut made = std::mem::take(&mut self.created);
        made.sort_by_key(|rel| std::cmp::Reverse(rel.len()));
        // Handles below removed directories go stale: resolve every parent afresh.
        self.dirs.retain(|k, _| k.is_empty());
        for rel in made {
            let (parent, name) = split_last(&rel);
            let Ok(Some(dir)) = self.resolve(parent, &rel, paths::Resolve::Lookup) else {
                continue;
            };
            let store = self.store.clone();
            if let Err(e) = self.block(crate::tree::remove_tree(&store.session, &dir, name)) {
                tracing::warn!(
                    "undoing a failed import into {}: {}",
                    self.display(&rel),
                    storage_core::Report(&e)
                );
            }
        }
    }

    fn s(&self) -> &Session {
        &self.store.session
    }

    fn display(&self, rel: &[u8]) -> String {
        format!(
            "{}/{}",
            self.location.display(),
            String::from_utf8_lossy(rel)
        )
    }

    /// Runs `f` on the runtime from this blocking thread.
    fn block<T>(&self, f: impl Future<Output = std::result::Result<T, NfsError>>) -> Result<T> {
        self.rt.block_on(f).map_err(Error::from)
    }

    /// Collects finished jobs (all of them with `wait`), failing on the first error.
    /// True when `rel` or one of its ancestors is a small file a job may still be writing.
    fn below_in_flight(&self, rel: &[u8]) -> bool {
        if self.in_flight.is_empty() {
            return false;
        }
        let mut end = rel.len();
        loop {
            if self.in_flight.contains(&rel[..end]) {
                return true;
            }
            match rel[..end].iter().rposition(|&b| b == b'/') {
                Some(i) => end = i,
                None => return false,
            }
        }
    }

    fn reap(&mut self, wait: bool) -> Result<()> {
        loop {
            let next = if wait {
                match self.rt.block_on(self.jobs.join_next()) {
                    Some(r) => r,
                    None => {
                        self.in_flight.clear();
                        return Ok(());
                    }
                }
            } else {
                match self.jobs.try_join_next() {
                    Some(r) => r,
                    None => return Ok(()),
                }
            };
            let done = next.map_err(|e| Error::io("NFS file job", std::io::Error::other(e)))??;
            self.took(done);
        }
    }

    /// Waits for every job, keeping the first error.
    fn drain(&mut self) -> Result<()> {
        let mut first = Ok(());
        while let Some(r) = self.rt.block_on(self.jobs.join_next()) {
            let r = r
                .map_err(|e| Error::io("NFS file job", std::io::Error::other(e)))
                .and_then(|r| r);
            match r {
                Ok(done) => self.took(done),
                Err(e) => {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        first
    }

    /// Directory modes and times, then the commit of every unstable write, once every
    /// job is done.
    fn settle(&mut self) -> Result<()> {
        self.reap(true)?;
        let store = self.store.clone();
        let s = &store.session;
        let attrs: Vec<(Vec<u8>, Fh, sattr3)> = self
            .dir_attrs
            .drain()
            .map(|(rel, (fh, meta))| {
                let mut a = times(&meta);
                a.mode = Nfs3Option::Some(meta.mode);
                (rel, fh, a)
            })
            .collect();
        for batch in attrs.chunks(32) {
            let futs = batch
                .iter()
                .map(|(rel, fh, a)| Box::pin(s.setattr(fh, a.clone(), rel)))
                .collect();
            for r in self.rt.block_on(join_all(futs)) {
                r?;
            }
        }
        let uncommitted = std::mem::take(&mut self.uncommitted);
        for batch in uncommitted.chunks(32) {
            let futs = batch
                .iter()
                .map(|u| Box::pin(async move { (u, s.commit(&u.fh, &u.name).await) }))
                .collect();
            for (u, r) in self.rt.block_on(join_all(futs)) {
                let verf = r?;
                if verf != u.verf {
                    return Err(restarted(s, &u.name));
                }
            }
        }
        if self.xattrs_dropped > 0 {
            tracing::warn!(
                "{} extended attribute(s) dropped: NFSv3 cannot store them ({})",
                self.xattrs_dropped,
                self.location.display()
            );
        }
        Ok(())
    }
}

impl EntrySink for Applier {
    type Error = Error;

    fn create(&mut self, entry: &Entry, data: &mut dyn Read, written: &Written) -> Result<bool> {
        self.reap(false)?;
        let (raw, rel, meta) = (entry.raw.as_slice(), entry.path.as_slice(), &entry.meta);
        self.xattrs_dropped += meta.xattrs.len() as u64;
        if rel.is_empty() {
            let root = self.dir(b"", raw)?;
            self.dir_attrs.insert(Vec::new(), (root, meta.clone()));
            return Ok(true);
        }
        // An entry below a file still on its way must wait for it.
        if self.below_in_flight(rel) {
            self.reap(true)?;
        }
        let (parent_rel, name) = split_last(rel);
        let (parent, parent_len) = self.dir_len(parent_rel, raw)?;
        // Where it lands, not what the archive calls it: symlinks must not let a tree grow
        // deeper than names can reach.
        check_path_len(raw, child_len(parent_len, name))?;
        // An entry replacing one this archive wrote waits for that one's job; a file that
        // will be a job of its own removes it here, with the bookkeeping of what it held.
        if written.spares(rel) {
            self.reap(true)?;
            if matches!(entry.kind, Kind::File { .. }) {
                self.clear(&parent, name, rel)?;
            }
        }
        match &entry.kind {
            Kind::File { size, sparse } => {
                self.regular(data, &parent, name, rel, *size, sparse.as_deref(), meta)?
            }
            Kind::Dir => self.directory(&parent, parent_len, name, rel, meta.clone())?,
            Kind::Symlink { target } => self.symlink(&parent, name, rel, target, meta)?,
            Kind::HardLink { target } => {
                self.reap(true)?;
                self.hardlink(&parent, name, rel, target, raw)?
            }
            kind @ (Kind::Char { .. } | Kind::Block { .. } | Kind::Fifo) => {
                if !self.node(&parent, name, rel, kind, meta)? {
                    return Ok(false);
                }
            }
            Kind::Whiteout | Kind::Opaque => return Ok(false),
        }
        if entry.kind != Kind::Dir {
            self.dir_attrs.remove(rel);
        }
        Ok(true)
    }

    /// Applies a whiteout as deletions of what the volume held before the import; what
    /// the archive itself wrote stays.
    fn whiteout(&mut self, entry: &Entry, written: &Written) -> Result<()> {
        self.reap(true)?;
        let (raw, rel) = (entry.raw.as_slice(), entry.path.as_slice());
        let store = self.store.clone();
        if entry.kind == Kind::Opaque {
            let Some(dir) = self.resolve(rel, raw, Resolve::NoSymlinks)? else {
                return Ok(());
            };
            let names = self.block(store.session.readdir(&dir, rel))?;
            for child in names {
                let child_rel = join(rel, &child.name);
                self.remove_lower(&dir, &child.name, &child_rel, written)?;
            }
        } else {
            let (parent_rel, hidden) = split_last(rel);
            let Some(dir) = self.resolve(parent_rel, raw, Resolve::NoSymlinks)? else {
                return Ok(());
            };
            self.remove_lower(&dir, hidden, rel, written)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.settle()
    }
}

fn restarted(s: &Session, rel: &[u8]) -> Error {
    Error::io(
        format!(
            "NFS volume store {}: the server restarted while {} was written, and may have lost unstable data; run the import again",
            s.server(),
            String::from_utf8_lossy(rel)
        ),
        std::io::Error::from(std::io::ErrorKind::Interrupted),
    )
}

fn with_object(e: NfsError, object: &str) -> Error {
    located(e.into(), object)
}

/// An I/O error that says which entry of the import it befell.
fn located(e: Error, object: &str) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context: format!("{context}: import {object}"),
            source,
        },
        other => other,
    }
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    tar_engine::tree::join_rel(parent, name)
}
