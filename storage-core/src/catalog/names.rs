//! Names and id resolution, the same for layers, images and containers.
//!
//! Wherever an id is accepted, so is a name or a unique id prefix. Names are unique per
//! kind. As in containers/storage, creating an object with a taken name fails with
//! `DuplicateName`, while `add-names` and `set-names` move a name from its old holder to
//! the new one (that is how a tag moves to a new image).

use rusqlite::params;

use crate::catalog::{Catalog, Sql};
use crate::error::{Error, ObjectKind, Result};
use crate::id::is_id_prefix;

/// How a name list changes an object's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameChange {
    /// Add the names (moving them from other holders).
    Add,
    /// Replace all names with these.
    Set,
    /// Remove these names.
    Remove,
}

/// The table holding objects of `kind`, and the condition that makes a row visible.
pub(super) fn table(kind: ObjectKind) -> Result<(&'static str, &'static str)> {
    match kind {
        ObjectKind::Layer => Ok(("layers", "incomplete = 0")),
        ObjectKind::Image => Ok(("images", "1")),
        ObjectKind::Container => Ok(("containers", "1")),
        other => Err(Error::Unsupported {
            what: format!("{other} records in the catalog"),
            reason: "the catalog holds layers, images and containers".into(),
        }),
    }
}

fn kind_key(kind: ObjectKind) -> String {
    kind.to_string()
}

/// The full id of the visible object of `kind` with this id, name or unique id prefix.
pub fn resolve(sql: &Sql<'_>, kind: ObjectKind, key: &str) -> Result<String> {
    let (table, visible) = table(kind)?;
    let exact = format!("SELECT id FROM {table} WHERE id = ?1 AND {visible}");
    if let Some(id) = sql.row(&exact, [key], |r| r.get(0))? {
        return Ok(id);
    }
    let by_name = format!(
        "SELECT id FROM {table}
         WHERE id = (SELECT owner FROM names WHERE kind = ?1 AND name = ?2) AND {visible}"
    );
    if let Some(id) = sql.row(&by_name, params![kind_key(kind), key], |r| r.get(0))? {
        return Ok(id);
    }
    if is_id_prefix(key) {
        let by_prefix = format!(
            "SELECT id FROM {table} WHERE id >= ?1 AND id < ?1 || 'g' AND {visible} LIMIT 2"
        );
        let mut found: Vec<String> = sql.rows(&by_prefix, [key], |r| r.get(0))?;
        match found.len() {
            1 => return Ok(found.remove(0)),
            0 => {}
            n => {
                return Err(Error::Ambiguous {
                    kind,
                    id: key.to_owned(),
                    matches: n,
                });
            }
        }
    }
    Err(Error::NotFound {
        kind,
        id: key.to_owned(),
    })
}

/// The names of one object, sorted.
pub fn names_of(sql: &Sql<'_>, kind: ObjectKind, id: &str) -> Result<Vec<String>> {
    sql.rows(
        "SELECT name FROM names WHERE kind = ?1 AND owner = ?2 ORDER BY name",
        params![kind_key(kind), id],
        |r| r.get(0),
    )
}

/// Gives a new object its names: `DuplicateName` when another object holds one.
pub(super) fn claim_new(sql: &Sql<'_>, kind: ObjectKind, id: &str, names: &[String]) -> Result<()> {
    for name in names {
        let holder: Option<String> = sql.row(
            "SELECT owner FROM names WHERE kind = ?1 AND name = ?2",
            params![kind_key(kind), name],
            |r| r.get(0),
        )?;
        match holder {
            Some(h) if h == id => {}
            Some(holder) => {
                return Err(Error::DuplicateName {
                    kind,
                    name: name.clone(),
                    holder,
                });
            }
            None => {
                sql.exec(
                    "INSERT INTO names (kind, name, owner) VALUES (?1, ?2, ?3)",
                    params![kind_key(kind), name, id],
                )?;
            }
        }
    }
    Ok(())
}

/// Changes an object's names; returns the names it has afterwards.
pub(super) fn change(
    sql: &Sql<'_>,
    kind: ObjectKind,
    id: &str,
    names: &[String],
    how: NameChange,
) -> Result<Vec<String>> {
    let k = kind_key(kind);
    if how == NameChange::Set {
        sql.exec(
            "DELETE FROM names WHERE kind = ?1 AND owner = ?2",
            params![k, id],
        )?;
    }
    for name in names {
        if name.is_empty() {
            return Err(Error::InvalidId {
                kind,
                id: name.clone(),
                reason: "a name must not be empty".into(),
            });
        }
        match how {
            NameChange::Add | NameChange::Set => {
                sql.exec(
                    "INSERT OR REPLACE INTO names (kind, name, owner) VALUES (?1, ?2, ?3)",
                    params![k, name, id],
                )?;
            }
            NameChange::Remove => {
                sql.exec(
                    "DELETE FROM names WHERE kind = ?1 AND name = ?2 AND owner = ?3",
                    params![k, name, id],
                )?;
            }
        }
    }
    names_of(sql, kind, id)
}

/// Removes every name of an object (when it is deleted).
pub(super) fn drop_all(sql: &Sql<'_>, kind: ObjectKind, id: &str) -> Result<()> {
    sql.exec(
        "DELETE FROM names WHERE kind = ?1 AND owner = ?2",
        params![kind_key(kind), id],
    )?;
    Ok(())
}

/// Reads and writes the metadata string of an object.
pub(super) fn set_metadata(
    sql: &Sql<'_>,
    kind: ObjectKind,
    id: &str,
    metadata: &str,
) -> Result<()> {
    let (table, _) = table(kind)?;
    let n = sql.exec(
        &format!("UPDATE {table} SET metadata = ?2 WHERE id = ?1"),
        params![id, metadata],
    )?;
    if n == 0 {
        return Err(Error::NotFound {
            kind,
            id: id.to_owned(),
        });
    }
    Ok(())
}

impl Catalog {
    /// The full id of the object of `kind` with this id, name or unique id prefix.
    pub fn resolve(&self, kind: ObjectKind, key: &str) -> Result<String> {
        self.read(|sql| resolve(sql, kind, key))
    }

    /// The kind and full id of whatever object `key` names, trying containers, then
    /// images, then layers (the order containers/storage uses for `delete` and
    /// `metadata`).
    pub fn resolve_any(&self, key: &str) -> Result<(ObjectKind, String)> {
        self.read(|sql| {
            for kind in [ObjectKind::Container, ObjectKind::Image, ObjectKind::Layer] {
                match resolve(sql, kind, key) {
                    Ok(id) => return Ok((kind, id)),
                    Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(Error::NotFound {
                kind: ObjectKind::Layer,
                id: format!("{key} (no layer, image or container has this id or name)"),
            })
        })
    }

    /// Changes the names of the object `key` of `kind`; returns its names afterwards.
    pub fn change_names(
        &mut self,
        kind: ObjectKind,
        key: &str,
        names: &[String],
        how: NameChange,
    ) -> Result<Vec<String>> {
        self.write(|sql| {
            let id = resolve(sql, kind, key)?;
            change(sql, kind, &id, names, how)
        })
    }

    /// The names of the object `key` of `kind`.
    pub fn names(&self, kind: ObjectKind, key: &str) -> Result<Vec<String>> {
        self.read(|sql| {
            let id = resolve(sql, kind, key)?;
            names_of(sql, kind, &id)
        })
    }

    /// The metadata string of the object `key` of `kind`.
    pub fn metadata(&self, kind: ObjectKind, key: &str) -> Result<String> {
        self.read(|sql| {
            let id = resolve(sql, kind, key)?;
            let (table, _) = table(kind)?;
            sql.row(
                &format!("SELECT metadata FROM {table} WHERE id = ?1"),
                [&id],
                |r| r.get(0),
            )?
            .ok_or(Error::NotFound { kind, id })
        })
    }

    /// Replaces the metadata string of the object `key` of `kind`.
    pub fn set_metadata(&mut self, kind: ObjectKind, key: &str, metadata: &str) -> Result<()> {
        self.write(|sql| {
            let id = resolve(sql, kind, key)?;
            set_metadata(sql, kind, &id, metadata)
        })
    }
}
