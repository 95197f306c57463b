//! Layers: import, create, apply, mount, diff and delete, with the catalog and the driver
//! in step.

use std::path::PathBuf;

use storage_core::Report;
use storage_core::archive::{ApplyReport, ArchiveStream, Change, ExportOptions};
use storage_core::driver::{CreateOpts, DiffOpts, LayerDisk, MountOpts, TarReader};
use storage_core::error::{Error, ObjectKind, Result};
use storage_core::id::{random_id, validate_id};
use storage_core::op::Op;
use storage_core::run_root::RunLock;

use crate::db::{self, LayerDigests, LayerRecord, Sql, containers, image_stores, images, layers};
use crate::store::big_data::big_data_lock;
use crate::store::{Store, join_error, layer_lock};

/// A layer recorded incomplete and created by the driver, whose import lock is held.
pub(crate) struct NewLayer {
    pub(crate) id: String,
    pub(crate) parent: Option<String>,
    _lock: RunLock,
}

/// Checks the rules that keep a layer from being deleted; runs inside the deleting
/// transaction so nothing can start using the layer between the check and the mark.
pub(crate) fn check_unused(sql: &Sql<'_>, id: &str, removing: &[String]) -> Result<()> {
    let children: Vec<String> = layers::children(sql, id)?
        .into_iter()
        .filter(|c| !removing.contains(c))
        .collect();
    if !children.is_empty() {
        return Err(Error::LayerHasChildren {
            id: id.to_owned(),
            children,
        });
    }
    let mut users = images::with_top_layer(sql, id)?;
    if let Some((store, image)) = image_stores::image_of_layer(sql, id)? {
        users.push(format!("{store}/{image} (image store)"));
    }
    if !users.is_empty() {
        return Err(Error::LayerUsedByImage {
            id: id.to_owned(),
            images: users,
        });
    }
    if let Some(container) = containers::with_layer(sql, id)? {
        return Err(Error::LayerUsedByContainer {
            id: id.to_owned(),
            container,
        });
    }
    Ok(())
}

/// Where a new layer goes: its id (random when `None`; else 64 lowercase hex digits,
/// `AlreadyExists` when taken), its parent and its names.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerSpec<'a> {
    /// The id asked for.
    pub id: Option<&'a str>,
    /// The parent layer (id, name or unique prefix; an additional store's too).
    pub parent: Option<&'a str>,
    /// Names for it.
    pub names: &'a [String],
    /// `sha256:<hex>` its uncompressed tar must have (an image config's `diff_id`): an
    /// import whose tar differs fails with `DigestMismatch` and is never completed, so no
    /// other content ever holds the id chosen for this tar.
    pub tar_digest: Option<&'a str>,
}

impl Store {
    /// Every complete layer, oldest first, then those of the additional stores.
    pub async fn layers(&self) -> Result<Vec<LayerRecord>> {
        let mut all = self.read(layers::list).await?;
        all.extend(self.foreign_layers().await?);
        Ok(all)
    }

    /// A layer by id, name or unique id prefix: this store's, or an additional store's.
    pub async fn layer(&self, key: &str) -> Result<LayerRecord> {
        let k = key.to_owned();
        match self.read(move |sql| layers::get(sql, &k)).await {
            Err(e @ Error::NotFound { .. }) => Ok(self.foreign_layer(key).await?.ok_or(e)?),
            other => other,
        }
    }

    /// How deep the chain from layer `key` down is (the layer counted), looked at no
    /// further than `limit` layers: a result of `limit` means "`limit` or more". Layers of
    /// additional stores count too.
    pub async fn chain_depth(&self, key: &str, limit: usize) -> Result<usize> {
        let top = self.layer(key).await?;
        let mut depth = 0;
        let mut next = Some(top.id);
        while let Some(id) = next.take() {
            if depth >= limit {
                break;
            }
            let left = limit - depth;
            let own = id.clone();
            let (walked, beyond) = self
                .read(move |sql| layers::chain_depth(sql, &own, left))
                .await?;
            if walked > 0 {
                depth += walked;
                next = beyond;
            } else {
                // Not in this catalog: an additional store's layer, one step at a time.
                depth += 1;
                next = self.layer(&id).await?.parent;
            }
        }
        Ok(depth.min(limit))
    }

    /// The ordered disk files of layer `key` (or a container's layer), topmost first, for
    /// a runtime that hands them to a VM: see [`LayerDriver::disks`].
    pub async fn layer_disks(&self, op: &Op, key: &str) -> Result<Vec<LayerDisk>> {
        let layer = self.layer(key).await?;
        self.driver().disks(op, &layer.id).await
    }

    /// This store's own layer `key`: `Unsupported` for an additional store's.
    pub(crate) async fn own_layer(&self, key: &str) -> Result<LayerRecord> {
        let layer = self.layer(key).await?;
        if layer.read_only {
            return Err(self.read_only_error(ObjectKind::Layer, &layer.id));
        }
        Ok(layer)
    }

    /// Records a new layer incomplete and has the driver create it. On failure nothing
    /// of it remains.
    pub(crate) async fn begin_layer(
        &self,
        op: &Op,
        id: Option<&str>,
        parent: Option<&str>,
        names: &[String],
        read_write: bool,
    ) -> Result<NewLayer> {
        let id = match id {
            Some(i) => {
                validate_id(ObjectKind::Layer, i)?;
                i.to_owned()
            }
            None => random_id()?,
        };
        let lock = self.lock(&layer_lock(&id)).await?;
        // A parent in a read-only additional store cannot go away under us.
        let foreign = match parent {
            Some(p) if !self.additional.is_empty() => self.foreign_layer(p).await?.map(|l| l.id),
            _ => None,
        };
        let (i, p, n) = (id.clone(), parent.map(str::to_owned), names.to_vec());
        let parent = self
            .write(move |sql| {
                // A parent of this store is resolved in the same transaction that records
                // the child, so a concurrent delete cannot remove it in between.
                let parent = match p {
                    Some(p) => match db::names::resolve(sql, ObjectKind::Layer, &p) {
                        Err(Error::NotFound { .. }) if foreign.is_some() => foreign,
                        other => Some(other?),
                    },
                    None => None,
                };
                layers::insert(sql, &i, parent.as_deref(), &n, read_write)?;
                Ok(parent)
            })
            .await?;
        let create = if read_write {
            self.driver
                .create_read_write(op, &id, parent.as_deref(), &CreateOpts::default())
                .await
        } else {
            self.driver
                .create(op, &id, parent.as_deref(), &CreateOpts::default())
                .await
        };
        if let Err(e) = create {
            return Err(self.abandon_layer(op, &id, e).await);
        }
        Ok(NewLayer {
            id,
            parent,
            _lock: lock,
        })
    }

    /// Marks a new layer complete, and runs `also` in the same transaction (a container
    /// row, a store image row). On failure the layer is discarded.
    pub(crate) async fn finish_layer(
        &self,
        op: &Op,
        layer: NewLayer,
        digests: LayerDigests,
        also: impl FnOnce(&Sql<'_>, &str) -> Result<()> + Send + 'static,
    ) -> Result<LayerRecord> {
        let id = layer.id.clone();
        let committed = self
            .write(move |sql| {
                layers::complete(sql, &id, &digests)?;
                also(sql, &id)?;
                layers::get(sql, &id)
            })
            .await;
        match committed {
            Ok(record) => Ok(record),
            Err(e) => Err(self.abandon_layer(op, &layer.id, e).await),
        }
    }

    /// Discards a new layer after `cause` made its creation fail, and returns `cause`:
    /// that is what the caller reports. When discarding fails too (the disk went
    /// read-only under the failure, say), the layer stays incomplete for the next open's
    /// recovery, and the second failure is logged, not put in the first one's place.
    pub(crate) async fn abandon_layer(&self, op: &Op, id: &str, cause: Error) -> Error {
        if let Err(e) = self.discard_layer(op, id).await {
            tracing::warn!(layer = %id, "left incomplete for recovery: {}", Report(&e));
        }
        cause
    }

    /// Removes a layer's data and record (the caller holds its lock, and the record is
    /// incomplete).
    pub(crate) async fn discard_layer(&self, op: &Op, id: &str) -> Result<()> {
        match self.driver.remove(op, id).await {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let big = self.root.join(db::big_data::dir(ObjectKind::Layer, id));
        let _big_data = self.lock(&big_data_lock(ObjectKind::Layer, id)).await?;
        tokio::task::spawn_blocking(move || super::remove_tree(&big))
            .await
            .map_err(join_error)??;
        let owned = id.to_owned();
        self.write(move |sql| layers::delete(sql, &owned)).await?;
        self.run.forget_lock(&layer_lock(id));
        Ok(())
    }

    /// Creates an empty layer on `parent` (a read-write one for a container).
    pub async fn create_layer(
        &self,
        op: &Op,
        parent: Option<&str>,
        names: &[String],
        read_write: bool,
    ) -> Result<LayerRecord> {
        let layer = self
            .begin_layer(op, None, parent, names, read_write)
            .await?;
        self.finish_layer(op, layer, LayerDigests::default(), |_, _| Ok(()))
            .await
    }

    /// Creates a layer on `parent` from a tar stream. On any failure nothing of the layer
    /// remains.
    pub async fn import_layer(
        &self,
        op: &Op,
        parent: Option<&str>,
        names: &[String],
        tar: TarReader,
        expected_digest: Option<String>,
    ) -> Result<(LayerRecord, ApplyReport)> {
        let spec = LayerSpec {
            parent,
            names,
            ..LayerSpec::default()
        };
        self.import_layer_as(op, spec, tar, expected_digest).await
    }

    /// [`import_layer`](Self::import_layer), the new layer's id chosen by the caller
    /// (64 lowercase hex digits; `AlreadyExists` when taken), as containers-storage's
    /// `import-layer --id` and containers/image's layer ids (a chain of `diff_id`s) have it.
    pub async fn import_layer_as(
        &self,
        op: &Op,
        spec: LayerSpec<'_>,
        tar: TarReader,
        expected_digest: Option<String>,
    ) -> Result<(LayerRecord, ApplyReport)> {
        self.import_layer_and(op, spec, tar, expected_digest, |_, _| Ok(()))
            .await
    }

    /// [`import_layer`](Self::import_layer), running `also` in the transaction that
    /// completes the layer.
    pub(crate) async fn import_layer_and(
        &self,
        op: &Op,
        spec: LayerSpec<'_>,
        tar: TarReader,
        expected_digest: Option<String>,
        also: impl FnOnce(&Sql<'_>, &str) -> Result<()> + Send + 'static,
    ) -> Result<(LayerRecord, ApplyReport)> {
        let layer = self
            .begin_layer(op, spec.id, spec.parent, spec.names, false)
            .await?;
        let opts = DiffOpts {
            expected_digest,
            ..Default::default()
        };
        let report = match self
            .driver
            .apply_diff(op, &layer.id, layer.parent.as_deref(), tar, &opts)
            .await
        {
            Ok(r) => r,
            Err(e) => return Err(self.abandon_layer(op, &layer.id, e).await),
        };
        if let Some(expected) = spec.tar_digest
            && report.tar_digest.as_deref() != Some(expected)
        {
            let mismatch = Error::DigestMismatch {
                object: format!("the tar of layer {}", layer.id),
                expected: expected.to_owned(),
                actual: report.tar_digest.clone().unwrap_or_default(),
            };
            return Err(self.abandon_layer(op, &layer.id, mismatch).await);
        }
        let digests = LayerDigests::of(&report);
        let record = self.finish_layer(op, layer, digests, also).await?;
        Ok((record, report))
    }

    /// Applies a tar stream to an existing layer (`applydiff`).
    pub async fn apply_diff(
        &self,
        op: &Op,
        id: &str,
        tar: TarReader,
        expected_digest: Option<String>,
    ) -> Result<ApplyReport> {
        let layer = self.own_layer(id).await?;
        let _lock = self.lock(&layer_lock(&layer.id)).await?;
        let opts = DiffOpts {
            expected_digest,
            ..Default::default()
        };
        let report = self
            .driver
            .apply_diff(op, &layer.id, layer.parent.as_deref(), tar, &opts)
            .await?;
        // An image layer records what was applied, as containers-storage does. A
        // container's layer goes on changing through its mount: a digest would not stay
        // true.
        if !layer.read_write {
            let digests = LayerDigests::of(&report);
            let id = layer.id.clone();
            self.write(move |sql| layers::record_applied(sql, &id, &digests))
                .await?;
        }
        Ok(report)
    }

    /// Deletes a layer: refused while it has children, is an image's top layer or a
    /// container's layer, or is mounted.
    pub async fn delete_layer(&self, op: &Op, id: &str) -> Result<()> {
        self.delete_layer_with(op, id, |_, _| Ok(())).await
    }

    /// Deletes a layer after `first` has run in the transaction that checks the rules and
    /// marks the layer (removing the record that pointed at it, for instance), so that a
    /// crash never leaves a complete layer nothing points at.
    pub(crate) async fn delete_layer_with(
        &self,
        op: &Op,
        id: &str,
        first: impl FnOnce(&Sql<'_>, &str) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let layer = self.own_layer(id).await?;
        let _lock = self.lock(&layer_lock(&layer.id)).await?;
        let mounts = self.driver.mount_count(op, &layer.id).await?;
        if mounts > 0 {
            return Err(Error::LayerInUse {
                id: layer.id,
                mounts,
            });
        }
        let i = layer.id.clone();
        self.write(move |sql| {
            // Re-resolve: it may have gone while we waited for the lock.
            let i = db::names::resolve(sql, ObjectKind::Layer, &i)?;
            first(sql, &i)?;
            check_unused(sql, &i, &[])?;
            layers::mark_incomplete(sql, &i)
        })
        .await?;
        self.discard_layer(op, &layer.id).await
    }

    /// Mounts a layer and returns the merged tree's path.
    pub async fn mount(&self, op: &Op, id: &str, read_only: bool) -> Result<PathBuf> {
        let layer = self.layer(id).await?;
        if layer.read_only {
            // Its directories are another store's: a mount would write there.
            return Err(self.read_only_error(ObjectKind::Layer, &layer.id));
        }
        // Under the layer's lock, so that a delete cannot slip between lookup and mount.
        let _lock = self.lock(&layer_lock(&layer.id)).await?;
        self.layer(&layer.id).await?;
        self.driver
            .get(op, &layer.id, &MountOpts { read_only })
            .await
    }

    /// Releases one mount of a layer.
    pub async fn unmount(&self, op: &Op, id: &str) -> Result<()> {
        let layer = self.layer(id).await?;
        self.driver.put(op, &layer.id).await
    }

    /// Resolves the layer and what to compare it with: `from`, or its parent by default.
    async fn pair(&self, id: &str, from: Option<&str>) -> Result<(String, Option<String>)> {
        let layer = self.layer(id).await?;
        let from = match from {
            Some(f) => Some(self.layer(f).await?.id),
            None => layer.parent.clone(),
        };
        Ok((layer.id, from))
    }

    /// The layer's changes over `from` (default: its parent) as a tar stream.
    pub async fn diff(
        &self,
        op: &Op,
        id: &str,
        from: Option<&str>,
        opts: &ExportOptions,
    ) -> Result<ArchiveStream> {
        let (id, from) = self.pair(id, from).await?;
        self.driver.diff(op, &id, from.as_deref(), opts).await
    }

    /// The layer's changes over `from` (default: its parent).
    pub async fn changes(&self, op: &Op, id: &str, from: Option<&str>) -> Result<Vec<Change>> {
        let (id, from) = self.pair(id, from).await?;
        self.driver.changes(op, &id, from.as_deref()).await
    }

    /// The size of the layer's changes over `from` (default: its parent).
    pub async fn diff_size(&self, op: &Op, id: &str, from: Option<&str>) -> Result<u64> {
        let (id, from) = self.pair(id, from).await?;
        self.driver.diff_size(op, &id, from.as_deref()).await
    }
}
