//! The catalog at scale: 10,000 layers in chains of 100 and 1,000 images. Lookups by
//! id, name and prefix go through an index (O(log n)), never a table scan, and a full
//! listing returns every row with its names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use catalog::db::{images, layers};
use catalog::{Catalog, LayerDigests};

fn id(n: usize) -> String {
    format!("{n:064x}")
}

fn build(c: &mut Catalog) {
    c.write(|sql| {
        for chain in 0..100 {
            for depth in 0..100 {
                let n = chain * 100 + depth;
                let parent = (depth > 0).then(|| id(n - 1));
                layers::insert(
                    sql,
                    &id(n),
                    parent.as_deref(),
                    &[format!("layer-{n}")],
                    false,
                )?;
                layers::complete(sql, &id(n), &LayerDigests::default())?;
            }
        }
        for i in 0..1000 {
            // Ten images per chain, on every tenth layer.
            let top = id((i / 10) * 100 + (i % 10) * 10 + 9);
            images::insert(
                sql,
                &id(1_000_000 + i),
                Some(&top),
                &[format!("image-{i}")],
                "",
                None,
            )?;
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn ten_thousand_layers_list_whole_and_look_up_through_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
    build(&mut c);
    let all = c.layers().unwrap();
    assert_eq!(all.len(), 10_000);
    // Each name went to its own layer, not just one name to each.
    for l in &all {
        let n = usize::from_str_radix(&l.id, 16).unwrap();
        assert_eq!(l.names, [format!("layer-{n}")], "layer {}", l.id);
    }
    assert_eq!(c.images().unwrap().len(), 1000);
    assert_eq!(c.layer("layer-4242").unwrap().id, id(4242));
    assert_eq!(c.image("image-999").unwrap().id, id(1_000_999));

    let plans = c
        .read(|sql| {
            let mut p = Vec::new();
            for (q, arg) in [
                (
                    "SELECT owner FROM names WHERE kind = ?1 AND name = ?2",
                    "layer-1",
                ),
                (
                    "SELECT id FROM layers WHERE id = ?2 AND incomplete = 0 AND ?1 = ?1",
                    "x",
                ),
                (
                    "SELECT id FROM layers WHERE id >= ?2 AND id < ?2 || 'g' AND ?1 = ?1",
                    "00",
                ),
                ("SELECT id FROM layers WHERE parent = ?2 AND ?1 = ?1", "x"),
                // The recovery check every open makes.
                (
                    "SELECT id FROM layers WHERE incomplete = 1 AND ?1 = ?1 AND ?2 = ?2 ORDER BY rowid",
                    "x",
                ),
                (
                    "SELECT id FROM images WHERE top_layer = ?2 AND ?1 = ?1",
                    "x",
                ),
                (
                    "SELECT id FROM containers WHERE layer = ?2 AND ?1 = ?1",
                    "x",
                ),
                ("SELECT name FROM names WHERE kind = ?1 AND owner = ?2", "x"),
            ] {
                p.push((q, sql.explain(q, ["layer", arg])?));
            }
            Ok(p)
        })
        .unwrap();
    for (query, plan) in plans {
        assert!(
            plan.iter().all(|step| !step.starts_with("SCAN")),
            "{query} scans a table: {plan:?}"
        );
        assert!(
            plan.iter().any(|step| step.starts_with("SEARCH")),
            "{query} uses no index: {plan:?}"
        );
    }
}
