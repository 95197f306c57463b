//! Cross-crate conformance scenarios, and the one thing their tests need from a library: a
//! [`Manifest`] of a real directory tree, exact enough to say that two writers made the
//! same tree.
//!
//! The scenarios live in `tests/`: the same archives (`layercheck.py`'s chain and hostile
//! layers, and cases of our own for every rule the tar engine decides) go through the
//! directory writer, the NFS volume writer (against a real nfs-ganesha) and the ext4 image
//! writer (images loop-mounted and stacked with overlayfs), and must give the same verdict
//! and, where accepted, the same tree. This crate owns no writer and no rule; it only
//! looks at what they made.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// What a tree holds at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `file`, `dir`, `symlink`, `char`, `block`, `fifo` or `socket`.
    pub kind: &'static str,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// A file's length and content digest, a symlink's target, a device's number.
    pub content: String,
    /// Modification time, seconds and nanoseconds (not kept for directories, whose times
    /// change as entries are added below them).
    pub mtime: Option<(i64, i64)>,
    /// Extended attributes by name (hex values).
    pub xattrs: BTreeMap<String, String>,
    /// The other paths of the same inode (hard links), sorted; empty for one link.
    pub links: Vec<String>,
}

/// Which fields a comparison leaves out, for a medium that cannot hold them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ignore {
    /// Owners (an NFS volume's files belong to the store's uid and gid).
    pub owners: bool,
    /// Extended attributes (NFSv3 has none).
    pub xattrs: bool,
    /// Device nodes (a server refuses them without root credentials).
    pub devices: bool,
    /// Times are kept in unsigned 32-bit seconds, as NFSv3 carries them: earlier ones are
    /// the epoch, later ones the last second.
    pub times_in_u32: bool,
    /// Symlinks' times (an NFS server need not set them).
    pub symlink_times: bool,
}

/// A tree: every path below a root (the root itself as `.`), with `lost+found` at the
/// root left out (an ext4 image has one of its own).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest(pub BTreeMap<String, Node>);

impl Manifest {
    /// Reads the tree at `root`, not following symlinks.
    pub fn of(root: &Path) -> io::Result<Manifest> {
        let mut nodes = BTreeMap::new();
        let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
        let mut todo = vec![(root.to_path_buf(), ".".to_owned())];
        while let Some((path, rel)) = todo.pop() {
            let md = fs::symlink_metadata(&path)?;
            let ft = md.file_type();
            let (kind, content) = if ft.is_dir() {
                let mut names: Vec<_> = fs::read_dir(&path)?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<io::Result<_>>()?;
                names.sort();
                for name in names {
                    if rel == "." && name == "lost+found" {
                        continue;
                    }
                    let child = if rel == "." {
                        String::from_utf8_lossy(name.as_bytes()).into_owned()
                    } else {
                        format!("{rel}/{}", String::from_utf8_lossy(name.as_bytes()))
                    };
                    todo.push((path.join(&name), child));
                }
                ("dir", String::new())
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)?;
                (
                    "symlink",
                    String::from_utf8_lossy(target.as_os_str().as_bytes()).into_owned(),
                )
            } else if ft.is_char_device() || ft.is_block_device() {
                let rdev = md.rdev();
                let kind = if ft.is_char_device() { "char" } else { "block" };
                (
                    kind,
                    format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev)),
                )
            } else if ft.is_fifo() {
                ("fifo", String::new())
            } else if ft.is_socket() {
                ("socket", String::new())
            } else {
                let data = fs::read(&path)?;
                (
                    "file",
                    format!("{} {}", data.len(), hex::encode(Sha256::digest(&data))),
                )
            };
            if kind != "dir" && md.nlink() > 1 {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            nodes.insert(
                rel,
                Node {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    content,
                    mtime: (kind != "dir").then(|| (md.mtime(), md.mtime_nsec())),
                    xattrs: xattrs(&path)?,
                    links: Vec::new(),
                },
            );
        }
        for mut group in inodes.into_values() {
            group.sort();
            for p in &group {
                if let Some(n) = nodes.get_mut(p) {
                    n.links = group.iter().filter(|o| *o != p).cloned().collect();
                }
            }
        }
        Ok(Manifest(nodes))
    }

    /// This tree without what `ignore` leaves out.
    pub fn without(&self, ignore: Ignore) -> Manifest {
        let mut out = BTreeMap::new();
        for (path, node) in &self.0 {
            if ignore.devices && matches!(node.kind, "char" | "block") {
                continue;
            }
            let mut n = node.clone();
            if ignore.owners {
                (n.uid, n.gid) = (0, 0);
            }
            if ignore.xattrs {
                n.xattrs.clear();
            }
            if ignore.times_in_u32 {
                n.mtime = n.mtime.map(|(s, ns)| match s {
                    ..0 => (0, 0),
                    0..=0xffff_ffff => (s, ns),
                    _ => (0xffff_ffff, ns),
                });
            }
            if ignore.symlink_times && n.kind == "symlink" {
                n.mtime = None;
            }
            if ignore.devices {
                n.links.retain(|l| {
                    self.0
                        .get(l)
                        .is_none_or(|o| !matches!(o.kind, "char" | "block"))
                });
            }
            out.insert(path.clone(), n);
        }
        Manifest(out)
    }

    /// The differences from `other`, one line each; empty when the trees are the same.
    pub fn diff(&self, other: &Manifest) -> Vec<String> {
        let mut out = Vec::new();
        for (path, a) in &self.0 {
            match other.0.get(path) {
                None => out.push(format!("{path}: only in the first ({})", a.kind)),
                Some(b) if a != b => out.push(format!("{path}: {a:?} != {b:?}")),
                Some(_) => {}
            }
        }
        for (path, b) in &other.0 {
            if !self.0.contains_key(path) {
                out.push(format!("{path}: only in the second ({})", b.kind));
            }
        }
        out
    }
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, n) in &self.0 {
            writeln!(f, "{path}: {n:?}")?;
        }
        Ok(())
    }
}

/// The xattrs of `path` (not following a symlink), values in hex.
fn xattrs(path: &Path) -> io::Result<BTreeMap<String, String>> {
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value)?;
        out.insert(name, hex::encode(&value[..len]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_sees_content_modes_links_and_differences() {
        let a = tempfile::tempdir().unwrap();
        fs::create_dir(a.path().join("d")).unwrap();
        fs::write(a.path().join("d/f"), b"x").unwrap();
        fs::hard_link(a.path().join("d/f"), a.path().join("g")).unwrap();
        std::os::unix::fs::symlink("d/f", a.path().join("l")).unwrap();
        let m = Manifest::of(a.path()).unwrap();
        assert_eq!(m.0["g"].links, ["d/f"]);
        assert_eq!(m.0["l"].content, "d/f");
        assert_eq!(m.0["d"].mtime, None);
        fs::write(a.path().join("d/f"), b"y").unwrap();
        let changed = Manifest::of(a.path()).unwrap();
        let diff = m.diff(&changed);
        assert!(diff.iter().any(|l| l.starts_with("d/f:")), "{diff:?}");
        assert!(m.diff(&m).is_empty());
    }
}
