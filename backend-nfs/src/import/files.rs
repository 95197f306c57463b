//! Regular files: small ones as independent jobs (create, writes, times), large ones as
//! many unstable WRITEs in flight, each remembered until it is committed. A sparse file is
//! written as a large one, its data segments only, and then given its size (the server
//! leaves the rest a hole).

use std::io::Read;

use nfs3_client::nfs3_types::nfs3::{nfsstat3, stable_how, writeverf3};
use storage_core::{Error, Result};
use tar_engine::ingest::invalid;
use tar_engine::{Meta, Segment};
use tokio::task::JoinSet;

use super::entries::mode_times;
use super::{Applier, JobDone, UNIT, Uncommitted, located, restarted, with_object};
use crate::error::NfsError;
use crate::session::{Fh, Session, guarded};
use crate::tree::{join_all, remove_tree};

/// Files up to this size are read whole and sent as one job.
const SMALL_FILE: u64 = 1 << 20;
/// A large file is committed in the background every this many bytes.
const COMMIT_EVERY: u64 = 32 << 20;
/// Small-file jobs in flight, at most.
const JOBS_IN_FLIGHT: usize = 64;

impl Applier {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn regular(
        &mut self,
        data: &mut dyn Read,
        dir: &Fh,
        name: &[u8],
        rel: &[u8],
        size: u64,
        sparse: Option<&[Segment]>,
        meta: &Meta,
    ) -> Result<()> {
        let (uid, gid) = self.s().owner();
        let read_err = |e: std::io::Error| invalid(Some(rel), e);
        if size <= SMALL_FILE && sparse.is_none() {
            let mut buf = Vec::with_capacity(size as usize);
            data.take(size).read_to_end(&mut buf).map_err(read_err)?;
            truncated(rel, buf.len() as u64, size)?;
            while self.jobs.len() >= JOBS_IN_FLIGHT {
                let next = self.rt.block_on(self.jobs.join_next());
                if let Some(r) = next {
                    let done =
                        r.map_err(|e| Error::io("NFS file job", std::io::Error::other(e)))??;
                    self.took(done);
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
            self.in_flight.insert(rel.clone());
            let display = self.display(&rel);
            let meta = meta.clone();
            self.jobs.spawn_on(
                async move {
                    let _permit = permit;
                    let (written, fresh) =
                        small_file(&store.session, &dir, &name, &buf, &meta, uid, gid)
                            .await
                            .map_err(|e| with_object(e, &display))?;
                    // Known by its path in the volume, as the large files are.
                    Ok(JobDone {
                        created: fresh.then(|| rel.clone()),
                        uncommitted: written.map(|u| Uncommitted { name: rel, ..u }),
                    })
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
        let whole = [Segment {
            offset: 0,
            len: size,
        }];
        let segments = sparse.unwrap_or(&whole);
        let total: u64 = segments.iter().map(|s| s.len).sum();
        // Bytes of data read so far.
        let mut read = 0u64;
        let mut verf = None;
        // The rest of the segment being written: (next file offset, end).
        let mut next = segments.iter().map(|s| (s.offset, s.offset + s.len));
        let mut current = next.next();
        let result = (|| -> Result<()> {
            while let Some((at, end)) = current {
                if at == end {
                    current = next.next();
                    continue;
                }
                let want = (end - at).min(wsize as u64) as usize;
                current = Some((at + want as u64, end));
                let mut chunk = vec![0u8; want];
                data.read_exact(&mut chunk).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        truncated(rel, read, total)
                            .err()
                            .unwrap_or_else(|| read_err(e))
                    } else {
                        read_err(e)
                    }
                })?;
                read += want as u64;
                let units = want.div_ceil(UNIT).max(1) as u32;
                let permit = self
                    .rt
                    .block_on(self.budget.clone().acquire_many_owned(units))
                    .map_err(|e| Error::io("NFS import budget", std::io::Error::other(e)))?;
                let (store, wfh, wname) = (self.store.clone(), fh.clone(), name.to_vec());
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
                // Commit what has been written so far now and then, so that the server
                // flushes it while the rest arrives, not all at the end.
                if read % COMMIT_EVERY < want as u64 && read < total {
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
            return Err(located(e, &self.display(rel)));
        }
        let store = self.store.clone();
        let mut attrs = mode_times(meta);
        if sparse.is_some() {
            // Past the last segment, a hole to the file's size.
            attrs.size = nfs3_client::nfs3_types::nfs3::Nfs3Option::Some(size);
        }
        self.block(store.session.setattr(&fh, attrs, rel))?;
        if let Some(verf) = verf {
            self.uncommitted.push(Uncommitted {
                fh,
                name: rel.to_vec(),
                verf,
            });
        }
        Ok(())
    }
}

/// Create, write and time one small file (a job of its own). Also answers whether it made
/// the file where nothing was; such a file is removed again when its writes fail.
async fn small_file(
    s: &Session,
    dir: &Fh,
    name: &[u8],
    data: &[u8],
    meta: &Meta,
    uid: u32,
    gid: u32,
) -> std::result::Result<(Option<Uncommitted>, bool), NfsError> {
    let (fh, fresh) = match s.create(dir, name, guarded(uid, gid, meta.mode)).await {
        Ok(fh) => (fh, true),
        Err(e) if e.is(nfsstat3::NFS3ERR_EXIST) => {
            remove_tree(s, dir, name).await?;
            (
                s.create(dir, name, guarded(uid, gid, meta.mode)).await?,
                false,
            )
        }
        Err(e) => return Err(e),
    };
    match fill_small_file(s, &fh, name, data, meta).await {
        Ok(written) => Ok((written, fresh)),
        Err(e) => {
            if fresh {
                let _ = s.remove(dir, name).await;
            }
            Err(e)
        }
    }
}

/// Writes and times a small file just made.
async fn fill_small_file(
    s: &Session,
    fh: &Fh,
    name: &[u8],
    data: &[u8],
    meta: &Meta,
) -> std::result::Result<Option<Uncommitted>, NfsError> {
    let mut verf = None;
    if !data.is_empty() {
        let futs = data
            .chunks(s.wsize as usize)
            .enumerate()
            .map(|(i, chunk)| {
                Box::pin(s.write(
                    fh,
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
    s.setattr(fh, mode_times(meta), name).await?;
    Ok(verf.map(|verf| Uncommitted {
        fh: fh.clone(),
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
