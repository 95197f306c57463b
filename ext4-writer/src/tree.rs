//! The in-memory file tree a [`Builder`](crate::Builder) fills from tar entries: names,
//! metadata and where each file's data went. Paths are resolved like a chroot, lexically:
//! `..` stops at the root, absolute names and symlink targets start from it, so nothing can
//! name a place outside the image.

use std::collections::BTreeMap;

use tar_engine::confine::child_len;

use crate::error::{Error, Result};

/// Index of a node in [`Tree::nodes`].
pub type NodeId = usize;

/// Most symlinks followed while resolving one path (as the kernel's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

pub use tar_engine::Time;

/// A run of file blocks stored contiguously on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First file block.
    pub logical: u32,
    /// First disk block.
    pub physical: u64,
    /// Length in blocks.
    pub len: u32,
}

/// What a node is.
#[derive(Debug)]
pub enum Kind {
    /// A directory and its children by name.
    Dir(BTreeMap<Vec<u8>, NodeId>),
    /// A regular file: its size and where its non-zero blocks are.
    File {
        /// Size in bytes.
        size: u64,
        /// Data runs, in file order; blocks not covered are holes.
        runs: Vec<Run>,
    },
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
    /// A character device (major, minor).
    Char(u32, u32),
    /// A block device (major, minor).
    Block(u32, u32),
    /// A FIFO.
    Fifo,
}

/// Metadata every node has.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Time,
    /// Access time.
    pub atime: Time,
    /// Change time.
    pub ctime: Time,
    /// Extended attributes by full name.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// One inode-to-be.
#[derive(Debug)]
pub struct Node {
    /// What it is.
    pub kind: Kind,
    /// Its metadata.
    pub meta: Meta,
}

/// The tree; node 0 is the root directory.
#[derive(Debug)]
pub struct Tree {
    /// All nodes ever created; replaced ones stay here, unreachable.
    pub nodes: Vec<Node>,
}

/// The root's node id.
pub const ROOT: NodeId = 0;

/// Splits a tar path into components, dropping empty ones and `.`.
pub fn components(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Node {
    /// An empty directory made because a path needs it (mode 0755, owned by root, no
    /// times), as the root and every directory an archive implies but does not list.
    pub fn implied_dir() -> Node {
        Node {
            kind: Kind::Dir(BTreeMap::new()),
            meta: Meta {
                perm: 0o755,
                ..Meta::default()
            },
        }
    }
}

impl Tree {
    /// A tree holding only a root directory (mode 0755, owned by root).
    pub fn new() -> Self {
        Tree {
            nodes: vec![Node::implied_dir()],
        }
    }

    /// Adds a node (not yet linked anywhere) and returns its id.
    pub fn add(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn child(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        match &self.nodes[dir].kind {
            Kind::Dir(children) => children.get(name).copied(),
            _ => None,
        }
    }

    /// Resolves `comps` to a directory, following symlinks inside the root and creating
    /// missing directories of `comps` (mode 0755, root-owned) when `create` is set. A
    /// symlink's target is never created: one that leads nowhere is not a directory, as
    /// the kernel sees it.
    pub fn resolve_dir(&mut self, entry: &str, comps: &[&[u8]], create: bool) -> Result<NodeId> {
        Ok(self.resolve_dir_len(entry, comps, create)?.0)
    }

    /// [`Tree::resolve_dir`], with the length of the directory's real path (where it is
    /// once symlinks are followed).
    pub fn resolve_dir_len(
        &mut self,
        entry: &str,
        comps: &[&[u8]],
        create: bool,
    ) -> Result<(NodeId, usize)> {
        // Each directory on the way with the length of its real path.
        let mut stack: Vec<(NodeId, usize)> = vec![(ROOT, 0)];
        let mut queue: std::collections::VecDeque<(Vec<u8>, bool)> =
            comps.iter().map(|c| (c.to_vec(), false)).collect();
        let mut followed = 0;
        while let Some((comp, from_link)) = queue.pop_front() {
            let (cur, cur_len) = *stack.last().unwrap_or(&(ROOT, 0));
            if comp.as_slice() == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let next = match self.child(cur, &comp) {
                Some(n) => n,
                None if create && !from_link => {
                    let id = self.add(Node::implied_dir());
                    self.link(cur, comp.clone(), id);
                    id
                }
                None => {
                    return Err(Error::NotADirectory {
                        entry: entry.to_string(),
                        component: lossy(&comp),
                    });
                }
            };
            match &self.nodes[next].kind {
                Kind::Dir(_) => stack.push((next, child_len(cur_len, &comp))),
                Kind::Symlink(target) => {
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(Error::NotADirectory {
                            entry: entry.to_string(),
                            component: format!("{} (too many symlinks)", lossy(&comp)),
                        });
                    }
                    if target.first() == Some(&b'/') {
                        stack.truncate(1);
                    }
                    for c in components(target).into_iter().rev() {
                        queue.push_front((c.to_vec(), true));
                    }
                }
                _ => {
                    return Err(Error::NotADirectory {
                        entry: entry.to_string(),
                        component: lossy(&comp),
                    });
                }
            }
        }
        Ok(*stack.last().unwrap_or(&(ROOT, 0)))
    }

    /// Resolves a whole path without following a symlink in the last component. Returns
    /// `None` when it does not exist.
    pub fn lookup(&mut self, entry: &str, path: &[u8]) -> Result<Option<NodeId>> {
        let comps = components(path);
        match comps.split_last() {
            None => Ok(Some(ROOT)),
            Some((last, parents)) => {
                let dir = match self.resolve_dir(entry, parents, false) {
                    Ok(d) => d,
                    Err(Error::NotADirectory { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                if *last == b".." {
                    return Ok(Some(self.resolve_dir(entry, &comps, false)?));
                }
                Ok(self.child(dir, last))
            }
        }
    }

    /// Links `id` as `name` in `dir`, replacing whatever had that name.
    pub fn link(&mut self, dir: NodeId, name: Vec<u8>, id: NodeId) {
        if let Kind::Dir(children) = &mut self.nodes[dir].kind {
            children.insert(name, id);
        }
    }

    /// Is `id` a directory?
    pub fn is_dir(&self, id: NodeId) -> bool {
        matches!(self.nodes[id].kind, Kind::Dir(_))
    }

    /// Looks `name` up in `dir` (no symlink following).
    pub fn get(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        self.child(dir, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Node {
        Node {
            kind: Kind::Fifo,
            meta: Meta::default(),
        }
    }

    #[test]
    fn dotdot_and_symlinks_stay_inside_the_root() {
        let mut t = Tree::new();
        let up = t.add(Node {
            kind: Kind::Symlink(b"..".to_vec()),
            meta: Meta::default(),
        });
        t.link(ROOT, b"up".to_vec(), up);
        let abs = t.add(Node {
            kind: Kind::Symlink(b"/".to_vec()),
            meta: Meta::default(),
        });
        t.link(ROOT, b"root".to_vec(), abs);
        assert_eq!(
            t.resolve_dir("x", &components(b"../../.."), true).unwrap(),
            ROOT
        );
        assert_eq!(
            t.resolve_dir("x", &components(b"up/up"), true).unwrap(),
            ROOT
        );
        let tmp = t.resolve_dir("x", &components(b"root/tmp"), true).unwrap();
        assert_eq!(t.get(ROOT, b"tmp"), Some(tmp));
    }

    #[test]
    fn a_dangling_symlink_is_not_a_directory_even_when_creating() {
        let mut t = Tree::new();
        let l = t.add(Node {
            kind: Kind::Symlink(b"missing/deeper".to_vec()),
            meta: Meta::default(),
        });
        t.link(ROOT, b"l".to_vec(), l);
        assert!(matches!(
            t.resolve_dir("l/x", &components(b"l/x"), true),
            Err(Error::NotADirectory { .. })
        ));
        assert_eq!(t.get(ROOT, b"missing"), None);
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let mut t = Tree::new();
        let a = t.add(Node {
            kind: Kind::Symlink(b"a".to_vec()),
            meta: Meta::default(),
        });
        t.link(ROOT, b"a".to_vec(), a);
        assert!(matches!(
            t.resolve_dir("x", &components(b"a/b"), true),
            Err(Error::NotADirectory { .. })
        ));
    }

    #[test]
    fn a_file_in_the_path_is_not_a_directory() {
        let mut t = Tree::new();
        let f = t.add(file());
        t.link(ROOT, b"f".to_vec(), f);
        assert!(t.resolve_dir("f/x", &components(b"f"), true).is_err());
        assert_eq!(t.lookup("f", b"/f").unwrap(), Some(f));
        assert_eq!(t.lookup("g", b"g").unwrap(), None);
    }
}
