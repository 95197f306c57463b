//! The catalog: one SQLite database per store recording layers, images, containers, their
//! names, metadata and big-data items, and the port layer's image stores.
//!
//! SQLite gives what JSON files plus lock files never gave containers/storage: atomic
//! multi-row updates, crash safety and many processes at once. The database runs in WAL
//! mode with a busy timeout, and every write is one short `BEGIN IMMEDIATE` transaction, so
//! writers queue on the database lock instead of deadlocking on lock upgrades.
//!
//! Two rules keep it consistent with the data on disk:
//! - a layer is inserted `incomplete` before any of its data exists, and made complete in
//!   one transaction after its data is durable (together with whatever points at it: the
//!   container row of a container's layer, the store-image row of a port-layer image);
//! - a file or directory that is being created or removed outside the database is first
//!   recorded in `pending_removals` with the name of the run-root lock its writer holds; the
//!   transaction that commits the object deletes the record. Whatever a crash leaves there
//!   is removed by the next opener that can take the lock.
//!
//! This module holds no file data: big-data payloads are written by
//! [`Store`](crate::store::Store), which records them here.

pub mod big_data;
pub mod containers;
pub mod image_stores;
pub mod images;
pub mod layers;
pub mod names;
mod owned;
mod schema;
mod sql;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use storage_core::error::{Error, Result};

pub use big_data::BigDataInfo;
pub use containers::ContainerRecord;
pub use image_stores::{StoreImageRecord, VolumeUse};
pub use images::ImageRecord;
pub use layers::{LayerDigests, LayerRecord, LayerSummary, LayerView, OwnerIds};
pub use names::NameChange;
pub use sql::Sql;
use sql::sqlite_error;

/// How long a statement waits for another process's write transaction before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// A store's catalog: one open connection to its database.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
    /// The schema version: [`schema::VERSION`] once a writable catalog is open, whatever
    /// it is for a read-only one.
    version: i64,
}

/// An exclusive `flock` on the directory of a catalog being set up (made, switched to
/// WAL mode, or migrated), released on drop: one process sets a catalog up at a time.
struct SetupTurn {
    _dir: std::fs::File,
}

impl SetupTurn {
    /// Waits for and takes the turn of the catalog at `db`.
    fn take(db: &Path) -> Result<Self> {
        let dir = match db.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let file = std::fs::File::open(dir)
            .map_err(|e| Error::io_path("open the catalog's directory", dir, e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io_path("lock the catalog's directory", dir, e))?;
        Ok(SetupTurn { _dir: file })
    }
}

/// A path outside the database whose removal a crash may have interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRemoval {
    /// The path, relative to the store root.
    pub path: String,
    /// The run-root lock its writer held.
    pub lock: String,
}

/// The catalog database's name in a store root.
const FILE: &str = "catalog.db";

/// Refuses a root that holds a containers-storage store (its `storage.lock`, or a
/// `<driver>-layers/layers.json`) and no strata catalog: strata never writes a catalog
/// into another tool's store, and cannot read one as its own (an additional store of
/// the overlay driver is read by [`crate::containers_storage`] before this is asked).
fn refuse_foreign_store(root: &Path) -> Result<()> {
    if root.join(FILE).exists() {
        return Ok(());
    }
    let marker = if root.join("storage.lock").exists() {
        Some("storage.lock".to_owned())
    } else {
        std::fs::read_dir(root).ok().and_then(|dir| {
            dir.flatten().find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name.ends_with("-layers") && e.path().join("layers.json").exists())
                    .then(|| format!("{name}/layers.json"))
            })
        })
    };
    match marker {
        Some(marker) => Err(Error::Unsupported {
            what: format!("using {} as a strata store", root.display()),
            reason: format!(
                "it is a containers-storage store (it has {marker}): strata never writes into one, and reads one of the overlay driver only (as an --additional-store, or copied by `strata migrate --from`)"
            ),
        }),
        None => Ok(()),
    }
}

impl Catalog {
    /// Opens (creating and migrating) the catalog of the store rooted at `root`, creating
    /// the root if it is missing.
    pub fn open_in(root: &Path) -> Result<Self> {
        refuse_foreign_store(root)?;
        std::fs::create_dir_all(root).map_err(|e| Error::io_path("create store root", root, e))?;
        Self::open(&root.join(FILE))
    }

    /// Opens the catalog of the existing store rooted at `root` read-only (see
    /// [`Catalog::open_read_only`]).
    pub fn open_read_only_in(root: &Path) -> Result<Self> {
        refuse_foreign_store(root)?;
        let file = root.join(FILE);
        if !file.exists() {
            return Err(Error::StoreNotFound {
                store: root.display().to_string(),
                reason: format!(
                    "{} does not exist: no strata store is there",
                    file.display()
                ),
            });
        }
        Self::open_read_only(&file)
    }

    /// A new, empty catalog held in memory only (for a store whose records are read from
    /// elsewhere, as a containers-storage store's are); `label` names it in errors.
    pub fn in_memory(label: &Path) -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|source| sqlite_error(label, source))?;
        let mut catalog = Catalog {
            conn,
            path: label.to_owned(),
            version: 0,
        };
        catalog.configure()?;
        catalog.migrate()?;
        Ok(catalog)
    }

    /// Brings the schema to the current version in one exclusive transaction.
    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(|source| sqlite_error(&path, source))?;
        let from = schema::version(&Sql::new(&tx, &path, 0))?;
        schema::migrate(&Sql::new(&tx, &path, from))?;
        tx.commit().map_err(|source| sqlite_error(&path, source))?;
        self.version = schema::VERSION;
        Ok(())
    }

    /// Opens (creating and migrating) the catalog database at `path`.
    ///
    /// The common case, a catalog in WAL mode at the current schema, is two reads and
    /// takes no lock: every process start would otherwise queue behind the writers.
    /// Anything else (a new file, an older schema) is set right under an exclusive `flock`
    /// on the catalog's directory, so that processes opening a new store at once take
    /// turns: SQLite answers "database is locked" at once, without waiting, to one of two
    /// connections that both try to switch a new database to WAL mode.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|source| sqlite_error(path, source))?;
        let mut catalog = Catalog {
            conn,
            path: path.to_owned(),
            version: 0,
        };
        catalog.configure()?;
        if catalog.is_current()? {
            catalog.set_synchronous()?;
            catalog.version = schema::VERSION;
            return Ok(catalog);
        }
        let _turn = SetupTurn::take(path)?;
        catalog.set_wal()?;
        catalog.set_synchronous()?;
        catalog.migrate()?;
        Ok(catalog)
    }

    /// Whether the catalog is in WAL mode at the current schema. A new file, still being
    /// set up by another process, is not (the answer is "no", not an error).
    fn is_current(&self) -> Result<bool> {
        let current = self.read(|sql| {
            let mode: Option<String> = sql.row("PRAGMA journal_mode", [], |r| r.get(0))?;
            Ok(mode.is_some_and(|m| m.eq_ignore_ascii_case("wal"))
                && schema::version(sql)? == schema::VERSION)
        });
        match current {
            Err(e) if sql::is_busy(&e) => Ok(false),
            other => other,
        }
    }

    /// Opens an existing catalog read-only (an additional store): no schema change, no
    /// write ever.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| sqlite_error(path, source))?;
        let mut catalog = Catalog {
            conn,
            path: path.to_owned(),
            version: 0,
        };
        catalog.configure()?;
        let version = catalog.read(schema::version)?;
        catalog.version = version;
        if !(schema::OLDEST_READABLE..=schema::VERSION).contains(&version) {
            return Err(Error::CorruptStore {
                path: path.to_owned(),
                reason: format!(
                    "catalog schema version {version}, this strata reads versions {} to {}",
                    schema::OLDEST_READABLE,
                    schema::VERSION
                ),
            });
        }
        Ok(catalog)
    }

    /// Switches the database to WAL mode (a write: under [`SetupTurn`] for a file catalog).
    fn set_wal(&self) -> Result<()> {
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|source| sqlite_error(&self.path, source))
    }

    /// A commit in WAL mode syncs at checkpoints only: durable against a crash of the
    /// process, and consistent after one of the machine.
    fn set_synchronous(&self) -> Result<()> {
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|source| sqlite_error(&self.path, source))
    }

    /// What every connection sets: the busy timeout, foreign keys, and the memory map.
    fn configure(&self) -> Result<()> {
        let err = |source| sqlite_error(&self.path, source);
        self.conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        self.conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        self.conn
            .pragma_update(None, "mmap_size", 1i64 << 30)
            .map_err(err)?;
        Ok(())
    }

    /// Leaves the write-ahead log and its index in place when this connection closes,
    /// for a connection that only reads (a listing): the last connection to close would
    /// otherwise checkpoint and delete both, and the next process would create them
    /// again. Writers still checkpoint as they commit, and whichever writer closes last
    /// removes them.
    pub fn keep_log_on_close(&self) -> Result<()> {
        self.conn
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .map_err(|source| self.err(source))?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a consistent snapshot (a read transaction).
    pub fn read<T>(&self, f: impl FnOnce(&Sql<'_>) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|source| self.err(source))?;
        let out = f(&Sql::new(&tx, &self.path, self.version))?;
        tx.finish().map_err(|source| self.err(source))?;
        Ok(out)
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`): all of it commits, or none.
    pub fn write<T>(&mut self, f: impl FnOnce(&Sql<'_>) -> Result<T>) -> Result<T> {
        let (path, version) = (self.path.clone(), self.version);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| sqlite_error(&path, source))?;
        let out = f(&Sql::new(&tx, &path, version))?;
        tx.commit().map_err(|source| sqlite_error(&path, source))?;
        Ok(out)
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        sqlite_error(&self.path, source)
    }
}

/// Records that `path` (relative to the store root) must be removed unless the
/// transaction that commits its object says otherwise.
pub fn add_pending_removal(sql: &Sql<'_>, path: &str, lock: &str) -> Result<()> {
    sql.exec(
        "INSERT OR REPLACE INTO pending_removals (path, lock) VALUES (?1, ?2)",
        rusqlite::params![path, lock],
    )?;
    Ok(())
}

/// Drops the record of `path`: its object is committed, or its removal is done.
pub fn clear_pending_removal(sql: &Sql<'_>, path: &str) -> Result<()> {
    sql.exec("DELETE FROM pending_removals WHERE path = ?1", [path])?;
    Ok(())
}

/// Whether anything is left for an opening store to finish: an incomplete layer (being
/// written, being deleted, or left by a crash) or a pending removal. Two index probes.
pub fn unfinished(sql: &Sql<'_>) -> Result<bool> {
    Ok(sql.exists("SELECT 1 FROM layers WHERE incomplete = 1", [])?
        || sql.exists("SELECT 1 FROM pending_removals", [])?)
}

/// Every recorded pending removal.
pub fn pending_removals(sql: &Sql<'_>) -> Result<Vec<PendingRemoval>> {
    sql.rows(
        "SELECT path, lock FROM pending_removals ORDER BY path",
        [],
        |r| {
            Ok(PendingRemoval {
                path: r.get(0)?,
                lock: r.get(1)?,
            })
        },
    )
}

/// Seconds since the epoch, for `created` columns.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn many_openers_of_a_new_store_at_once_all_open_it() {
        const OPENERS: usize = 6;
        for round in 0..40 {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join(format!("store-{round}"));
            let start = Arc::new(Barrier::new(OPENERS));
            let openers: Vec<_> = (0..OPENERS)
                .map(|_| {
                    let (root, start) = (root.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Catalog::open_in(&root).map(|c| c.version)
                    })
                })
                .collect();
            for opener in openers {
                let opened = opener.join().unwrap();
                assert_eq!(
                    opened.as_ref().ok(),
                    Some(&schema::VERSION),
                    "round {round}: {opened:?}"
                );
            }
        }
    }
}
