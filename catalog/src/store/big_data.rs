//! Big data: named byte items attached to layers, images and containers.
//!
//! Each item is one file under `bigdata/<kind>/<owner>/`, named afresh on every write so
//! that no key ever becomes a path and a reader never sees a half-replaced item. A write
//! records the new file as pending, writes and syncs it, then in one transaction points
//! the item at it and marks the old file for removal.

use std::io::Write;

use sha2::{Digest, Sha256};
use storage_core::error::{Error, IoContext, ObjectKind, Result};
use storage_core::id::random_id;

use crate::db::{self, BigDataInfo, Sql};
use crate::store::{Store, join_error};

/// The run-root lock guarding an owner's big-data directory. Writers of an item and the
/// deletion of the owner both hold it, so a write never recreates the directory of an
/// owner that is gone.
pub(crate) fn big_data_lock(kind: ObjectKind, owner: &str) -> String {
    format!("bigdata-{kind}-{owner}")
}

fn owner_of(sql: &Sql<'_>, kind: ObjectKind, key: &str) -> Result<String> {
    db::names::resolve(sql, kind, key)
}

impl Store {
    /// The big-data items of an object, by key.
    pub async fn big_data_list(&self, kind: ObjectKind, owner: &str) -> Result<Vec<BigDataInfo>> {
        let o = owner.to_owned();
        let mine = self
            .read(move |sql| {
                let id = owner_of(sql, kind, &o)?;
                db::big_data::list(sql, kind, &id)
            })
            .await;
        match mine {
            Err(e @ Error::NotFound { .. }) => {
                Ok(self.foreign_big_data(kind, owner, None).await?.ok_or(e)?.1)
            }
            other => other,
        }
    }

    /// One item's size and digest.
    pub async fn big_data_info(
        &self,
        kind: ObjectKind,
        owner: &str,
        key: &str,
    ) -> Result<BigDataInfo> {
        let (root, mut item) = self.locate_big_data(kind, owner, key).await?;
        if item.digest.is_empty() {
            // Not recorded (a containers-storage layer's item): hashed now.
            let (path, key) = (root.join(&item.file), key.to_owned());
            item.digest = tokio::task::spawn_blocking(move || {
                db::big_data::file_digest(&path)
                    .map(|(_, digest)| digest)
                    .ctx(|| format!("read big-data item {key:?} from {}", path.display()))
            })
            .await
            .map_err(join_error)??;
        }
        Ok(item)
    }

    /// One item and the root of the store (this one, or an additional one) holding it.
    async fn locate_big_data(
        &self,
        kind: ObjectKind,
        owner: &str,
        key: &str,
    ) -> Result<(std::path::PathBuf, BigDataInfo)> {
        let (o, k) = (owner.to_owned(), key.to_owned());
        // The owner's item, or `None` when this store has the owner but not the item.
        let mine = self
            .read(move |sql| {
                let id = owner_of(sql, kind, &o)?;
                Ok((db::big_data::get(sql, kind, &id, &k)?, id))
            })
            .await;
        let missing_item = |id: &str| Error::NotFound {
            kind,
            id: format!("{id} big-data item {key:?}"),
        };
        match mine {
            Ok((Some(info), _)) => Ok((self.root.clone(), info)),
            // The owner is this store's: an additional store's object of that name is
            // another object.
            Ok((None, id)) => Err(missing_item(&id)),
            Err(e @ Error::NotFound { .. }) => {
                match self.foreign_big_data(kind, owner, Some(key)).await? {
                    Some((root, items)) => items
                        .into_iter()
                        .next()
                        .map(|item| (root, item))
                        .ok_or_else(|| missing_item(owner)),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// One item's bytes.
    pub async fn big_data(&self, kind: ObjectKind, owner: &str, key: &str) -> Result<Vec<u8>> {
        let (root, info) = self.locate_big_data(kind, owner, key).await?;
        let path = root.join(&info.file);
        tokio::fs::read(&path)
            .await
            .ctx(|| format!("read big-data item {key:?} from {}", path.display()))
    }

    /// Sets an item (creating or replacing it) atomically.
    pub async fn set_big_data(
        &self,
        kind: ObjectKind,
        owner: &str,
        key: &str,
        data: Vec<u8>,
    ) -> Result<BigDataInfo> {
        if key.is_empty() {
            return Err(Error::InvalidId {
                kind,
                id: String::new(),
                reason: "a big-data key must not be empty".into(),
            });
        }
        let o = owner.to_owned();
        let id = self.read(move |sql| owner_of(sql, kind, &o)).await?;
        let lock_name = big_data_lock(kind, &id);
        let _lock = self.lock(&lock_name).await?;
        // The owner may have been deleted before the lock was ours; past this point its
        // deletion waits for us.
        let i = id.clone();
        self.read(move |sql| owner_of(sql, kind, &i)).await?;
        let file = format!("{}/{}", db::big_data::dir(kind, &id), &random_id()?[..24]);
        let (f, l) = (file.clone(), lock_name.clone());
        self.write(move |sql| db::add_pending_removal(sql, &f, &l))
            .await?;
        let path = self.root.join(&file);
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        let size = data.len() as u64;
        tokio::task::spawn_blocking(move || write_synced(&path, &data))
            .await
            .map_err(join_error)??;
        let item = BigDataInfo {
            key: key.to_owned(),
            size,
            digest,
            file: file.clone(),
        };
        let (i, it, l) = (id.clone(), item.clone(), lock_name.clone());
        let old = self
            .write(move |sql| {
                // The owner may have been deleted while the file was written.
                owner_of(sql, kind, &i)?;
                let old = db::big_data::put(sql, kind, &i, &it)?;
                db::clear_pending_removal(sql, &it.file)?;
                if let Some(old) = &old {
                    db::add_pending_removal(sql, old, &l)?;
                }
                Ok(old)
            })
            .await;
        match old {
            Ok(Some(old)) => self.remove_path(&old).await?,
            Ok(None) => {}
            Err(e) => {
                self.remove_path(&file).await?;
                return Err(e);
            }
        }
        Ok(item)
    }
}

/// Writes a new file and makes it and its directory entry durable.
fn write_synced(path: &std::path::Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(path);
    std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    let mut f = std::fs::File::create_new(path).ctx(|| format!("create {}", path.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .ctx(|| format!("write {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("sync directory {}", dir.display()))
}
