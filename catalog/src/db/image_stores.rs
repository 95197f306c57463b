//! The port layer's rows: image stores (namespaces rooted at a `scratch` layer), the
//! images in them with their `map<string, bytes>` metadata, and which containers use
//! which volumes.

use std::collections::BTreeMap;

use rusqlite::params;
use storage_core::error::{Error, ObjectKind, Result};

use crate::db::{Sql, now};

/// One image of an image store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreImageRecord {
    /// The image store's name.
    pub store: String,
    /// The image's id within the store (`scratch` for the root).
    pub id: String,
    /// The parent image's id; `None` only for `scratch`.
    pub parent: Option<String>,
    /// The catalog layer that holds its filesystem.
    pub layer: String,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Metadata given to `write_image`.
    pub metadata: BTreeMap<String, Vec<u8>>,
}

/// A container's use of a volume.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeUse {
    /// The volume store's name.
    pub store: String,
    /// The volume's id.
    pub volume: String,
    /// The container using it.
    pub container: String,
}

/// Records a new image store whose root is the complete layer `scratch`.
pub fn insert_store(sql: &Sql<'_>, name: &str, scratch: &str) -> Result<()> {
    if sql.exists("SELECT 1 FROM image_stores WHERE name = ?1", [name])? {
        return Err(Error::AlreadyExists {
            kind: ObjectKind::Store,
            id: name.to_owned(),
        });
    }
    sql.exec(
        "INSERT INTO image_stores (name, scratch, created) VALUES (?1, ?2, ?3)",
        params![name, scratch, now()],
    )?;
    Ok(())
}

/// The names of every image store, sorted.
pub fn store_names(sql: &Sql<'_>) -> Result<Vec<String>> {
    sql.rows("SELECT name FROM image_stores ORDER BY name", [], |r| {
        r.get(0)
    })
}

/// The scratch layer of an image store, if the store exists.
pub fn store_scratch(sql: &Sql<'_>, name: &str) -> Result<Option<String>> {
    sql.row(
        "SELECT scratch FROM image_stores WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
}

/// Removes an image store's record (its images must be gone).
pub fn delete_store(sql: &Sql<'_>, name: &str) -> Result<()> {
    sql.exec("DELETE FROM image_stores WHERE name = ?1", [name])?;
    Ok(())
}

/// Records an image of a store with its metadata.
pub fn insert_image(sql: &Sql<'_>, image: &StoreImageRecord) -> Result<()> {
    sql.exec(
        "INSERT INTO store_images (store, id, parent, layer, created) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            image.store,
            image.id,
            image.parent,
            image.layer,
            image.created
        ],
    )?;
    for (key, value) in &image.metadata {
        sql.exec(
            "INSERT INTO store_image_metadata (store, image, key, value) VALUES (?1, ?2, ?3, ?4)",
            params![image.store, image.id, key, value],
        )?;
    }
    Ok(())
}

fn with_metadata(
    sql: &Sql<'_>,
    mut images: Vec<StoreImageRecord>,
) -> Result<Vec<StoreImageRecord>> {
    for image in &mut images {
        let pairs: Vec<(String, Vec<u8>)> = sql.rows(
            "SELECT key, value FROM store_image_metadata WHERE store = ?1 AND image = ?2",
            params![image.store, image.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        image.metadata = pairs.into_iter().collect();
    }
    Ok(images)
}

fn select(
    sql: &Sql<'_>,
    condition: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<StoreImageRecord>> {
    let images = sql.rows(
        &format!(
            "SELECT store, id, parent, layer, created FROM store_images WHERE {condition}
             ORDER BY rowid"
        ),
        args,
        |r| {
            Ok(StoreImageRecord {
                store: r.get(0)?,
                id: r.get(1)?,
                parent: r.get(2)?,
                layer: r.get(3)?,
                created: r.get(4)?,
                metadata: BTreeMap::new(),
            })
        },
    )?;
    with_metadata(sql, images)
}

/// One image of a store.
pub fn image(sql: &Sql<'_>, store: &str, id: &str) -> Result<Option<StoreImageRecord>> {
    Ok(select(sql, "store = ?1 AND id = ?2", params![store, id])?.pop())
}

/// Every image of a store, scratch included, oldest first.
pub fn images(sql: &Sql<'_>, store: &str) -> Result<Vec<StoreImageRecord>> {
    select(sql, "store = ?1", [store])
}

/// The image-store images held by a catalog layer (at most one).
pub fn image_of_layer(sql: &Sql<'_>, layer: &str) -> Result<Option<(String, String)>> {
    sql.row(
        "SELECT store, id FROM store_images WHERE layer = ?1",
        [layer],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The ids of an image's children in its store.
pub fn children(sql: &Sql<'_>, store: &str, id: &str) -> Result<Vec<String>> {
    sql.rows(
        "SELECT id FROM store_images WHERE store = ?1 AND parent = ?2 ORDER BY id",
        params![store, id],
        |r| r.get(0),
    )
}

/// Removes an image's record and metadata.
pub fn delete_image(sql: &Sql<'_>, store: &str, id: &str) -> Result<()> {
    sql.exec(
        "DELETE FROM store_images WHERE store = ?1 AND id = ?2",
        params![store, id],
    )?;
    Ok(())
}

/// Records that `container` uses a volume.
pub fn add_volume_use(sql: &Sql<'_>, u: &VolumeUse) -> Result<()> {
    sql.exec(
        "INSERT OR IGNORE INTO volume_users (store, volume, container) VALUES (?1, ?2, ?3)",
        params![u.store, u.volume, u.container],
    )?;
    Ok(())
}

/// Forgets that `container` uses a volume.
pub fn remove_volume_use(sql: &Sql<'_>, u: &VolumeUse) -> Result<()> {
    sql.exec(
        "DELETE FROM volume_users WHERE store = ?1 AND volume = ?2 AND container = ?3",
        params![u.store, u.volume, u.container],
    )?;
    Ok(())
}

/// The containers using a volume.
pub fn volume_users(sql: &Sql<'_>, store: &str, volume: &str) -> Result<Vec<String>> {
    sql.rows(
        "SELECT container FROM volume_users WHERE store = ?1 AND volume = ?2 ORDER BY container",
        params![store, volume],
        |r| r.get(0),
    )
}
