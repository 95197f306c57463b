//! What changed between a layer and what lies below it.
//!
//! Three sources of changes, all in sorted depth-first order:
//! - [`layer_changes`]: an overlay diff directory read natively against its lower diff
//!   directories (no mount): entries are adds or modifies, whiteouts are deletes;
//! - [`compare_trees`]: two plain trees (two mounted layers, or a layer and any ancestor);
//! - with no lower layers, [`layer_changes`] lists a whole tree as adds.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::entry::MAX_PATH;
use crate::tree::{
    child, is_fuse_overlayfs_mark, is_opaque, is_opaque_fd, join_rel, read_xattrs, sorted_entries,
    try_lstat, walk, walk_error,
};
use storage_core::archive::{Change, ChangeKind, FileKind, Stat, unprivileged_marks};
use storage_core::{Error, Result};

/// Whether `rel` is visible in the overlay of `lowers` (topmost first), following overlay
/// rules: a whiteout or a non-directory on the way hides everything below it, an opaque
/// directory hides the layers under it. `marks`: whether the `user.` namespace's opaque
/// marks count ([`storage_core::archive::unprivileged_marks`]).
pub fn lower_exists(lowers: &[PathBuf], rel: &[u8], marks: bool) -> Result<bool> {
    let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    for layer in lowers {
        let mut path = layer.clone();
        let mut opaque_here = false;
        for (i, comp) in comps.iter().enumerate() {
            path = child(&path, comp);
            let Some(st) = try_lstat(&path)? else {
                break; // not in this layer; look lower unless an opaque dir was crossed
            };
            if st.is_whiteout() {
                return Ok(false);
            }
            if i + 1 == comps.len() {
                return Ok(true);
            }
            if st.kind != FileKind::Dir {
                return Ok(false);
            }
            if is_opaque(&path, marks)? {
                opaque_here = true;
            }
        }
        if opaque_here {
            return Ok(false);
        }
    }
    Ok(false)
}

/// The changes an overlay diff directory makes over its lower layers (topmost first).
/// With no lowers, every entry is an add (a base layer, or a whole tree to export).
pub fn layer_changes(diff: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    add_walked(diff, b"", lowers, ChangeKind::Add, &mut out)?;
    Ok(out)
}

/// The changes that the overlay diff directories `uppers` (topmost first) make together
/// over the overlay of `lowers` (topmost first), read from the directories without
/// mounting anything: what a layer changed since any ancestor (the layers in between are
/// `uppers`, the ancestor's stack `lowers`), or, with no lowers, a layer's whole tree.
///
/// The uppers are merged as overlayfs merges them: the topmost entry of a path stands; a
/// whiteout, a non-directory or an opaque directory (below the root) hides what the
/// uppers below hold there. A directory whose merge stops that way hides the lowers too: its change is
/// opaque. A whiteout that stands is a deletion when the lowers show the path; entries
/// the lowers show are modifies, the rest adds. As in [`layer_changes`], every entry an
/// upper holds is listed, changed or not.
pub fn stack_changes(uppers: &[PathBuf], lowers: &[PathBuf]) -> Result<Vec<Change>> {
    if let [only] = uppers {
        return layer_changes(only, lowers);
    }
    let marks = unprivileged_marks();
    let mut out = Vec::new();
    // Every upper's root merges, opaque or not: overlayfs reads no opacity on a layer's
    // root ("root is always merge"), and neither do `lower_exists` and `layer_changes`.
    let roots = uppers.to_vec();
    let mut levels = vec![MergedLevel::open(Vec::new(), roots, marks)?];
    while let Some(level) = levels.last_mut() {
        let Some((name, top)) = level.entries.pop() else {
            levels.pop();
            continue;
        };
        let rel = join_rel(&level.rel, &name);
        if rel.len() > MAX_PATH {
            let path = child(&level.dirs[top.at], &name);
            // The layer whose tree holds it: the upper its directory lies in.
            let root = uppers.iter().find(|u| path.starts_with(u));
            let root = root.unwrap_or(&uppers[0]);
            return Err(crate::tree::too_long(&root.display(), &path, rel.len()));
        }
        let st = top.stat;
        if st.kind == FileKind::Socket {
            continue;
        }
        let in_lowers = !lowers.is_empty() && lower_exists(lowers, &rel, marks)?;
        if st.is_whiteout() {
            if in_lowers {
                out.push(Change::deleted(rel));
            }
            continue;
        }
        let kind = if in_lowers {
            ChangeKind::Modify
        } else {
            ChangeKind::Add
        };
        let path = child(&level.dirs[top.at], &name);
        let is_dir = st.kind == FileKind::Dir;
        let mut change = Change::present(rel.clone(), kind, path.clone(), st);
        if is_dir {
            // The same directory in the uppers below the one that stands, down to
            // whatever hides the rest.
            let below = level.dirs[top.at + 1..].iter().map(|d| child(d, &name));
            let (dirs, hides) = merged_dirs(path, below, marks)?;
            change.opaque = hides;
            out.push(change);
            levels.push(MergedLevel::open(rel, dirs, marks)?);
        } else {
            out.push(change);
        }
    }
    Ok(out)
}

/// The directories that merge into one overlay directory: `top`, the directory that
/// stands (already stat'ed), then `below` (the same path in each upper under it, topmost
/// first), where a missing one is passed over, and anything else that is not a directory
/// (a whiteout, a file), or an opaque directory (kept), ends the merge. Returns the
/// directories and whether the merge ended so, hiding whatever lies below.
fn merged_dirs(
    top: PathBuf,
    below: impl Iterator<Item = PathBuf>,
    marks: bool,
) -> Result<(Vec<PathBuf>, bool)> {
    let mut dirs = Vec::new();
    for (at, candidate) in std::iter::once(top).chain(below).enumerate() {
        if at > 0 {
            match try_lstat(&candidate)? {
                None => continue,
                Some(st) if st.kind != FileKind::Dir => return Ok((dirs, true)),
                Some(_) => {}
            }
        }
        let opaque = is_opaque(&candidate, marks)?;
        dirs.push(candidate);
        if opaque {
            return Ok((dirs, true));
        }
    }
    Ok((dirs, false))
}

/// The topmost entry of one name in a merged directory.
struct Topmost {
    /// Its metadata.
    stat: Stat,
    /// Which of the level's directories holds it.
    at: usize,
}

/// A directory merged from several uppers, as [`stack_changes`] goes through it.
struct MergedLevel {
    rel: Vec<u8>,
    /// The directories merged, topmost first.
    dirs: Vec<PathBuf>,
    /// The merged entries left, sorted so that the next is last.
    entries: Vec<(Vec<u8>, Topmost)>,
}

impl MergedLevel {
    fn open(rel: Vec<u8>, dirs: Vec<PathBuf>, marks: bool) -> Result<Self> {
        let mut merged: BTreeMap<Vec<u8>, Topmost> = BTreeMap::new();
        for (at, dir) in dirs.iter().enumerate() {
            // Only an unprivileged walk reads fuse-overlayfs's marks, on the open directory.
            let open = match marks {
                true => Some(std::fs::File::open(dir).map_err(|e| Error::io_path("open", dir, e))?),
                false => None,
            };
            for (name, stat) in sorted_entries(dir)? {
                if let Some(open) = &open
                    && is_fuse_overlayfs_mark(open.as_fd(), &name, marks)
                {
                    continue;
                }
                merged.entry(name).or_insert(Topmost { stat, at });
            }
        }
        let mut entries: Vec<_> = merged.into_iter().collect();
        entries.reverse();
        Ok(MergedLevel { rel, dirs, entries })
    }
}

/// Lists the tree below `root` (whose path in the listing is `prefix`), iteratively, in
/// sorted depth-first order: whiteouts as deletions, entries the `lowers` show as
/// modifies, the rest as `kind`.
fn add_walked(
    root: &Path,
    prefix: &[u8],
    lowers: &[PathBuf],
    kind: ChangeKind,
    out: &mut Vec<Change>,
) -> Result<()> {
    // Whose marks count is this process's, decided once for the walk.
    let marks = unprivileged_marks();
    let mut walk = walk(root)?;
    loop {
        let (rel, st, path) = match walk.next_entry().map_err(walk_error)? {
            Some(e) if is_fuse_overlayfs_mark(e.dir, e.name, marks) => continue,
            Some(e) => (
                join_rel(prefix, e.rel),
                Stat::from_file_stat(&e.stat),
                child(root, e.rel),
            ),
            None => return Ok(()),
        };
        if rel.len() > MAX_PATH {
            return Err(too_long(root, &rel));
        }
        if st.kind == FileKind::Socket {
            continue;
        }
        if st.is_whiteout() {
            out.push(Change::deleted(rel));
            continue;
        }
        let kind = if !lowers.is_empty() && lower_exists(lowers, &rel, marks)? {
            ChangeKind::Modify
        } else {
            kind
        };
        let is_dir = st.kind == FileKind::Dir;
        let mut change = Change::present(rel, kind, path, st);
        if is_dir {
            change.opaque = is_opaque_fd(walk.enter().map_err(walk_error)?.dir, marks);
        }
        out.push(change);
    }
}

/// The changes that turn the tree `old` into the tree `new` (both plain trees, such as
/// two mounted layers). Directories that hold changes are listed as modified, so an
/// export carries their metadata.
pub fn compare_trees(old: &Path, new: &Path) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    // One level per directory both trees hold, on the heap: any depth, no recursion.
    let mut levels = vec![Level::new(
        old.to_owned(),
        new.to_owned(),
        Vec::new(),
        None,
    )?];
    while let Some(level) = levels.last_mut() {
        let order = match (level.old.last(), level.new.last()) {
            (Some(a), Some(b)) => a.0.cmp(&b.0),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => {
                let Some(done) = levels.pop() else { break };
                done.close(&mut out)?;
                continue;
            }
        };
        match order {
            Ordering::Less => {
                if let Some((name, _)) = level.old.pop() {
                    out.push(Change::deleted(join_rel(&level.rel, &name)));
                }
            }
            Ordering::Greater => {
                if let Some((name, st)) = level.new.pop() {
                    let rel = join_rel(&level.rel, &name);
                    add_tree(&child(&level.new_path, &name), rel, st, &mut out)?;
                }
            }
            Ordering::Equal => {
                let (Some((name, os)), Some((_, ns))) = (level.old.pop(), level.new.pop()) else {
                    continue;
                };
                let (op, np) = (child(&level.old_path, &name), child(&level.new_path, &name));
                let rel = join_rel(&level.rel, &name);
                if rel.len() > MAX_PATH {
                    return Err(too_long(new, &rel));
                }
                if ns.kind == FileKind::Dir && os.kind == FileKind::Dir {
                    let mark = out.len();
                    out.push(Change::present(
                        rel.clone(),
                        ChangeKind::Modify,
                        np.clone(),
                        ns.clone(),
                    ));
                    let sub = Level::new(op, np, rel, Some((mark, os, ns)))?;
                    levels.push(sub);
                } else if ns.kind == FileKind::Dir {
                    let first = out.len();
                    add_tree(&np, rel, ns, &mut out)?;
                    if let Some(c) = out.get_mut(first) {
                        c.kind = ChangeKind::Modify;
                    }
                } else if os.kind != ns.kind || differs(&os, &ns, &op, &np)? {
                    out.push(Change::present(rel, ChangeKind::Modify, np, ns));
                }
            }
        }
    }
    Ok(out)
}

/// A directory both trees hold, as [`compare_trees`] goes through it.
struct Level {
    old_path: PathBuf,
    new_path: PathBuf,
    rel: Vec<u8>,
    /// Entries left on each side, sorted so that the next is last.
    old: Vec<(Vec<u8>, Stat)>,
    new: Vec<(Vec<u8>, Stat)>,
    /// Where this directory's own change sits in the list, and its two `lstat`s (none for
    /// the roots).
    own: Option<(usize, Stat, Stat)>,
}

impl Level {
    fn new(
        old_path: PathBuf,
        new_path: PathBuf,
        rel: Vec<u8>,
        own: Option<(usize, Stat, Stat)>,
    ) -> Result<Self> {
        let mut old = sorted_entries(&old_path)?;
        let mut new = sorted_entries(&new_path)?;
        old.reverse();
        new.reverse();
        Ok(Level {
            old_path,
            new_path,
            rel,
            old,
            new,
            own,
        })
    }

    /// Drops the directory's own change when nothing changed in it or below it.
    fn close(self, out: &mut Vec<Change>) -> Result<()> {
        if let Some((mark, os, ns)) = self.own {
            let changed_below = out.len() > mark + 1;
            if !changed_below && !differs(&os, &ns, &self.old_path, &self.new_path)? {
                out.truncate(mark);
            }
        }
        Ok(())
    }
}

/// Lists `path` (whose metadata is `st`) and everything below it as adds.
fn add_tree(path: &Path, rel: Vec<u8>, st: Stat, out: &mut Vec<Change>) -> Result<()> {
    if st.kind == FileKind::Socket {
        return Ok(());
    }
    let is_dir = st.kind == FileKind::Dir;
    out.push(Change::present(
        rel.clone(),
        ChangeKind::Add,
        path.to_owned(),
        st,
    ));
    if is_dir {
        add_walked(path, &rel, &[], ChangeKind::Add, out)?;
    }
    Ok(())
}

/// The error for a path past [`MAX_PATH`] in a tree below `root`.
fn too_long(root: &Path, rel: &[u8]) -> Error {
    crate::tree::too_long(&root.display(), &child(root, rel), rel.len())
}

/// True when two entries of the same path differ in what an archive carries. Files are
/// compared by size and modification time, not content, as containers/storage does.
fn differs(a: &Stat, b: &Stat, ap: &Path, bp: &Path) -> Result<bool> {
    if a.kind != b.kind || a.mode != b.mode || a.uid != b.uid || a.gid != b.gid {
        return Ok(true);
    }
    match b.kind {
        FileKind::File
            if (a.size != b.size || a.mtime != b.mtime || a.mtime_nsec != b.mtime_nsec) =>
        {
            return Ok(true);
        }
        FileKind::Char | FileKind::Block if a.rdev != b.rdev => {
            return Ok(true);
        }
        FileKind::Symlink => {
            let ta = std::fs::read_link(ap).ok();
            let tb = std::fs::read_link(bp).ok();
            if ta != tb || a.mtime != b.mtime {
                return Ok(true);
            }
        }
        _ => {}
    }
    Ok(read_xattrs(ap)? != read_xattrs(bp)?)
}
