//! The archive engine every backend shares: tar streams in and out of directory trees.
//!
//! - [`apply_tar`] applies a plain, gzip or zstd tar stream to a directory, confined to it
//!   ([`confine`]), keeping owners, modes, times, xattrs, links and devices, applying OCI
//!   whiteouts as deletions or as overlay markers ([`WhiteoutMode`]), checking the digest
//!   of what was received.
//! - [`layer_changes`] and [`compare_trees`] list what changed, and [`write_changes`]
//!   writes them as a deterministic tar (whiteouts back as `.wh.` files), honouring a
//!   [`FilterSpec`](crate::FilterSpec) and header-only exports.
//! - [`ArchiveStream`] carries a tar produced by blocking code to an async reader.

pub mod apply;
pub mod changes;
pub mod confine;
pub mod entry;
pub mod export;
pub mod ingest;
pub mod input;
pub mod stream;
pub mod tree;

pub use apply::{ApplyOptions, Ownership, WhiteoutMode, apply_tar};
pub use changes::{Change, ChangeKind, changes_size, compare_trees, layer_changes};
pub use export::{ExportOptions, TarWriter, write_changes, write_layer};
pub use ingest::{ApplyReport, Entry, EntrySink, IngestOptions, Kind, Meta, Time, ingest};
pub use input::Compression;
pub use input::{TarInput, read_tar};
pub use stream::ArchiveStream;
