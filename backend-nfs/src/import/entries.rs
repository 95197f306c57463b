//! What each kind of entry but a regular file becomes on the server: directories,
//! symlinks, hard links, device nodes and FIFOs, with the modes and times NFSv3 carries.

use nfs3_client::nfs3_types::nfs3::{
    Nfs3Option, devicedata3, ftype3, mknoddata3, nfsstat3, nfstime3, sattr3, set_atime, set_mtime,
    specdata3,
};
use storage_core::{Error, Result};
use tar_engine::confine::child_len;
use tar_engine::confine::split_last;
use tar_engine::entry::{missing_link_target, unsafe_entry};
use tar_engine::{Kind, Meta, Time};

use super::Applier;
use crate::session::{Fh, owner_mode};

impl Applier {
    pub(super) fn directory(
        &mut self,
        dir: &Fh,
        dir_len: usize,
        name: &[u8],
        rel: &[u8],
        meta: Meta,
    ) -> Result<()> {
        let (uid, gid) = self.s().owner();
        let store = self.store.clone();
        let s = &store.session;
        let attr = owner_mode(uid, gid, meta.mode | 0o700);
        let fh = match self.rt.block_on(s.mkdir(dir, name, attr.clone())) {
            Ok(fh) => {
                self.created.push(rel.to_vec());
                fh
            }
            Err(e) if e.is(nfsstat3::NFS3ERR_EXIST) => match self.block(s.lookup(dir, name))? {
                Some((fh, a)) if a.type_ == ftype3::NF3DIR => fh,
                _ => {
                    self.clear(dir, name, rel)?;
                    self.block(s.mkdir(dir, name, attr))?
                }
            },
            Err(e) => return Err(e.into()),
        };
        self.dirs
            .insert(rel.to_vec(), (fh.clone(), child_len(dir_len, name)));
        self.dir_attrs.insert(rel.to_vec(), (fh, meta));
        Ok(())
    }

    pub(super) fn symlink(
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

    pub(super) fn hardlink(
        &mut self,
        dir: &Fh,
        name: &[u8],
        rel: &[u8],
        target: &[u8],
        raw: &[u8],
    ) -> Result<()> {
        let missing = || missing_link_target(raw, target);
        let (tparent, tname) = split_last(target);
        let tdir = self.lookup_dir(tparent, raw)?.ok_or_else(missing)?;
        let store = self.store.clone();
        let s = &store.session;
        let (tfh, tattr) = self.block(s.lookup(&tdir, tname))?.ok_or_else(missing)?;
        if tattr.type_ == ftype3::NF3DIR {
            return Err(unsafe_entry(raw, "hard link to a directory"));
        }
        match self.block(s.lookup(dir, name))? {
            Some((_, a)) if a.fileid == tattr.fileid => return Ok(()),
            Some(_) => self.clear(dir, name, rel)?,
            None => self.created.push(rel.to_vec()),
        }
        self.block(s.link(&tfh, dir, name))?;
        Ok(())
    }

    /// Returns false when the server refused a device node.
    pub(super) fn node(
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
                    "device node {} not created: the server refused it ({}); device nodes need root credentials (uid=0) on the export",
                    self.display(rel),
                    storage_core::Report(&e)
                );
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        self.block(store.session.setattr(&fh, times(meta), rel))?;
        Ok(true)
    }
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
pub(super) fn times(meta: &Meta) -> sattr3 {
    sattr3 {
        atime: set_atime::SET_TO_CLIENT_TIME(time3(&meta.atime)),
        mtime: set_mtime::SET_TO_CLIENT_TIME(time3(&meta.mtime)),
        ..sattr3::default()
    }
}

/// The mode and times of a file, set after its data: a write clears setuid and setgid.
pub(super) fn mode_times(meta: &Meta) -> sattr3 {
    sattr3 {
        mode: Nfs3Option::Some(meta.mode),
        ..times(meta)
    }
}

fn refused(e: &Error) -> bool {
    matches!(
        e,
        Error::Io { source, .. } if matches!(source.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::Unsupported)
    )
}
