//! `BlockingDriver`: the graph-driver contract written as blocking code.
//!
//! A backend's layer work is file-system work: creating directories, applying tars,
//! mounting, walking trees. A driver implements [`BlockingDriver`] with plain functions,
//! and every such driver is a [`LayerDriver`] that runs each call on tokio's blocking pool
//! (a clone of the driver, and owned copies of the arguments, move there), so no backend
//! forwards the async contract to its blocking code by hand, and none blocks the runtime.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::archive::{ApplyReport, ArchiveStream, Change, ExportOptions, changes_size};
use crate::driver::{
    CreateOpts, DiffOpts, LayerDisk, LayerDriver, MountOpts, MountProblem, TarReader,
};
use crate::error::Result;
use crate::op::{Op, blocking};

/// A layer driver as blocking functions; see [`LayerDriver`] for what each call does.
/// Implementations are cheap to clone (an `Arc` of their state): each call runs on a
/// clone.
pub trait BlockingDriver: Clone + Send + Sync + 'static {
    /// The backend's name (`overlay`, `vmdk`, …).
    fn name(&self) -> &'static str;

    /// [`LayerDriver::create`].
    fn create(&self, op: &Op, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()>;

    /// [`LayerDriver::create_read_write`].
    fn create_read_write(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
    ) -> Result<()> {
        self.create(op, id, parent, opts)
    }

    /// [`LayerDriver::remove`].
    fn remove(&self, op: &Op, id: &str) -> Result<()>;

    /// [`LayerDriver::get`].
    fn get(&self, op: &Op, id: &str, opts: &MountOpts) -> Result<PathBuf>;

    /// [`LayerDriver::put`].
    fn put(&self, op: &Op, id: &str) -> Result<()>;

    /// [`LayerDriver::mount_count`].
    fn mount_count(&self, op: &Op, id: &str) -> Result<u64>;

    /// [`LayerDriver::exists`].
    fn exists(&self, op: &Op, id: &str) -> Result<bool>;

    /// [`LayerDriver::apply_diff`], the tar read as a blocking stream.
    fn apply_diff(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        diff: Box<dyn Read + Send>,
        opts: &DiffOpts,
    ) -> Result<ApplyReport>;

    /// [`LayerDriver::diff`]: checks what it can before the stream starts, then writes it
    /// from a thread of its own ([`ArchiveStream::spawn`]).
    fn diff(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &ExportOptions,
    ) -> Result<ArchiveStream>;

    /// [`LayerDriver::changes`].
    fn changes(&self, op: &Op, id: &str, parent: Option<&str>) -> Result<Vec<Change>>;

    /// [`LayerDriver::diff_size`]: by default, the file data the changes carry.
    fn diff_size(&self, op: &Op, id: &str, parent: Option<&str>) -> Result<u64> {
        Ok(changes_size(&self.changes(op, id, parent)?))
    }

    /// [`LayerDriver::status`].
    fn status(&self, op: &Op) -> Result<Vec<(String, String)>>;

    /// [`LayerDriver::metadata`].
    fn metadata(&self, op: &Op, id: &str) -> Result<BTreeMap<String, String>>;

    /// [`LayerDriver::cleanup`].
    fn cleanup(&self, op: &Op) -> Result<()>;

    /// [`LayerDriver::check_mounts`]: none, for a driver that mounts nothing.
    fn check_mounts(&self, _op: &Op, _repair: bool) -> Result<Vec<MountProblem>> {
        Ok(Vec::new())
    }

    /// [`LayerDriver::disks`]: unsupported, for a driver whose layers are not disks.
    fn disks(&self, _op: &Op, id: &str) -> Result<Vec<LayerDisk>> {
        Err(crate::Error::Unsupported {
            what: format!("the disks of layer {id}"),
            reason: format!(
                "the {} driver keeps no layer on a disk",
                BlockingDriver::name(self)
            ),
        })
    }

    /// [`LayerDriver::stored_layers`]: unsupported, for a driver that cannot list them.
    fn stored_layers(&self, _op: &Op) -> Result<Vec<String>> {
        Err(crate::Error::Unsupported {
            what: format!(
                "listing the layers stored by the {} driver",
                BlockingDriver::name(self)
            ),
            reason: "the driver cannot list what it holds".into(),
        })
    }
}

/// Owned copies of a call's arguments, to move onto the blocking pool.
fn owned(id: &str, parent: Option<&str>) -> (String, Option<String>) {
    (id.to_owned(), parent.map(str::to_owned))
}

/// Runs `f` on a clone of `driver` on the blocking pool; a task that panicked is an error
/// naming the driver.
async fn run<D: BlockingDriver, T: Send + 'static>(
    driver: &D,
    f: impl FnOnce(D) -> Result<T> + Send + 'static,
) -> Result<T> {
    let d = driver.clone();
    let task = format!("{} driver task", BlockingDriver::name(driver));
    blocking(&task, move || f(d)).await
}

#[async_trait]
impl<D: BlockingDriver> LayerDriver for D {
    fn name(&self) -> &'static str {
        BlockingDriver::name(self)
    }

    async fn create(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
    ) -> Result<()> {
        let (op, (id, parent), opts) = (op.clone(), owned(id, parent), opts.clone());
        run(self, move |d| {
            BlockingDriver::create(&d, &op, &id, parent.as_deref(), &opts)
        })
        .await
    }

    async fn create_read_write(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
    ) -> Result<()> {
        let (op, (id, parent), opts) = (op.clone(), owned(id, parent), opts.clone());
        run(self, move |d| {
            BlockingDriver::create_read_write(&d, &op, &id, parent.as_deref(), &opts)
        })
        .await
    }

    async fn remove(&self, op: &Op, id: &str) -> Result<()> {
        let (op, id) = (op.clone(), id.to_owned());
        run(self, move |d| BlockingDriver::remove(&d, &op, &id)).await
    }

    async fn get(&self, op: &Op, id: &str, opts: &MountOpts) -> Result<PathBuf> {
        let (op, id, opts) = (op.clone(), id.to_owned(), opts.clone());
        run(self, move |d| BlockingDriver::get(&d, &op, &id, &opts)).await
    }

    async fn put(&self, op: &Op, id: &str) -> Result<()> {
        let (op, id) = (op.clone(), id.to_owned());
        run(self, move |d| BlockingDriver::put(&d, &op, &id)).await
    }

    async fn mount_count(&self, op: &Op, id: &str) -> Result<u64> {
        let (op, id) = (op.clone(), id.to_owned());
        run(self, move |d| BlockingDriver::mount_count(&d, &op, &id)).await
    }

    async fn exists(&self, op: &Op, id: &str) -> Result<bool> {
        let (op, id) = (op.clone(), id.to_owned());
        run(self, move |d| BlockingDriver::exists(&d, &op, &id)).await
    }

    async fn apply_diff(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        diff: TarReader,
        opts: &DiffOpts,
    ) -> Result<ApplyReport> {
        let (op, (id, parent), opts) = (op.clone(), owned(id, parent), opts.clone());
        // Read on the blocking thread, which waits on the async source as it goes.
        let input = Box::new(tokio_util::io::SyncIoBridge::new(diff));
        run(self, move |d| {
            BlockingDriver::apply_diff(&d, &op, &id, parent.as_deref(), input, &opts)
        })
        .await
    }

    async fn diff(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &ExportOptions,
    ) -> Result<ArchiveStream> {
        let (op, (id, parent), opts) = (op.clone(), owned(id, parent), opts.clone());
        run(self, move |d| {
            BlockingDriver::diff(&d, &op, &id, parent.as_deref(), &opts)
        })
        .await
    }

    async fn changes(&self, op: &Op, id: &str, parent: Option<&str>) -> Result<Vec<Change>> {
        let (op, (id, parent)) = (op.clone(), owned(id, parent));
        run(self, move |d| {
            BlockingDriver::changes(&d, &op, &id, parent.as_deref())
        })
        .await
    }

    async fn diff_size(&self, op: &Op, id: &str, parent: Option<&str>) -> Result<u64> {
        let (op, (id, parent)) = (op.clone(), owned(id, parent));
        run(self, move |d| {
            BlockingDriver::diff_size(&d, &op, &id, parent.as_deref())
        })
        .await
    }

    async fn status(&self, op: &Op) -> Result<Vec<(String, String)>> {
        let op = op.clone();
        run(self, move |d| BlockingDriver::status(&d, &op)).await
    }

    async fn metadata(&self, op: &Op, id: &str) -> Result<BTreeMap<String, String>> {
        let (op, id) = (op.clone(), id.to_owned());
        run(self, move |d| BlockingDriver::metadata(&d, &op, &id)).await
    }

    async fn cleanup(&self, op: &Op) -> Result<()> {
        let op = op.clone();
        run(self, move |d| BlockingDriver::cleanup(&d, &op)).await
    }

    async fn check_mounts(&self, op: &Op, repair: bool) -> Result<Vec<MountProblem>> {
        let op = op.clone();
        run(self, move |d| BlockingDriver::check_mounts(&d, &op, repair)).await
    }

    async fn disks(&self, op: &Op, id: &str) -> Result<Vec<LayerDisk>> {
        let (op, id) = (op.clone(), id.to_owned());
        run(self, move |d| BlockingDriver::disks(&d, &op, &id)).await
    }

    async fn stored_layers(&self, op: &Op) -> Result<Vec<String>> {
        let op = op.clone();
        run(self, move |d| BlockingDriver::stored_layers(&d, &op)).await
    }
}
