//! # image-transfer: whole images in and out of strata's reach
//!
//! This crate owns the formats images travel in: OCI image layouts (a directory,
//! `oci:DIR[:TAG|@DIGEST]`, or one in a tar, `oci-archive:FILE[:TAG]`) and what
//! `docker save` writes (`docker-archive:FILE[:REF]`). It parses transport references
//! ([`SourceRef`], [`DestRef`]), reads an image's index, manifest and config with the
//! `oci-spec` types, picks a platform out of a multi-platform index, verifies every blob it
//! reads by size and sha256, and hands out where each layer blob lies ([`BlobLocation`]) so
//! the caller can stream it into a store. For a push it writes layouts ([`LayoutWriter`]):
//! blobs named by their digest (compressed as asked while hashed), `index.json`, and an
//! archive of them.
//!
//! It does not own layers, images or the catalog: what a layer blob becomes in a store,
//! which layers a store already holds and how a failed pull is undone are the caller's
//! (the `strata` CLI's `pull` and `push`). It decompresses nothing on the way in: the tar
//! engine takes gzip and zstd layers as they are and checks their digests itself.
//!
//! ```
//! use image_transfer::SourceRef;
//! let src: SourceRef = "oci:/tmp/layout:v1".parse().unwrap();
//! assert_eq!(src.to_string(), "oci:/tmp/layout:v1");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod blobs;
pub mod docker;
pub mod error;
pub mod oci;
pub mod push;
pub mod reference;

pub use blobs::{BlobLocation, Blobs, Digester, sha256_digest};
pub use error::{Error, Result};
pub use oci::{LayerBlob, Platform, SourceImage, open_source};
pub use push::{Compress, LayoutWriter, WrittenBlob, archive_layout};
pub use reference::{DestRef, SourceRef};

/// The annotation naming an image in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
