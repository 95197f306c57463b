//! `Listing`: a store's catalog and its additional stores' catalogs, opened for listing
//! on the calling thread.
//!
//! A listing needs no driver and no run root: incomplete layers and objects being removed
//! are never listed. A short command that only lists opens a `Listing` instead of a
//! [`Store`](crate::Store), and starts no driver, no runtime and no thread. Opening a
//! store also finishes what a crash left; a `Listing` only tells whether anything is left
//! ([`Listing::unfinished`]), so that its caller can open the store instead.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use storage_core::error::{Error, Result};

use crate::db::{Catalog, ContainerRecord, ImageRecord, LayerRecord, LayerSummary, LayerView};

/// The catalogs a store lists from. Every call blocks: use it outside async code.
pub struct Listing {
    own: Catalog,
    additional: Vec<Catalog>,
}

impl Listing {
    /// Opens the catalog in `root` (creating or migrating it, as opening the store
    /// would) and the catalogs of the additional stores rooted at `additional`,
    /// read-only.
    pub fn open(root: &Path, additional: &[PathBuf]) -> Result<Self> {
        let own = Catalog::open_in(root)?;
        own.keep_log_on_close()?;
        let additional = additional
            .iter()
            .map(|r| crate::store::additional::open_catalog(r))
            .collect::<Result<_>>()?;
        Ok(Listing { own, additional })
    }

    /// Whether this store holds work a crash (or a running writer) left unfinished,
    /// which opening the [`Store`](crate::Store) would finish.
    pub fn unfinished(&self) -> Result<bool> {
        self.own.read(crate::db::unfinished)
    }

    /// Every complete layer: this store's, oldest first, then each additional store's,
    /// marked read-only.
    pub fn layers(&self) -> Result<Vec<LayerRecord>> {
        self.with_lent(Catalog::layers, |l| l.read_only = true)
    }

    /// Calls `f` on every complete layer, in the order of [`Listing::layers`], until it
    /// breaks. Nothing is collected: this is the listing for thousands of layers.
    pub fn each_layer(&self, mut f: impl FnMut(&LayerView<'_>) -> ControlFlow<()>) -> Result<()> {
        self.each_catalog(|c, lent| {
            c.each_layer(|l| {
                f(&LayerView {
                    read_only: lent,
                    ..*l
                })
            })
        })
    }

    /// As [`Listing::each_layer`], with each layer's summary: what the plain listing
    /// prints, read for less.
    pub fn each_layer_summary(
        &self,
        mut f: impl FnMut(&LayerSummary<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        self.each_catalog(|c, lent| {
            c.each_layer_summary(|l| {
                f(&LayerSummary {
                    read_only: lent,
                    ..*l
                })
            })
        })
    }

    /// Runs `visit` on this store's catalog, then on each additional store's (`lent`),
    /// until one breaks.
    fn each_catalog(
        &self,
        mut visit: impl FnMut(&Catalog, bool) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        let lent = self.additional.iter().map(|c| (c, true));
        for (c, lent) in std::iter::once((&self.own, false)).chain(lent) {
            if visit(c, lent)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The layer `key` (an id, a unique id prefix or a name) names: this store's, else the
    /// first additional store's that has one, marked read-only; as
    /// [`Store::layer`](crate::Store::layer) finds it.
    pub fn layer(&self, key: &str) -> Result<LayerRecord> {
        let missing = match self.own.layer(key) {
            Err(e @ Error::NotFound { .. }) => e,
            other => return other,
        };
        for c in &self.additional {
            match c.layer(key) {
                Ok(mut lent) => {
                    lent.read_only = true;
                    return Ok(lent);
                }
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(missing)
    }

    /// Every image: this store's, oldest first, then each additional store's, marked
    /// read-only.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.with_lent(Catalog::images, |i| i.read_only = true)
    }

    /// Every container of this store, oldest first (additional stores lend layers and
    /// images, never containers).
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        self.own.containers()
    }

    /// `list` of this store's catalog, then of each additional store's with `mark` on
    /// every row.
    fn with_lent<T>(
        &self,
        list: impl Fn(&Catalog) -> Result<Vec<T>>,
        mark: impl Fn(&mut T),
    ) -> Result<Vec<T>> {
        let mut all = list(&self.own)?;
        for c in &self.additional {
            let mut lent = list(c)?;
            lent.iter_mut().for_each(&mark);
            all.append(&mut lent);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::LayerDigests;

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    /// A store root whose catalog holds one layer named `name`, with an image on it.
    fn store(root: &Path, n: u8, name: &str) {
        let mut c = Catalog::open(&root.join("catalog.db")).unwrap();
        c.create_layer(&id(n), None, &[name.into()], false).unwrap();
        c.complete_layer(&id(n), &LayerDigests::default()).unwrap();
        c.write(|sql| {
            crate::db::images::insert(
                sql,
                &id(n + 100),
                Some(&id(n)),
                &[format!("{name}-image")],
                "",
                None,
            )
        })
        .unwrap();
    }

    #[test]
    fn a_listing_shows_the_additional_stores_objects_after_its_own_marked_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let (own, other) = (dir.path().join("own"), dir.path().join("other"));
        std::fs::create_dir_all(&own).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        store(&own, 1, "mine");
        store(&other, 2, "lent");
        let listing = Listing::open(&own, std::slice::from_ref(&other)).unwrap();
        let layers = listing.layers().unwrap();
        let seen: Vec<(&str, bool)> = layers
            .iter()
            .map(|l| (l.names[0].as_str(), l.read_only))
            .collect();
        assert_eq!(seen, [("mine", false), ("lent", true)]);
        let (mut viewed, mut summed) = (Vec::new(), Vec::new());
        listing
            .each_layer(|l| {
                viewed.push((l.names[0].clone(), l.read_only));
                ControlFlow::Continue(())
            })
            .unwrap();
        listing
            .each_layer_summary(|l| {
                summed.push((l.names[0].clone(), l.read_only));
                ControlFlow::Continue(())
            })
            .unwrap();
        let seen: Vec<(String, bool)> = seen.iter().map(|(n, r)| (n.to_string(), *r)).collect();
        assert_eq!(viewed, seen);
        assert_eq!(summed, seen);
        let images = listing.images().unwrap();
        let seen: Vec<(&str, bool)> = images
            .iter()
            .map(|i| (i.names[0].as_str(), i.read_only))
            .collect();
        assert_eq!(seen, [("mine-image", false), ("lent-image", true)]);
        assert!(listing.containers().unwrap().is_empty());
        assert!(!listing.unfinished().unwrap());
    }

    #[test]
    fn a_layer_is_found_by_name_in_its_own_store_then_lent_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let (own, other) = (dir.path().join("own"), dir.path().join("other"));
        std::fs::create_dir_all(&own).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        store(&own, 1, "mine");
        store(&other, 2, "lent");
        let listing = Listing::open(&own, std::slice::from_ref(&other)).unwrap();
        let mine = listing.layer("mine").unwrap();
        assert_eq!((mine.id.as_str(), mine.read_only), (id(1).as_str(), false));
        let lent = listing.layer(&id(2)).unwrap();
        assert_eq!(
            (lent.names.as_slice(), lent.read_only),
            (&["lent".to_owned()][..], true)
        );
        let err = listing.layer("nobody").unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    }

    #[test]
    fn an_incomplete_layer_or_a_pending_removal_is_unfinished_work() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut c = Catalog::open(&root.join("catalog.db")).unwrap();
        c.create_layer(&id(1), None, &[], false).unwrap();
        assert!(Listing::open(root, &[]).unwrap().unfinished().unwrap());
        c.complete_layer(&id(1), &LayerDigests::default()).unwrap();
        assert!(!Listing::open(root, &[]).unwrap().unfinished().unwrap());
        c.write(|sql| crate::db::add_pending_removal(sql, "bigdata/x", "lock-x"))
            .unwrap();
        assert!(Listing::open(root, &[]).unwrap().unfinished().unwrap());
    }

    #[test]
    fn a_listing_of_a_new_root_creates_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fresh");
        let listing = Listing::open(&root, &[]).unwrap();
        assert!(listing.layers().unwrap().is_empty());
        assert!(!listing.unfinished().unwrap());
        assert!(root.join("catalog.db").exists());
    }

    #[test]
    fn a_missing_additional_store_is_an_error_naming_its_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere");
        let Err(e) = Listing::open(&dir.path().join("own"), std::slice::from_ref(&missing)) else {
            panic!("a missing additional store opened");
        };
        assert!(e.to_string().contains("nowhere"), "{e}");
    }
}
