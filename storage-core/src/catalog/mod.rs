//! The catalog: one SQLite database per store recording layers, their parents, names,
//! digests and sizes.
//!
//! SQLite gives what JSON files plus lock files never gave containers/storage: atomic
//! multi-row updates, crash safety and many processes at once (WAL mode, a busy timeout,
//! short transactions). A layer is inserted `incomplete` before any of its data exists
//! and made complete in one statement after its data is durable; a store removes
//! incomplete layers nobody is writing when it opens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, ObjectKind, Result};
use crate::id::is_id_prefix;

/// One layer as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerRecord {
    /// The layer's id (64 lowercase hex).
    pub id: String,
    /// The parent layer's id.
    pub parent: Option<String>,
    /// Names, unique among layers.
    pub names: Vec<String>,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// A container's read-write layer.
    pub read_write: bool,
    /// Still being written (or being deleted).
    pub incomplete: bool,
    /// `sha256:<hex>` of the bytes received when it was imported.
    pub compressed_digest: Option<String>,
    /// Bytes received when it was imported.
    pub compressed_size: Option<u64>,
    /// `sha256:<hex>` of the uncompressed tar it was imported from.
    pub uncompressed_digest: Option<String>,
    /// Length of that tar.
    pub uncompressed_size: Option<u64>,
}

/// What is known about a layer's content once its data is written.
#[derive(Debug, Clone, Default)]
pub struct LayerDigests {
    /// Digest of the bytes received.
    pub compressed_digest: Option<String>,
    /// Number of bytes received.
    pub compressed_size: Option<u64>,
    /// Digest of the uncompressed tar.
    pub uncompressed_digest: Option<String>,
    /// Length of the uncompressed tar.
    pub uncompressed_size: Option<u64>,
}

/// A store's catalog.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS layers (
    id TEXT PRIMARY KEY NOT NULL,
    parent TEXT REFERENCES layers(id),
    created INTEGER NOT NULL,
    read_write INTEGER NOT NULL DEFAULT 0,
    incomplete INTEGER NOT NULL DEFAULT 1,
    compressed_digest TEXT,
    compressed_size INTEGER,
    uncompressed_digest TEXT,
    uncompressed_size INTEGER
);
CREATE INDEX IF NOT EXISTS layers_by_parent ON layers(parent);
CREATE TABLE IF NOT EXISTS layer_names (
    name TEXT PRIMARY KEY NOT NULL,
    layer TEXT NOT NULL REFERENCES layers(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS layer_names_by_layer ON layer_names(layer);
";

impl Catalog {
    /// Opens (creating) the catalog database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |source| Error::Catalog {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Catalog {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Catalog {
            path: self.path.clone(),
            source,
        }
    }

    /// Records a new, incomplete layer with its names.
    pub fn create_layer(
        &mut self,
        id: &str,
        parent: Option<&str>,
        names: &[String],
        read_write: bool,
    ) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let path = self.path.clone();
        let err = |source| Error::Catalog {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        if tx
            .query_row("SELECT 1 FROM layers WHERE id = ?1", [id], |_| Ok(()))
            .optional()
            .map_err(err)?
            .is_some()
        {
            return Err(Error::AlreadyExists {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            });
        }
        tx.execute(
            "INSERT INTO layers (id, parent, created, read_write, incomplete) VALUES (?1, ?2, ?3, ?4, 1)",
            params![id, parent, now, read_write],
        )
        .map_err(err)?;
        for name in names {
            let holder: Option<String> = tx
                .query_row(
                    "SELECT layer FROM layer_names WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            if let Some(holder) = holder {
                return Err(Error::DuplicateName {
                    kind: ObjectKind::Layer,
                    name: name.clone(),
                    holder,
                });
            }
            tx.execute(
                "INSERT INTO layer_names (name, layer) VALUES (?1, ?2)",
                params![name, id],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Marks a layer complete, recording its digests.
    pub fn complete_layer(&mut self, id: &str, d: &LayerDigests) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE layers SET incomplete = 0, compressed_digest = ?2, compressed_size = ?3,
                 uncompressed_digest = ?4, uncompressed_size = ?5 WHERE id = ?1",
                params![
                    id,
                    d.compressed_digest,
                    d.compressed_size.map(|v| v as i64),
                    d.uncompressed_digest,
                    d.uncompressed_size.map(|v| v as i64)
                ],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    /// Marks a layer incomplete again before its data is removed, so that a crash during
    /// removal leaves it to be cleaned up, never listed half-gone.
    pub fn mark_incomplete(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("UPDATE layers SET incomplete = 1 WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Removes a layer's record.
    pub fn delete_layer(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM layers WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn read(&self, where_clause: &str, arg: &str) -> Result<Vec<LayerRecord>> {
        let sql = format!(
            "SELECT l.id, l.parent, l.created, l.read_write, l.incomplete, l.compressed_digest,
                    l.compressed_size, l.uncompressed_digest, l.uncompressed_size,
                    (SELECT json_group_array(name) FROM (SELECT name FROM layer_names WHERE layer = l.id ORDER BY name))
             FROM layers l {where_clause} ORDER BY l.rowid"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let map = |r: &rusqlite::Row<'_>| {
            let names: String = r.get(9)?;
            Ok(LayerRecord {
                id: r.get(0)?,
                parent: r.get(1)?,
                created: r.get(2)?,
                read_write: r.get(3)?,
                incomplete: r.get(4)?,
                compressed_digest: r.get(5)?,
                compressed_size: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
                uncompressed_digest: r.get(7)?,
                uncompressed_size: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
                names: serde_json::from_str(&names).unwrap_or_default(),
            })
        };
        let rows = if arg.is_empty() {
            stmt.query_map([], map)
        } else {
            stmt.query_map([arg], map)
        }
        .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    /// Every complete layer, oldest first.
    pub fn layers(&self) -> Result<Vec<LayerRecord>> {
        self.read("WHERE l.incomplete = 0", "")
    }

    /// Every incomplete layer (being written or deleted, or left by a crash).
    pub fn incomplete_layers(&self) -> Result<Vec<LayerRecord>> {
        self.read("WHERE l.incomplete = 1", "")
    }

    /// Finds a complete layer by id, name, or unique id prefix.
    pub fn layer(&self, id_or_name: &str) -> Result<LayerRecord> {
        if let Some(r) = self
            .read("WHERE l.incomplete = 0 AND l.id = ?1", id_or_name)?
            .pop()
        {
            return Ok(r);
        }
        if let Some(r) = self
            .read(
                "WHERE l.incomplete = 0 AND l.id = (SELECT layer FROM layer_names WHERE name = ?1)",
                id_or_name,
            )?
            .pop()
        {
            return Ok(r);
        }
        if is_id_prefix(id_or_name) {
            let mut found = self.read(
                "WHERE l.incomplete = 0 AND l.id >= ?1 AND l.id < ?1 || 'g'",
                id_or_name,
            )?;
            match found.len() {
                1 => return Ok(found.remove(0)),
                0 => {}
                n => {
                    return Err(Error::Ambiguous {
                        kind: ObjectKind::Layer,
                        id: id_or_name.to_owned(),
                        matches: n,
                    });
                }
            }
        }
        Err(Error::NotFound {
            kind: ObjectKind::Layer,
            id: id_or_name.to_owned(),
        })
    }

    /// The ids of the layers whose parent is `id` (complete or not).
    pub fn children(&self, id: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM layers WHERE parent = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<Vec<String>, _>>()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("{:02x}", n).repeat(32)
    }

    #[test]
    fn incomplete_layers_are_not_listed_until_completed() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        c.create_layer(&id(1), None, &["base".into()], false)
            .unwrap();
        assert!(c.layers().unwrap().is_empty());
        assert_eq!(c.incomplete_layers().unwrap().len(), 1);
        c.complete_layer(&id(1), &LayerDigests::default()).unwrap();
        let all = c.layers().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].names, vec!["base".to_string()]);
    }

    #[test]
    fn lookup_by_id_name_and_unique_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        let a = format!("ab{}", "0".repeat(62));
        let b = format!("ac{}", "0".repeat(62));
        for (x, name) in [(&a, "first"), (&b, "second")] {
            c.create_layer(x, None, &[name.to_string()], false).unwrap();
            c.complete_layer(x, &LayerDigests::default()).unwrap();
        }
        assert_eq!(c.layer(&a).unwrap().id, a);
        assert_eq!(c.layer("second").unwrap().id, b);
        assert_eq!(c.layer("ab").unwrap().id, a);
        assert!(matches!(c.layer("a"), Err(Error::Ambiguous { .. })));
        assert!(matches!(c.layer("ff"), Err(Error::NotFound { .. })));
    }

    #[test]
    fn names_are_unique_among_layers() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        c.create_layer(&id(1), None, &["n".into()], false).unwrap();
        let e = c
            .create_layer(&id(2), None, &["n".into()], false)
            .unwrap_err();
        assert!(matches!(e, Error::DuplicateName { .. }), "{e}");
        // The failed create left nothing behind.
        assert!(c.incomplete_layers().unwrap().iter().all(|l| l.id != id(2)));
    }

    #[test]
    fn children_are_found_by_parent() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        c.create_layer(&id(1), None, &[], false).unwrap();
        c.create_layer(&id(2), Some(&id(1)), &[], false).unwrap();
        assert_eq!(c.children(&id(1)).unwrap(), vec![id(2)]);
        assert!(c.children(&id(2)).unwrap().is_empty());
    }
}
