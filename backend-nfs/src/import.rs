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
//! written twice) first wait for the jobs in flight.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use nfs3_client::nfs3_types::nfs3::{
    Nfs3Option, devicedata3, ftype3, mknoddata3, nfsstat3, nfstime3, sattr3, set_atime, set_mtime,
    specdata3, stable_how, writeverf3,
};
use storage_core::{Error, FilterSpec, Op, Result, TarReader};
use tar_engine::confine::split_last;
use tar_engine::entry::{WHITEOUT_THROUGH_SYMLINK, Written, unsafe_entry};
use tar_engine::ingest::invalid;
use tar_engine::{ApplyReport, Entry, EntrySink, IngestOptions, Kind, Meta, Time, ingest};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::NfsError;
use crate::session::{Fh, Session, guarded, owner_mode};
use crate::tree::{join_all, remove_tree};
use crate::volumes::Store;

/// Files up to this size are read whole and sent as one job.
const SMALL_FILE: u64 = 1 << 20;
/// Bytes of file data read but not yet written, at most.
const BYTES_IN_FLIGHT: usize = 64 << 20;
/// The byte budget is counted in units of this size.
const UNIT: usize = 4096;
/// A large file is committed in the background every this many bytes.
const COMMIT_EVERY: u64 = 32 << 20;
/// Most symlinks followed while resolving one path (the kernel's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;
/// Small-file jobs in flight, at most.
const JOBS_IN_FLIGHT: usize = 64;

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
        };
        let report = ingest(&op, input, opts, &mut applier);
        // Whatever happened, no job may outlive the import.
        let drained = applier.drain();
        let report = report?;
        drained?;
        Ok(report)
    })
    .await
    .map_err(|e| Error::io("NFS import task", std::io::Error::other(e)))?
}

/// A time as NFSv3 carries it: unsigned 32-bit seconds, so times before 1970 or after
/// 2106 are clamped.
fn time3(t: &Time) -> nfstime3 {
    nfstime3 {
        seconds: t.secs.clamp(0, i64::from(u32::MAX)) as u32,
        nseconds: if t.secs < 0 { 0 } else { t.nanos },
    }
}

/// The times of an entry.
fn times(meta: &Meta) -> sattr3 {
    sattr3 {
        atime: set_atime::SET_TO_CLIENT_TIME(time3(&meta.atime)),
        mtime: set_mtime::SET_TO_CLIENT_TIME(time3(&meta.mtime)),
        ..sattr3::default()
    }
}

/// The mode and times of a file, set after its data: a write clears setuid and setgid.
fn mode_times(meta: &Meta) -> sattr3 {
    sattr3 {
        mode: Nfs3Option::Some(meta.mode),
        ..times(meta)
    }
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
    /// Directory handles by normalised path ("" is the volume).
    dirs: HashMap<Vec<u8>, Fh>,
    /// Directory modes and times, set once every child exists (so a read-only directory
    /// can still be filled).
    dir_attrs: HashMap<Vec<u8>, (Fh, Meta)>,
    /// Small-file jobs in flight.
    jobs: JoinSet<Result<Option<Uncommitted>>>,
    budget: Arc<Semaphore>,
    uncommitted: Vec<Uncommitted>,
    xattrs_dropped: u64,
}

impl Applier {
    fn new(rt: Handle, store: Arc<Store>, root: Fh, location: PathBuf) -> Self {
        let mut dirs = HashMap::new();
        dirs.insert(Vec::new(), root);
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
    fn reap(&mut self, wait: bool) -> Result<()> {
        loop {
            let next = if wait {
                match self.rt.block_on(self.jobs.join_next()) {
                    Some(r) => r,
                    None => return Ok(()),
                }
            } else {
                match self.jobs.try_join_next() {
                    Some(r) => r,
                    None => return Ok(()),
                }
            };
            let done = next.map_err(|e| Error::io("NFS file job", std::io::Error::other(e)))??;
            if let Some(u) = done {
                self.uncommitted.push(u);
            }
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
                Ok(Some(u)) => self.uncommitted.push(u),
                Ok(None) => {}
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

    /// The handle of directory `rel`, creating missing directories (0755) on the way.
    fn dir(&mut self, rel: &[u8], raw: &[u8]) -> Result<Fh> {
        match self.resolve(rel, raw, Resolve::Create)? {
            Some(fh) => Ok(fh),
            None => Err(unsafe_entry(raw, "its directory could not be made")),
        }
    }

    /// The handle of an existing directory, `None` when the path does not exist.
    fn lookup_dir(&mut self, rel: &[u8], raw: &[u8]) -> Result<Option<Fh>> {
        self.resolve(rel, raw, Resolve::Lookup)
    }

    /// Resolves the directory `rel` inside the volume as if the volume were `/`, as the
    /// directory writer's `openat2(RESOLVE_IN_ROOT)` does: a symlink met on the way is
    /// read (READLINK) and followed, an absolute target starts again from the volume, `..`
    /// never climbs above it, and at most 40 symlinks are followed. Missing directories of
    /// `rel` itself are made (0755) with [`Resolve::Create`], otherwise the answer is
    /// `None`; a symlink's target is never made: one that leads nowhere, or a component
    /// that is not a directory, refuses the entry `raw`, and so does any symlink with
    /// [`Resolve::NoSymlinks`].
    fn resolve(&mut self, rel: &[u8], raw: &[u8], how: Resolve) -> Result<Option<Fh>> {
        if how != Resolve::NoSymlinks
            && let Some(fh) = self.dirs.get(rel)
        {
            return Ok(Some(fh.clone()));
        }
        let refuse = |what: &str, at: &[u8]| {
            unsafe_entry(
                raw,
                format!(
                    "its path crosses {}, which {what}",
                    String::from_utf8_lossy(at)
                ),
            )
        };
        let store = self.store.clone();
        let s = &store.session;
        let (uid, gid) = s.owner();
        let root = self.dirs.get(&b""[..]).cloned().ok_or_else(|| {
            Error::io(
                format!("import into {}", self.location.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
        // Where the walk is (its real path inside the volume, and its handle), and what is
        // left to walk: each component says whether it came from a symlink's target.
        let mut stack: Vec<(Vec<u8>, Fh)> = vec![(Vec::new(), root)];
        let mut queue: VecDeque<(Vec<u8>, bool)> = rel
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(|c| (c.to_vec(), false))
            .collect();
        let mut followed = 0;
        while let Some((comp, from_link)) = queue.pop_front() {
            match comp.as_slice() {
                b"." | b"" => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let (here, fh) = stack.last().cloned().unwrap_or_default();
            let path = join(&here, &comp);
            if !from_link && let Some(known) = self.dirs.get(&path) {
                stack.push((path, known.clone()));
                continue;
            }
            let next = match self.block(s.lookup(&fh, &comp))? {
                Some((next, a)) if a.type_ == ftype3::NF3DIR => next,
                Some((_, a)) if a.type_ == ftype3::NF3LNK && how == Resolve::NoSymlinks => {
                    return Err(unsafe_entry(raw, WHITEOUT_THROUGH_SYMLINK));
                }
                Some((link, a)) if a.type_ == ftype3::NF3LNK => {
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(refuse("leads through more than 40 symlinks", &path));
                    }
                    let target = self.block(s.readlink(&link, &path))?;
                    if target.first() == Some(&b'/') {
                        stack.truncate(1);
                    }
                    for c in target.split(|&b| b == b'/').rev() {
                        queue.push_front((c.to_vec(), true));
                    }
                    continue;
                }
                Some(_) => return Err(refuse("is not a directory", &path)),
                None if from_link => {
                    return Err(refuse("is a symlink that leads nowhere", &path));
                }
                None if how == Resolve::Create => {
                    // A small file of this archive may still be on its way to this name:
                    // wait for the jobs in flight before making a directory of it.
                    self.reap(true)?;
                    match self.block(s.lookup(&fh, &comp))? {
                        Some((made, a)) if a.type_ == ftype3::NF3DIR => made,
                        Some((_, a)) if a.type_ == ftype3::NF3LNK => {
                            // Resolve it again from here, now that it exists.
                            queue.push_front((comp, from_link));
                            continue;
                        }
                        Some(_) => return Err(refuse("is not a directory", &path)),
                        None => self.block(s.mkdir(&fh, &comp, owner_mode(uid, gid, 0o755)))?,
                    }
                }
                None => return Ok(None),
            };
            self.dirs.insert(path.clone(), next.clone());
            stack.push((path, next));
        }
        let fh = stack.last().map(|(_, fh)| fh.clone()).unwrap_or_default();
        self.dirs.insert(rel.to_vec(), fh.clone());
        Ok(Some(fh))
    }

    /// Removes whatever is at `name` in `dir` (a previous import's entry).
    /// `rel` is its path in the volume: writes of files there or below, now removed, have
    /// nothing left to commit.
    fn clear(&mut self, dir: &Fh, name: &[u8], rel: &[u8]) -> Result<()> {
        self.uncommitted.retain(|u| {
            !(u.name.starts_with(rel) && matches!(u.name.get(rel.len()), None | Some(b'/')))
        });
        // Handles below a removed directory are gone: forget them all.
        self.dirs.retain(|k, _| k.is_empty());
        let store = self.store.clone();
        self.block(remove_tree(&store.session, dir, name))?;
        Ok(())
    }

    /// Creates `name` with `create`, replacing whatever was there.
    fn create_replacing<T, F>(
        &mut self,
        dir: &Fh,
        name: &[u8],
        rel: &[u8],
        create: impl Fn() -> F,
    ) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, NfsError>>,
    {
        match self.rt.block_on(create()) {
            Ok(v) => Ok(v),
            Err(e) if e.is(nfsstat3::NFS3ERR_EXIST) => {
                self.clear(dir, name, rel)?;
                self.block(create())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn regular(
        &mut self,
        data: &mut dyn Read,
        dir: &Fh,
        name: &[u8],
        rel: &[u8],
        size: u64,
        meta: &Meta,
    ) -> Result<()> {
        let (uid, gid) = self.s().owner();
        let read_err = |e: std::io::Error| invalid(Some(rel), e);
        if size <= SMALL_FILE {
            let mut buf = Vec::with_capacity(size as usize);
            data.take(size).read_to_end(&mut buf).map_err(read_err)?;
            truncated(rel, buf.len() as u64, size)?;
            while self.jobs.len() >= JOBS_IN_FLIGHT {
                let next = self.rt.block_on(self.jobs.join_next());
                if let Some(r) = next {
                    let done =
                        r.map_err(|e| Error::io("NFS file job", std::io::Error::other(e)))??;
                    if let Some(u) = done {
                        self.uncommitted.push(u);
                    }
                }
            }
            let units = buf.len().div_ceil(UNIT).max(1) as u32;
            let permit = self
                .rt
                .block_on(self.budget.clone().acquire_many_owned(units))
                .map_err(|e| Error::io("NFS import budget", std::io::Error::other(e)))?;
            let store = self.store.clone();
            let dir = dir.clone();
            let name = name.to_vec();
            let rel = rel.to_vec();
            let display = self.display(&rel);
            let meta = meta.clone();
            self.jobs.spawn_on(
                async move {
                    let _permit = permit;
                    let written = small_file(&store.session, &dir, &name, &buf, &meta, uid, gid)
                        .await
                        .map_err(|e| with_object(e, &display))?;
                    // Known by its path in the volume, as the large files are.
                    Ok(written.map(|u| Uncommitted { name: rel, ..u }))
                },
                &self.rt,
            );
            return Ok(());
        }
        // A large file: created here, then its data as many writes in flight at once.
        let store = self.store.clone();
        let fh = self.create_replacing(dir, name, rel, || {
            store
                .session
                .create(dir, name, guarded(uid, gid, meta.mode))
        })?;
        let wsize = self.s().wsize as usize;
        let mut writes: JoinSet<std::result::Result<writeverf3, NfsError>> = JoinSet::new();
        let mut offset = 0u64;
        let mut verf = None;
        let result = (|| -> Result<()> {
            while offset < size {
                let want = (size - offset).min(wsize as u64) as usize;
                let mut chunk = vec![0u8; want];
                data.read_exact(&mut chunk).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        truncated(rel, offset, size)
                            .err()
                            .unwrap_or_else(|| read_err(e))
                    } else {
                        read_err(e)
                    }
                })?;
                let units = want.div_ceil(UNIT).max(1) as u32;
                let permit = self
                    .rt
                    .block_on(self.budget.clone().acquire_many_owned(units))
                    .map_err(|e| Error::io("NFS import budget", std::io::Error::other(e)))?;
                let (store, wfh, wname) = (self.store.clone(), fh.clone(), name.to_vec());
                let at = offset;
                writes.spawn_on(
                    async move {
                        let _permit = permit;
                        store
                            .session
                            .write(&wfh, at, &chunk, stable_how::UNSTABLE, &wname)
                            .await
                    },
                    &self.rt,
                );
                offset += want as u64;
                // Commit what has been written so far now and then, so that the server
                // flushes it while the rest arrives, not all at the end.
                if offset % COMMIT_EVERY < want as u64 && offset < size {
                    let (store, cfh, cname) = (self.store.clone(), fh.clone(), name.to_vec());
                    writes.spawn_on(
                        async move { store.session.commit(&cfh, &cname).await },
                        &self.rt,
                    );
                }
                while let Some(done) = writes.try_join_next() {
                    note_verf(&mut verf, done, self.s(), rel)?;
                }
            }
            while let Some(done) = self.rt.block_on(writes.join_next()) {
                note_verf(&mut verf, done, self.s(), rel)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            writes.abort_all();
            while self.rt.block_on(writes.join_next()).is_some() {}
            return Err(e);
        }
        let store = self.store.clone();
        self.block(store.session.setattr(&fh, mode_times(meta), rel))?;
        if let Some(verf) = verf {
            self.uncommitted.push(Uncommitted {
                fh,
                name: rel.to_vec(),
                verf,
            });
        }
        Ok(())
    }

    fn directory(&mut self, dir: &Fh, name: &[u8], rel: &[u8], meta: Meta) -> Result<()> {
        let (uid, gid) = self.s().owner();
        let store = self.store.clone();
        let s = &store.session;
        let attr = owner_mode(uid, gid, meta.mode | 0o700);
        let fh = match self.rt.block_on(s.mkdir(dir, name, attr.clone())) {
            Ok(fh) => fh,
            Err(e) if e.is(nfsstat3::NFS3ERR_EXIST) => match self.block(s.lookup(dir, name))? {
                Some((fh, a)) if a.type_ == ftype3::NF3DIR => fh,
                _ => {
                    self.clear(dir, name, rel)?;
                    self.block(s.mkdir(dir, name, attr))?
                }
            },
            Err(e) => return Err(e.into()),
        };
        self.dirs.insert(rel.to_vec(), fh.clone());
        self.dir_attrs.insert(rel.to_vec(), (fh, meta));
        Ok(())
    }

    fn symlink(
        &mut self,
        dir: &Fh,
        name: &[u8],
        rel: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        let (uid, gid) = self.s().owner();
        let attr = owner_mode(uid, gid, 0o777);
        let attr = sattr3 {
            mode: Nfs3Option::None,
            ..attr
        };
        let store = self.store.clone();
        let fh = self.create_replacing(dir, name, rel, || {
            store.session.symlink(dir, name, target, attr.clone())
        })?;
        // Not every server sets times on a symlink; the link itself is what matters.
        match self
            .rt
            .block_on(store.session.setattr(&fh, times(meta), rel))
        {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.status(),
                    Some(nfsstat3::NFS3ERR_NOTSUPP | nfsstat3::NFS3ERR_INVAL)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn hardlink(
        &mut self,
        dir: &Fh,
        name: &[u8],
        rel: &[u8],
        target: &[u8],
        raw: &[u8],
    ) -> Result<()> {
        let missing = || {
            unsafe_entry(
                raw,
                format!(
                    "hard link target {:?} does not exist in the volume",
                    String::from_utf8_lossy(target)
                ),
            )
        };
        let (tparent, tname) = split_last(target);
        let tdir = self.lookup_dir(tparent, raw)?.ok_or_else(missing)?;
        let store = self.store.clone();
        let s = &store.session;
        let (tfh, tattr) = self.block(s.lookup(&tdir, tname))?.ok_or_else(missing)?;
        if tattr.type_ == ftype3::NF3DIR {
            return Err(unsafe_entry(raw, "hard link to a directory"));
        }
        if let Some((_, a)) = self.block(s.lookup(dir, name))? {
            if a.fileid == tattr.fileid {
                return Ok(());
            }
            self.clear(dir, name, rel)?;
        }
        self.block(s.link(&tfh, dir, name))?;
        Ok(())
    }

    /// Returns false when the server refused a device node.
    fn node(
        &mut self,
        dir: &Fh,
        name: &[u8],
        rel: &[u8],
        kind: &Kind,
        meta: &Meta,
    ) -> Result<bool> {
        let (uid, gid) = self.s().owner();
        let attr = owner_mode(uid, gid, meta.mode);
        let what = || {
            let spec = |major, minor| specdata3 {
                specdata1: major,
                specdata2: minor,
            };
            match *kind {
                Kind::Char { major, minor } => mknoddata3::NF3CHR(devicedata3 {
                    dev_attributes: attr.clone(),
                    spec: spec(major, minor),
                }),
                Kind::Block { major, minor } => mknoddata3::NF3BLK(devicedata3 {
                    dev_attributes: attr.clone(),
                    spec: spec(major, minor),
                }),
                _ => mknoddata3::NF3FIFO(attr.clone()),
            }
        };
        let store = self.store.clone();
        let made = self.create_replacing(dir, name, rel, || store.session.mknod(dir, name, what()));
        let fh = match made {
            Ok(fh) => fh,
            Err(e) if *kind != Kind::Fifo && refused(&e) => {
                tracing::warn!(
                    "device node {} not created: the server refused it ({e}); device nodes need root credentials (uid=0) on the export",
                    self.display(rel)
                );
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        self.block(store.session.setattr(&fh, times(meta), rel))?;
        Ok(true)
    }

    /// Removes what earlier imports put at `rel`, keeping what this archive wrote.
    fn remove_lower(
        &mut self,
        dir: &Fh,
        name: &[u8],
        rel: &[u8],
        raw: &[u8],
        written: &Written,
    ) -> Result<()> {
        if !written.spares(rel) {
            return self.clear(dir, name, rel);
        }
        let Some(sub) = self.lookup_dir(rel, raw).ok().flatten() else {
            return Ok(());
        };
        let store = self.store.clone();
        let names = self.block(store.session.readdir(&sub, rel))?;
        for child in names {
            let child_rel = join(rel, &child.name);
            self.remove_lower(&sub, &child.name, &child_rel, raw, written)?;
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
        // An entry replacing one this archive wrote must wait for that one's job.
        if written.spares(rel) {
            self.reap(true)?;
        }
        let (parent_rel, name) = split_last(rel);
        let parent = self.dir(parent_rel, raw)?;
        match &entry.kind {
            Kind::File { size } => self.regular(data, &parent, name, rel, *size, meta)?,
            Kind::Dir => self.directory(&parent, name, rel, meta.clone())?,
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
                self.remove_lower(&dir, &child.name, &child_rel, raw, written)?;
            }
        } else {
            let (parent_rel, hidden) = split_last(rel);
            let Some(dir) = self.resolve(parent_rel, raw, Resolve::NoSymlinks)? else {
                return Ok(());
            };
            self.remove_lower(&dir, hidden, rel, raw, written)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.settle()
    }
}

/// How [`Applier::resolve`] treats what it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolve {
    /// Follow symlinks; make missing directories.
    Create,
    /// Follow symlinks; a missing directory is `None`.
    Lookup,
    /// Refuse any symlink on the way (a whiteout's directory); a missing directory is
    /// `None`.
    NoSymlinks,
}

/// Create, write and time one small file (a job of its own).
async fn small_file(
    s: &Session,
    dir: &Fh,
    name: &[u8],
    data: &[u8],
    meta: &Meta,
    uid: u32,
    gid: u32,
) -> std::result::Result<Option<Uncommitted>, NfsError> {
    let fh = match s.create(dir, name, guarded(uid, gid, meta.mode)).await {
        Ok(fh) => fh,
        Err(e) if e.is(nfsstat3::NFS3ERR_EXIST) => {
            remove_tree(s, dir, name).await?;
            s.create(dir, name, guarded(uid, gid, meta.mode)).await?
        }
        Err(e) => return Err(e),
    };
    let mut verf = None;
    if !data.is_empty() {
        let futs = data
            .chunks(s.wsize as usize)
            .enumerate()
            .map(|(i, chunk)| {
                Box::pin(s.write(
                    &fh,
                    i as u64 * u64::from(s.wsize),
                    chunk,
                    stable_how::UNSTABLE,
                    name,
                ))
            })
            .collect();
        for r in join_all(futs).await {
            let v = r?;
            if verf.is_some_and(|old| old != v) {
                return Err(NfsError::Status {
                    call: format!("WRITE {}", String::from_utf8_lossy(name)),
                    status: nfsstat3::NFS3ERR_IO,
                });
            }
            verf = Some(v);
        }
    }
    s.setattr(&fh, mode_times(meta), name).await?;
    Ok(verf.map(|verf| Uncommitted {
        fh,
        name: name.to_vec(),
        verf,
    }))
}

fn note_verf(
    verf: &mut Option<writeverf3>,
    done: std::result::Result<std::result::Result<writeverf3, NfsError>, tokio::task::JoinError>,
    s: &Session,
    rel: &[u8],
) -> Result<()> {
    let v = done.map_err(|e| Error::io("NFS write task", std::io::Error::other(e)))??;
    if verf.is_some_and(|old| old != v) {
        return Err(restarted(s, rel));
    }
    *verf = Some(v);
    Ok(())
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

fn refused(e: &Error) -> bool {
    matches!(
        e,
        Error::Io { source, .. } if matches!(source.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::Unsupported)
    )
}

fn with_object(e: NfsError, object: &str) -> Error {
    let e: Error = e.into();
    match e {
        Error::Io { context, source } => Error::Io {
            context: format!("{context}: import {object}"),
            source,
        },
        other => other,
    }
}

fn truncated(rel: &[u8], got: u64, want: u64) -> Result<()> {
    if got < want {
        return Err(Error::InvalidArchive {
            entry: Some(String::from_utf8_lossy(rel).into_owned()),
            reason: format!(
                "archive is truncated: {} of {want} bytes missing",
                want - got
            ),
        });
    }
    Ok(())
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    tar_engine::tree::join_rel(parent, name)
}
