//! Where an overlay store keeps things on disk.
//!
//! ```text
//! <root>/overlay/<id>/diff     the layer's own files (overlay upper for its mounts)
//! <root>/overlay/<id>/work     overlay's work directory
//! <root>/overlay/<id>/merged   where the layer is mounted
//! <root>/overlay/<id>/plain-upper  `diff` is a plain diff: writable mounts keep it one
//!                              (or `kernel-defaults-upper`; written at the first mount)
//! <root>/overlay/<id>/link     the layer's short link name
//! <root>/overlay/<id>/lower    the lower chain: short link names, nearest first, `:`-joined
//! <root>/overlay/l/<link>      -> ../<id>/diff  (short paths for legacy mount options)
//! <root>/overlay/empty         an empty directory, the lower of a base layer's mount
//! <root>/volumes/<id>/         a volume's data
//! <root>/volumes_metadata/<id>/<key>  one file per volume info key
//! ```

use std::path::{Path, PathBuf};

use storage_core::id::random_bytes;
use storage_core::{Error, IoContext, ObjectKind, Result};

/// Paths of one overlay store, and of the read-only additional stores whose layers it
/// may stack on.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    additional: Vec<PathBuf>,
}

/// Length of a short link name.
pub const LINK_LEN: usize = 26;

impl Layout {
    /// The layout under a store root.
    pub fn new(root: &Path) -> Self {
        Layout {
            root: root.to_owned(),
            additional: Vec::new(),
        }
    }

    /// The same layout, also finding layers (never writing them) in the overlay stores
    /// rooted at `roots`.
    pub fn with_additional(mut self, roots: &[PathBuf]) -> Self {
        self.additional = roots.to_vec();
        self
    }

    /// The directory of layer `id`: this store's, or a read-only additional store's.
    pub fn find_layer(&self, id: &str) -> PathBuf {
        let own = self.layer(id);
        if own.join("link").exists() {
            return own;
        }
        self.additional
            .iter()
            .map(|r| r.join("overlay").join(id))
            .find(|d| d.join("link").exists())
            .unwrap_or(own)
    }

    /// The path of a short link: in this store's `l/`, or an additional store's.
    pub fn link_path(&self, link: &str) -> PathBuf {
        let own = self.links_dir().join(link);
        if own.symlink_metadata().is_ok() {
            return own;
        }
        self.additional
            .iter()
            .map(|r| r.join("overlay/l").join(link))
            .find(|p| p.symlink_metadata().is_ok())
            .unwrap_or(own)
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/overlay`.
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("overlay")
    }

    /// `<root>/overlay/<id>`.
    pub fn layer(&self, id: &str) -> PathBuf {
        self.layers_dir().join(id)
    }

    /// `<root>/overlay/<id>/diff`.
    pub fn diff(&self, id: &str) -> PathBuf {
        self.layer(id).join("diff")
    }

    /// The diff directory of layer `id` to read: this store's, or a read-only additional
    /// store's that has the layer.
    pub fn found_diff(&self, id: &str) -> PathBuf {
        self.find_layer(id).join("diff")
    }

    /// `<root>/overlay/<id>/work`.
    pub fn work(&self, id: &str) -> PathBuf {
        self.layer(id).join("work")
    }

    /// `<root>/overlay/<id>/merged`.
    pub fn merged(&self, id: &str) -> PathBuf {
        self.layer(id).join("merged")
    }

    /// `<root>/overlay/l`.
    pub fn links_dir(&self) -> PathBuf {
        self.layers_dir().join("l")
    }

    /// `<root>/overlay/empty`.
    pub fn empty(&self) -> PathBuf {
        self.layers_dir().join("empty")
    }

    /// `<root>/volumes`.
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// `<root>/volumes_metadata`.
    pub fn volumes_metadata(&self) -> PathBuf {
        self.root.join("volumes_metadata")
    }

    /// Creates the store's top directories.
    pub fn ensure(&self) -> Result<()> {
        for dir in [
            self.links_dir(),
            self.empty(),
            self.volumes(),
            self.volumes_metadata(),
        ] {
            std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
        }
        Ok(())
    }

    /// The layer's short link name.
    pub fn link_of(&self, id: &str) -> Result<String> {
        let p = self.find_layer(id).join("link");
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(s.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            }),
            Err(e) => Err(Error::io_path("read", &p, e)),
        }
    }

    /// The layer's lower chain as short link names, nearest first.
    pub fn lower_links(&self, id: &str) -> Result<Vec<String>> {
        let p = self.find_layer(id).join("lower");
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(s
                .trim()
                .split(':')
                .filter(|l| !l.is_empty())
                // containers-storage writes `l/<link>`, strata the bare `<link>`.
                .map(|l| l.strip_prefix("l/").unwrap_or(l).to_owned())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io_path("read", &p, e)),
        }
    }

    /// The id a short link points at.
    pub fn id_of_link(&self, link: &str) -> Result<String> {
        let p = self.link_path(link);
        let target = std::fs::read_link(&p).ctx(|| format!("read link {}", p.display()))?;
        // ../<id>/diff
        target
            .parent()
            .and_then(Path::file_name)
            .and_then(|s| s.to_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::CorruptStore {
                path: p.clone(),
                reason: format!("short link points at {}", target.display()),
            })
    }

    /// The diff directories of the layer's lower chain, nearest first.
    pub fn lower_diffs(&self, id: &str) -> Result<Vec<PathBuf>> {
        Ok(self
            .lower_links(id)?
            .iter()
            .map(|l| self.link_path(l))
            .collect())
    }

    /// The ids of the layer's lower chain, nearest first.
    pub fn lower_ids(&self, id: &str) -> Result<Vec<String>> {
        self.lower_links(id)?
            .iter()
            .map(|l| self.id_of_link(l))
            .collect()
    }

    /// A new random short link name (uppercase letters and digits).
    pub fn new_link() -> Result<String> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        Ok(random_bytes::<LINK_LEN>()?
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect())
    }
}
