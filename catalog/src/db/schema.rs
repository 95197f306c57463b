//! The catalog's tables, and the migration from older versions (`PRAGMA user_version`).

use storage_core::error::{Error, Result};

use crate::db::Sql;

/// The schema version this code writes and reads.
pub(super) const VERSION: i64 = 5;

/// The oldest version this code reads without migrating (read-only additional stores):
/// version 3 only adds an index, and version 4's name lists are derived (see
/// [`NAME_LISTS`]).
pub(super) const OLDEST_READABLE: i64 = 2;

/// The first version whose layers, images and containers carry their name lists.
pub(super) const NAME_LISTS: i64 = 4;

/// The first version with containers-storage's fields beyond names: layers' owner sets
/// (`uids`, `gids`) and images' `names_history`.
pub(crate) const CS_FIELDS: i64 = 5;

/// Version 2: layers, images and containers with names, metadata and big data; pending
/// removals; the port layer's image stores; volume users.
///
/// Version 3: a partial index of incomplete layers, so that the recovery check every
/// open makes costs nothing however many layers there are.
///
/// Version 4: layers, images and containers carry `names`, the JSON array of their names
/// in order, kept equal to the `names` table by every transaction that changes a name.
/// The `names` table stays the authority (one name, one owner); the copy lets a listing
/// read each row whole, in one scan, instead of looking its names up row by row.
///
/// Version 5: layers carry `uids` and `gids`, the owner ids their tar used (decimal,
/// comma-joined, sorted), as containers-storage records a layer's `uidset` and `gidset`;
/// images carry `names_history`, every name they have had, latest first (a JSON
/// array). Objects recorded before have none.
///
/// A layer's parent, an image's top layer and a container's image carry no foreign key:
/// they may live in a read-only additional store. The store checks them itself, inside
/// the transaction that records the reference.
const LAYERS: &str = "
CREATE TABLE IF NOT EXISTS layers (
    id TEXT PRIMARY KEY NOT NULL,
    parent TEXT,
    created INTEGER NOT NULL,
    read_write INTEGER NOT NULL DEFAULT 0,
    incomplete INTEGER NOT NULL DEFAULT 1,
    compressed_digest TEXT,
    compressed_size INTEGER,
    uncompressed_digest TEXT,
    uncompressed_size INTEGER,
    metadata TEXT NOT NULL DEFAULT '',
    names TEXT NOT NULL DEFAULT '[]',
    uids TEXT NOT NULL DEFAULT '',
    gids TEXT NOT NULL DEFAULT ''
);
";

const TABLES: &str = "
CREATE INDEX IF NOT EXISTS layers_by_parent ON layers(parent);
CREATE INDEX IF NOT EXISTS layers_incomplete ON layers(incomplete) WHERE incomplete = 1;
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY NOT NULL,
    top_layer TEXT,
    created INTEGER NOT NULL,
    digest TEXT,
    metadata TEXT NOT NULL DEFAULT '',
    names TEXT NOT NULL DEFAULT '[]',
    names_history TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS images_by_top_layer ON images(top_layer);
CREATE INDEX IF NOT EXISTS images_by_digest ON images(digest);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY NOT NULL,
    image TEXT NOT NULL,
    layer TEXT NOT NULL REFERENCES layers(id),
    created INTEGER NOT NULL,
    metadata TEXT NOT NULL DEFAULT '',
    names TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS containers_by_image ON containers(image);
CREATE INDEX IF NOT EXISTS containers_by_layer ON containers(layer);
CREATE TABLE IF NOT EXISTS names (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS names_by_owner ON names(kind, owner);
CREATE TABLE IF NOT EXISTS big_data (
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    digest TEXT NOT NULL,
    file TEXT NOT NULL,
    PRIMARY KEY (kind, owner, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS big_data_by_digest ON big_data(digest);
CREATE TABLE IF NOT EXISTS pending_removals (
    path TEXT PRIMARY KEY NOT NULL,
    lock TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS image_stores (
    name TEXT PRIMARY KEY NOT NULL,
    scratch TEXT NOT NULL REFERENCES layers(id),
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS store_images (
    store TEXT NOT NULL REFERENCES image_stores(name),
    id TEXT NOT NULL,
    parent TEXT,
    layer TEXT NOT NULL REFERENCES layers(id),
    created INTEGER NOT NULL,
    PRIMARY KEY (store, id)
);
CREATE INDEX IF NOT EXISTS store_images_by_parent ON store_images(store, parent);
CREATE INDEX IF NOT EXISTS store_images_by_layer ON store_images(layer);
CREATE TABLE IF NOT EXISTS store_image_metadata (
    store TEXT NOT NULL,
    image TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (store, image, key),
    FOREIGN KEY (store, image) REFERENCES store_images(store, id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS volume_users (
    store TEXT NOT NULL,
    volume TEXT NOT NULL,
    container TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    PRIMARY KEY (store, volume, container)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS volume_users_by_container ON volume_users(container);
";

/// The version recorded in the database.
pub(super) fn version(sql: &Sql<'_>) -> Result<i64> {
    Ok(sql
        .row("PRAGMA user_version", [], |r| r.get(0))?
        .unwrap_or(0))
}

/// Brings the schema to [`VERSION`] (inside the caller's exclusive transaction).
pub(super) fn migrate(sql: &Sql<'_>) -> Result<()> {
    let from = version(sql)?;
    if from == VERSION {
        return Ok(());
    }
    if from > VERSION {
        return Err(Error::Unsupported {
            what: format!("catalog schema version {from}"),
            reason: format!("this strata knows versions up to {VERSION}; upgrade strata"),
        });
    }
    let has_v1_layers = sql.exists(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'layers'",
        [],
    )?;
    if has_v1_layers && from < 2 {
        // Version 1 (unversioned) had layers without metadata, whose parent was a
        // foreign key, and its own name table: rebuild the table.
        sql.batch("ALTER TABLE layers RENAME TO layers_v1;")?;
        sql.batch(LAYERS)?;
        sql.batch(
            "INSERT INTO layers (id, parent, created, read_write, incomplete, compressed_digest,
                 compressed_size, uncompressed_digest, uncompressed_size)
             SELECT id, parent, created, read_write, incomplete, compressed_digest,
                 compressed_size, uncompressed_digest, uncompressed_size FROM layers_v1;",
        )?;
    } else {
        sql.batch(LAYERS)?;
    }
    sql.batch(TABLES)?;
    let has_v1_names = sql.exists(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'layer_names'",
        [],
    )?;
    if has_v1_names {
        sql.batch(
            "INSERT OR IGNORE INTO names (kind, name, owner)
                 SELECT 'layer', name, layer FROM layer_names;
             DROP TABLE layer_names;
             DROP TABLE IF EXISTS layers_v1;",
        )?;
    }
    for (table, kind) in [
        ("layers", "layer"),
        ("images", "image"),
        ("containers", "container"),
    ] {
        let has_names = sql.exists(
            &format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = 'names'"),
            [],
        )?;
        if !has_names {
            sql.batch(&format!(
                "ALTER TABLE {table} ADD COLUMN names TEXT NOT NULL DEFAULT '[]';"
            ))?;
        }
        // Every older version kept names only in the `names` table (a version 1 catalog
        // has just had its names moved there, into freshly made rows).
        sql.batch(&format!(
            "UPDATE {table} SET names = (SELECT json_group_array(name ORDER BY name)
                 FROM names WHERE kind = '{kind}' AND owner = {table}.id);"
        ))?;
    }
    for (table, column, empty) in [
        ("layers", "uids", "''"),
        ("layers", "gids", "''"),
        ("images", "names_history", "'[]'"),
    ] {
        let has = sql.exists(
            &format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"),
            [],
        )?;
        if !has {
            sql.batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} TEXT NOT NULL DEFAULT {empty};"
            ))?;
        }
    }
    sql.batch(&format!("PRAGMA user_version = {VERSION}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::db::{Catalog, LayerDigests, containers, images};

    #[test]
    fn a_version_1_catalog_is_migrated_with_its_layers_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("catalog.db");
        {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch(
                "CREATE TABLE layers (id TEXT PRIMARY KEY NOT NULL, parent TEXT REFERENCES layers(id),
                    created INTEGER NOT NULL, read_write INTEGER NOT NULL DEFAULT 0,
                    incomplete INTEGER NOT NULL DEFAULT 1, compressed_digest TEXT,
                    compressed_size INTEGER, uncompressed_digest TEXT, uncompressed_size INTEGER);
                 CREATE TABLE layer_names (name TEXT PRIMARY KEY NOT NULL,
                    layer TEXT NOT NULL REFERENCES layers(id) ON DELETE CASCADE);",
            )
            .unwrap();
            let id = "a".repeat(64);
            conn.execute(
                "INSERT INTO layers (id, created, incomplete) VALUES (?1, 1, 0)",
                [&id],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO layer_names (name, layer) VALUES ('base', ?1)",
                [&id],
            )
            .unwrap();
        }
        let c = Catalog::open(&db).unwrap();
        let layer = c.layer("base").unwrap();
        assert_eq!(layer.id, "a".repeat(64));
        assert_eq!(layer.names, vec!["base".to_string()]);
        assert_eq!(layer.metadata, "");
        // A second open is a no-op.
        drop(c);
        Catalog::open(&db).unwrap();
    }

    /// A catalog as version 3 left it: no name lists in the rows.
    fn version_3(db: &std::path::Path) -> Vec<(String, Vec<String>)> {
        let mut c = Catalog::open(db).unwrap();
        let id = |n: u8| format!("{n:02x}").repeat(32);
        for (n, names) in [(1, vec!["b", "a"]), (2, vec![]), (3, vec!["c"])] {
            let names: Vec<String> = names.into_iter().map(String::from).collect();
            c.create_layer(&id(n), None, &names, false).unwrap();
            c.complete_layer(&id(n), &LayerDigests::default()).unwrap();
        }
        c.write(|sql| {
            images::insert(sql, &id(9), Some(&id(3)), &["img".into()], "", None)?;
            containers::insert(sql, &id(8), &id(9), &id(3), &["ctr".into()], "")
        })
        .unwrap();
        let expected = c
            .layers()
            .unwrap()
            .into_iter()
            .map(|l| (l.id, l.names))
            .collect();
        drop(c);
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch(
            "ALTER TABLE layers DROP COLUMN names;
             ALTER TABLE layers DROP COLUMN uids;
             ALTER TABLE layers DROP COLUMN gids;
             ALTER TABLE images DROP COLUMN names;
             ALTER TABLE images DROP COLUMN names_history;
             ALTER TABLE containers DROP COLUMN names;
             PRAGMA user_version = 3;",
        )
        .unwrap();
        expected
    }

    fn listed(c: &Catalog) -> Vec<(String, Vec<String>)> {
        let records: Vec<(String, Vec<String>)> = c
            .layers()
            .unwrap()
            .into_iter()
            .map(|l| (l.id, l.names))
            .collect();
        let mut summaries = Vec::new();
        let flow = c.each_layer(|s| {
            summaries.push((s.id.to_owned(), s.names.to_vec()));
            std::ops::ControlFlow::Continue(())
        });
        assert!(flow.unwrap().is_continue());
        assert_eq!(records, summaries);
        assert_eq!(c.images().unwrap()[0].names, ["img"]);
        assert_eq!(c.containers().unwrap()[0].names, ["ctr"]);
        records
    }

    #[test]
    fn a_version_3_catalog_lists_its_names_read_only_and_keeps_them_when_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("catalog.db");
        let expected = version_3(&db);
        assert_eq!(expected[0].1, ["a", "b"]);
        let lent = Catalog::open_read_only(&db).unwrap();
        assert_eq!(listed(&lent), expected);
        drop(lent);
        let c = Catalog::open(&db).unwrap();
        assert_eq!(c.read(super::version).unwrap(), super::VERSION);
        assert_eq!(listed(&c), expected);
    }

    #[test]
    fn a_version_4_catalog_reads_without_owner_ids_and_records_them_once_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("catalog.db");
        let id = |n: u8| format!("{n:02x}").repeat(32);
        {
            let mut c = Catalog::open(&db).unwrap();
            c.create_layer(&id(1), None, &[], false).unwrap();
            c.complete_layer(&id(1), &LayerDigests::default()).unwrap();
        }
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "ALTER TABLE layers DROP COLUMN uids;
             ALTER TABLE layers DROP COLUMN gids;
             PRAGMA user_version = 4;",
        )
        .unwrap();
        drop(conn);
        let lent = Catalog::open_read_only(&db).unwrap();
        let layers = lent.layers().unwrap();
        assert!(layers[0].uids.is_empty() && layers[0].gids.is_empty());
        drop(lent);

        let mut c = Catalog::open(&db).unwrap();
        assert_eq!(c.read(super::version).unwrap(), super::VERSION);
        c.create_layer(&id(2), Some(&id(1)), &[], false).unwrap();
        let owners = LayerDigests {
            uids: vec![0, 1000],
            gids: vec![0, 33, 4_294_967_294],
            ..LayerDigests::default()
        };
        c.complete_layer(&id(2), &owners).unwrap();
        let layer = c.layer(&id(2)).unwrap();
        assert_eq!((layer.uids, layer.gids), (owners.uids, owners.gids));
        let mut seen = Vec::new();
        let flow = c.each_layer(|l| {
            seen.push((l.uids.to_vec(), l.gids.to_vec()));
            std::ops::ControlFlow::Continue(())
        });
        assert!(flow.unwrap().is_continue());
        assert_eq!(seen[0], (vec![], vec![]));
        assert_eq!(seen[1], (vec![0, 1000], vec![0, 33, 4_294_967_294]));
    }
}
