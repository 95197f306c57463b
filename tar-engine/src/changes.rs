//! What changed between a layer and what lies below it.
//!
//! Three sources of changes, all in sorted depth-first order:
//! - [`layer_changes`]: an overlay diff directory read natively against its lower diff
//!   directories (no mount): entries are adds or modifies, whiteouts are deletes;
//! - [`compare_trees`]: two plain trees (two mounted layers, or a layer and any ancestor);
//! - with no lower layers, [`layer_changes`] lists a whole tree as adds.

use std::path::{Path, PathBuf};

use crate::tree::{child, is_opaque, join_rel, read_xattrs, sorted_entries, try_lstat};
use storage_core::Result;
use storage_core::archive::{Change, ChangeKind, FileKind, Stat};

/// Whether `rel` is visible in the overlay of `lowers` (topmost first), following overlay
/// rules: a whiteout or a non-directory on the way hides everything below it, an opaque
/// directory hides the layers under it.
pub fn lower_exists(lowers: &[PathBuf], rel: &[u8]) -> Result<bool> {
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
            if is_opaque(&path)? {
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
    walk_layer(diff, b"", lowers, &mut out)?;
    Ok(out)
}

fn walk_layer(dir: &Path, rel: &[u8], lowers: &[PathBuf], out: &mut Vec<Change>) -> Result<()> {
    for (name, st) in sorted_entries(dir)? {
        let path = child(dir, &name);
        let rel = join_rel(rel, &name);
        if st.kind == FileKind::Socket {
            continue;
        }
        if st.is_whiteout() {
            out.push(Change::deleted(rel));
            continue;
        }
        let kind = if !lowers.is_empty() && lower_exists(lowers, &rel)? {
            ChangeKind::Modify
        } else {
            ChangeKind::Add
        };
        let is_dir = st.kind == FileKind::Dir;
        let mut change = Change::present(rel.clone(), kind, path.clone(), st);
        if is_dir {
            change.opaque = is_opaque(&path)?;
            out.push(change);
            walk_layer(&path, &rel, lowers, out)?;
        } else {
            out.push(change);
        }
    }
    Ok(())
}

/// The changes that turn the tree `old` into the tree `new` (both plain trees, such as
/// two mounted layers). Directories that hold changes are listed as modified, so an
/// export carries their metadata.
pub fn compare_trees(old: &Path, new: &Path) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    compare_dirs(old, new, b"", &mut out)?;
    Ok(out)
}

fn compare_dirs(old: &Path, new: &Path, rel: &[u8], out: &mut Vec<Change>) -> Result<()> {
    let old_names = sorted_entries(old)?;
    let new_names = sorted_entries(new)?;
    let (mut i, mut j) = (0, 0);
    while i < old_names.len() || j < new_names.len() {
        let order = match (old_names.get(i), new_names.get(j)) {
            (Some(a), Some(b)) => a.0.cmp(&b.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                out.push(Change::deleted(join_rel(rel, &old_names[i].0)));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let (name, st) = &new_names[j];
                add_tree(&child(new, name), join_rel(rel, name), st.clone(), out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (name, ns) = new_names[j].clone();
                let os = old_names[i].1.clone();
                let (op, np) = (child(old, &name), child(new, &name));
                let crel = join_rel(rel, &name);
                if ns.kind == FileKind::Dir && os.kind == FileKind::Dir {
                    let mark = out.len();
                    out.push(Change::present(
                        crel.clone(),
                        ChangeKind::Modify,
                        np.clone(),
                        ns.clone(),
                    ));
                    compare_dirs(&op, &np, &crel, out)?;
                    let changed_below = out.len() > mark + 1;
                    if !changed_below && !differs(&os, &ns, &op, &np)? {
                        out.truncate(mark);
                    }
                } else if ns.kind == FileKind::Dir {
                    add_tree(&np, crel, ns, out)?;
                    if let Some(c) = out
                        .iter_mut()
                        .rev()
                        .find(|c| c.source.as_ref() == Some(&np))
                    {
                        c.kind = ChangeKind::Modify;
                    }
                } else if os.kind != ns.kind || differs(&os, &ns, &op, &np)? {
                    out.push(Change::present(crel, ChangeKind::Modify, np, ns));
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
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
        for (name, st) in sorted_entries(path)? {
            add_tree(&child(path, &name), join_rel(&rel, &name), st, out)?;
        }
    }
    Ok(())
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

/// The bytes of regular-file data the changes carry, each inode counted once.
pub fn changes_size(changes: &[Change]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    changes
        .iter()
        .filter_map(|c| c.stat.as_ref())
        .filter(|s| s.kind == FileKind::File)
        .filter(|s| s.nlink < 2 || seen.insert((s.dev, s.ino)))
        .map(|s| s.size)
        .sum()
}
