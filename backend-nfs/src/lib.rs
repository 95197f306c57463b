//! # backend-nfs: volumes on an NFS export, through a user-space NFSv3 client
//!
//! A store `nfs://host[:port]/export/path?uid=U&gid=G[&mountport=N]` keeps volumes on an
//! NFSv3 export in the layout of the VIC volume store ([`volumes`]): `volumes/<id>/` for
//! the data and `volumes_metadata/<id>/<key>` for the info map. It talks NFSv3 itself
//! (`nfs3_client`, with the pool of connections, timeouts and errors of [`session`]), so
//! no kernel NFS client and no mount are needed. Tar streams are imported ([`import`])
//! and exported ([`export`]) over the same session, with the archive engine's input
//! handling, entry parsing and tar writer, and confinement done by file handles.
//!
//! It owns the layout on the export and the NFS conversation; the contract, the tar
//! engine and [`FilterSpec`](storage_core::FilterSpec) come from `storage-core`. It stores
//! no layers, and knows no other backend.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod export;
pub mod import;
mod resolve;
pub mod session;
pub mod tree;
pub mod url;
pub mod volumes;

use std::sync::Arc;

pub use error::NfsError;
use storage_core::Result;
use storage_core::backend::{Backend, BackendDescriptor, Capabilities, StoreConfig};
pub use url::NfsUrl;
pub use volumes::NfsVolumes;

/// Opens `nfs://host[:port]/export?uid=&gid=`; the server is first contacted by the first
/// call. Options from a config file (`timeout`, `uid`, …) are the URL's query options
/// given another way.
fn open(config: &StoreConfig) -> Result<Backend> {
    let mut with_options = config.url.clone();
    if !config.options.is_empty() {
        let mut query = with_options.query_pairs_mut();
        for (k, v) in &config.options {
            query.append_pair(k, v);
        }
    }
    let url = NfsUrl::parse(&with_options)?;
    Ok(Backend {
        layers: None,
        volumes: Some(Arc::new(NfsVolumes::new(&config.name, url))),
    })
}

inventory::submit! {
    BackendDescriptor {
        scheme: "nfs",
        name: "nfs",
        summary: "volumes on an NFSv3 export (VIC layout), through a user-space client",
        capabilities: Capabilities {
            layers: false,
            volumes: true,
            local_root: false,
            vm_disks: false,
            max_depth: None,
        },
        options: url::OPTIONS,
        open,
    }
}
