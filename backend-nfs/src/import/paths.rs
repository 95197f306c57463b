//! Where entries go: directories of the volume resolved by file handles, confined to it.
//!
//! A path is walked with LOOKUP from the volume's handle; a symlink met on the way is read
//! and followed as if the volume were `/`, and a whiteout's directory may not be reached
//! through one. What replaces an earlier entry removes it first.

use std::collections::VecDeque;

use nfs3_client::nfs3_types::nfs3::{ftype3, nfsstat3};
use storage_core::{Error, Result};
use tar_engine::entry::{WHITEOUT_THROUGH_SYMLINK, Written, check_path_len, unsafe_entry};

use super::{Applier, join};
use crate::error::NfsError;
use crate::session::{Fh, owner_mode};
use crate::tree::remove_tree;

/// Most symlinks followed while resolving one path (the kernel's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

impl Applier {
    /// The handle of directory `rel`, creating missing directories (0755) on the way.
    pub(super) fn dir(&mut self, rel: &[u8], raw: &[u8]) -> Result<Fh> {
        Ok(self.dir_len(rel, raw)?.0)
    }

    /// [`Applier::dir`], with the length of the directory's real path in the volume.
    pub(super) fn dir_len(&mut self, rel: &[u8], raw: &[u8]) -> Result<(Fh, usize)> {
        match self.resolve_len(rel, raw, Resolve::Create)? {
            Some(found) => Ok(found),
            None => Err(unsafe_entry(raw, "its directory could not be made")),
        }
    }

    /// The handle of an existing directory, `None` when the path does not exist.
    pub(super) fn lookup_dir(&mut self, rel: &[u8], raw: &[u8]) -> Result<Option<Fh>> {
        self.resolve(rel, raw, Resolve::Lookup)
    }

    /// [`Applier::resolve_len`] without the length.
    pub(super) fn resolve(&mut self, rel: &[u8], raw: &[u8], how: Resolve) -> Result<Option<Fh>> {
        Ok(self.resolve_len(rel, raw, how)?.map(|d| d.0))
    }

    /// Resolves the directory `rel` inside the volume as if the volume were `/`, as the
    /// directory writer's `openat2(RESOLVE_IN_ROOT)` does: a symlink met on the way is
    /// read (READLINK) and followed, an absolute target starts again from the volume, `..`
    /// never climbs above it, and at most 40 symlinks are followed. Missing directories of
    /// `rel` itself are made (0755) with [`Resolve::Create`], otherwise the answer is
    /// `None`; a symlink's target is never made: one that leads nowhere, or a component
    /// that is not a directory, refuses the entry `raw`, and so does any symlink with
    /// [`Resolve::NoSymlinks`]. A real path longer than [`MAX_PATH`](tar_engine::entry::MAX_PATH) refuses the entry, as
    /// on every writer. Answers the handle and the length of the real path.
    pub(super) fn resolve_len(
        &mut self,
        rel: &[u8],
        raw: &[u8],
        how: Resolve,
    ) -> Result<Option<(Fh, usize)>> {
        if how != Resolve::NoSymlinks
            && let Some(found) = self.dirs.get(rel)
        {
            return Ok(Some(found.clone()));
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
        let root = self
            .dirs
            .get(&b""[..])
            .map(|d| d.0.clone())
            .ok_or_else(|| {
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
            check_path_len(raw, path.len())?;
            // The cache also holds paths reached through symlinks: a walk that may cross
            // none looks every component up.
            if how != Resolve::NoSymlinks
                && !from_link
                && let Some((known, _)) = self.dirs.get(&path)
            {
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
                        None => {
                            let made =
                                self.block(s.mkdir(&fh, &comp, owner_mode(uid, gid, 0o755)))?;
                            self.created.push(path.clone());
                            made
                        }
                    }
                }
                None => return Ok(None),
            };
            self.dirs.insert(path.clone(), (next.clone(), path.len()));
            stack.push((path, next));
        }
        let found = stack
            .pop()
            .map(|(path, fh)| (fh, path.len()))
            .unwrap_or_default();
        self.dirs.insert(rel.to_vec(), found.clone());
        Ok(Some(found))
    }

    /// Removes whatever is at `name` in `dir` (a previous import's entry).
    /// `rel` is its path in the volume: writes of files there or below, now removed, have
    /// nothing left to commit.
    pub(super) fn clear(&mut self, dir: &Fh, name: &[u8], rel: &[u8]) -> Result<()> {
        let under =
            |path: &[u8]| path.starts_with(rel) && matches!(path.get(rel.len()), None | Some(b'/'));
        self.uncommitted.retain(|u| !under(&u.name));
        self.dir_attrs.retain(|path, _| !under(path));
        // Handles below a removed directory are gone: forget them all.
        self.dirs.retain(|k, _| k.is_empty());
        let store = self.store.clone();
        self.block(remove_tree(&store.session, dir, name))?;
        Ok(())
    }

    /// Creates `name` with `create`, replacing whatever was there; what it made where
    /// nothing was is noted for a rollback.
    pub(super) fn create_replacing<T, F>(
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
            Ok(v) => {
                self.created.push(rel.to_vec());
                Ok(v)
            }
            Err(e) if e.is(nfsstat3::NFS3ERR_EXIST) => {
                self.clear(dir, name, rel)?;
                self.block(create())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes what earlier imports put at `rel`, keeping what this archive wrote.
    pub(super) fn remove_lower(
        &mut self,
        dir: &Fh,
        name: &[u8],
        rel: &[u8],
        written: &Written,
    ) -> Result<()> {
        // Iterative: the directories it goes through are those the archive wrote below.
        let mut todo = vec![(dir.clone(), name.to_vec(), rel.to_vec())];
        let store = self.store.clone();
        while let Some((dir, name, rel)) = todo.pop() {
            if !written.spares(&rel) {
                self.clear(&dir, &name, &rel)?;
                continue;
            }
            // The archive wrote here or below: only a real directory is walked into, never
            // a symlink (which could lead anywhere in the volume, all of it not written).
            let sub = match self.block(store.session.lookup(&dir, &name))? {
                Some((sub, a)) if a.type_ == ftype3::NF3DIR => sub,
                _ => continue,
            };
            for child in self.block(store.session.readdir(&sub, &rel))? {
                let child_rel = join(&rel, &child.name);
                todo.push((sub.clone(), child.name, child_rel));
            }
        }
        Ok(())
    }
}

/// How [`Applier::resolve`] treats what it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resolve {
    /// Follow symlinks; make missing directories.
    Create,
    /// Follow symlinks; a missing directory is `None`.
    Lookup,
    /// Refuse any symlink on the way (a whiteout's directory); a missing directory is
    /// `None`.
    NoSymlinks,
}
