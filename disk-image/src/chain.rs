//! Chains of disks: opening a disk with its parents, creating children, and copying a
//! (possibly chained) disk into a new single file of any format.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::disk::{Disk, Format};
use crate::error::{Error, ErrorKind, Result};
use crate::{create, open};

/// How deep a chain may be before it is taken for a loop: deep enough for an image of a
/// hundred layers, each a delta disk, on a base disk, with room to spare.
pub const MAX_CHAIN_DEPTH: usize = 128;
/// Bytes copied per read/write by [`convert`].
const COPY_CHUNK: u64 = 4 << 20;

/// Opens the disk at `path` and, from the hints each child records, its parents, checking
/// each parent's identity (VMDK `CID`, VHD unique id). Parents are opened read-only; the
/// top disk is writable unless `read_only`.
///
/// Relative hints are tried relative to the child's directory first, then as given. A hint
/// may name any file: this is for disks the caller trusts (it made them). For a disk that
/// came from elsewhere use [`open_chain_within`], or a hint could make a system file read
/// as the unallocated blocks of the disk.
pub fn open_chain(path: &Path, read_only: bool) -> Result<Box<dyn Disk>> {
    open_at_depth(path, read_only, 0, None)
}

/// [`open_chain`], with every parent required to lie inside the directory `root` once
/// symlinks are resolved: a parent found elsewhere is refused as
/// [`ErrorKind::Unsupported`], naming where it would have been.
pub fn open_chain_within(path: &Path, read_only: bool, root: &Path) -> Result<Box<dyn Disk>> {
    let root = root
        .canonicalize()
        .map_err(|e| Error::io(root, "resolving the directory disks must stay in", e))?;
    open_at_depth(path, read_only, 0, Some(&root))
}

fn open_at_depth(
    path: &Path,
    read_only: bool,
    depth: usize,
    within: Option<&Path>,
) -> Result<Box<dyn Disk>> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!("chain deeper than {MAX_CHAIN_DEPTH} disks (a loop?)"),
        )
        .with_path(path));
    }
    let mut disk = open(path, read_only)?;
    if let Some(link) = disk.parent_link() {
        let parent_path = locate_parent(path, &link.hints)?;
        if let Some(root) = within {
            let real = parent_path
                .canonicalize()
                .map_err(|e| Error::io(&parent_path, "resolving the parent disk", e))?;
            if !real.starts_with(root) {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "its parent {} lies outside {}",
                        real.display(),
                        root.display()
                    ),
                )
                .with_path(path));
            }
        }
        let parent = open_at_depth(&parent_path, true, depth + 1, within)?;
        disk.set_parent(parent)?;
    }
    Ok(disk)
}

/// Finds the first existing file among `hints`, relative ones under the child's
/// directory first.
pub fn locate_parent(child: &Path, hints: &[PathBuf]) -> Result<PathBuf> {
    let dir = child.parent().unwrap_or(Path::new("."));
    for hint in hints {
        if hint.as_os_str().is_empty() {
            continue;
        }
        if hint.is_relative() {
            let beside = dir.join(hint);
            if beside.is_file() {
                return Ok(beside);
            }
        }
        if hint.is_file() {
            return Ok(hint.clone());
        }
    }
    let named: Vec<String> = hints.iter().map(|h| h.display().to_string()).collect();
    Err(Error::new(
        ErrorKind::ParentMissing,
        if named.is_empty() {
            "the disk has a parent but names no file for it".to_string()
        } else {
            format!("no parent file found at {}", named.join(" or "))
        },
    )
    .with_path(child))
}

/// How a child records the path of `parent`: its file name when both sit in one
/// directory, its absolute path otherwise.
pub(crate) fn parent_hint(child: &Path, parent: &Path) -> Result<String> {
    let canon = |p: &Path| {
        p.canonicalize()
            .map_err(|e| Error::io(p, "resolving parent path", e))
    };
    let parent_abs = canon(parent)?;
    let child_dir = child
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let child_dir = canon(child_dir)?;
    if parent_abs.parent() == Some(child_dir.as_path())
        && let Some(name) = parent_abs.file_name()
    {
        return Ok(name.to_string_lossy().into_owned());
    }
    Ok(parent_abs.to_string_lossy().into_owned())
}

/// The ranges of the virtual disk that some disk of the chain from `disk` down stores,
/// sorted and merged.
pub fn chain_allocated_ranges(disk: &dyn Disk) -> Result<Vec<Range<u64>>> {
    let size = disk.size();
    let mut all = Vec::new();
    let mut level = Some(disk);
    while let Some(d) = level {
        all.extend(
            d.allocated_ranges()?
                .into_iter()
                .map(|r| r.start.min(size)..r.end.min(size))
                .filter(|r| !r.is_empty()),
        );
        level = d.parent();
    }
    all.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::new();
    for r in all {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    Ok(merged)
}

/// Copies everything `src` reads (through its parents) into a new image of `format` at
/// `out`. Ranges no disk of the chain stores, and chunks that read as zeros, are left
/// unallocated in the output.
pub fn convert(src: &dyn Disk, out: &Path, format: Format) -> Result<()> {
    let mut dst = create(out, format, src.size())?;
    let mut buf = vec![0u8; COPY_CHUNK as usize];
    for range in chain_allocated_ranges(src)? {
        let mut at = range.start;
        while at < range.end {
            // Keep chunks aligned so that they map onto whole grains and blocks.
            let end = ((at / COPY_CHUNK + 1) * COPY_CHUNK).min(range.end);
            let chunk = &mut buf[..(end - at) as usize];
            src.read_at(chunk, at)?;
            if chunk.iter().any(|&b| b != 0) {
                dst.write_at(chunk, at)?;
            }
            at = end;
        }
    }
    dst.flush()
}

/// Opens the chain at `path` and writes it as one standalone image of `format` at `out`.
pub fn flatten(path: &Path, out: &Path, format: Format) -> Result<()> {
    let src = open_chain(path, true)?;
    convert(src.as_ref(), out, format)
}
