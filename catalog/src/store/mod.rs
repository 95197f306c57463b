//! `Store`: the catalog and a layer driver kept in step, with containers/storage's rules.
//!
//! This is the containers/storage face of strata: layers, images and containers with
//! names, metadata and big data, and the deletion rules that never remove what is in use.
//! The port layer's face ([`crate::image_store`]) sits on the same `Store`.
//!
//! Crash safety, in the order things happen:
//! - a layer is recorded `incomplete`, under its run-root lock, before the driver creates
//!   it; it becomes complete in one transaction after its data is durable, together with
//!   whatever points at it (a container's row, a store image's row);
//! - a deletion first marks (layers incomplete, files in `pending_removals`) in the same
//!   transaction that checks the rules, then removes data, then the records;
//! - opening a store finishes whatever a crash interrupted: incomplete layers and pending
//!   removals whose lock nobody holds are removed, children before parents.
//!
//! Every catalog call runs on the blocking pool; the catalog connection is one per
//! process, and SQLite serialises the processes. A command that only lists can open a
//! [`Listing`] instead, which needs neither a driver nor a runtime.

mod additional;
mod big_data;
mod check;
mod containers;
mod images;
mod layers;
mod listing;
mod maintenance;
mod migration;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use storage_core::Report;
use storage_core::driver::LayerDriver;
use storage_core::error::{Error, IoContext, Result};
use storage_core::op::Op;
use storage_core::run_root::{RunLock, RunRoot};

use crate::db::{self, Catalog, Sql};

pub use check::{CheckReport, Problem, ProblemKind};
pub use images::ImageDeletion;
pub use layers::LayerSpec;
pub use listing::Listing;
pub use migration::KeptLayer;

/// A store of layers, images and containers: catalog plus driver.
pub struct Store {
    root: PathBuf,
    catalog: Arc<Mutex<Catalog>>,
    driver: Arc<dyn LayerDriver>,
    run: RunRoot,
    additional: Vec<additional::ReadOnlyStore>,
    /// What the recovery at open could not finish (each left for the next open or for
    /// `check --repair`).
    recovery: Vec<Error>,
}

/// The run-root lock guarding a layer's data.
fn layer_lock(id: &str) -> String {
    format!("layer-{id}")
}

/// The run-root lock guarding a container's directories.
fn container_lock(id: &str) -> String {
    format!("container-{id}")
}

impl Store {
    /// Opens the store whose catalog lives in `root`, finishing whatever a crash left
    /// half-done.
    pub async fn open(
        op: &Op,
        root: &Path,
        run: RunRoot,
        driver: Arc<dyn LayerDriver>,
    ) -> Result<Self> {
        Self::open_with_additional(op, root, run, driver, &[]).await
    }

    /// Opens the store, with the read-only additional stores rooted at `additional`
    /// (their catalogs are opened read-only; their driver data is the driver's to find).
    pub async fn open_with_additional(
        op: &Op,
        root: &Path,
        run: RunRoot,
        driver: Arc<dyn LayerDriver>,
        additional: &[PathBuf],
    ) -> Result<Self> {
        let mut others = Vec::new();
        for r in additional {
            others.push(additional::ReadOnlyStore::open(r).await?);
        }
        let dir = root.to_owned();
        let catalog = tokio::task::spawn_blocking(move || Catalog::open_in(&dir))
            .await
            .map_err(join_error)??;
        let mut store = Store {
            root: root.to_owned(),
            catalog: Arc::new(Mutex::new(catalog)),
            driver,
            run,
            additional: others,
            recovery: Vec::new(),
        };
        store.recovery = store.recover(op).await;
        for e in &store.recovery {
            tracing::warn!(store = %store.root.display(), "recovery left work undone: {}", Report(e));
        }
        Ok(store)
    }

    /// What the recovery at open found it could not finish. A store whose recovery failed
    /// still opens: the rest of it works, and what is listed here stays marked for the
    /// next open (or `check --repair`) to retry.
    pub fn recovery_problems(&self) -> &[Error] {
        &self.recovery
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The driver behind the store.
    pub fn driver(&self) -> &Arc<dyn LayerDriver> {
        &self.driver
    }

    /// The catalog's connection, shared (the
    /// [`VolumeLookupCache`](crate::image_store::VolumeLookupCache) records volume uses
    /// through it).
    pub fn catalog(&self) -> Arc<Mutex<Catalog>> {
        self.catalog.clone()
    }

    /// The store's run root.
    pub fn run_root(&self) -> &RunRoot {
        &self.run
    }

    /// Runs `f` on the catalog, on the blocking pool.
    pub async fn db<T: Send + 'static>(
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

    /// Runs `f` in one catalog read transaction, on the blocking pool.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Sql<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.db(move |c| c.read(f)).await
    }

    /// Runs `f` in one catalog write transaction, on the blocking pool.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Sql<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.db(move |c| c.write(f)).await
    }

    /// Takes a run-root lock, waiting on the blocking pool rather than in the runtime.
    pub(crate) async fn lock(&self, name: &str) -> Result<RunLock> {
        let (run, name) = (self.run.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || run.lock(&name))
            .await
            .map_err(join_error)?
    }

    /// Finishes what a crash interrupted. Never fails the open: each object that cannot be
    /// finished is skipped and reported, so one bad tree cannot make a store unusable.
    async fn recover(&self, op: &Op) -> Vec<Error> {
        let mut problems = Vec::new();
        if let Err(e) = self.recover_layers(op, &mut problems).await {
            problems.push(e);
        }
        if let Err(e) = self.recover_removals(&mut problems).await {
            problems.push(e);
        }
        problems
    }

    /// Removes the layers left incomplete whose lock nobody holds.
    async fn recover_layers(&self, op: &Op, problems: &mut Vec<Error>) -> Result<()> {
        let stale = self.db(|c| c.incomplete_layers()).await?;
        for layer in stale {
            let Some(_lock) = self.run.try_lock(&layer_lock(&layer.id))? else {
                continue; // another process is writing or deleting it
            };
            // Its writer may have completed it and let the lock go between the listing
            // and now: only a layer still incomplete under its lock is abandoned.
            let id = layer.id.clone();
            let abandoned = self
                .read(move |sql| {
                    sql.exists(
                        "SELECT 1 FROM layers WHERE id = ?1 AND incomplete = 1",
                        [&id],
                    )
                })
                .await?;
            if !abandoned {
                continue;
            }
            tracing::info!(layer = %layer.id, "removing a layer left incomplete");
            if let Err(e) = self.discard_layer(op, &layer.id).await {
                problems.push(e);
            }
        }
        Ok(())
    }

    /// Removes the files and trees an interrupted deletion left, whose lock nobody holds.
    async fn recover_removals(&self, problems: &mut Vec<Error>) -> Result<()> {
        let pending = self.read(db::pending_removals).await?;
        for p in pending {
            let Some(_lock) = self.run.try_lock(&p.lock)? else {
                continue;
            };
            // The same for a path whose object was committed meanwhile.
            let path = p.path.clone();
            let abandoned = self
                .read(move |sql| {
                    sql.exists("SELECT 1 FROM pending_removals WHERE path = ?1", [&path])
                })
                .await?;
            if !abandoned {
                continue;
            }
            tracing::info!(path = %p.path, "removing what an interrupted operation left");
            if let Err(e) = self.remove_path(&p.path).await {
                problems.push(e);
            }
        }
        Ok(())
    }

    /// Removes a file or directory tree below the store root (or the run root, for paths
    /// starting with `run:`), then its pending-removal record.
    async fn remove_path(&self, rel: &str) -> Result<()> {
        let path = self.resolve_path(rel);
        let owned = rel.to_owned();
        tokio::task::spawn_blocking(move || remove_tree(&path))
            .await
            .map_err(join_error)??;
        self.write(move |sql| db::clear_pending_removal(sql, &owned))
            .await
    }

    fn resolve_path(&self, rel: &str) -> PathBuf {
        match rel.strip_prefix("run:") {
            Some(r) => self.run.path().join(r),
            None => self.root.join(rel),
        }
    }
}

/// Removes a file or a directory tree; a missing one is not an error.
/// Any depth: the tree may be one a container or an archive made thousands of levels deep.
fn remove_tree(path: &Path) -> Result<()> {
    dirtree::remove_all(path)
        .map(drop)
        .ctx(|| format!("remove {}", path.display()))
}

pub(crate) fn join_error(e: tokio::task::JoinError) -> Error {
    Error::io("background task", std::io::Error::other(e))
}
