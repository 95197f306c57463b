//! Image rows: a top layer with names, metadata and big data.

use rusqlite::{Row, params};
use storage_core::error::{Error, ObjectKind, Result};

use crate::db::big_data::BigDataInfo;
use crate::db::names::{claim_new, drop_all, list_column, listed, resolve};
use crate::db::schema::CS_FIELDS;
use crate::db::{Catalog, Sql, now, owned};

/// One image as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    /// The image's id (64 lowercase hex).
    pub id: String,
    /// Names, unique among images.
    pub names: Vec<String>,
    /// Its top layer; `None` for an image with no layers.
    pub top_layer: Option<String>,
    /// The digest it was created with (`--digest`), if any.
    pub digest: Option<String>,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Free-form metadata.
    pub metadata: String,
    /// Its big-data items, by key.
    pub big_data: Vec<BigDataInfo>,
    /// It lives in a read-only additional store.
    #[serde(default)]
    pub read_only: bool,
    /// Every name it has had, the latest first, each once (containers-storage's
    /// `names-history`).
    #[serde(default)]
    pub names_history: Vec<String>,
}

const COLUMNS: &str = "i.id, i.top_layer, i.digest, i.created, i.metadata";

/// The name history column: kept since schema 5, none in an older catalog.
fn history_column(sql: &Sql<'_>) -> &'static str {
    if sql.version() >= CS_FIELDS {
        "i.names_history"
    } else {
        "'[]'"
    }
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        id: r.get(0)?,
        top_layer: r.get(1)?,
        digest: r.get(2)?,
        created: r.get(3)?,
        metadata: r.get(4)?,
        names: listed(r.get_ref(5)?.as_str()?, 5)?,
        names_history: listed(r.get_ref(6)?.as_str()?, 6)?,
        big_data: Vec::new(),
        read_only: false,
    })
}

fn select(sql: &Sql<'_>, condition: &str, args: impl rusqlite::Params) -> Result<Vec<ImageRecord>> {
    let names = list_column(sql, ObjectKind::Image, "i");
    let history = history_column(sql);
    let mut images = sql.rows(
        &format!(
            "SELECT {COLUMNS}, {names}, {history} FROM images i WHERE {condition} ORDER BY i.rowid"
        ),
        args,
        from_row,
    )?;
    let items = owned::big_data(sql, ObjectKind::Image, images.iter().map(|r| r.id.as_str()))?;
    for (image, items) in images.iter_mut().zip(items) {
        image.big_data = items;
    }
    Ok(images)
}

/// Records a new image on `top_layer` (a complete layer, or none).
pub fn insert(
    sql: &Sql<'_>,
    id: &str,
    top_layer: Option<&str>,
    names: &[String],
    metadata: &str,
    digest: Option<&str>,
) -> Result<()> {
    if sql.exists("SELECT 1 FROM images WHERE id = ?1", [id])? {
        return Err(Error::AlreadyExists {
            kind: ObjectKind::Image,
            id: id.to_owned(),
        });
    }
    sql.exec(
        "INSERT INTO images (id, top_layer, created, digest, metadata) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, top_layer, now(), digest, metadata],
    )?;
    // As in containers-storage, the names an image is created with are not history;
    // every later change of its names is.
    claim_new(sql, ObjectKind::Image, id, names)
}

/// Replaces image `id`'s name history (an image copied from elsewhere keeps its own).
pub fn set_names_history(sql: &Sql<'_>, id: &str, history: &[String]) -> Result<()> {
    let text = serde_json::to_string(history).map_err(|e| Error::CorruptStore {
        path: format!("catalog: names_history of image {id}").into(),
        reason: e.to_string(),
    })?;
    sql.exec(
        "UPDATE images SET names_history = ?2 WHERE id = ?1",
        params![id, text],
    )?;
    Ok(())
}

/// Puts `names` at the head of image `id`'s name history, in turn (so the last ends
/// first), each once, as containers-storage's `addNameToHistory` does for every name an
/// image has after a change of its names.
pub(super) fn remember_names(sql: &Sql<'_>, id: &str, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    // The same JSON list as a name list, read by the same reader.
    let mut history = sql
        .row(
            "SELECT names_history FROM images WHERE id = ?1",
            [id],
            |r| listed(r.get_ref(0)?.as_str()?, 0),
        )?
        .ok_or_else(|| Error::NotFound {
            kind: ObjectKind::Image,
            id: id.to_owned(),
        })?;
    for name in names {
        history.retain(|h| h != name);
        history.insert(0, name.clone());
    }
    set_names_history(sql, id, &history)
}

/// An image by id, name or unique id prefix.
pub fn get(sql: &Sql<'_>, key: &str) -> Result<ImageRecord> {
    let id = resolve(sql, ObjectKind::Image, key)?;
    select(sql, "i.id = ?1", [&id])?
        .pop()
        .ok_or(Error::NotFound {
            kind: ObjectKind::Image,
            id,
        })
}

/// Every image, oldest first.
pub fn list(sql: &Sql<'_>) -> Result<Vec<ImageRecord>> {
    select(sql, "1", [])
}

/// The images created with `digest`, or holding a `manifest*` big-data item with it.
pub fn by_digest(sql: &Sql<'_>, digest: &str) -> Result<Vec<ImageRecord>> {
    select(
        sql,
        "i.digest = ?1 OR i.id IN (SELECT owner FROM big_data
            WHERE kind = 'image' AND digest = ?1 AND key LIKE 'manifest%')",
        [digest],
    )
}

/// The ids of the images whose top layer is `layer`.
pub fn with_top_layer(sql: &Sql<'_>, layer: &str) -> Result<Vec<String>> {
    sql.rows(
        "SELECT id FROM images WHERE top_layer = ?1 ORDER BY id",
        [layer],
        |r| r.get(0),
    )
}

/// Removes an image's record with its names and big-data rows.
pub fn delete(sql: &Sql<'_>, id: &str) -> Result<()> {
    drop_all(sql, ObjectKind::Image, id)?;
    sql.exec(
        "DELETE FROM big_data WHERE kind = 'image' AND owner = ?1",
        [id],
    )?;
    sql.exec("DELETE FROM images WHERE id = ?1", [id])?;
    Ok(())
}

impl Catalog {
    /// Every image, oldest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.read(list)
    }

    /// An image by id, name or unique id prefix.
    pub fn image(&self, key: &str) -> Result<ImageRecord> {
        self.read(|sql| get(sql, key))
    }

    /// The images with this digest.
    pub fn images_by_digest(&self, digest: &str) -> Result<Vec<ImageRecord>> {
        self.read(|sql| by_digest(sql, digest))
    }
}
