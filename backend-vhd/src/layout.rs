//! Where a vhd store keeps things on disk.
//!
//! ```text
//! <root>/vhd/<id>/layer.vhd       an image layer: a fixed VHD whose payload is an ext4
//!                                 file system holding only that layer, whiteouts as
//!                                 overlay markers (LCOW's layer.vhd)
//! <root>/vhd/<id>/sandbox.vhdx    a container: a dynamic VHDX holding an ext4 with
//!                                 `upper/` and `work/` (LCOW's sandbox.vhdx)
//! <root>/vhd/<id>/parents         the layer's parents' ids, nearest first, one a line
//!                                 (absent for a base layer)
//! <root>/vhd/<id>/complete        written last: the layer exists
//! <root>/vhd/<id>/merged/         where the layer's union is mounted
//! <root>/vhd/<id>/*.part          a disk being built, renamed into place when whole
//! <root>/vhd/empty/               an empty directory, the lower of a stack with none
//! ```
//!
//! LCOW kept one folder per layer named by its id with the same two file names; the
//! parent chain it was handed on every call is recorded here instead.

use std::path::{Path, PathBuf};

use storage_core::{Error, IoContext, ObjectKind, Result};

/// The image of an image layer.
pub const LAYER_VHD: &str = "layer.vhd";
/// The disk of a container.
pub const SANDBOX_VHDX: &str = "sandbox.vhdx";
/// The parent chain of a layer.
const PARENTS: &str = "parents";
/// The marker written last.
const COMPLETE: &str = "complete";
/// The suffix of a disk being built.
pub const PART: &str = "part";
/// What the base mount of a container's sandbox is named by (`sandbox-<id>`); a layer's
/// base is named by its id.
const SANDBOX_BASE: &str = "sandbox-";

/// Paths of one vhd store.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

/// What kind of layer a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An image layer: `layer.vhd`.
    Image,
    /// A container's read-write layer: `sandbox.vhdx`.
    Container,
}

impl Layout {
    /// The layout under a store root.
    pub fn new(root: &Path) -> Self {
        Layout {
            root: root.to_owned(),
        }
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/vhd`.
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("vhd")
    }

    /// `<root>/vhd/<id>`.
    pub fn layer(&self, id: &str) -> PathBuf {
        self.layers_dir().join(id)
    }

    /// `<root>/vhd/<id>/layer.vhd`.
    pub fn layer_vhd(&self, id: &str) -> PathBuf {
        self.layer(id).join(LAYER_VHD)
    }

    /// `<root>/vhd/<id>/sandbox.vhdx`.
    pub fn sandbox(&self, id: &str) -> PathBuf {
        self.layer(id).join(SANDBOX_VHDX)
    }

    /// `<root>/vhd/<id>/merged`.
    pub fn merged(&self, id: &str) -> PathBuf {
        self.layer(id).join("merged")
    }

    /// `<root>/vhd/<id>/complete`.
    pub fn complete(&self, id: &str) -> PathBuf {
        self.layer(id).join(COMPLETE)
    }

    /// `<root>/vhd/empty`.
    pub fn empty(&self) -> PathBuf {
        self.layers_dir().join("empty")
    }

    /// Where a disk of layer `id` is built before it is renamed to `name`.
    pub fn part(&self, id: &str, name: &str) -> PathBuf {
        self.layer(id).join(format!("{name}.{PART}"))
    }

    /// Creates the store's top directories.
    pub fn ensure(&self) -> Result<()> {
        let dir = self.empty();
        std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))
    }

    /// True when layer `id` is whole (its marker is written).
    pub fn is_complete(&self, id: &str) -> bool {
        self.complete(id).exists()
    }

    /// The kind of the complete layer `id`; `NotFound` when there is none.
    pub fn kind(&self, id: &str) -> Result<Kind> {
        if !self.is_complete(id) {
            return Err(Error::NotFound {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            });
        }
        Ok(if self.sandbox(id).exists() {
            Kind::Container
        } else {
            Kind::Image
        })
    }

    /// The parents of `id`, nearest first.
    pub fn parents(&self, id: &str) -> Result<Vec<String>> {
        let p = self.layer(id).join(PARENTS);
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(s
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io_path("read the parent chain", &p, e)),
        }
    }

    /// The file the parents of `id` are recorded in.
    pub fn parents_file(&self, id: &str) -> PathBuf {
        self.layer(id).join(PARENTS)
    }

    /// The name of the base mount of a layer's image (`id`) or a container's sandbox
    /// (`sandbox-<id>`).
    pub fn base_name(id: &str, kind: Kind) -> String {
        match kind {
            Kind::Image => id.to_owned(),
            Kind::Container => format!("{SANDBOX_BASE}{id}"),
        }
    }

    /// The disk a base mount named `name` is made from.
    pub fn disk_of_base(&self, name: &str) -> PathBuf {
        match name.strip_prefix(SANDBOX_BASE) {
            Some(id) => self.sandbox(id),
            None => self.layer_vhd(name),
        }
    }

    /// The ids of every layer directory, complete or not.
    pub fn layer_dirs(&self) -> Result<Vec<String>> {
        storage_core::id::ids_in(&self.layers_dir())
    }
}
