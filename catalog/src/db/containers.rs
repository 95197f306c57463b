//! Container rows: an image, the container's read-write layer, names, metadata and big
//! data.

use rusqlite::{Row, params};
use storage_core::error::{Error, ObjectKind, Result};

use crate::db::big_data::BigDataInfo;
use crate::db::names::{claim_new, drop_all, list_column, listed, resolve};
use crate::db::{Catalog, Sql, now, owned};

/// One container as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerRecord {
    /// The container's id (64 lowercase hex).
    pub id: String,
    /// Names, unique among containers.
    pub names: Vec<String>,
    /// The image it was created from.
    pub image: String,
    /// Its read-write layer.
    pub layer: String,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Free-form metadata.
    pub metadata: String,
    /// Its big-data items, by key.
    pub big_data: Vec<BigDataInfo>,
}

const COLUMNS: &str = "c.id, c.image, c.layer, c.created, c.metadata";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ContainerRecord> {
    Ok(ContainerRecord {
        id: r.get(0)?,
        image: r.get(1)?,
        layer: r.get(2)?,
        created: r.get(3)?,
        metadata: r.get(4)?,
        names: listed(r.get_ref(5)?.as_str()?, 5)?,
        big_data: Vec::new(),
    })
}

fn select(
    sql: &Sql<'_>,
    condition: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<ContainerRecord>> {
    let names = list_column(sql, ObjectKind::Container, "c");
    let mut all = sql.rows(
        &format!("SELECT {COLUMNS}, {names} FROM containers c WHERE {condition} ORDER BY c.rowid"),
        args,
        from_row,
    )?;
    let items = owned::big_data(
        sql,
        ObjectKind::Container,
        all.iter().map(|r| r.id.as_str()),
    )?;
    for (c, items) in all.iter_mut().zip(items) {
        c.big_data = items;
    }
    Ok(all)
}

/// Records a new container of `image` whose read-write layer is `layer`.
pub fn insert(
    sql: &Sql<'_>,
    id: &str,
    image: &str,
    layer: &str,
    names: &[String],
    metadata: &str,
) -> Result<()> {
    if sql.exists("SELECT 1 FROM containers WHERE id = ?1", [id])? {
        return Err(Error::AlreadyExists {
            kind: ObjectKind::Container,
            id: id.to_owned(),
        });
    }
    sql.exec(
        "INSERT INTO containers (id, image, layer, created, metadata) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, image, layer, now(), metadata],
    )?;
    claim_new(sql, ObjectKind::Container, id, names)
}

/// A container by id, name or unique id prefix.
pub fn get(sql: &Sql<'_>, key: &str) -> Result<ContainerRecord> {
    let id = resolve(sql, ObjectKind::Container, key)?;
    select(sql, "c.id = ?1", [&id])?
        .pop()
        .ok_or(Error::NotFound {
            kind: ObjectKind::Container,
            id,
        })
}

/// Every container, oldest first.
pub fn list(sql: &Sql<'_>) -> Result<Vec<ContainerRecord>> {
    select(sql, "1", [])
}

/// The ids of the containers created from `image`.
pub fn of_image(sql: &Sql<'_>, image: &str) -> Result<Vec<String>> {
    sql.rows(
        "SELECT id FROM containers WHERE image = ?1 ORDER BY id",
        [image],
        |r| r.get(0),
    )
}

/// The id of the container whose read-write layer is `layer`.
pub fn with_layer(sql: &Sql<'_>, layer: &str) -> Result<Option<String>> {
    sql.row("SELECT id FROM containers WHERE layer = ?1", [layer], |r| {
        r.get(0)
    })
}

/// Removes a container's record with its names, big-data rows and volume uses.
pub fn delete(sql: &Sql<'_>, id: &str) -> Result<()> {
    drop_all(sql, ObjectKind::Container, id)?;
    sql.exec(
        "DELETE FROM big_data WHERE kind = 'container' AND owner = ?1",
        [id],
    )?;
    sql.exec("DELETE FROM containers WHERE id = ?1", [id])?;
    Ok(())
}

impl Catalog {
    /// Every container, oldest first.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        self.read(list)
    }

    /// A container by id, name or unique id prefix.
    pub fn container(&self, key: &str) -> Result<ContainerRecord> {
        self.read(|sql| get(sql, key))
    }
}
