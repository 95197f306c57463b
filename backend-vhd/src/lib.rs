//! # backend-vhd: layers as `layer.vhd` images, containers as `sandbox.vhdx` disks
//!
//! The store Docker's LCOW graph driver kept (see [`layout`]): every image layer is a
//! `layer.vhd`, a fixed VHD whose payload is an ext4 file system holding only that layer,
//! built from the tar in user space by `ext4-writer` (no mount, no root), with whiteouts
//! as overlay markers and the digest checked as the tar is received; every container is
//! a `sandbox.vhdx`, a dynamic VHDX holding an ext4 with `upper/` and `work/`, written
//! the same way straight into the disk. [`VhdDriver::get`](storage_core::LayerDriver::get)
//! attaches each image read-only on a loop device and mounts its ext4 once per host
//! however many mounts stand on it, attaches a container's sandbox read-write through a
//! block view, and stacks them with overlayfs. For a VM-based runtime,
//! [`disks`](storage_core::LayerDriver::disks) hands over the disk files themselves.
//!
//! It owns the layout, which disks a mount stacks, and how a disk is built from a tar.
//! The ext4 format is `ext4-writer`'s, the disk formats and attachments `disk-image`'s,
//! the mounts and their counts the `mounts` crate's, the tar rules `tar-engine`'s and the
//! contract `storage-core`'s. It stores no volumes (LCOW had none) and knows no other
//! backend.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod driver;
pub mod image;
pub mod layout;

use std::sync::Arc;

pub use driver::{LAYER_FORMAT_OPTION, SANDBOX_SIZE_OPTION, VhdDriver, VhdOptions};
pub use image::LayerFormat;
use storage_core::backend::{Backend, BackendDescriptor, Capabilities, StoreConfig};
use storage_core::run_root::RunRoot;
use storage_core::{Error, Result};

/// Opens `vhd:///path/to/root` (the path is the store root).
fn open(config: &StoreConfig) -> Result<Backend> {
    let root = std::path::PathBuf::from(config.url.path());
    if !root.is_absolute() || config.url.path().is_empty() || config.url.path() == "/" {
        return Err(Error::InvalidUrl {
            url: config.url.to_string(),
            reason: "a vhd store URL names an absolute directory: vhd:///var/lib/strata".into(),
        });
    }
    if !config.additional_stores.is_empty() {
        return Err(Error::Unsupported {
            what: format!("additional stores for the vhd store {}", config.url),
            reason: "a vhd store stacks only its own layers".into(),
        });
    }
    let sandbox_size = config
        .options
        .get(SANDBOX_SIZE_OPTION)
        .map(|v| image::parse_size(SANDBOX_SIZE_OPTION, v))
        .transpose()?;
    let layer_format = config
        .options
        .get(LAYER_FORMAT_OPTION)
        .map(|v| image::LayerFormat::parse(LAYER_FORMAT_OPTION, v))
        .transpose()?
        .unwrap_or_default();
    let run = RunRoot::open(&config.run_root)?;
    let driver = VhdDriver::open(
        &root,
        run,
        VhdOptions {
            sandbox_size,
            layer_format,
            block_view_server: config.block_view_server.clone(),
        },
    )?;
    Ok(Backend {
        layers: Some(Arc::new(driver)),
        volumes: None,
    })
}

inventory::submit! {
    BackendDescriptor {
        scheme: "vhd",
        name: "vhd",
        summary: "layers as layer.vhd images of ext4 and containers as sandbox.vhdx disks, \
                  stacked with overlayfs (LCOW's layout)",
        capabilities: Capabilities {
            layers: true,
            volumes: false,
            local_root: true,
            vm_disks: true,
            // 500 lowers per overlay, and one level of nested groups of 500.
            max_depth: Some(mounts::KERNEL_MAX_LOWERS * mounts::KERNEL_MAX_LOWERS),
        },
        options: &[SANDBOX_SIZE_OPTION, LAYER_FORMAT_OPTION],
        open,
    }
}
