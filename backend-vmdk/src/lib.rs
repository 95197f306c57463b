//! # backend-vmdk: layers as VMDK delta-disk chains, as VIC's port layer kept them
//!
//! Every layer is a sparse VMDK *delta disk* whose parent is its parent layer's disk; the
//! chain ends at a `scratch` disk holding an ext4 (see [`layout`] and [`scratch`]). A
//! container's read-write layer is one more delta on its image's top layer. A diff is
//! applied by attaching the layer's chain read-write, mounting its ext4 and applying the
//! tar with whiteouts as deletions; a layer is mounted by attaching its chain (read-only
//! for an image layer) and mounting its ext4, reference-counted in the run root. Diffs
//! and changes compare two mounted trees. A VM-based runtime gets the chain's `.vmdk`
//! files themselves ([`VmdkDriver::disks`](storage_core::LayerDriver::disks)).
//!
//! It owns the store's layout, the scratch disk's making and which chain each layer's
//! mount attaches. The disk formats, block views and attachments that outlive a command
//! are `disk-image`'s; the ext4 built without `mkfs` is `ext4-writer`'s; counted mounts and
//! block-device mounts are the `mounts` crate's; the tar rules are `tar-engine`'s, the
//! contract `storage-core`'s and the catalog the `catalog` crate's. Volumes are VMDKs of
//! their own with an ext4 each ([`VmdkVolumes`]). It knows no other backend.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod driver;
pub mod emptied;
pub mod layout;
pub mod scratch;
pub mod volumes;

use std::sync::Arc;

use disk_image::attach::Server;
pub use driver::VmdkDriver;
use storage_core::backend::{Backend, BackendDescriptor, Capabilities, StoreConfig};
use storage_core::run_root::RunRoot;
use storage_core::{Error, Result};
pub use volumes::VmdkVolumes;

/// The store option that sets a new store's scratch capacity (`8G`, `512M`, bytes).
pub const SCRATCH_SIZE_OPTION: &str = "scratch_size";

/// Opens `vmdk:///path/to/root` (the path is the store root).
fn open(config: &StoreConfig) -> Result<Backend> {
    let root = std::path::PathBuf::from(config.url.path());
    if !root.is_absolute() || config.url.path().is_empty() || config.url.path() == "/" {
        return Err(Error::InvalidUrl {
            url: config.url.to_string(),
            reason: "a vmdk store URL names an absolute directory: vmdk:///var/lib/strata".into(),
        });
    }
    let capacity = match config.options.get(SCRATCH_SIZE_OPTION) {
        Some(text) => scratch::parse_capacity(text).ok_or_else(|| Error::InvalidUrl {
            url: config.url.to_string(),
            reason: format!(
                "the store option {SCRATCH_SIZE_OPTION}={text:?} is not a size (8G, 512M, bytes)"
            ),
        })?,
        None => scratch::DEFAULT_CAPACITY,
    };
    let server = config
        .block_view_server
        .as_ref()
        .and_then(|command| command.split_first())
        .map(|(program, args)| Server::new(program, args.iter().cloned()));
    let run = RunRoot::open(&config.run_root)?;
    let driver = VmdkDriver::open(&root, run, server, capacity)?;
    let volumes = VmdkVolumes::new(
        &config.name,
        &root,
        driver.run_root().clone(),
        driver.disk_mounts(),
    );
    Ok(Backend {
        layers: Some(Arc::new(driver)),
        volumes: Some(Arc::new(volumes)),
    })
}

inventory::submit! {
    BackendDescriptor {
        scheme: "vmdk",
        name: "vmdk",
        summary: "layers as sparse VMDK delta disks chained down to a scratch disk (VIC)",
        capabilities: Capabilities {
            layers: true,
            volumes: true,
            local_root: true,
            vm_disks: true,
            // A layer and its parents, each a disk, on scratch: the chain opener's limit.
            max_depth: Some(disk_image::chain::MAX_CHAIN_DEPTH),
        },
        options: &[SCRATCH_SIZE_OPTION],
        open,
    }
}
