//! `check` and `check --repair`: whether the catalog and the data agree.
//!
//! What is checked, as containers-storage's `check` does:
//! - the catalog database passes SQLite's own integrity check;
//! - every recorded layer has its data, and its tree reads whole (every entry reachable,
//!   no path past the limit every walk keeps);
//! - no layer data exists without a record;
//! - nothing is left half-done: no incomplete layer, no pending removal;
//! - the driver's mount records match what is mounted;
//! - every big-data item's file exists with its recorded size and digest, and no big-data
//!   file exists without a record.
//!
//! `--repair` removes what nothing refers to and finishes what was left half-done, each
//! under the lock its writer would hold, so a concurrent writer is never undone. Damage
//! to a recorded object (missing or unreadable data, a big-data item that does not match
//! its digest) is reported, not repaired: deleting the object is the caller's decision.
//!
//! Layer digests are not recomputed: a layer's recorded digest is that of the archive it
//! came from, which its export does not yet reproduce byte for byte.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use storage_core::Report;
use storage_core::error::{Error, ObjectKind, Result};
use storage_core::op::Op;

use super::big_data::big_data_lock;
use super::{Store, join_error, layer_lock};
use crate::db;

/// What kind of problem `check` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The catalog database is damaged.
    Catalog,
    /// A recorded layer has no data.
    MissingData,
    /// A recorded layer's data cannot be read whole.
    UnreadableData,
    /// Layer data or a big-data file that no record refers to.
    Unreferenced,
    /// An operation was interrupted: an incomplete layer, a pending removal.
    Unfinished,
    /// A big-data item whose file is missing or does not match its size and digest.
    BigData,
    /// A mount record with nothing mounted, or a mount with no record.
    StaleMount,
    /// A disk attachment whose server or device is gone, or that a killed process left
    /// half made or half removed.
    BrokenAttachment,
}

/// One problem `check` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The object it is about (layer id, `image <id> key <key>`, a path).
    pub object: String,
    /// What is wrong.
    pub detail: String,
    /// What `--repair` did about it, when it did something.
    pub repaired: Option<String>,
}

/// What `check` looked at and found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Recorded layers checked.
    pub layers: usize,
    /// Big-data items checked.
    pub big_data: usize,
    /// What is wrong (empty for a consistent store).
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Adds a problem found outside the catalog and its driver (the run root's disk
    /// attachments), with what `--repair` did about it.
    pub fn add(
        &mut self,
        kind: ProblemKind,
        object: impl Into<String>,
        detail: impl Into<String>,
        repaired: Option<String>,
    ) {
        self.found(kind, object, detail);
        if let Some(how) = repaired {
            self.repaired(how);
        }
    }

    fn found(&mut self, kind: ProblemKind, object: impl Into<String>, detail: impl Into<String>) {
        self.problems.push(Problem {
            kind,
            object: object.into(),
            detail: detail.into(),
            repaired: None,
        });
    }

    /// Marks the last problem repaired.
    fn repaired(&mut self, how: impl Into<String>) {
        if let Some(p) = self.problems.last_mut() {
            p.repaired = Some(how.into());
        }
    }

    /// The problems `--repair` left as they were.
    pub fn unrepaired(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.repaired.is_none())
    }
}

/// One big-data row, as `check` reads them all.
struct Item {
    kind: String,
    owner: String,
    key: String,
    size: u64,
    digest: String,
    file: String,
}

impl Store {
    /// Checks that the catalog and the data agree; with `repair`, removes what nothing
    /// refers to and finishes what was left half-done (see the module's documentation).
    pub async fn check(&self, op: &Op, repair: bool) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let integrity: Vec<String> = self
            .read(|sql| sql.rows("PRAGMA integrity_check", [], |r| r.get(0)))
            .await?;
        if integrity != ["ok"] {
            report.found(ProblemKind::Catalog, "catalog.db", integrity.join("; "));
        }
        self.check_layers(op, repair, &mut report).await?;
        self.check_unfinished(op, repair, &mut report).await?;
        for m in self.driver.check_mounts(op, repair).await? {
            report.found(ProblemKind::StaleMount, m.id, m.detail);
            if m.repaired {
                report.repaired("made the record match what is mounted");
            }
        }
        self.check_big_data(repair, &mut report).await?;
        Ok(report)
    }

    async fn check_layers(&self, op: &Op, repair: bool, report: &mut CheckReport) -> Result<()> {
        let rows: Vec<(String, Option<String>, bool)> = self
            .read(|sql| {
                sql.rows(
                    "SELECT id, parent, incomplete FROM layers ORDER BY id",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)),
                )
            })
            .await?;
        let recorded: HashSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        for (id, parent, incomplete) in &rows {
            op.check()?;
            if *incomplete {
                continue; // unfinished: the next step's
            }
            report.layers += 1;
            if !self.driver.exists(op, id).await? {
                report.found(ProblemKind::MissingData, id, "the layer's data is missing");
                continue;
            }
            // Reading every entry finds what cannot be read, and trees past the limit.
            if let Err(e) = self.driver.diff_size(op, id, parent.as_deref()).await {
                report.found(ProblemKind::UnreadableData, id, Report(&e).to_string());
            }
        }
        let stored = match self.driver.stored_layers(op).await {
            Ok(ids) => ids,
            Err(Error::Unsupported { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        for id in stored.iter().filter(|id| !recorded.contains(id.as_str())) {
            report.found(ProblemKind::Unreferenced, id, "layer data with no record");
            if !repair {
                continue;
            }
            // Under the layer's lock, and only if still unrecorded: a layer is recorded
            // before its data is made, so this cannot be one being created.
            let Some(_lock) = self.run.try_lock(&layer_lock(id))? else {
                continue;
            };
            let again = id.clone();
            let still = !self
                .read(move |sql| sql.exists("SELECT 1 FROM layers WHERE id = ?1", [&again]))
                .await?;
            if still {
                self.driver.remove(op, id).await?;
                report.repaired("removed the data");
            }
        }
        Ok(())
    }

    async fn check_unfinished(
        &self,
        op: &Op,
        repair: bool,
        report: &mut CheckReport,
    ) -> Result<()> {
        let incomplete = self.db(|c| c.incomplete_layers()).await?;
        let pending = self.read(db::pending_removals).await?;
        let first = report.problems.len();
        for layer in &incomplete {
            report.found(ProblemKind::Unfinished, &layer.id, "an incomplete layer");
        }
        for p in &pending {
            report.found(ProblemKind::Unfinished, &p.path, "a pending removal");
        }
        if !repair || report.problems.len() == first {
            return Ok(());
        }
        // What recovery at open does, now: whatever no live writer holds is finished.
        let problems = self.recover(op).await;
        let left_layers = self.db(|c| c.incomplete_layers()).await?;
        let left_layers: HashSet<String> = left_layers.into_iter().map(|l| l.id).collect();
        let left_paths: HashSet<String> = self
            .read(db::pending_removals)
            .await?
            .into_iter()
            .map(|p| p.path)
            .collect();
        for p in &mut report.problems[first..] {
            if !left_layers.contains(&p.object) && !left_paths.contains(&p.object) {
                p.repaired = Some("removed what the interrupted operation left".into());
            } else if let Some(e) = problems.first() {
                p.detail = format!("{}; finishing it failed: {}", p.detail, Report(e));
            }
        }
        Ok(())
    }

    async fn check_big_data(&self, repair: bool, report: &mut CheckReport) -> Result<()> {
        let items: Vec<Item> = self
            .read(|sql| {
                sql.rows(
                    "SELECT kind, owner, key, size, digest, file FROM big_data ORDER BY kind, owner, key",
                    [],
                    |r| {
                        Ok(Item {
                            kind: r.get(0)?,
                            owner: r.get(1)?,
                            key: r.get(2)?,
                            size: r.get::<_, i64>(3)? as u64,
                            digest: r.get(4)?,
                            file: r.get(5)?,
                        })
                    },
                )
            })
            .await?;
        report.big_data = items.len();
        let root = self.root.clone();
        let files: BTreeSet<String> = items.iter().map(|i| i.file.clone()).collect();
        let (bad, stray) = tokio::task::spawn_blocking(move || {
            let bad: Vec<(String, String)> = items
                .iter()
                .filter_map(|i| {
                    verify_item(&root.join(&i.file), i.size, &i.digest)
                        .err()
                        .map(|why| (format!("{} {} key {:?}", i.kind, i.owner, i.key), why))
                })
                .collect();
            let stray = stray_files(&root, &files);
            (bad, stray)
        })
        .await
        .map_err(join_error)?;
        for (object, why) in bad {
            report.found(ProblemKind::BigData, object, why);
        }
        for (kind, owner, rel) in stray? {
            report.found(
                ProblemKind::Unreferenced,
                &rel,
                "a big-data file with no record",
            );
            if !repair {
                continue;
            }
            // Under the owner's big-data lock, and only if still unrecorded: a writer
            // writes its file before it records it, holding that lock.
            let Ok(kind) = parse_kind(&kind) else {
                continue;
            };
            let _lock = self.lock(&big_data_lock(kind, &owner)).await?;
            let again = rel.clone();
            let still = !self
                .read(move |sql| sql.exists("SELECT 1 FROM big_data WHERE file = ?1", [&again]))
                .await?;
            if still {
                let path = self.root.join(&rel);
                tokio::task::spawn_blocking(move || super::remove_tree(&path))
                    .await
                    .map_err(join_error)??;
                report.repaired("removed the file");
            }
        }
        Ok(())
    }
}

/// Whether the file holds `size` bytes whose digest is `digest`; why not otherwise.
fn verify_item(path: &Path, size: u64, digest: &str) -> std::result::Result<(), String> {
    let (len, actual) =
        db::big_data::file_digest(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    if len != size || actual != digest {
        return Err(format!(
            "{} holds {len} bytes with digest {actual}; the record says {size} bytes, {digest}",
            path.display()
        ));
    }
    Ok(())
}

/// Files under `bigdata/<kind>/<owner>/` that no row names, as (kind, owner, path
/// relative to the root).
fn stray_files(root: &Path, known: &BTreeSet<String>) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    let base = root.join("bigdata");
    for (kind, kind_dir) in entries(&base)? {
        for (owner, owner_dir) in entries(&kind_dir)? {
            for (name, _) in entries(&owner_dir)? {
                let rel = format!("bigdata/{kind}/{owner}/{name}");
                if !known.contains(&rel) {
                    out.push((kind.clone(), owner.clone(), rel));
                }
            }
        }
    }
    Ok(out)
}

/// The entries of a directory by name (none when it does not exist).
fn entries(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io_path("list", dir, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io_path("list", dir, e))?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    out.sort();
    Ok(out)
}

fn parse_kind(kind: &str) -> std::result::Result<ObjectKind, ()> {
    match kind {
        "layer" => Ok(ObjectKind::Layer),
        "image" => Ok(ObjectKind::Image),
        "container" => Ok(ObjectKind::Container),
        _ => Err(()),
    }
}
