//! # backend-overlay: layers as directories stacked with Linux overlayfs
//!
//! The store layout follows containers/storage's overlay driver (see [`layout`]): each
//! layer is a `diff/` directory holding only its own files, with OCI whiteouts stored as
//! overlay whiteouts, and a recorded lower chain. Diffs are applied straight into `diff/`
//! without mounting. [`OverlayDriver::get`](storage_core::LayerDriver::get) mounts a layer
//! with its chain below it, reference-counted in the run root: with the kernel's overlayfs
//! as root, through fuse-overlayfs ([`fuse`]) for a user without privilege, whose imports
//! keep owners in `user.containers.override_stat` as containers-storage's rootless layers
//! do. Volumes are plain directories ([`DirVolumes`]).
//!
//! It owns the on-disk layout and which directories a layer's mount stacks. Making the
//! mounts (overlay stacks, nesting past 500 lowers, counts and their repair) is the
//! `mounts` crate's; the tar engine is `tar-engine`'s and the contract `storage-core`'s,
//! and the catalog that records its layers is the `catalog` crate's. It knows no other
//! backend.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod driver;
pub mod fuse;
pub mod layout;
pub mod volumes;

use std::sync::Arc;

pub use driver::OverlayDriver;
use storage_core::backend::{Backend, BackendDescriptor, Capabilities, StoreConfig};
use storage_core::run_root::RunRoot;
use storage_core::{Error, Result};
pub use volumes::DirVolumes;

/// Opens `overlay:///path/to/root` (the path is the store root).
fn open(config: &StoreConfig) -> Result<Backend> {
    let root = std::path::PathBuf::from(config.url.path());
    if !root.is_absolute() || config.url.path().is_empty() || config.url.path() == "/" {
        return Err(Error::InvalidUrl {
            url: config.url.to_string(),
            reason: "an overlay store URL names an absolute directory: overlay:///var/lib/strata"
                .into(),
        });
    }
    let run = RunRoot::open(&config.run_root)?;
    let driver = OverlayDriver::open_with_additional(&root, run, &config.additional_stores)?;
    Ok(Backend {
        layers: Some(Arc::new(driver)),
        volumes: Some(Arc::new(DirVolumes::new(&config.name, &root))),
    })
}

inventory::submit! {
    BackendDescriptor {
        scheme: "overlay",
        name: "overlay",
        summary: "layers as directories stacked with overlayfs; volumes as directories",
        capabilities: Capabilities {
            layers: true,
            volumes: true,
            local_root: true,
            vm_disks: false,
            // 500 lowers per overlay, and one level of nested groups of 500.
            max_depth: Some(mounts::KERNEL_MAX_LOWERS * mounts::KERNEL_MAX_LOWERS),
        },
        options: &[],
        open,
    }
}
