//! The big-data items of many rows, fetched at once.
//!
//! A listing that asked for each row's items with an indexed lookup per row would pay a
//! B-tree descent a row; here a handful of rows still get those lookups, and more get one
//! ordered scan of the kind's items, gathered by owner. (Names need neither: each row
//! carries its own name list.)

use std::collections::HashMap;
use std::ops::ControlFlow;

use rusqlite::params;
use storage_core::error::{ObjectKind, Result};

use crate::db::Sql;
use crate::db::big_data::{self, BigDataInfo};

/// Up to this many rows, per-row lookups beat a scan of the whole kind.
const PER_ROW: usize = 8;

/// The big-data items, by key, of each of the rows `ids` (of `kind`), in the order of
/// `ids`.
pub(super) fn big_data<'a>(
    sql: &Sql<'_>,
    kind: ObjectKind,
    ids: impl Iterator<Item = &'a str>,
) -> Result<Vec<Vec<BigDataInfo>>> {
    let ids: Vec<&str> = ids.collect();
    if ids.len() <= PER_ROW {
        return ids.iter().map(|id| big_data::list(sql, kind, id)).collect();
    }
    let mut all = big_data_by_owner(sql, kind)?;
    Ok(ids
        .iter()
        .map(|id| all.remove(*id).unwrap_or_default())
        .collect())
}

/// Every big-data item of `kind`, by owner, each owner's by key: one ordered scan. Only
/// owners that have items are in the map, so a kind that has none (layers rarely do)
/// costs no more than the scan.
pub(super) fn big_data_by_owner(
    sql: &Sql<'_>,
    kind: ObjectKind,
) -> Result<HashMap<String, Vec<BigDataInfo>>> {
    let mut all: HashMap<String, Vec<BigDataInfo>> = HashMap::new();
    // The scan never breaks.
    let _: ControlFlow<()> = sql.each(
        "SELECT owner, key, size, digest, file FROM big_data WHERE kind = ?1 ORDER BY owner, key",
        params![kind.to_string()],
        |r| {
            let owner = r.get_ref(0)?.as_str()?;
            let item = big_data::item(r, 1)?;
            match all.get_mut(owner) {
                Some(items) => items.push(item),
                None => {
                    all.insert(owner.to_owned(), vec![item]);
                }
            }
            Ok(ControlFlow::Continue(()))
        },
    )?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::layers::{self, LayerDigests};
    use crate::db::{Catalog, images};

    fn id(n: usize) -> String {
        format!("{n:064x}")
    }

    /// Layers and images with zero to three names and big-data items each, in an order
    /// where owners' ids do not follow their rowids.
    fn build(c: &mut Catalog, rows: usize) {
        c.write(|sql| {
            for n in 0..rows {
                let lid = id(rows - n);
                let names: Vec<String> = (0..n % 4).map(|k| format!("l{n}-{}", 3 - k)).collect();
                layers::insert(sql, &lid, None, &names, false)?;
                layers::complete(sql, &lid, &LayerDigests::default())?;
                let iid = id(10_000 + rows - n);
                let names: Vec<String> = (0..(n + 1) % 4).map(|k| format!("i{n}-{k}")).collect();
                images::insert(sql, &iid, Some(&lid), &names, "", None)?;
                for k in (0..n % 3).rev() {
                    for (kind, owner) in [(ObjectKind::Layer, &lid), (ObjectKind::Image, &iid)] {
                        let item = BigDataInfo {
                            key: format!("key-{k}"),
                            size: k as u64,
                            digest: format!("sha256:{k}"),
                            file: format!("f-{n}-{k}"),
                        };
                        big_data::put(sql, kind, owner, &item)?;
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_listing_gives_each_row_its_names_and_items_as_single_lookups_do() {
        for rows in [PER_ROW - 1, PER_ROW + 1, 50] {
            let dir = tempfile::tempdir().unwrap();
            let mut c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
            build(&mut c, rows);
            let all = c.layers().unwrap();
            assert_eq!(all.len(), rows);
            for l in &all {
                assert_eq!(*l, c.layer(&l.id).unwrap(), "{rows} rows");
                let mut sorted = l.names.clone();
                sorted.sort();
                assert_eq!(l.names, sorted);
            }
            assert!(all.iter().any(|l| l.names.len() == 3));
            assert!(all.iter().any(|l| l.big_data_names.len() == 2));
            let images = c.images().unwrap();
            assert_eq!(images.len(), rows);
            for i in &images {
                assert_eq!(*i, c.image(&i.id).unwrap(), "{rows} rows");
            }
            assert!(images.iter().any(|i| i.big_data.len() == 2));
        }
    }
}
