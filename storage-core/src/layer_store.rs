//! `LayerStore`: the catalog and a layer driver together, with the rules that keep them in
//! step.
//!
//! - An import records the layer `incomplete`, holds its import lock in the run root,
//!   creates and fills it through the driver, and marks it complete only after the data is
//!   durable. Any failure (bad digest, truncated or hostile archive, cancellation) removes
//!   the layer's data and record: nothing half-written stays.
//! - Opening a store removes incomplete layers whose import lock nobody holds (left by a
//!   crash), so no other process's import in progress is touched.
//! - Deletion refuses layers with children or mounts, then marks the record incomplete,
//!   removes the data, and removes the record.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::archive::{ApplyReport, ArchiveStream, Change, ExportOptions};
use crate::catalog::{Catalog, LayerDigests, LayerRecord};
use crate::driver::{CreateOpts, DiffOpts, LayerDriver, MountOpts, TarReader};
use crate::error::{Error, Result};
use crate::id::random_id;
use crate::op::Op;
use crate::run_root::{RunLock, RunRoot};

/// A store of layers: catalog plus driver.
pub struct LayerStore {
    root: PathBuf,
    catalog: Arc<Mutex<Catalog>>,
    driver: Arc<dyn LayerDriver>,
    run: RunRoot,
}

fn lock_name(id: &str) -> String {
    format!("layer-{id}")
}

impl LayerStore {
    /// Opens the store whose catalog lives in `root`, removing layers a crash left
    /// incomplete.
    pub async fn open(
        op: &Op,
        root: &Path,
        run: RunRoot,
        driver: Arc<dyn LayerDriver>,
    ) -> Result<Self> {
        let db = root.join("catalog.db");
        let dir = root.to_owned();
        let catalog = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io_path("create store root", &dir, e))?;
            Catalog::open(&db)
        })
        .await
        .map_err(join_error)??;
        let store = LayerStore {
            root: root.to_owned(),
            catalog: Arc::new(Mutex::new(catalog)),
            driver,
            run,
        };
        store.recover(op).await?;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The driver behind the store.
    pub fn driver(&self) -> &Arc<dyn LayerDriver> {
        &self.driver
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Catalog) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let catalog = self.catalog.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = catalog.lock().map_err(|_| Error::CorruptStore {
                path: PathBuf::new(),
                reason: "catalog lock poisoned by an earlier panic".into(),
            })?;
            f(&mut guard)
        })
        .await
        .map_err(join_error)?
    }

    async fn recover(&self, op: &Op) -> Result<()> {
        let stale = self.db(|c| c.incomplete_layers()).await?;
        for layer in stale {
            let Some(_lock) = self.run.try_lock(&lock_name(&layer.id))? else {
                continue; // another process is writing or deleting it
            };
            tracing::info!(layer = %layer.id, "removing a layer left incomplete");
            self.discard(op, &layer.id).await?;
        }
        Ok(())
    }

    /// Removes a layer's data and record (the caller holds its lock).
    async fn discard(&self, op: &Op, id: &str) -> Result<()> {
        match self.driver.remove(op, id).await {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let owned = id.to_owned();
        self.db(move |c| c.delete_layer(&owned)).await?;
        self.run.forget_lock(&lock_name(id));
        Ok(())
    }

    /// Every complete layer, oldest first.
    pub async fn layers(&self) -> Result<Vec<LayerRecord>> {
        self.db(|c| c.layers()).await
    }

    /// A layer by id, name or unique id prefix.
    pub async fn layer(&self, id_or_name: &str) -> Result<LayerRecord> {
        let key = id_or_name.to_owned();
        self.db(move |c| c.layer(&key)).await
    }

    async fn begin(
        &self,
        op: &Op,
        parent: Option<&str>,
        names: &[String],
        read_write: bool,
    ) -> Result<(String, Option<String>, RunLock)> {
        let parent = match parent {
            Some(p) => Some(self.layer(p).await?.id),
            None => None,
        };
        let id = random_id()?;
        let lock = self.run.lock(&lock_name(&id))?;
        let (i, p, n) = (id.clone(), parent.clone(), names.to_vec());
        self.db(move |c| c.create_layer(&i, p.as_deref(), &n, read_write))
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
            self.discard(op, &id).await?;
            return Err(e);
        }
        Ok((id, parent, lock))
    }

    /// Creates an empty layer on `parent` (a read-write one for a container).
    pub async fn create_layer(
        &self,
        op: &Op,
        parent: Option<&str>,
        names: &[String],
        read_write: bool,
    ) -> Result<LayerRecord> {
        let (id, _, _lock) = self.begin(op, parent, names, read_write).await?;
        let i = id.clone();
        self.db(move |c| c.complete_layer(&i, &LayerDigests::default()))
            .await?;
        self.layer(&id).await
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
        let (id, parent, _lock) = self.begin(op, parent, names, false).await?;
        let opts = DiffOpts {
            expected_digest,
            ..Default::default()
        };
        let report = match self
            .driver
            .apply_diff(op, &id, parent.as_deref(), tar, &opts)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.discard(op, &id).await?;
                return Err(e);
            }
        };
        let digests = LayerDigests {
            compressed_digest: Some(report.digest.clone()),
            compressed_size: Some(report.size),
            uncompressed_digest: Some(report.tar_digest.clone()),
            uncompressed_size: Some(report.tar_size),
        };
        let i = id.clone();
        self.db(move |c| c.complete_layer(&i, &digests)).await?;
        Ok((self.layer(&id).await?, report))
    }

    /// Applies a tar stream to an existing layer (`applydiff`).
    pub async fn apply_diff(
        &self,
        op: &Op,
        id: &str,
        tar: TarReader,
        expected_digest: Option<String>,
    ) -> Result<ApplyReport> {
        let layer = self.layer(id).await?;
        let _lock = self.run.lock(&lock_name(&layer.id))?;
        let opts = DiffOpts {
            expected_digest,
            ..Default::default()
        };
        self.driver
            .apply_diff(op, &layer.id, layer.parent.as_deref(), tar, &opts)
            .await
    }

    /// Deletes a layer: refused while it has children or is mounted.
    pub async fn delete_layer(&self, op: &Op, id: &str) -> Result<()> {
        let layer = self.layer(id).await?;
        let _lock = self.run.lock(&lock_name(&layer.id))?;
        let i = layer.id.clone();
        let children = self.db(move |c| c.children(&i)).await?;
        if !children.is_empty() {
            return Err(Error::LayerHasChildren {
                id: layer.id,
                children,
            });
        }
        let mounts = self.driver.mount_count(op, &layer.id).await?;
        if mounts > 0 {
            return Err(Error::LayerInUse {
                id: layer.id,
                mounts,
            });
        }
        let i = layer.id.clone();
        self.db(move |c| c.mark_incomplete(&i)).await?;
        self.discard(op, &layer.id).await
    }

    /// Mounts a layer and returns the merged tree's path.
    pub async fn mount(&self, op: &Op, id: &str, read_only: bool) -> Result<PathBuf> {
        let layer = self.layer(id).await?;
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

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::io("background task", std::io::Error::other(e))
}
