//! `VolumeLookupCache`: every volume of every volume store a process has added, indexed
//! in memory, with the rule that a volume a container uses is not destroyed.
//!
//! Which containers use which volume is recorded in the catalog (`volume_users`), so the
//! rule holds across processes; the index of volumes itself is per process and rebuilt
//! from each store's listing when the store is added.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use storage_core::error::{Error, Result};
use storage_core::op::Op;
use storage_core::port::{Volume, VolumeStorer};

use crate::db::{Catalog, Sql, VolumeUse, containers, image_stores};

/// Volumes across volume stores, in front of the stores and the catalog.
pub struct VolumeLookupCache {
    catalog: Arc<Mutex<Catalog>>,
    stores: Mutex<BTreeMap<String, Arc<dyn VolumeStorer>>>,
    volumes: Mutex<BTreeMap<(String, String), Volume>>,
}

impl VolumeLookupCache {
    /// A cache with no stores yet; container uses are recorded in `catalog` (a
    /// [`Store`](crate::Store)'s, from [`Store::catalog`](crate::Store::catalog), or one
    /// opened on its own where no layer driver is at hand).
    pub fn new(catalog: Arc<Mutex<Catalog>>) -> Self {
        VolumeLookupCache {
            catalog,
            stores: Mutex::new(BTreeMap::new()),
            volumes: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
        m.lock().map_err(|_| Error::CorruptStore {
            path: "/storage/volumes".into(),
            reason: "volume cache lock poisoned by an earlier panic".into(),
        })
    }

    /// Adds a volume store under `name` and indexes its volumes. Entries the store
    /// cannot read are logged and left out; they do not fail the whole store.
    pub async fn add_store(&self, op: &Op, name: &str, store: Arc<dyn VolumeStorer>) -> Result<()> {
        let listed = store.volumes_list(op).await?;
        {
            let mut volumes = Self::lock(&self.volumes)?;
            for entry in listed {
                match entry {
                    Ok(v) => {
                        volumes.insert((name.to_owned(), v.id.clone()), v);
                    }
                    Err(e) => {
                        tracing::warn!(store = name, error = %storage_core::Report(&e), "unreadable volume")
                    }
                }
            }
        }
        Self::lock(&self.stores)?.insert(name.to_owned(), store);
        Ok(())
    }

    async fn catalog<T: Send + 'static>(
        &self,
        write: bool,
        f: impl FnOnce(&Sql<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let catalog = self.catalog.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = Self::lock(&catalog)?;
            if write { c.write(f) } else { c.read(f) }
        })
        .await
        .map_err(crate::store::join_error)?
    }

    fn store(&self, name: &str) -> Result<Arc<dyn VolumeStorer>> {
        let stores = Self::lock(&self.stores)?;
        stores
            .get(name)
            .cloned()
            .ok_or_else(|| Error::VolumeStoreNotFound {
                store: name.to_owned(),
                known: stores.keys().cloned().collect(),
            })
    }

    /// Creates a volume in `store`. `VolumeExists` when the id is taken there.
    pub async fn volume_create(
        &self,
        op: &Op,
        store: &str,
        id: &str,
        capacity_bytes: u64,
        info: BTreeMap<String, Vec<u8>>,
    ) -> Result<Volume> {
        let backend = self.store(store)?;
        if Self::lock(&self.volumes)?.contains_key(&(store.to_owned(), id.to_owned())) {
            return Err(Error::VolumeExists {
                id: id.to_owned(),
                store: store.to_owned(),
            });
        }
        let volume = backend.volume_create(op, id, capacity_bytes, info).await?;
        Self::lock(&self.volumes)?.insert((store.to_owned(), id.to_owned()), volume.clone());
        Ok(volume)
    }

    /// Destroys a volume. `VolumeInUse` while a container uses it.
    pub async fn volume_destroy(&self, op: &Op, store: &str, id: &str) -> Result<()> {
        let backend = self.store(store)?;
        let (s, i) = (store.to_owned(), id.to_owned());
        let users = self
            .catalog(false, move |sql| image_stores::volume_users(sql, &s, &i))
            .await?;
        if !users.is_empty() {
            return Err(Error::VolumeInUse {
                id: id.to_owned(),
                reason: format!("used by container(s) {}", users.join(", ")),
            });
        }
        backend.volume_destroy(op, id).await?;
        Self::lock(&self.volumes)?.remove(&(store.to_owned(), id.to_owned()));
        Ok(())
    }

    /// One volume.
    pub fn volume_get(&self, store: &str, id: &str) -> Result<Volume> {
        self.store(store)?;
        Self::lock(&self.volumes)?
            .get(&(store.to_owned(), id.to_owned()))
            .cloned()
            .ok_or_else(|| Error::NotFound {
                kind: storage_core::error::ObjectKind::Volume,
                id: format!("{id} in volume store {store}"),
            })
    }

    /// Every indexed volume, by store then id.
    pub fn volumes_list(&self) -> Result<Vec<Volume>> {
        Ok(Self::lock(&self.volumes)?.values().cloned().collect())
    }

    /// Records that `container` uses a volume (which must exist).
    pub async fn join(&self, container: &str, store: &str, volume: &str) -> Result<()> {
        self.volume_get(store, volume)?;
        let (c, s, v) = (container.to_owned(), store.to_owned(), volume.to_owned());
        self.catalog(true, move |sql| {
            let container = containers::get(sql, &c)?.id;
            image_stores::add_volume_use(
                sql,
                &VolumeUse {
                    store: s,
                    volume: v,
                    container,
                },
            )
        })
        .await
    }

    /// Forgets that `container` uses a volume.
    pub async fn leave(&self, container: &str, store: &str, volume: &str) -> Result<()> {
        let (c, s, v) = (container.to_owned(), store.to_owned(), volume.to_owned());
        self.catalog(true, move |sql| {
            let container = containers::get(sql, &c)?.id;
            image_stores::remove_volume_use(
                sql,
                &VolumeUse {
                    store: s,
                    volume: v,
                    container,
                },
            )
        })
        .await
    }
}
