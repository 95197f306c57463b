//! Directories that lost every entry they had, reported as opaque.
//!
//! A tree comparison cannot tell a directory replaced by an archive's opaque whiteout
//! (`.wh..wh..opq`) from one whose entries were each deleted: both leave the same tree.
//! The overlay store keeps the marker and lists the directory as modified and opaque,
//! without its old entries. So that a layer's changes read the same on every store, a
//! directory present in both trees whose every old entry is gone is listed the same way:
//! opaque, its deletions folded into it. An export then writes the opaque whiteout, which
//! gives the same tree as the deletions would.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use storage_core::archive::{Change, ChangeKind, FileKind};

/// `changes` of a tree over the tree at `old`, with emptied directories made opaque.
pub fn fold_emptied_dirs(old: &Path, changes: Vec<Change>) -> Vec<Change> {
    let deleted: HashSet<&[u8]> = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Delete)
        .map(|c| c.path.as_slice())
        .collect();
    let emptied: Vec<Vec<u8>> = changes
        .iter()
        .filter(|c| {
            c.kind == ChangeKind::Modify && c.stat.as_ref().is_some_and(|s| s.kind == FileKind::Dir)
        })
        .filter(|c| {
            old_entries(old, &c.path).is_some_and(|names| {
                !names.is_empty()
                    && names.iter().all(|name| {
                        let mut path = c.path.clone();
                        path.push(b'/');
                        path.extend_from_slice(name);
                        deleted.contains(path.as_slice())
                    })
            })
        })
        .map(|c| c.path.clone())
        .collect();
    if emptied.is_empty() {
        return changes;
    }
    let inside = |path: &[u8]| {
        emptied
            .iter()
            .any(|dir| path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
    };
    changes
        .into_iter()
        .filter(|c| !(c.kind == ChangeKind::Delete && inside(&c.path)))
        .map(|mut c| {
            if emptied.contains(&c.path) {
                c.opaque = true;
            }
            c
        })
        .collect()
}

/// The names in the directory `rel` of the tree at `old`, reached without following a
/// symlink; `None` when it is not a directory there.
fn old_entries(old: &Path, rel: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut dir = PathBuf::from(old);
    for part in rel.split(|b| *b == b'/').filter(|p| !p.is_empty()) {
        dir.push(OsStr::from_bytes(part));
        if !std::fs::symlink_metadata(&dir).ok()?.is_dir() {
            return None;
        }
    }
    let names = std::fs::read_dir(&dir)
        .ok()?
        .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
        .collect::<std::io::Result<Vec<_>>>()
        .ok()?;
    Some(names)
}
