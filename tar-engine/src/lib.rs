//! # tar-engine: the one way a tar stream enters or leaves strata
//!
//! Every writer of layers and volumes (a directory, an NFS volume, an ext4 image) reads its
//! archive through [`ingest()`], and every export is written by [`export`]. This crate owns:
//! - **the entry stream** ([`ingest()`]): input and digests ([`input`]), the tar format, and
//!   every rule about what an entry may be ([`entry`]): safe names, whiteouts, reserved
//!   xattrs, PAX values. A writer implements [`EntrySink`] and only creates what it is
//!   handed, so the same archive gives the same verdict on every writer;
//! - **the directory writer** ([`apply_tar`]), confined to its target by
//!   [`confine`] (`openat2(RESOLVE_IN_ROOT)`, no-follow removal);
//! - **change lists** ([`layer_changes`], [`compare_trees`]) and **deterministic export**
//!   ([`write_layer`], [`write_changes`], [`TarWriter`]), reading trees with [`tree`];
//! - **unprivileged owners** ([`override_stat`]): what a writer that is not root cannot
//!   apply (owners, modes, devices), kept in `user.containers.override_stat` as
//!   containers-storage keeps it, and read back by the exporter;
//! - **byte-exact layers** ([`split`]): the tar-split records an import keeps so that
//!   [`reassemble`] gives an unchanged tree's tar back byte for byte.
//!
//! It does not own the contract's vocabulary ([`ApplyReport`], [`Change`],
//! [`ExportOptions`], [`ArchiveStream`]: `storage-core`'s, re-exported here), any backend's
//! layout, mounts, or the catalog.
//!
//! ```
//! use tar_engine::{EntrySink, Entry, IngestOptions, Written, ingest};
//! struct Names(Vec<Vec<u8>>);
//! impl EntrySink for Names {
//!     type Error = storage_core::Error;
//!     fn create(&mut self, e: &Entry, data: &mut dyn std::io::Read, _: &Written)
//!         -> storage_core::Result<bool> {
//!         std::io::copy(data, &mut std::io::sink()).ok();
//!         self.0.push(e.path.clone());
//!         Ok(true)
//!     }
//!     fn whiteout(&mut self, _: &Entry, _: &Written) -> storage_core::Result<()> { Ok(()) }
//!     fn finish(&mut self) -> storage_core::Result<()> { Ok(()) }
//! }
//! let mut b = tar::Builder::new(Vec::new());
//! let mut h = tar::Header::new_gnu();
//! h.set_size(2);
//! h.set_mode(0o644);
//! h.set_uid(0);
//! h.set_gid(0);
//! b.append_data(&mut h, "./a//b", &b"hi"[..]).unwrap();
//! let tar = b.into_inner().unwrap();
//! let mut names = Names(Vec::new());
//! let op = storage_core::Op::new("example");
//! let report = ingest(&op, &tar[..], IngestOptions::default(), &mut names).unwrap();
//! assert_eq!(names.0, vec![b"a/b".to_vec()]);
//! assert_eq!(report.entries, 1);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod apply;
pub mod changes;
pub mod confine;
pub mod copy;
pub mod cs_split;
pub mod entry;
pub mod export;
pub mod ingest;
pub mod input;
pub mod override_stat;
pub mod sparse;
pub mod split;
pub mod tree;

pub use apply::{ApplyOptions, Ownership, WhiteoutMode, apply_tar};
pub use changes::{compare_trees, layer_changes, stack_changes};
pub use copy::copy_tree;
pub use entry::Written;
pub use export::{TarWriter, write_changes, write_layer};
pub use ingest::{Entry, EntrySink, IngestOptions, Kind, Meta, Segment, Time, ingest};
pub use input::{TarInput, read_tar};
pub use override_stat::{
    FUSE_OVERLAYFS_STAT_XATTR, OVERRIDE_STAT_XATTR, OverrideKind, OverrideStat, RecordOn,
};
pub use split::{reassemble, write_layer_exact};
pub use storage_core::archive::changes_size;
pub use storage_core::archive::{
    ApplyReport, ArchiveStream, Change, ChangeKind, Compression, ExportOptions,
};
