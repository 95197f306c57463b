//! # catalog: strata's SQLite catalog and the stores kept in step with it
//!
//! This crate owns what strata records about its objects, and the faces that keep those
//! records in step with a layer driver: the SQLite catalog itself ([`db`]: layers,
//! images, containers, their names, metadata and big data, the port layer's image
//! stores, the versioned schema), [`Store`], the containers/storage face (catalog and
//! driver in step, the deletion rules, crash recovery, additional stores), [`Listing`],
//! which lists from the catalogs alone, and the port layer's face on the same store
//! ([`image_store`]: `ImageStorer`, `NameLookupCache`, `VolumeLookupCache`). It does not
//! own the storage contract (the traits, `Op`, the one `Error` enum, ids, the run root,
//! the tar engine), which is `storage-core`'s: SQLite's errors become
//! [`storage_core::Error::Catalog`] here, naming the database. It knows no backend (a
//! store is handed its driver), and the sandbox state of VM-based runtimes is
//! `sandbox-store`'s.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod containers_storage;
pub mod db;
pub mod image_store;
pub mod store;

pub use db::{
    BigDataInfo, Catalog, ContainerRecord, ImageRecord, LayerDigests, LayerRecord, LayerSummary,
    LayerView, NameChange, OwnerIds, Sql, StoreImageRecord,
};
pub use store::{
    CheckReport, ImageDeletion, KeptLayer, LayerSpec, Listing, Problem, ProblemKind, Store,
};
