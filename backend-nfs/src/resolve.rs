//! One path looked up inside a volume over NFS, confined to it as `openat2`'s
//! `RESOLVE_IN_ROOT` confines a local lookup: `..` stops at the volume's root, a symlink on
//! the way is followed from there (an absolute one from the root), and a symlink at the
//! end is reported, not followed.

use std::collections::VecDeque;
use std::path::Path;

use nfs3_client::nfs3_types::nfs3::{fattr3, ftype3};
use storage_core::{Error, FileStat, ObjectKind, Result};

use crate::session::{Fh, Session};

/// How many symlinks one lookup follows before it gives up, as Linux's `MAXSYMLINKS`.
const MAX_FOLLOWS: usize = 40;

/// The metadata of `path` under the directory `root` (the volume's data, shown in
/// messages as `shown`). `NotFound` of a volume when nothing is there, or when a
/// component on the way is not a directory.
pub async fn stat_in(s: &Session, root: &Fh, shown: &Path, path: &str) -> Result<FileStat> {
    let not_found = || Error::NotFound {
        kind: ObjectKind::Volume,
        id: format!("path {path} in {}", shown.display()),
    };
    // The directories walked down so far, the root first; each is a handle.
    let mut walked: Vec<Fh> = vec![root.clone()];
    let mut last: Option<(Fh, fattr3)> = None;
    let mut todo: VecDeque<Vec<u8>> = components(path.as_bytes()).collect();
    let mut follows = 0;
    while let Some(name) = todo.pop_front() {
        last = None;
        if name == b".." {
            if walked.len() > 1 {
                walked.pop();
            }
            continue;
        }
        let dir = walked.last().unwrap_or(root);
        let Some((fh, attr)) = s.lookup(dir, &name).await? else {
            return Err(not_found());
        };
        let at_end = todo.is_empty();
        match attr.type_ {
            ftype3::NF3LNK if !at_end => {
                follows += 1;
                if follows > MAX_FOLLOWS {
                    return Err(Error::io(
                        format!("look up {path} in {}", shown.display()),
                        std::io::Error::from(nix::errno::Errno::ELOOP),
                    ));
                }
                let target = s.readlink(&fh, &name).await?;
                if target.first() == Some(&b'/') {
                    walked.truncate(1);
                }
                for c in components(&target).rev() {
                    todo.push_front(c);
                }
            }
            ftype3::NF3DIR => {
                walked.push(fh.clone());
                last = Some((fh, attr));
            }
            _ if at_end => last = Some((fh, attr)),
            _ => return Err(not_found()),
        }
    }
    let (fh, attr) = match last {
        Some(found) => found,
        // Nothing named, or a walk that ended on `..`: the directory it stands in.
        None => {
            let dir = walked.last().unwrap_or(root).clone();
            let attr = s.getattr(&dir, path.as_bytes()).await?;
            (dir, attr)
        }
    };
    let link_target = if attr.type_ == ftype3::NF3LNK {
        let target = s.readlink(&fh, path.as_bytes()).await?;
        Some(String::from_utf8_lossy(&target).into_owned())
    } else {
        None
    };
    Ok(FileStat {
        path: path.to_owned(),
        mode: type_bits(attr.type_) | (attr.mode & 0o7777),
        uid: attr.uid,
        gid: attr.gid,
        size: attr.size,
        mtime: i64::from(attr.mtime.seconds),
        link_target,
    })
}

/// The names of a path, without empty ones and `.`.
fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = Vec<u8>> + '_ {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
}

/// `st_mode`'s file type bits for an NFS file type.
fn type_bits(t: ftype3) -> u32 {
    match t {
        ftype3::NF3REG => 0o100000,
        ftype3::NF3DIR => 0o040000,
        ftype3::NF3LNK => 0o120000,
        ftype3::NF3CHR => 0o020000,
        ftype3::NF3BLK => 0o060000,
        ftype3::NF3FIFO => 0o010000,
        ftype3::NF3SOCK => 0o140000,
    }
}
