//! Big-data rows: named items (manifests, configs, anything) attached to a layer, image
//! or container. The catalog records each item's key, size, digest and the file that
//! holds it; the payload lives in that file, under `bigdata/<kind>/<owner>/` in the store
//! root, named by the writer (never by the key, so no key can become a path).

use rusqlite::params;
use storage_core::error::{ObjectKind, Result};

use crate::db::Sql;

/// The size of the file at `path` and the `sha256:<hex>` digest of its bytes, read in
/// pieces: what a big-data item's record says of it.
pub(crate) fn file_digest(path: &std::path::Path) -> std::io::Result<(u64, String)> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, format!("sha256:{}", hex::encode(hash.finalize()))))
}

/// One big-data item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BigDataInfo {
    /// The item's key.
    pub key: String,
    /// Its length in bytes.
    pub size: u64,
    /// `sha256:<hex>` of its bytes. Empty for an item of a containers-storage layer,
    /// which records none: the store works it out when it is asked for.
    pub digest: String,
    /// The file holding it, relative to the store root.
    #[serde(skip)]
    pub file: String,
}

/// The directory holding an owner's big-data files, relative to the store root.
pub fn dir(kind: ObjectKind, owner: &str) -> String {
    format!("bigdata/{kind}/{owner}")
}

/// An item from the columns `key, size, digest, file`, the first at `at`.
pub(super) fn item(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<BigDataInfo> {
    Ok(BigDataInfo {
        key: r.get(at)?,
        size: r.get::<_, i64>(at + 1)? as u64,
        digest: r.get(at + 2)?,
        file: r.get(at + 3)?,
    })
}

/// Every item of one owner, by key.
pub fn list(sql: &Sql<'_>, kind: ObjectKind, owner: &str) -> Result<Vec<BigDataInfo>> {
    sql.rows(
        "SELECT key, size, digest, file FROM big_data WHERE kind = ?1 AND owner = ?2 ORDER BY key",
        params![kind.to_string(), owner],
        |r| item(r, 0),
    )
}

/// One item, if it exists.
pub fn get(sql: &Sql<'_>, kind: ObjectKind, owner: &str, key: &str) -> Result<Option<BigDataInfo>> {
    sql.row(
        "SELECT key, size, digest, file FROM big_data WHERE kind = ?1 AND owner = ?2 AND key = ?3",
        params![kind.to_string(), owner, key],
        |r| item(r, 0),
    )
}

/// Records an item, replacing any earlier one with the same key; returns the file the
/// earlier one used, which the caller removes once this commits.
pub fn put(
    sql: &Sql<'_>,
    kind: ObjectKind,
    owner: &str,
    item: &BigDataInfo,
) -> Result<Option<String>> {
    let old = get(sql, kind, owner, &item.key)?.map(|o| o.file);
    sql.exec(
        "INSERT OR REPLACE INTO big_data (kind, owner, key, size, digest, file)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            kind.to_string(),
            owner,
            item.key,
            item.size as i64,
            item.digest,
            item.file
        ],
    )?;
    Ok(old.filter(|f| *f != item.file))
}
