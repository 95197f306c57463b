//! # storage-core: strata's storage contract
//!
//! This crate owns what every backend and every front end agree on:
//! - the graph-driver contract [`LayerDriver`] (which a backend writes as blocking code,
//!   [`BlockingDriver`]) and the port layer's [`Importer`],
//!   [`Exporter`], [`Resolver`], [`DataSource`], [`DataSink`] and [`VolumeStorer`];
//! - the operation context [`Op`], the one [`Error`] enum, ids ([`id`]), object URLs
//!   ([`ObjectUrl`]) and [`FilterSpec`];
//! - the [`archive`] vocabulary of the contract: what an import reports, what a change is,
//!   how an export is asked for and the stream it arrives in (the engine that reads and
//!   writes tar streams is the `tar-engine` crate);
//! - the [`run_root`]: per-boot state (mount counts, cross-process locks, the boot id),
//!   with the atomic file write and the lock-then-verify `flock` other crates reuse;
//! - the [`backend`] descriptor through which backends make themselves known.
//!
//! It does not own what is recorded about objects: the SQLite catalog, the `Store` that
//! keeps it in step with a driver and the port layer's image-store face are the `catalog`
//! crate's, and the sandbox state store of VM-based runtimes is `sandbox-store`'s, so a
//! crate that needs only the contract builds neither (nor SQLite). It knows no backend:
//! backends depend on it, and only the `registry` crate knows them all.
//!
//! ```
//! use storage_core::{FilterSpec, Op};
//! let op = Op::new("example");
//! let mut spec = FilterSpec::default();
//! spec.exclusions.insert("var/cache".into());
//! assert!(!spec.includes("var/cache/apt"));
//! assert!(spec.includes("var/cacheable"));
//! assert!(op.check().is_ok());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod backend;
pub mod blocking_driver;
pub mod driver;
pub mod error;
pub mod file_stat;
pub mod filter;
pub mod id;
pub mod object_url;
pub mod op;
pub mod port;
pub mod run_root;

pub use blocking_driver::BlockingDriver;
pub use driver::{
    CreateOpts, DiffOpts, LayerDisk, LayerDriver, MountOpts, MountProblem, TarReader,
};
pub use error::{Error, IoContext, ObjectKind, Report, Result};
pub use file_stat::FileStat;
pub use filter::FilterSpec;
pub use object_url::ObjectUrl;
pub use op::{Op, blocking};
pub use port::{DataSink, DataSource, Exporter, Importer, Resolver, Volume, VolumeStorer};
