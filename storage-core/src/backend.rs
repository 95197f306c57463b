//! What a backend hands the registry: a descriptor collected with `inventory`.
//!
//! A backend crate submits one [`BackendDescriptor`] with `inventory::submit!`; the
//! `registry` crate iterates them to turn a store URL into a [`Backend`]. Any crate linked
//! into the application can submit one, so a third-party backend needs no change here or
//! in the registry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::driver::LayerDriver;
use crate::error::Result;
use crate::port::VolumeStorer;

/// What a backend can store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Capabilities {
    /// Image and container layers ([`LayerDriver`]).
    pub layers: bool,
    /// Volumes ([`VolumeStorer`]).
    pub volumes: bool,
    /// The store URL's path is a local directory the store owns, where its catalog lives
    /// too; a remote store (an NFS export) keeps its catalog under the local `--root`.
    pub local_root: bool,
    /// Its layers are disk files it can hand a VM-based runtime
    /// ([`LayerDriver::disks`](crate::LayerDriver::disks)).
    pub vm_disks: bool,
    /// The deepest chain of layers it can mount (a layer and all its parents), when it
    /// has a limit; layers are not created deeper than that.
    pub max_depth: Option<usize>,
}

/// Everything a backend needs to open one store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The store's name (from the config file, or derived from the URL).
    pub name: String,
    /// The store's URL (`overlay:///var/lib/strata`, `nfs://host/export`, …).
    pub url: url::Url,
    /// Where per-boot state goes (mount counts, locks).
    pub run_root: PathBuf,
    /// Backend-specific options from the config file, as strings.
    pub options: BTreeMap<String, String>,
    /// Roots of read-only additional stores whose layers and images may be used as
    /// parents, never written.
    pub additional_stores: Vec<PathBuf>,
    /// The command that serves a disk's block view, program first (`strata
    /// serve-block-view`): disk backends start it so that an attachment outlives the
    /// command that made it. `None` where the application serves none.
    pub block_view_server: Option<Vec<std::ffi::OsString>>,
}

/// An opened store: the faces the backend offers.
#[derive(Clone, Default)]
pub struct Backend {
    /// The layer driver, for backends that store layers.
    pub layers: Option<Arc<dyn LayerDriver>>,
    /// The volume store, for backends that store volumes.
    pub volumes: Option<Arc<dyn VolumeStorer>>,
}

/// A backend's entry in the registry.
pub struct BackendDescriptor {
    /// The URL scheme it serves (`overlay`).
    pub scheme: &'static str,
    /// Its name as shown to users.
    pub name: &'static str,
    /// One line saying what it is.
    pub summary: &'static str,
    /// What it can store.
    pub capabilities: Capabilities,
    /// The store options it reads (`options = { … }` of a store in a config file); any
    /// other is refused before the store opens, naming these.
    pub options: &'static [&'static str],
    /// Opens a store from its configuration.
    pub open: fn(&StoreConfig) -> Result<Backend>,
}

inventory::collect!(BackendDescriptor);

/// Every descriptor linked into this program, sorted by name.
pub fn descriptors() -> Vec<&'static BackendDescriptor> {
    let mut all: Vec<&'static BackendDescriptor> =
        inventory::iter::<BackendDescriptor>.into_iter().collect();
    all.sort_by_key(|d| d.name);
    all
}
