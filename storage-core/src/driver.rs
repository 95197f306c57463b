//! `LayerDriver`: the graph-driver contract every layer backend implements.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::archive::{ApplyReport, ArchiveStream, Change, ExportOptions};
use crate::error::Result;
use crate::filter::FilterSpec;
use crate::op::Op;

/// A tar stream handed to an import.
pub type TarReader = Box<dyn AsyncRead + Send + Unpin>;

/// Options for creating a layer.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// Backend-specific options (`key=value` storage options).
    pub storage_opts: BTreeMap<String, String>,
}

/// Options for mounting a layer.
#[derive(Debug, Clone, Default)]
pub struct MountOpts {
    /// Mount without a writable upper layer.
    pub read_only: bool,
}

/// Options for applying a diff to a layer.
#[derive(Debug, Clone, Default)]
pub struct DiffOpts {
    /// `sha256:<hex>` the received bytes must have.
    pub expected_digest: Option<String>,
    /// Which entries are applied, and how they are renamed.
    pub filter: FilterSpec,
}

/// One disk file of a layer's chain, as a VM-based runtime attaches it (LCOW's
/// `GetLayerPath`, Kata's block devices): the runtime gets disks, not a host mount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerDisk {
    /// The disk file.
    pub path: PathBuf,
    /// Its format, as `disk-image` names formats (`vmdk`, `vhd-fixed`, `vhdx`, `raw`, …).
    pub format: String,
    /// Whether the runtime may write it (a container's own disk); every parent is
    /// read-only.
    pub writable: bool,
}

/// The graph-driver contract: layers stacked on parents, mounted on demand.
///
/// Every call takes an [`Op`]. Blocking filesystem work runs on the blocking pool.
#[async_trait]
pub trait LayerDriver: Send + Sync {
    /// The backend's name (`overlay`, `vmdk`, …).
    fn name(&self) -> &'static str;

    /// Creates an empty read-only layer on `parent`.
    async fn create(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
    ) -> Result<()>;

    /// Creates an empty read-write layer (a container's) on `parent`.
    async fn create_read_write(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
    ) -> Result<()> {
        self.create(op, id, parent, opts).await
    }

    /// Removes a layer and its data. Refused while it is mounted.
    async fn remove(&self, op: &Op, id: &str) -> Result<()>;

    /// Mounts the layer (reference-counted) and returns where its merged tree is.
    async fn get(&self, op: &Op, id: &str, opts: &MountOpts) -> Result<PathBuf>;

    /// Releases one reference taken by [`get`](Self::get); the last one unmounts.
    async fn put(&self, op: &Op, id: &str) -> Result<()>;

    /// How many references [`get`](Self::get) holds on the layer now.
    async fn mount_count(&self, op: &Op, id: &str) -> Result<u64>;

    /// True when the driver holds a layer with this id.
    async fn exists(&self, op: &Op, id: &str) -> Result<bool>;

    /// Applies a tar stream to the layer `id`, whose parent is `parent`.
    async fn apply_diff(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        diff: TarReader,
        opts: &DiffOpts,
    ) -> Result<ApplyReport>;

    /// The layer's changes over `parent` (or the whole layer with `None`) as a tar stream.
    async fn diff(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &ExportOptions,
    ) -> Result<ArchiveStream>;

    /// The layer's changes over `parent`, listed.
    async fn changes(&self, op: &Op, id: &str, parent: Option<&str>) -> Result<Vec<Change>>;

    /// The size of the file data in the layer's changes over `parent`.
    async fn diff_size(&self, op: &Op, id: &str, parent: Option<&str>) -> Result<u64>;

    /// Facts about the driver and its backing filesystem, for `strata status`.
    async fn status(&self, op: &Op) -> Result<Vec<(String, String)>>;

    /// Backend-specific facts about one layer (paths, lower chain).
    async fn metadata(&self, op: &Op, id: &str) -> Result<BTreeMap<String, String>>;

    /// Unmounts everything this store mounted.
    async fn cleanup(&self, op: &Op) -> Result<()>;

    /// Mount records that disagree with what is mounted: a count with nothing mounted (a
    /// reboot, a crash during an unmount) or a mount with no count (a crash between the
    /// mount and its record). With `repair`, each record is made true (counts dropped,
    /// unrecorded mounts unmounted). Drivers that mount nothing have none.
    async fn check_mounts(&self, _op: &Op, _repair: bool) -> Result<Vec<MountProblem>> {
        Ok(Vec::new())
    }

    /// The disk files a VM needs for layer `id` (a container's read-write layer or an
    /// image layer), topmost first: the layer's own disk, then its parents' down to the
    /// base, as LCOW's layer folders are ordered. Backends whose layers are not disks
    /// answer [`Error::Unsupported`](crate::Error::Unsupported), as their descriptor's
    /// [`vm_disks`](crate::backend::Capabilities::vm_disks) says beforehand.
    async fn disks(&self, _op: &Op, id: &str) -> Result<Vec<LayerDisk>> {
        Err(crate::Error::Unsupported {
            what: format!("the disks of layer {id}"),
            reason: format!("the {} driver keeps no layer on a disk", self.name()),
        })
    }

    /// The ids of every layer whose data this driver holds, recorded in a catalog or not,
    /// so that `check` can find data nothing refers to. Drivers that cannot list what
    /// they hold answer [`Error::Unsupported`](crate::Error::Unsupported).
    async fn stored_layers(&self, _op: &Op) -> Result<Vec<String>> {
        Err(crate::Error::Unsupported {
            what: format!("listing the layers stored by the {} driver", self.name()),
            reason: "the driver cannot list what it holds".into(),
        })
    }
}

/// A mount record that disagrees with what is mounted ([`LayerDriver::check_mounts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountProblem {
    /// The layer (or the driver's own key for a shared mount).
    pub id: String,
    /// What disagrees.
    pub detail: String,
    /// Whether it was made right.
    pub repaired: bool,
}
