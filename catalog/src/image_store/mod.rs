//! The port layer's face: image stores, `write_image`, and the caches in front of them.
//!
//! An image store is a namespace of images rooted at a `scratch` image, as in the
//! vSphere Integrated Containers port layer. Every image is one catalog layer whose parent
//! is its parent image's layer, so the tree of a store is a tree of layers, mounted and
//! diffed by whichever [`LayerDriver`](storage_core::LayerDriver) the
//! [`Store`](crate::Store) has.
//!
//! - [`ImageStorer`] is the persistent face: stores, `write_image`, `get_image`,
//!   `list_images`, `delete_image`. [`Store`](crate::Store) implements it over the
//!   catalog.
//! - [`NameLookupCache`] is what callers use: an in-memory index over any `ImageStorer`,
//!   rebuilt on open, with `delete_branch`.
//! - [`VolumeLookupCache`] does the same for volumes across volume stores, and refuses to
//!   destroy a volume a container uses.

mod name_cache;
mod scratch;
mod storer;
mod volume_cache;

use std::collections::BTreeMap;

use async_trait::async_trait;
use storage_core::driver::TarReader;
use storage_core::error::Result;
use storage_core::object_url::ObjectUrl;
use storage_core::op::Op;

pub use crate::db::StoreImageRecord as Image;
pub use name_cache::NameLookupCache;
pub use scratch::SCRATCH;
pub use volume_cache::VolumeLookupCache;

/// What `write_image` needs besides the tar stream.
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    /// The image's id within its store.
    pub id: String,
    /// The parent image's id (`scratch` for a base image).
    pub parent: String,
    /// Metadata kept with the image.
    pub metadata: BTreeMap<String, Vec<u8>>,
    /// `sha256:<hex>` the tar stream must have.
    pub sum: Option<String>,
}

/// The port layer's image storage.
#[async_trait]
pub trait ImageStorer: Send + Sync {
    /// Creates an image store with its `scratch` root. `AlreadyExists` if it exists.
    async fn create_image_store(&self, op: &Op, name: &str) -> Result<ObjectUrl>;

    /// The URL of an existing image store. `StoreNotFound` if there is none.
    async fn get_image_store(&self, op: &Op, name: &str) -> Result<ObjectUrl>;

    /// Every image store.
    async fn list_image_stores(&self, op: &Op) -> Result<Vec<ObjectUrl>>;

    /// Deletes an image store; refused (`ImageInUse`) while it holds images.
    async fn delete_image_store(&self, op: &Op, name: &str) -> Result<()>;

    /// Writes an image from a tar stream onto its parent. An existing id answers the
    /// existing image; a sum mismatch leaves nothing behind.
    async fn write_image(
        &self,
        op: &Op,
        store: &str,
        image: NewImage,
        tar: TarReader,
    ) -> Result<Image>;

    /// One image (scratch included).
    async fn get_image(&self, op: &Op, store: &str, id: &str) -> Result<Image>;

    /// The images of a store with these ids, or all of them for an empty list; scratch
    /// is never listed.
    async fn list_images(&self, op: &Op, store: &str, ids: &[String]) -> Result<Vec<Image>>;

    /// Deletes an image; `ImageInUse` while it has children or a container uses it.
    /// Scratch is never deleted.
    async fn delete_image(&self, op: &Op, store: &str, id: &str) -> Result<()>;
}
