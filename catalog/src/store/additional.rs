//! Read-only additional stores: other store roots whose layers and images this store
//! may use as parents and images of containers, never write, and lists beside its own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use storage_core::error::{Error, ObjectKind, Result};

use crate::containers_storage::{CsStore, is_containers_storage};
use crate::db::{BigDataInfo, Catalog, ImageRecord, LayerRecord, big_data, images, layers};
use crate::store::{Store, join_error};

/// One additional store: its root and its catalog, opened read-only.
#[derive(Clone)]
pub(crate) struct ReadOnlyStore {
    pub(crate) root: PathBuf,
    catalog: Arc<Mutex<Catalog>>,
}

impl ReadOnlyStore {
    pub(crate) async fn open(root: &Path) -> Result<Self> {
        let dir = root.to_owned();
        let catalog = tokio::task::spawn_blocking(move || open_catalog(&dir))
            .await
            .map_err(join_error)??;
        Ok(ReadOnlyStore {
            root: root.to_owned(),
            catalog: Arc::new(Mutex::new(catalog)),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let catalog = self.catalog.clone();
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let guard = catalog.lock().map_err(|_| Error::CorruptStore {
                path: root,
                reason: "catalog lock poisoned by an earlier panic".into(),
            })?;
            f(&guard)
        })
        .await
        .map_err(join_error)?
    }
}

/// The catalog of the additional store rooted at `root`: its own database opened
/// read-only, or, for a containers-storage store, its records read under its locks into
/// an in-memory catalog. Blocking.
pub(crate) fn open_catalog(root: &Path) -> Result<Catalog> {
    if is_containers_storage(root) {
        CsStore::open(root)?.catalog()
    } else {
        Catalog::open_read_only_in(root)
    }
}

/// A lookup's answer in an additional store, with "not found" (as opposed to failing)
/// as `None`.
fn found<T>(looked_up: Result<T>) -> Result<Option<T>> {
    match looked_up {
        Ok(t) => Ok(Some(t)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Store {
    /// A layer of an additional store, if one has it.
    pub(crate) async fn foreign_layer(&self, key: &str) -> Result<Option<LayerRecord>> {
        let k = key.to_owned();
        let found = self
            .first_foreign(move |c| found(c.read(|sql| layers::get(sql, &k))))
            .await?;
        Ok(found.map(|(_, mut l)| {
            l.read_only = true;
            l
        }))
    }

    /// An image of an additional store, if one has it.
    pub(crate) async fn foreign_image(&self, key: &str) -> Result<Option<ImageRecord>> {
        let k = key.to_owned();
        let found = self
            .first_foreign(move |c| found(c.read(|sql| images::get(sql, &k))))
            .await?;
        Ok(found.map(|(_, mut i)| {
            i.read_only = true;
            i
        }))
    }

    /// Every layer of the additional stores, marked read-only.
    pub(crate) async fn foreign_layers(&self) -> Result<Vec<LayerRecord>> {
        let mut all = Vec::new();
        for s in &self.additional {
            for mut l in s.read(|c| c.read(layers::list)).await? {
                l.read_only = true;
                all.push(l);
            }
        }
        Ok(all)
    }

    /// Every image of the additional stores, marked read-only.
    pub(crate) async fn foreign_images(&self) -> Result<Vec<ImageRecord>> {
        let mut all = Vec::new();
        for s in &self.additional {
            for mut i in s.read(|c| c.read(images::list)).await? {
                i.read_only = true;
                all.push(i);
            }
        }
        Ok(all)
    }

    /// The first answer `f` gives on an additional store's catalog, in the order the
    /// stores were given, with that store's root; `None` when every store answers `None`.
    async fn first_foreign<T: Send + 'static>(
        &self,
        f: impl Fn(&Catalog) -> Result<Option<T>> + Clone + Send + 'static,
    ) -> Result<Option<(PathBuf, T)>> {
        for s in &self.additional {
            if let Some(found) = s.read(f.clone()).await? {
                return Ok(Some((s.root.clone(), found)));
            }
        }
        Ok(None)
    }

    /// Runs `f` on the catalog of the first additional store that has an object named
    /// `key` (an image, then a layer: an additional store lends no containers), with the
    /// object's kind and id. `None` when none has it.
    pub(crate) async fn read_foreign<T: Send + 'static>(
        &self,
        key: &str,
        f: impl Fn(&Catalog, ObjectKind, &str) -> Result<T> + Clone + Send + 'static,
    ) -> Result<Option<(ObjectKind, String, T)>> {
        let key = key.to_owned();
        let found = self
            .first_foreign(move |c| {
                for kind in [ObjectKind::Image, ObjectKind::Layer] {
                    if let Some(id) = found(c.resolve(kind, &key))? {
                        return f(c, kind, &id).map(|v| Some((kind, id, v)));
                    }
                }
                Ok(None)
            })
            .await?;
        Ok(found.map(|(_, found)| found))
    }

    /// A big-data item of an image or layer of an additional store, with the path of its
    /// file; `None` when no additional store has the owner, or the owner has no such
    /// item. `key` `None` lists the owner's items instead (the path is then the root).
    pub(crate) async fn foreign_big_data(
        &self,
        kind: ObjectKind,
        owner: &str,
        key: Option<&str>,
    ) -> Result<Option<(PathBuf, Vec<BigDataInfo>)>> {
        let (owner, key) = (owner.to_owned(), key.map(str::to_owned));
        self.first_foreign(move |c| {
            c.read(|sql| {
                let Some(id) = found(crate::db::names::resolve(sql, kind, &owner))? else {
                    return Ok(None);
                };
                match &key {
                    Some(k) => Ok(big_data::get(sql, kind, &id, k)?.map(|i| vec![i])),
                    None => big_data::list(sql, kind, &id).map(Some),
                }
            })
        })
        .await
    }

    /// The error for a change asked of an object of an additional store.
    pub(crate) fn read_only_error(&self, kind: ObjectKind, id: &str) -> Error {
        let roots: Vec<String> = self
            .additional
            .iter()
            .map(|s| s.root.display().to_string())
            .collect();
        Error::Unsupported {
            what: format!("changing {kind} {id}"),
            reason: format!(
                "it belongs to a read-only additional store ({})",
                roots.join(", ")
            ),
        }
    }
}
