//! The port layer's contract: importers, exporters, resolvers, data handles and volumes.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;

use crate::archive::{ApplyReport, ArchiveStream};
use crate::driver::TarReader;
use crate::error::Result;
use crate::file_stat::FileStat;
use crate::filter::FilterSpec;
use crate::object_url::ObjectUrl;
use crate::op::Op;

/// Writes tar streams into a store's objects.
#[async_trait]
pub trait Importer: Send + Sync {
    /// Applies `tar` to the object `id`, filtered and renamed by `spec`.
    async fn import(
        &self,
        op: &Op,
        id: &str,
        spec: &FilterSpec,
        tar: TarReader,
    ) -> Result<ApplyReport>;

    /// A handle that holds the object open for writing until closed.
    async fn new_data_sink(&self, op: &Op, id: &str) -> Result<Box<dyn DataSink>>;
}

/// Reads a store's objects out as tar streams.
#[async_trait]
pub trait Exporter: Send + Sync {
    /// The object `id` as a tar stream: whole, or its difference from `ancestor` (adds,
    /// changes, `.wh.` deletions). With `data = false`, headers only, each with its change
    /// type.
    async fn export(
        &self,
        op: &Op,
        id: &str,
        ancestor: Option<&str>,
        spec: &FilterSpec,
        data: bool,
    ) -> Result<ArchiveStream>;

    /// A handle that holds the object open for reading until closed.
    async fn new_data_source(&self, op: &Op, id: &str) -> Result<Box<dyn DataSource>>;
}

/// Maps objects to URLs and tells who holds them.
#[async_trait]
pub trait Resolver: Send + Sync {
    /// The object's URL (`/storage/images/<store>/<id>` or `/storage/volumes/<store>/<id>`).
    async fn url(&self, op: &Op, id: &str) -> Result<ObjectUrl>;

    /// Who holds the object now (mount points or sessions); empty when nobody does.
    async fn owners(&self, op: &Op, url: &ObjectUrl) -> Result<Vec<String>>;
}

/// A single-use handle on an object opened for reading (a mount, a session).
#[async_trait]
pub trait DataSource: Send {
    /// The object's contents as a tar stream.
    async fn export(&mut self, op: &Op, spec: &FilterSpec, data: bool) -> Result<ArchiveStream>;

    /// The metadata of `path` inside the object (`/` is its root), without following a
    /// symlink at the end and without leaving the object by `..` or a symlink on the
    /// way. `NotFound` when nothing is there.
    async fn stat(&mut self, op: &Op, path: &str) -> Result<FileStat>;

    /// Where the data is (a mount point or a URL-like location).
    fn source(&self) -> &Path;

    /// Releases what the handle holds.
    async fn close(self: Box<Self>, op: &Op) -> Result<()>;
}

/// A single-use handle on an object opened for writing.
#[async_trait]
pub trait DataSink: Send {
    /// Applies a tar stream.
    async fn import(&mut self, op: &Op, spec: &FilterSpec, tar: TarReader) -> Result<ApplyReport>;

    /// Where the data goes.
    fn sink(&self) -> &Path;

    /// Releases what the handle holds.
    async fn close(self: Box<Self>, op: &Op) -> Result<()>;
}

/// A volume as a store lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Volume {
    /// The volume's id.
    pub id: String,
    /// The store's name.
    pub store: String,
    /// The info map given at creation.
    pub info: BTreeMap<String, Vec<u8>>,
}

/// A store of volumes.
#[async_trait]
pub trait VolumeStorer: Importer + Exporter + Resolver {
    /// Creates a volume. `VolumeExists` when the id is taken.
    async fn volume_create(
        &self,
        op: &Op,
        id: &str,
        capacity_bytes: u64,
        info: BTreeMap<String, Vec<u8>>,
    ) -> Result<Volume>;

    /// Removes a volume's data and metadata. `VolumeInUse` while it is held.
    async fn volume_destroy(&self, op: &Op, id: &str) -> Result<()>;

    /// Every volume; an entry that cannot be read is an `Err` in the list, not a failure
    /// of the listing.
    async fn volumes_list(&self, op: &Op) -> Result<Vec<Result<Volume>>>;
}
