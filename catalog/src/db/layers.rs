//! Layer rows: created incomplete, completed once their data is durable, marked again
//! before they are removed.

use std::ops::ControlFlow;

use rusqlite::{Row, params};
use storage_core::error::{Error, ObjectKind, Result};

use crate::db::names::{NameBuf, claim_new, drop_all, list_column, names_of, resolve};
use crate::db::schema::CS_FIELDS;
use crate::db::{Catalog, Sql, now, owned};

/// One layer as the catalog records it. It serialises as its [`LayerView`]; fields left
/// out there read back as their defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
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
    #[serde(default)]
    pub compressed_digest: Option<String>,
    /// Bytes received when it was imported.
    #[serde(default)]
    pub compressed_size: Option<u64>,
    /// `sha256:<hex>` of the uncompressed tar it was imported from.
    #[serde(default)]
    pub uncompressed_digest: Option<String>,
    /// Length of that tar.
    #[serde(default)]
    pub uncompressed_size: Option<u64>,
    /// Free-form metadata (`set-metadata`).
    #[serde(default)]
    pub metadata: String,
    /// Keys of its big-data items.
    #[serde(default)]
    pub big_data_names: Vec<String>,
    /// It lives in a read-only additional store.
    #[serde(default)]
    pub read_only: bool,
    /// The owner uids its tar used, sorted, each once (containers-storage's `uidset`).
    #[serde(default)]
    pub uids: Vec<u32>,
    /// The owner gids its tar used (`gidset`).
    #[serde(default)]
    pub gids: Vec<u32>,
}

/// Owner ids of a layer, as a [`LayerView`] borrows them: from a [`LayerRecord`], or the
/// catalog's text (decimal ids joined by commas, sorted, each once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerIds<'a> {
    /// From a record.
    Held(&'a [u32]),
    /// As the catalog keeps them.
    Listed(&'a str),
}

impl OwnerIds<'_> {
    /// Whether there are none (a layer made empty, or recorded before they were kept).
    pub fn is_empty(&self) -> bool {
        match self {
            OwnerIds::Held(ids) => ids.is_empty(),
            OwnerIds::Listed(text) => text.is_empty(),
        }
    }

    /// The ids, in order. A piece of the catalog's text that is not an id is passed over
    /// (the catalog writes only ids, through [`OwnerIds::text`]).
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            OwnerIds::Held(ids) => ids.to_vec(),
            OwnerIds::Listed(text) => text.split(',').filter_map(|id| id.parse().ok()).collect(),
        }
    }

    /// The catalog's text for `ids`.
    pub fn text(ids: &[u32]) -> String {
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        ids.join(",")
    }
}

impl serde::Serialize for OwnerIds<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.to_vec())
    }
}

/// A layer borrowed from where it is held: a [`LayerRecord`], or the catalog's row for
/// one call of a listing's callback ([`views`]). This is also the layer's JSON
/// (`layers --json`): fields that hold nothing (no digest, no metadata, no big data, not
/// read-only) are left out, as containers-storage leaves them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LayerView<'a> {
    /// The layer's id (64 lowercase hex).
    pub id: &'a str,
    /// The parent layer's id.
    pub parent: Option<&'a str>,
    /// Names, sorted.
    pub names: &'a [String],
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// A container's read-write layer.
    pub read_write: bool,
    /// Still being written (or being deleted).
    pub incomplete: bool,
    /// `sha256:<hex>` of the bytes received when it was imported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compressed_digest: Option<&'a str>,
    /// Bytes received when it was imported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compressed_size: Option<u64>,
    /// `sha256:<hex>` of the uncompressed tar it was imported from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncompressed_digest: Option<&'a str>,
    /// Length of that tar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncompressed_size: Option<u64>,
    /// Free-form metadata (`set-metadata`).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub metadata: &'a str,
    /// Keys of its big-data items.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub big_data_names: &'a [String],
    /// It lives in a read-only additional store.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// The owner uids its tar used.
    #[serde(skip_serializing_if = "OwnerIds::is_empty")]
    pub uids: OwnerIds<'a>,
    /// The owner gids its tar used.
    #[serde(skip_serializing_if = "OwnerIds::is_empty")]
    pub gids: OwnerIds<'a>,
}

impl<'a> From<&'a LayerRecord> for LayerView<'a> {
    fn from(l: &'a LayerRecord) -> Self {
        LayerView {
            id: &l.id,
            parent: l.parent.as_deref(),
            names: &l.names,
            created: l.created,
            read_write: l.read_write,
            incomplete: l.incomplete,
            compressed_digest: l.compressed_digest.as_deref(),
            compressed_size: l.compressed_size,
            uncompressed_digest: l.uncompressed_digest.as_deref(),
            uncompressed_size: l.uncompressed_size,
            metadata: &l.metadata,
            big_data_names: &l.big_data_names,
            read_only: l.read_only,
            uids: OwnerIds::Held(&l.uids),
            gids: OwnerIds::Held(&l.gids),
        }
    }
}

impl From<&LayerView<'_>> for LayerRecord {
    fn from(v: &LayerView<'_>) -> Self {
        LayerRecord {
            id: v.id.to_owned(),
            parent: v.parent.map(str::to_owned),
            names: v.names.to_vec(),
            created: v.created,
            read_write: v.read_write,
            incomplete: v.incomplete,
            compressed_digest: v.compressed_digest.map(str::to_owned),
            compressed_size: v.compressed_size,
            uncompressed_digest: v.uncompressed_digest.map(str::to_owned),
            uncompressed_size: v.uncompressed_size,
            metadata: v.metadata.to_owned(),
            big_data_names: v.big_data_names.to_vec(),
            read_only: v.read_only,
            uids: v.uids.to_vec(),
            gids: v.gids.to_vec(),
        }
    }
}

impl serde::Serialize for LayerRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        LayerView::from(self).serialize(s)
    }
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
    /// Owner uids the tar used, sorted, each once.
    pub uids: Vec<u32>,
    /// Owner gids the tar used, sorted, each once.
    pub gids: Vec<u32>,
}

impl LayerDigests {
    /// What an applied diff's report says of the layer's content.
    pub fn of(report: &storage_core::archive::ApplyReport) -> Self {
        LayerDigests {
            compressed_digest: report.digest.clone(),
            compressed_size: Some(report.size),
            uncompressed_digest: report.tar_digest.clone(),
            uncompressed_size: Some(report.tar_size),
            uids: report.uids.clone(),
            gids: report.gids.clone(),
        }
    }
}

/// The columns [`view`] reads, after which come the name list and the owner ids.
const COLUMNS: &str = "l.id, l.parent, l.created, l.read_write, l.incomplete, l.compressed_digest,
    l.compressed_size, l.uncompressed_digest, l.uncompressed_size, l.metadata";

/// The query for `columns` and then the name list of the layers that `condition` (on
/// `l`) picks, oldest first.
fn query(sql: &Sql<'_>, columns: &str, condition: &str) -> String {
    let names = list_column(sql, ObjectKind::Layer, "l");
    format!("SELECT {columns}, {names} FROM layers AS l WHERE {condition} ORDER BY l.rowid")
}

/// [`COLUMNS`] and the owner ids: read where the catalog keeps them, empty in an
/// additional store's older catalog.
fn full_columns(sql: &Sql<'_>) -> String {
    if sql.version() >= CS_FIELDS {
        format!("{COLUMNS}, l.uids, l.gids")
    } else {
        format!("{COLUMNS}, '', ''")
    }
}

/// A row of [`query`] as a view, its names put in `names`, its big-data keys `items`.
fn view<'r>(
    r: &'r Row<'_>,
    names: &'r mut NameBuf,
    items: &'r [String],
) -> rusqlite::Result<LayerView<'r>> {
    let size = |i| r.get::<_, Option<i64>>(i).map(|v| v.map(|v| v as u64));
    Ok(LayerView {
        id: r.get_ref(0)?.as_str()?,
        parent: r.get_ref(1)?.as_str_or_null()?,
        created: r.get(2)?,
        read_write: r.get(3)?,
        incomplete: r.get(4)?,
        compressed_digest: r.get_ref(5)?.as_str_or_null()?,
        compressed_size: size(6)?,
        uncompressed_digest: r.get_ref(7)?.as_str_or_null()?,
        uncompressed_size: size(8)?,
        metadata: r.get_ref(9)?.as_str()?,
        uids: OwnerIds::Listed(r.get_ref(10)?.as_str()?),
        gids: OwnerIds::Listed(r.get_ref(11)?.as_str()?),
        names: names.fill(r.get_ref(12)?.as_str()?, 12)?,
        big_data_names: items,
        read_only: false,
    })
}

fn select(sql: &Sql<'_>, condition: &str, args: impl rusqlite::Params) -> Result<Vec<LayerRecord>> {
    let mut names = NameBuf::default();
    let mut all = Vec::new();
    let _: ControlFlow<()> = sql.each(&query(sql, &full_columns(sql), condition), args, |r| {
        all.push(LayerRecord::from(&view(r, &mut names, &[])?));
        Ok(ControlFlow::Continue(()))
    })?;
    let items = owned::big_data(sql, ObjectKind::Layer, all.iter().map(|r| r.id.as_str()))?;
    for (l, items) in all.iter_mut().zip(items) {
        l.big_data_names = items.into_iter().map(|i| i.key).collect();
    }
    Ok(all)
}

/// A layer as the plain listing shows it: its id, parent and names, borrowed from the
/// catalog's row for one call of the listing's callback ([`summaries`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSummary<'a> {
    /// The layer's id (64 lowercase hex).
    pub id: &'a str,
    /// The parent layer's id.
    pub parent: Option<&'a str>,
    /// Names, sorted.
    pub names: &'a [String],
    /// It lives in a read-only additional store.
    pub read_only: bool,
}

impl<'a> From<&'a LayerRecord> for LayerSummary<'a> {
    fn from(l: &'a LayerRecord) -> Self {
        LayerSummary {
            id: &l.id,
            parent: l.parent.as_deref(),
            names: &l.names,
            read_only: l.read_only,
        }
    }
}

/// Calls `f` on every complete layer's summary, oldest first, until it breaks; returns
/// whether it broke. As [`views`], but the scan reads only the three columns a summary
/// holds, which for the plain listing is a third of its work.
pub fn summaries(
    sql: &Sql<'_>,
    mut f: impl FnMut(&LayerSummary<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>> {
    let mut names = NameBuf::default();
    sql.each(&query(sql, "l.id, l.parent", "l.incomplete = 0"), [], |r| {
        Ok(f(&LayerSummary {
            id: r.get_ref(0)?.as_str()?,
            parent: r.get_ref(1)?.as_str_or_null()?,
            names: names.fill(r.get_ref(2)?.as_str()?, 2)?,
            read_only: false,
        }))
    })
}

/// Calls `f` on every complete layer, oldest first, until it breaks; returns whether it
/// broke.
///
/// One scan reads the rows, and each is handed out borrowed from the row and from
/// buffers that are reused: a listing of any size allocates nothing per layer, where
/// collecting [`LayerRecord`]s costs a handful of allocations a layer.
pub fn views(
    sql: &Sql<'_>,
    mut f: impl FnMut(&LayerView<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>> {
    let items: std::collections::HashMap<String, Vec<String>> =
        owned::big_data_by_owner(sql, ObjectKind::Layer)?
            .into_iter()
            .map(|(owner, items)| (owner, items.into_iter().map(|i| i.key).collect()))
            .collect();
    let mut names = NameBuf::default();
    sql.each(
        &query(sql, &full_columns(sql), "l.incomplete = 0"),
        [],
        |r| {
            let id = r.get_ref(0)?.as_str()?;
            let items = items.get(id).map_or(&[][..], Vec::as_slice);
            Ok(f(&view(r, &mut names, items)?))
        },
    )
}

/// Records a new, incomplete layer with its names.
pub fn insert(
    sql: &Sql<'_>,
    id: &str,
    parent: Option<&str>,
    names: &[String],
    read_write: bool,
) -> Result<()> {
    if sql.exists("SELECT 1 FROM layers WHERE id = ?1", [id])? {
        return Err(Error::AlreadyExists {
            kind: ObjectKind::Layer,
            id: id.to_owned(),
        });
    }
    sql.exec(
        "INSERT INTO layers (id, parent, created, read_write, incomplete) VALUES (?1, ?2, ?3, ?4, 1)",
        params![id, parent, now(), read_write],
    )?;
    claim_new(sql, ObjectKind::Layer, id, names)
}

/// Marks a layer complete, recording its digests and owner ids.
pub fn complete(sql: &Sql<'_>, id: &str, d: &LayerDigests) -> Result<()> {
    record_content(sql, id, d, "incomplete = 0,")
}

/// Records what a diff applied to a complete layer brought (`applydiff`): its digests and
/// owner ids replace the layer's, as containers-storage's `ApplyDiff` replaces them.
pub fn record_applied(sql: &Sql<'_>, id: &str, d: &LayerDigests) -> Result<()> {
    record_content(sql, id, d, "")
}

/// Sets a layer's digests and owner ids, and `also` (an assignment and a comma, or
/// nothing).
fn record_content(sql: &Sql<'_>, id: &str, d: &LayerDigests, also: &str) -> Result<()> {
    let n = sql.exec(
        &format!(
            "UPDATE layers SET {also} compressed_digest = ?2, compressed_size = ?3,
             uncompressed_digest = ?4, uncompressed_size = ?5, uids = ?6, gids = ?7 WHERE id = ?1"
        ),
        params![
            id,
            d.compressed_digest,
            d.compressed_size.map(|v| v as i64),
            d.uncompressed_digest,
            d.uncompressed_size.map(|v| v as i64),
            OwnerIds::text(&d.uids),
            OwnerIds::text(&d.gids),
        ],
    )?;
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
pub fn mark_incomplete(sql: &Sql<'_>, id: &str) -> Result<()> {
    sql.exec("UPDATE layers SET incomplete = 1 WHERE id = ?1", [id])?;
    Ok(())
}

/// Removes a layer's record with its names and big-data rows.
pub fn delete(sql: &Sql<'_>, id: &str) -> Result<()> {
    drop_all(sql, ObjectKind::Layer, id)?;
    sql.exec(
        "DELETE FROM big_data WHERE kind = 'layer' AND owner = ?1",
        [id],
    )?;
    sql.exec("DELETE FROM layers WHERE id = ?1", [id])?;
    Ok(())
}

/// A complete layer by id, name or unique id prefix.
pub fn get(sql: &Sql<'_>, key: &str) -> Result<LayerRecord> {
    let id = resolve(sql, ObjectKind::Layer, key)?;
    select(sql, "l.id = ?1", [&id])?
        .pop()
        .ok_or(Error::NotFound {
            kind: ObjectKind::Layer,
            id,
        })
}

/// Every complete layer, oldest first.
pub fn list(sql: &Sql<'_>) -> Result<Vec<LayerRecord>> {
    select(sql, "l.incomplete = 0", [])
}

/// Every incomplete layer (being written or deleted, or left by a crash), newest first,
/// so that children come before their parents.
pub fn list_incomplete(sql: &Sql<'_>) -> Result<Vec<LayerRecord>> {
    let mut all = select(sql, "l.incomplete = 1", [])?;
    all.reverse();
    Ok(all)
}

/// The ids of the layers whose parent is `id` (complete or not).
pub fn children(sql: &Sql<'_>, id: &str) -> Result<Vec<String>> {
    sql.rows(
        "SELECT id FROM layers WHERE parent = ?1 ORDER BY id",
        [id],
        |r| r.get(0),
    )
}

/// How many layers the chain from `id` down holds in this catalog (`id` itself counted),
/// walking at most `limit` of them, and the parent of the last one walked: `Some` when
/// the walk stopped at `limit`, or the chain goes on into an additional store.
pub fn chain_depth(sql: &Sql<'_>, id: &str, limit: usize) -> Result<(usize, Option<String>)> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let found: Vec<(i64, Option<String>)> = sql.rows(
        "WITH RECURSIVE chain(id, parent, depth) AS (
             SELECT id, parent, 1 FROM layers WHERE id = ?1
             UNION ALL
             SELECT l.id, l.parent, c.depth + 1 FROM layers l JOIN chain c ON l.id = c.parent
             WHERE c.depth < ?2
         )
         SELECT depth, parent FROM chain ORDER BY depth DESC LIMIT 1",
        params![id, limit],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(found
        .into_iter()
        .next()
        .map_or((0, None), |(depth, parent)| (depth as usize, parent)))
}

/// The names of a layer.
pub fn names(sql: &Sql<'_>, id: &str) -> Result<Vec<String>> {
    names_of(sql, ObjectKind::Layer, id)
}

impl Catalog {
    /// Records a new, incomplete layer with its names.
    pub fn create_layer(
        &mut self,
        id: &str,
        parent: Option<&str>,
        names: &[String],
        read_write: bool,
    ) -> Result<()> {
        self.write(|sql| insert(sql, id, parent, names, read_write))
    }

    /// Marks a layer complete, recording its digests.
    pub fn complete_layer(&mut self, id: &str, d: &LayerDigests) -> Result<()> {
        self.write(|sql| complete(sql, id, d))
    }

    /// Marks a layer incomplete before its data is removed.
    pub fn mark_incomplete(&mut self, id: &str) -> Result<()> {
        self.write(|sql| mark_incomplete(sql, id))
    }

    /// Removes a layer's record.
    pub fn delete_layer(&mut self, id: &str) -> Result<()> {
        self.write(|sql| delete(sql, id))
    }

    /// Every complete layer, oldest first.
    pub fn layers(&self) -> Result<Vec<LayerRecord>> {
        self.read(list)
    }

    /// Calls `f` on every complete layer's summary, oldest first, until it breaks (see
    /// [`summaries`]).
    pub fn each_layer_summary(
        &self,
        f: impl FnMut(&LayerSummary<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>> {
        self.read(|sql| summaries(sql, f))
    }

    /// Calls `f` on every complete layer, oldest first, until it breaks (see [`views`]).
    pub fn each_layer(
        &self,
        f: impl FnMut(&LayerView<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>> {
        self.read(|sql| views(sql, f))
    }

    /// Every incomplete layer, children before parents.
    pub fn incomplete_layers(&self) -> Result<Vec<LayerRecord>> {
        self.read(list_incomplete)
    }

    /// Finds a complete layer by id, name, or unique id prefix.
    pub fn layer(&self, key: &str) -> Result<LayerRecord> {
        self.read(|sql| get(sql, key))
    }

    /// The ids of the layers whose parent is `id` (complete or not).
    pub fn children(&self, id: &str) -> Result<Vec<String>> {
        self.read(|sql| children(sql, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("{:02x}", n).repeat(32)
    }

    fn open() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        (dir, c)
    }

    #[test]
    fn a_layer_serialises_without_empty_fields_and_reads_back_the_same() {
        let (_d, mut c) = open();
        c.create_layer(&id(1), None, &["base".into()], false)
            .unwrap();
        c.complete_layer(&id(1), &LayerDigests::default()).unwrap();
        let bare = c.layer("base").unwrap();
        let json = serde_json::to_value(&bare).unwrap();
        for absent in [
            "compressed_digest",
            "uncompressed_size",
            "metadata",
            "big_data_names",
            "read_only",
        ] {
            assert!(json.get(absent).is_none(), "{absent} in {json}");
        }
        assert!(
            json.get("parent").is_some(),
            "parent is always there: {json}"
        );
        assert_eq!(serde_json::from_value::<LayerRecord>(json).unwrap(), bare);
        let full = LayerRecord {
            compressed_digest: Some("sha256:1".into()),
            uncompressed_size: Some(7),
            metadata: "m".into(),
            big_data_names: vec!["k".into()],
            read_only: true,
            ..bare
        };
        let json = serde_json::to_value(&full).unwrap();
        assert_eq!(json["uncompressed_size"], 7);
        assert_eq!(serde_json::from_value::<LayerRecord>(json).unwrap(), full);
    }

    #[test]
    fn incomplete_layers_are_not_listed_until_completed() {
        let (_d, mut c) = open();
        c.create_layer(&id(1), None, &["base".into()], false)
            .unwrap();
        assert!(c.layers().unwrap().is_empty());
        assert!(matches!(c.layer("base"), Err(Error::NotFound { .. })));
        assert_eq!(c.incomplete_layers().unwrap().len(), 1);
        c.complete_layer(&id(1), &LayerDigests::default()).unwrap();
        let all = c.layers().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].names, vec!["base".to_string()]);
    }

    #[test]
    fn lookup_by_id_name_and_unique_prefix() {
        let (_d, mut c) = open();
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
    fn a_taken_name_refuses_a_new_layer_and_leaves_nothing() {
        let (_d, mut c) = open();
        c.create_layer(&id(1), None, &["n".into()], false).unwrap();
        let e = c
            .create_layer(&id(2), None, &["n".into()], false)
            .unwrap_err();
        assert!(matches!(e, Error::DuplicateName { .. }), "{e}");
        assert!(c.incomplete_layers().unwrap().iter().all(|l| l.id != id(2)));
    }

    #[test]
    fn incomplete_layers_come_children_first() {
        let (_d, mut c) = open();
        c.create_layer(&id(1), None, &[], false).unwrap();
        c.create_layer(&id(2), Some(&id(1)), &[], false).unwrap();
        assert_eq!(c.children(&id(1)).unwrap(), vec![id(2)]);
        let order: Vec<String> = c
            .incomplete_layers()
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(order, vec![id(2), id(1)]);
    }

    #[test]
    fn streamed_views_and_summaries_agree_with_the_collected_records() {
        let (_d, mut c) = open();
        for n in 1..=12u8 {
            let names: Vec<String> = (0..n % 3).map(|k| format!("l{n}-{k}")).collect();
            let parent = (n > 1).then(|| id(n - 1));
            c.create_layer(&id(n), parent.as_deref(), &names, n % 4 == 0)
                .unwrap();
            let digests = LayerDigests {
                compressed_digest: (n % 2 == 0).then(|| format!("sha256:{n}")),
                uncompressed_size: Some(u64::from(n) * 1000),
                ..LayerDigests::default()
            };
            c.complete_layer(&id(n), &digests).unwrap();
            if n % 5 == 0 {
                c.write(|sql| {
                    crate::db::names::set_metadata(sql, ObjectKind::Layer, &id(n), "meta")?;
                    crate::db::big_data::put(
                        sql,
                        ObjectKind::Layer,
                        &id(n),
                        &crate::db::BigDataInfo {
                            key: "k".into(),
                            size: 1,
                            digest: "sha256:k".into(),
                            file: format!("f{n}"),
                        },
                    )
                })
                .unwrap();
            }
        }
        let records = c.layers().unwrap();
        let (mut views, mut json, mut summaries) = (Vec::new(), Vec::new(), Vec::new());
        let flow = c.each_layer(|v| {
            views.push(LayerRecord::from(v));
            json.push(serde_json::to_value(v).unwrap());
            ControlFlow::Continue(())
        });
        assert!(flow.unwrap().is_continue());
        let flow = c.each_layer_summary(|s| {
            summaries.push((
                s.id.to_owned(),
                s.parent.map(str::to_owned),
                s.names.to_vec(),
            ));
            ControlFlow::Continue(())
        });
        assert!(flow.unwrap().is_continue());
        assert_eq!(views, records);
        assert_eq!(
            json,
            serde_json::to_value(&records)
                .unwrap()
                .as_array()
                .unwrap()
                .clone()
        );
        let expected: Vec<_> = records
            .iter()
            .map(|l| (l.id.clone(), l.parent.clone(), l.names.clone()))
            .collect();
        assert_eq!(summaries, expected);
        assert!(
            records
                .iter()
                .any(|l| l.big_data_names == ["k"] && l.metadata == "meta")
        );
        assert!(records.iter().any(|l| l.names.len() == 2 && l.read_write));
    }

    #[test]
    fn a_listing_stops_where_its_callback_breaks() {
        let (_d, mut c) = open();
        for n in 1..=3 {
            c.create_layer(&id(n), None, &[], false).unwrap();
            c.complete_layer(&id(n), &LayerDigests::default()).unwrap();
        }
        let mut seen = 0;
        let flow = c.each_layer_summary(|_| {
            seen += 1;
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(flow.unwrap().is_break());
        assert_eq!(seen, 2);
    }
}
