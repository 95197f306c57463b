//! Names and id resolution, the same for layers, images and containers.
//!
//! Wherever an id is accepted, so is a name or a unique id prefix. Names are unique per
//! kind. As in containers/storage, creating an object with a taken name fails with
//! `DuplicateName`, while `add-names` and `set-names` move a name from its old holder to
//! the new one (that is how a tag moves to a new image).

use rusqlite::params;
use storage_core::error::{Error, ObjectKind, Result};
use storage_core::id::is_id_prefix;

use crate::db::schema::NAME_LISTS;
use crate::db::{Catalog, Sql};

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

/// The SQL expression for the name list (a JSON array, sorted) of each row of `kind`'s
/// table, aliased `alias`: the row's own copy since schema version 4, worked out from the
/// `names` table in an older (read-only) catalog.
pub(super) fn list_column(sql: &Sql<'_>, kind: ObjectKind, alias: &str) -> String {
    if sql.version() >= NAME_LISTS {
        format!("{alias}.names")
    } else {
        format!(
            "(SELECT json_group_array(name ORDER BY name) FROM names
              WHERE kind = '{kind}' AND owner = {alias}.id)"
        )
    }
}

/// Calls `f` on each name of a name list read from [`list_column`] (column `col` of the
/// row it came from, for errors).
///
/// A list without a backslash holds no escaped character, so no name in it holds a
/// quote: its names are then every other piece between quotes (`["a","b"]`), cut
/// straight out of the text. That covers names as people write them; a list with escapes
/// goes through a JSON parser.
pub(super) fn each_listed(list: &str, col: usize, mut f: impl FnMut(&str)) -> rusqlite::Result<()> {
    let bad = |e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e)
    };
    if !list.contains('\\') {
        if !(list.starts_with('[') && list.ends_with(']')) {
            return Err(bad(
                format!("a name list is a JSON array, not {list:?}").into()
            ));
        }
        list.split('"').skip(1).step_by(2).for_each(f);
        return Ok(());
    }
    let names: Vec<String> = serde_json::from_str(list).map_err(|e| bad(e.into()))?;
    names.iter().for_each(|n| f(n));
    Ok(())
}

/// Name lists read from row after row into the same buffers, so that reading them
/// allocates only when a row has more, or longer, names than any before it.
#[derive(Debug, Default)]
pub(super) struct NameBuf {
    names: Vec<String>,
}

impl NameBuf {
    /// The names of the list `list` (column `col`, for errors), replacing the last ones.
    pub(super) fn fill(&mut self, list: &str, col: usize) -> rusqlite::Result<&[String]> {
        let mut named = 0;
        each_listed(list, col, |name| {
            match self.names.get_mut(named) {
                Some(slot) => {
                    slot.clear();
                    slot.push_str(name);
                }
                None => self.names.push(name.to_owned()),
            }
            named += 1;
        })?;
        Ok(&self.names[..named])
    }
}

/// A name list read from [`list_column`], as a vector.
pub(super) fn listed(list: &str, col: usize) -> rusqlite::Result<Vec<String>> {
    let mut names = Vec::new();
    each_listed(list, col, |n| names.push(n.to_owned()))?;
    Ok(names)
}

/// Rewrites the name list that the row of `owner` keeps, after its names changed.
fn relist(sql: &Sql<'_>, kind: ObjectKind, owner: &str) -> Result<()> {
    let (table, _) = table(kind)?;
    sql.exec(
        &format!(
            "UPDATE {table} SET names = (SELECT json_group_array(name ORDER BY name)
                 FROM names WHERE kind = ?1 AND owner = ?2) WHERE id = ?2"
        ),
        params![kind_key(kind), owner],
    )?;
    Ok(())
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
    if names.is_empty() {
        return Ok(());
    }
    relist(sql, kind, id)
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
                let holder: Option<String> = sql.row(
                    "SELECT owner FROM names WHERE kind = ?1 AND name = ?2",
                    params![k, name],
                    |r| r.get(0),
                )?;
                sql.exec(
                    "INSERT OR REPLACE INTO names (kind, name, owner) VALUES (?1, ?2, ?3)",
                    params![k, name, id],
                )?;
                // The name moved: its old holder's list loses it.
                if let Some(holder) = holder.filter(|h| h != id) {
                    relist(sql, kind, &holder)?;
                }
            }
            NameChange::Remove => {
                sql.exec(
                    "DELETE FROM names WHERE kind = ?1 AND name = ?2 AND owner = ?3",
                    params![k, name, id],
                )?;
            }
        }
    }
    relist(sql, kind, id)?;
    let now = names_of(sql, kind, id)?;
    if kind == ObjectKind::Image {
        // containers-storage adds every name the image has after a change to its history:
        // those it kept, then those just given.
        let given: Vec<String> = match how {
            NameChange::Remove => Vec::new(),
            NameChange::Add | NameChange::Set => names.to_vec(),
        };
        let mut order: Vec<String> = now.iter().filter(|n| !given.contains(n)).cloned().collect();
        order.extend(given);
        super::images::remember_names(sql, id, &order)?;
    }
    Ok(now)
}

/// Removes every name of an object (when it is deleted).
pub(super) fn drop_all(sql: &Sql<'_>, kind: ObjectKind, id: &str) -> Result<()> {
    sql.exec(
        "DELETE FROM names WHERE kind = ?1 AND owner = ?2",
        params![kind_key(kind), id],
    )?;
    Ok(())
}

/// Sets the metadata string of an object.
pub(super) fn set_metadata(
    sql: &Sql<'_>,
    kind: ObjectKind,
    id: &str,
    metadata: &str,
) -> Result<()> {
    set_column(sql, kind, id, "metadata", metadata)
}

/// Sets the creation time (seconds since the epoch) of layer, image or container `id`;
/// `NotFound` when there is no such object.
pub(crate) fn set_created(sql: &Sql<'_>, kind: ObjectKind, id: &str, created: i64) -> Result<()> {
    set_column(sql, kind, id, "created", created)
}

/// The creation time (seconds since the epoch) of layer, image or container `id`; `None`
/// when there is no such object.
pub fn created(sql: &Sql<'_>, kind: ObjectKind, id: &str) -> Result<Option<i64>> {
    let (table, _) = table(kind)?;
    sql.row(
        &format!("SELECT created FROM {table} WHERE id = ?1"),
        [id],
        |r| r.get(0),
    )
}

/// Sets `column` of object `id` to `value`; `NotFound` when there is no such object.
fn set_column(
    sql: &Sql<'_>,
    kind: ObjectKind,
    id: &str,
    column: &str,
    value: impl rusqlite::ToSql,
) -> Result<()> {
    let (table, _) = table(kind)?;
    let n = sql.exec(
        &format!("UPDATE {table} SET {column} = ?2 WHERE id = ?1"),
        params![id, value],
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

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use super::*;
    use crate::db::LayerDigests;

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn open() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        (dir, c)
    }

    fn layer(c: &mut Catalog, n: u8, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        c.create_layer(&id(n), None, &names, false).unwrap();
        c.complete_layer(&id(n), &LayerDigests::default()).unwrap();
    }

    /// Each layer's names as the record listing, the summary listing and the `names`
    /// table give them; they must agree.
    fn listed_three_ways(c: &Catalog) -> Vec<Vec<String>> {
        let records: Vec<Vec<String>> = c.layers().unwrap().into_iter().map(|l| l.names).collect();
        let mut summaries = Vec::new();
        let flow = c.each_layer(|s| {
            summaries.push(s.names.to_vec());
            ControlFlow::Continue(())
        });
        assert!(flow.unwrap().is_continue());
        let table: Vec<Vec<String>> = c
            .layers()
            .unwrap()
            .iter()
            .map(|l| c.names(ObjectKind::Layer, &l.id).unwrap())
            .collect();
        assert_eq!(records, summaries);
        assert_eq!(records, table);
        records
    }

    #[test]
    fn an_images_name_history_is_every_name_it_had_after_a_change_latest_first() {
        let (_d, mut c) = open();
        layer(&mut c, 1, &[]);
        let img = id(9);
        c.write(|sql| {
            super::super::images::insert(sql, &img, Some(&id(1)), &["a".into()], "", None)
        })
        .unwrap();
        let history = |c: &Catalog| c.image(&img).unwrap().names_history;
        assert!(history(&c).is_empty(), "created names are not history");
        let change = |c: &mut Catalog, names: &[&str], how| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            c.change_names(ObjectKind::Image, &img, &names, how)
                .unwrap();
        };
        change(&mut c, &["b"], NameChange::Add);
        change(&mut c, &["c"], NameChange::Set);
        change(&mut c, &["c"], NameChange::Remove);
        assert_eq!(history(&c), ["c", "b", "a"]);
        change(&mut c, &["a"], NameChange::Add);
        assert_eq!(history(&c), ["a", "c", "b"]);
    }

    #[test]
    fn a_name_moved_by_add_or_set_leaves_its_old_holders_list() {
        let (_d, mut c) = open();
        layer(&mut c, 1, &["a", "b"]);
        layer(&mut c, 2, &[]);
        c.change_names(ObjectKind::Layer, &id(2), &["a".into()], NameChange::Add)
            .unwrap();
        assert_eq!(listed_three_ways(&c), [vec!["b"], vec!["a"]]);
        c.change_names(
            ObjectKind::Layer,
            &id(2),
            &["b".into(), "c".into()],
            NameChange::Set,
        )
        .unwrap();
        assert_eq!(listed_three_ways(&c), [vec![], vec!["b", "c"]]);
        c.change_names(ObjectKind::Layer, &id(2), &["c".into()], NameChange::Remove)
            .unwrap();
        assert_eq!(listed_three_ways(&c), [vec![], vec!["b"]]);
    }

    #[test]
    fn names_that_json_escapes_list_as_they_were_given() {
        let (_d, mut c) = open();
        let odd = [
            "quo\"te",
            "back\\slash",
            "line\nbreak",
            "tab\tand\u{1}",
            "ünïcödé",
            "a\",\"b",
        ];
        layer(&mut c, 1, &odd);
        layer(&mut c, 2, &["plain", "x"]);
        let mut sorted: Vec<String> = odd.iter().map(|s| s.to_string()).collect();
        sorted.sort();
        assert_eq!(
            listed_three_ways(&c),
            [sorted, vec!["plain".into(), "x".into()]]
        );
    }

    #[test]
    fn a_name_list_is_cut_plainly_or_parsed_alike() {
        let cut = |list: &str| {
            let mut out = Vec::new();
            each_listed(list, 0, |n| out.push(n.to_owned())).unwrap();
            out
        };
        assert!(cut("[]").is_empty());
        assert_eq!(cut(r#"["a"]"#), ["a"]);
        assert_eq!(cut(r#"["a","b c","ü"]"#), ["a", "b c", "ü"]);
        assert_eq!(cut(r#"["a\"b","c\\d"]"#), ["a\"b", "c\\d"]);
        assert!(each_listed("not json", 3, |_| {}).is_err());
    }
}
