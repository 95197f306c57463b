//! Whole-file and whole-tree operations built from single RPCs.

use std::future::Future;
use std::pin::Pin;

use nfs3_client::nfs3_types::nfs3::{ftype3, nfsstat3, stable_how};

use tar_engine::confine::is_plain_name;

use crate::error::NfsError;
use crate::session::{Fh, Session, guarded};

/// Reads a whole file of `size` bytes (the size from its attributes).
pub async fn read_all(s: &Session, fh: &Fh, size: u64, what: &[u8]) -> Result<Vec<u8>, NfsError> {
    let mut out = Vec::with_capacity(size as usize);
    loop {
        let (data, eof) = s.read(fh, out.len() as u64, s.rsize, what).await?;
        let empty = data.is_empty();
        out.extend_from_slice(&data);
        if eof || empty {
            return Ok(out);
        }
    }
}

/// Creates `name` in `dir` (failing when it exists) holding `data`, written durably.
pub async fn write_new(s: &Session, dir: &Fh, name: &[u8], data: &[u8]) -> Result<Fh, NfsError> {
    let (uid, gid) = s.owner();
    let fh = s.create(dir, name, guarded(uid, gid, 0o644)).await?;
    for (i, chunk) in data.chunks(s.wsize as usize).enumerate() {
        let offset = i as u64 * u64::from(s.wsize);
        s.write(&fh, offset, chunk, stable_how::FILE_SYNC, name)
            .await?;
    }
    Ok(fh)
}

/// Looks up a directory, creating it when missing.
pub async fn ensure_dir(s: &Session, parent: &Fh, name: &[u8]) -> Result<Fh, NfsError> {
    if let Some((fh, attr)) = s.lookup(parent, name).await? {
        if attr.type_ != ftype3::NF3DIR {
            return Err(NfsError::Status {
                call: format!("open directory {}", String::from_utf8_lossy(name)),
                status: nfsstat3::NFS3ERR_NOTDIR,
            });
        }
        return Ok(fh);
    }
    let (uid, gid) = s.owner();
    match s
        .mkdir(parent, name, crate::session::owner_mode(uid, gid, 0o755))
        .await
    {
        Ok(fh) => Ok(fh),
        // Made by someone else meanwhile.
        Err(e) if e.is(nfsstat3::NFS3ERR_EXIST) => match s.lookup(parent, name).await? {
            Some((fh, _)) => Ok(fh),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Removes `name` in `dir` and everything below it, never following a symlink. Returns
/// whether anything was there.
pub async fn remove_tree(s: &Session, dir: &Fh, name: &[u8]) -> Result<bool, NfsError> {
    // LOOKUP of `..` or `.` answers the parent or the directory itself: never remove by
    // such a name, whatever asked for it.
    if !is_plain_name(name) {
        return Err(NfsError::Status {
            call: format!(
                "REMOVE {:?}: not a plain name (empty, `.`, `..`, or holding `/` or NUL)",
                String::from_utf8_lossy(name)
            ),
            status: nfsstat3::NFS3ERR_INVAL,
        });
    }
    let Some((fh, attr)) = s.lookup(dir, name).await? else {
        return Ok(false);
    };
    if attr.type_ == ftype3::NF3DIR {
        empty_dir(s, &fh, name).await?;
        ignore_noent(s.rmdir(dir, name).await)?;
    } else {
        ignore_noent(s.remove(dir, name).await)?;
    }
    Ok(true)
}

/// Removes everything inside the directory `fh`, whatever its depth: one level per
/// directory on the way down is kept on the heap (no recursion, no nested futures), and the
/// non-directories of a level are removed several at a time.
pub async fn empty_dir(s: &Session, fh: &Fh, what: &[u8]) -> Result<(), NfsError> {
    /// A directory being emptied: its handle, the subdirectories left to empty, and where
    /// it sits (its parent's handle and its name) to remove it once empty.
    struct Level {
        fh: Fh,
        subdirs: Vec<(Fh, Vec<u8>)>,
        place: Option<(Fh, Vec<u8>)>,
    }
    let mut levels = vec![Level {
        fh: fh.clone(),
        subdirs: remove_files(s, fh, what).await?,
        place: None,
    }];
    while let Some(level) = levels.last_mut() {
        match level.subdirs.pop() {
            Some((sub, name)) => {
                let subdirs = remove_files(s, &sub, &name).await?;
                let parent = level.fh.clone();
                levels.push(Level {
                    fh: sub,
                    subdirs,
                    place: Some((parent, name)),
                });
            }
            None => {
                if let Some(Level {
                    place: Some((parent, name)),
                    ..
                }) = levels.pop()
                {
                    ignore_noent(s.rmdir(&parent, &name).await)?;
                }
            }
        }
    }
    Ok(())
}

/// Removes the entries of `fh` that are not directories, a window of them at a time;
/// returns its subdirectories.
async fn remove_files(s: &Session, fh: &Fh, what: &[u8]) -> Result<Vec<(Fh, Vec<u8>)>, NfsError> {
    let entries = s.readdir(fh, what).await?;
    let mut subdirs = Vec::new();
    let mut files = Vec::new();
    for e in entries {
        if e.attr.type_ == ftype3::NF3DIR {
            subdirs.push((e.fh, e.name));
        } else {
            files.push(e.name);
        }
    }
    for batch in files.chunks(16) {
        let futs: Vec<_> = batch.iter().map(|n| Box::pin(s.remove(fh, n))).collect();
        for r in join_all(futs).await {
            ignore_noent(r)?;
        }
    }
    Ok(subdirs)
}

/// A removal that found nothing to remove succeeded.
fn ignore_noent(r: Result<(), NfsError>) -> Result<(), NfsError> {
    match r {
        Err(e) if e.is(nfsstat3::NFS3ERR_NOENT) => Ok(()),
        r => r,
    }
}

/// Polls every future to completion, together.
pub async fn join_all<T, F: Future<Output = T> + Unpin>(futs: Vec<F>) -> Vec<T> {
    let mut slots: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    let mut futs: Vec<Option<F>> = futs.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if let Some(fut) = f {
                match Pin::new(fut).poll(cx) {
                    std::task::Poll::Ready(v) => {
                        slots[i] = Some(v);
                        *f = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    slots.into_iter().flatten().collect()
}
