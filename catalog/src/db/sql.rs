//! `Sql`: a connection (inside a transaction) that turns SQLite errors into the
//! contract's [`Error::Catalog`] naming the database file.

use std::ops::ControlFlow;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Params, Row};
use storage_core::error::{Error, Result};

/// The contract's [`Error::Catalog`] for a SQLite failure on the database at `path`: the
/// message names the database file, the source is SQLite's own error as a [`SqliteCause`].
///
/// A full disk is an I/O error like any other write's (`ENOSPC`), so callers and users
/// see the same cause whichever file the disk filled under: SQLite reports it as
/// `SQLITE_FULL`, or, when a new process cannot size the catalog's shared-memory index
/// (`-shm`), as `SQLITE_IOERR_SHMSIZE`.
pub(crate) fn sqlite_error(path: &Path, source: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(e, _) = &source
        && (e.code == rusqlite::ErrorCode::DiskFull
            || e.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE)
    {
        return Error::io(
            format!("catalog at {}", path.display()),
            std::io::Error::from_raw_os_error(28),
        );
    }
    Error::Catalog {
        path: path.to_owned(),
        source: Box::new(SqliteCause(source)),
    }
}

/// SQLite's error as the cause of an [`Error::Catalog`]: its message, with the result code
/// when SQLite gave one, and no source of its own. `rusqlite`'s error both prints its
/// result code (or a message about it) and returns it as its source, so a printer walking
/// the chain would name the cause twice.
#[derive(Debug)]
pub(crate) struct SqliteCause(rusqlite::Error);

impl std::fmt::Display for SqliteCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            rusqlite::Error::SqliteFailure(code, Some(message)) => {
                write!(f, "{message} (SQLite result code {})", code.extended_code)
            }
            other => other.fmt(f),
        }
    }
}

impl std::error::Error for SqliteCause {}

/// Whether `e` is SQLite's "database is locked" (`SQLITE_BUSY`) on a catalog.
pub(crate) fn is_busy(e: &Error) -> bool {
    matches!(e, Error::Catalog { source, .. }
    if source.downcast_ref::<SqliteCause>().is_some_and(|c| {
        c.0.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
    }))
}

/// A connection inside one transaction, with errors that name the database.
pub struct Sql<'c> {
    conn: &'c Connection,
    path: &'c Path,
    version: i64,
}

impl<'c> Sql<'c> {
    /// `version` is the schema version of the database (a read-only one may be older).
    pub(super) fn new(conn: &'c Connection, path: &'c Path, version: i64) -> Self {
        Sql {
            conn,
            path,
            version,
        }
    }

    /// The schema version of the database.
    pub(super) fn version(&self) -> i64 {
        self.version
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        sqlite_error(self.path, source)
    }

    /// Runs a statement; returns the number of rows changed.
    pub fn exec(&self, sql: &str, params: impl Params) -> Result<usize> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        stmt.execute(params).map_err(|e| self.err(e))
    }

    /// The first row of a query, if any.
    pub fn row<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        stmt.query_row(params, map)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every row of a query.
    pub fn rows<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params, map).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<T>>>()
            .map_err(|e| self.err(e))
    }

    /// Calls `f` on every row of a query, without collecting them, until it breaks;
    /// returns whether it broke.
    pub fn each(
        &self,
        sql: &str,
        params: impl Params,
        mut f: impl FnMut(&Row<'_>) -> rusqlite::Result<ControlFlow<()>>,
    ) -> Result<ControlFlow<()>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            if f(r).map_err(|e| self.err(e))?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// True when the query returns a row.
    pub fn exists(&self, sql: &str, params: impl Params) -> Result<bool> {
        Ok(self.row(sql, params, |_| Ok(()))?.is_some())
    }

    /// The query plan SQLite chooses, one line per step (for tests that prove lookups use
    /// an index).
    pub fn explain(&self, sql: &str, params: impl Params) -> Result<Vec<String>> {
        self.rows(&format!("EXPLAIN QUERY PLAN {sql}"), params, |r| r.get(3))
    }

    /// Runs several statements (schema changes).
    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use storage_core::Report;

    use crate::Catalog;

    #[test]
    fn a_sqlite_failure_names_the_database_and_sqlites_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let Err(e) = Catalog::open(&path) else {
            panic!("a file of garbage opened as a catalog");
        };
        assert!(
            matches!(&e, storage_core::Error::Catalog { path: p, .. } if *p == path),
            "{e}"
        );
        let printed = Report(&e).to_string();
        assert!(
            printed.starts_with(&format!("catalog at {}: ", path.display())),
            "{printed}"
        );
        assert_eq!(printed.matches("not a database").count(), 1, "{printed}");
        assert!(printed.contains("SQLite result code 26"), "{printed}");
    }
}
