//! Where a vmdk store keeps things on disk, close to VIC's image store on a datastore
//! (`<datastore>/VIC/<store>/images/<id>/<id>.vmdk`, with `scratch` as the root of every
//! chain):
//!
//! ```text
//! <root>/vmdk/images/scratch/scratch.vmdk  the root disk: a sparse VMDK holding an ext4
//!                                          (label `strata-scratch`) with an empty `rootfs/`
//! <root>/vmdk/images/scratch/complete      written once the scratch disk is whole
//! <root>/vmdk/images/<id>/<id>.vmdk        a layer's (or container's) sparse delta disk,
//!                                          its parent the parent layer's disk or scratch
//! <root>/vmdk/images/<id>/layer.json       its record: parent, whether it is a container's
//! <root>/vmdk/images/<id>/complete         written last by create: the layer exists
//! <root>/vmdk/images/<id>/applied          written once its diff is in: never written again
//! <root>/vmdk/images/<id>/write/           where its disk is mounted while a diff is applied
//! <root>/vmdk/images/<id>/mount/           where `get` mounts its tree
//! <root>/vmdk/empty/                       the tree of no layer, to diff against
//! ```
//!
//! A layer's tree is the `rootfs/` directory of the ext4 on its chain, so the file
//! system's own `lost+found` is never part of a layer.

use std::path::{Path, PathBuf};

use storage_core::{Error, IoContext, ObjectKind, Result};

/// The name of the directory, inside each chain's file system, that holds the tree.
pub const ROOTFS: &str = "rootfs";
/// The marker a layer's folder gets last when it is created.
pub const COMPLETE: &str = "complete";
/// The marker a layer's folder gets once its diff is applied.
pub const APPLIED: &str = "applied";
/// The scratch disk's folder and file stem.
pub const SCRATCH: &str = "scratch";

/// What a layer's `layer.json` records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerRecord {
    /// The parent layer; `None` for a layer on scratch.
    pub parent: Option<String>,
    /// Whether it is a container's read-write layer.
    pub read_write: bool,
}

/// Paths of one vmdk store.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
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

    /// `<root>/vmdk/images`.
    pub fn images(&self) -> PathBuf {
        self.root.join("vmdk").join("images")
    }

    /// `<root>/vmdk/empty`.
    pub fn empty(&self) -> PathBuf {
        self.root.join("vmdk").join("empty")
    }

    /// `<root>/vmdk/images/scratch`.
    pub fn scratch_dir(&self) -> PathBuf {
        self.images().join(SCRATCH)
    }

    /// `<root>/vmdk/images/scratch/scratch.vmdk`.
    pub fn scratch_disk(&self) -> PathBuf {
        self.scratch_dir().join(format!("{SCRATCH}.vmdk"))
    }

    /// `<root>/vmdk/images/<id>`.
    pub fn layer(&self, id: &str) -> PathBuf {
        self.images().join(id)
    }

    /// `<root>/vmdk/images/<id>/<id>.vmdk`.
    pub fn disk(&self, id: &str) -> PathBuf {
        self.layer(id).join(format!("{id}.vmdk"))
    }

    /// `<root>/vmdk/images/<id>/layer.json`.
    pub fn record(&self, id: &str) -> PathBuf {
        self.layer(id).join("layer.json")
    }

    /// `<root>/vmdk/images/<id>/write`.
    pub fn write_dir(&self, id: &str) -> PathBuf {
        self.layer(id).join("write")
    }

    /// `<root>/vmdk/images/<id>/mount`.
    pub fn mount_dir(&self, id: &str) -> PathBuf {
        self.layer(id).join("mount")
    }

    /// Creates the store's top directories.
    pub fn ensure(&self) -> Result<()> {
        for dir in [self.images(), self.empty()] {
            std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
        }
        Ok(())
    }

    /// True when layer `id` was created whole.
    pub fn is_complete(&self, id: &str) -> bool {
        self.layer(id).join(COMPLETE).exists()
    }

    /// Layer `id`'s record, or `NotFound` when the layer was not created whole.
    pub fn read_record(&self, id: &str) -> Result<LayerRecord> {
        if !self.is_complete(id) {
            return Err(Error::NotFound {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            });
        }
        let path = self.record(id);
        let text = std::fs::read(&path).map_err(|e| Error::io_path("read", &path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::CorruptStore {
            path: path.clone(),
            reason: format!("the record of layer {id} is not valid: {e}"),
        })
    }

    /// The ids of `id`'s chain, `id` first, down to the layer on scratch.
    pub fn chain_ids(&self, id: &str) -> Result<Vec<String>> {
        let mut ids = vec![id.to_owned()];
        let mut next = self.read_record(id)?.parent;
        while let Some(parent) = next {
            if ids.len() > disk_image::chain::MAX_CHAIN_DEPTH {
                return Err(Error::CorruptStore {
                    path: self.record(id),
                    reason: format!(
                        "the chain of layer {id} is deeper than {} disks (a loop?)",
                        disk_image::chain::MAX_CHAIN_DEPTH
                    ),
                });
            }
            next = self.read_record(&parent)?.parent;
            ids.push(parent);
        }
        Ok(ids)
    }

    /// The ids of every folder in `images/` named like a layer, whole or not.
    pub fn layer_dirs(&self) -> Result<Vec<String>> {
        let dir = self.images();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io_path("list", &dir, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.ctx(|| format!("list {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if storage_core::id::validate_id(ObjectKind::Layer, &name).is_ok() && name != SCRATCH {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }
}
