//! `NameLookupCache`: an in-memory index of every image store's tree, in front of an
//! [`ImageStorer`], with `delete_branch`.
//!
//! The index is rebuilt from the storer when the cache opens, whatever order the images
//! come back in, and kept in step by the calls that go through it. It is per process:
//! another process's writes are seen by the next cache opened.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use storage_core::driver::TarReader;
use storage_core::error::{Error, ObjectKind, Result};
use storage_core::object_url::ObjectUrl;
use storage_core::op::Op;

use crate::image_store::{Image, ImageStorer, NewImage, SCRATCH};

/// One store's tree: images by id, and each image's children.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoreIndex {
    images: BTreeMap<String, Image>,
    children: BTreeMap<String, BTreeSet<String>>,
}

impl StoreIndex {
    /// Builds the tree of `store` from its images, scratch included, in any order.
    /// `CorruptStore` when scratch is missing or an image's parent is not among them.
    pub fn build(store: &str, rows: impl IntoIterator<Item = Image>) -> Result<Self> {
        let mut index = StoreIndex::default();
        for image in rows {
            index.insert(image);
        }
        let corrupt = |reason: String| Error::CorruptStore {
            path: format!("/storage/images/{store}").into(),
            reason,
        };
        if !index.images.contains_key(SCRATCH) {
            return Err(corrupt(format!(
                "image store {store} has no {SCRATCH} image"
            )));
        }
        for (id, image) in &index.images {
            if let Some(p) = &image.parent
                && !index.images.contains_key(p)
            {
                return Err(corrupt(format!("image {id} names a missing parent {p}")));
            }
        }
        Ok(index)
    }

    fn insert(&mut self, image: Image) {
        if let Some(p) = &image.parent {
            self.children
                .entry(p.clone())
                .or_default()
                .insert(image.id.clone());
        }
        self.images.insert(image.id.clone(), image);
    }

    fn remove(&mut self, id: &str) {
        if let Some(image) = self.images.remove(id)
            && let Some(p) = image.parent
            && let Some(siblings) = self.children.get_mut(&p)
        {
            siblings.remove(id);
        }
        self.children.remove(id);
    }

    /// An image by id.
    pub fn get(&self, id: &str) -> Option<&Image> {
        self.images.get(id)
    }

    /// The ids of an image's children.
    pub fn children(&self, id: &str) -> impl Iterator<Item = &String> {
        self.children.get(id).into_iter().flatten()
    }
}

/// The image stores' trees, cached in front of an [`ImageStorer`].
pub struct NameLookupCache {
    storer: Arc<dyn ImageStorer>,
    stores: Mutex<BTreeMap<String, StoreIndex>>,
}

impl NameLookupCache {
    /// Opens the cache, indexing every image store the storer has.
    pub async fn open(op: &Op, storer: Arc<dyn ImageStorer>) -> Result<Self> {
        let mut stores = BTreeMap::new();
        for url in storer.list_image_stores(op).await? {
            let name = url.store().to_owned();
            stores.insert(name.clone(), load(op, storer.as_ref(), &name).await?);
        }
        Ok(NameLookupCache {
            storer,
            stores: Mutex::new(stores),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, StoreIndex>) -> T) -> Result<T> {
        let mut guard = self.stores.lock().map_err(|_| Error::CorruptStore {
            path: "/storage/images".into(),
            reason: "image cache lock poisoned by an earlier panic".into(),
        })?;
        Ok(f(&mut guard))
    }

    fn indexed(&self, store: &str, id: &str) -> Result<Image> {
        self.with(|stores| {
            let index = stores.get(store).ok_or_else(|| Error::StoreNotFound {
                store: store.to_owned(),
                reason: "no image store has this name".into(),
            })?;
            index.get(id).cloned().ok_or_else(|| Error::NotFound {
                kind: ObjectKind::Image,
                id: format!("{id} in image store {store}"),
            })
        })?
    }

    /// Deletes `image` and walks up its ancestors, deleting each until it reaches
    /// scratch, an image in `keep`, or an image with other children. Returns the ids it
    /// deleted, leaf first.
    pub async fn delete_branch(
        &self,
        op: &Op,
        store: &str,
        image: &str,
        keep: &[String],
    ) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        let mut current = self.indexed(store, image)?;
        loop {
            if current.id == SCRATCH || keep.contains(&current.id) {
                break;
            }
            let has_children = self.with(|stores| {
                stores
                    .get(store)
                    .is_some_and(|i| i.children(&current.id).next().is_some())
            })?;
            if has_children && deleted.is_empty() {
                return Err(Error::ImageInUse {
                    id: format!("{} in image store {store}", current.id),
                    reason: "it has child images".into(),
                });
            }
            if has_children {
                break;
            }
            match self.delete_image(op, store, &current.id).await {
                Ok(()) => deleted.push(current.id.clone()),
                // An ancestor in use (a container on it) ends the walk.
                Err(Error::ImageInUse { .. }) if !deleted.is_empty() => break,
                Err(e) => return Err(e),
            }
            let Some(parent) = current.parent.clone() else {
                break;
            };
            current = self.indexed(store, &parent)?;
        }
        Ok(deleted)
    }
}

async fn load(op: &Op, storer: &dyn ImageStorer, store: &str) -> Result<StoreIndex> {
    let scratch = match storer.get_image(op, store, SCRATCH).await {
        Ok(s) => s,
        Err(Error::NotFound { .. }) => {
            return Err(Error::CorruptStore {
                path: format!("/storage/images/{store}").into(),
                reason: format!("image store {store} has no {SCRATCH} image"),
            });
        }
        Err(e) => return Err(e),
    };
    let images = storer.list_images(op, store, &[]).await?;
    StoreIndex::build(store, std::iter::once(scratch).chain(images))
}

#[async_trait]
impl ImageStorer for NameLookupCache {
    async fn create_image_store(&self, op: &Op, name: &str) -> Result<ObjectUrl> {
        let url = self.storer.create_image_store(op, name).await?;
        let index = load(op, self.storer.as_ref(), name).await?;
        self.with(|s| s.insert(name.to_owned(), index))?;
        Ok(url)
    }

    async fn get_image_store(&self, op: &Op, name: &str) -> Result<ObjectUrl> {
        if self.with(|s| s.contains_key(name))? {
            return Ok(ObjectUrl::image_store(name));
        }
        self.storer.get_image_store(op, name).await
    }

    async fn list_image_stores(&self, _op: &Op) -> Result<Vec<ObjectUrl>> {
        self.with(|s| s.keys().map(|n| ObjectUrl::image_store(n)).collect())
    }

    async fn delete_image_store(&self, op: &Op, name: &str) -> Result<()> {
        self.storer.delete_image_store(op, name).await?;
        self.with(|s| s.remove(name))?;
        Ok(())
    }

    async fn write_image(
        &self,
        op: &Op,
        store: &str,
        image: NewImage,
        tar: TarReader,
    ) -> Result<Image> {
        let written = self.storer.write_image(op, store, image, tar).await?;
        let copy = written.clone();
        self.with(|s| {
            if let Some(index) = s.get_mut(store) {
                index.insert(copy);
            }
        })?;
        Ok(written)
    }

    async fn get_image(&self, _op: &Op, store: &str, id: &str) -> Result<Image> {
        self.indexed(store, id)
    }

    async fn list_images(&self, _op: &Op, store: &str, ids: &[String]) -> Result<Vec<Image>> {
        self.with(|stores| {
            let index = stores.get(store).ok_or_else(|| Error::StoreNotFound {
                store: store.to_owned(),
                reason: "no image store has this name".into(),
            })?;
            Ok(index
                .images
                .values()
                .filter(|i| i.id != SCRATCH && (ids.is_empty() || ids.contains(&i.id)))
                .cloned()
                .collect())
        })?
    }

    async fn delete_image(&self, op: &Op, store: &str, id: &str) -> Result<()> {
        self.storer.delete_image(op, store, id).await?;
        self.with(|s| {
            if let Some(index) = s.get_mut(store) {
                index.remove(id);
            }
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, parent: Option<&str>) -> Image {
        Image {
            store: "s".into(),
            id: id.into(),
            parent: parent.map(str::to_owned),
            layer: format!("layer-{id}"),
            created: 0,
            metadata: BTreeMap::new(),
        }
    }

    fn rows() -> Vec<Image> {
        vec![
            image(SCRATCH, None),
            image("1", Some(SCRATCH)),
            image("10", Some("1")),
            image("100", Some("10")),
            image("2", Some(SCRATCH)),
            image("20", Some("2")),
            image("30", Some("20")),
            image("31", Some("20")),
        ]
    }

    #[test]
    fn rows_in_any_order_rebuild_the_same_index() {
        let expected = StoreIndex::build("s", rows()).unwrap();
        let mut r = rows();
        // Every rotation and the reverse of each: children before parents, and mixed.
        for shift in 0..r.len() {
            r.rotate_left(1);
            let mut rev = r.clone();
            rev.reverse();
            assert_eq!(
                StoreIndex::build("s", r.clone()).unwrap(),
                expected,
                "shift {shift}"
            );
            assert_eq!(
                StoreIndex::build("s", rev).unwrap(),
                expected,
                "reversed {shift}"
            );
        }
        let kids: Vec<&String> = expected.children("20").collect();
        assert_eq!(kids, ["30", "31"]);
    }

    #[test]
    fn a_missing_scratch_or_parent_is_corruption() {
        let no_scratch: Vec<Image> = rows().into_iter().filter(|i| i.id != SCRATCH).collect();
        assert!(matches!(
            StoreIndex::build("s", no_scratch),
            Err(Error::CorruptStore { .. })
        ));
        let orphan: Vec<Image> = rows().into_iter().filter(|i| i.id != "10").collect();
        assert!(matches!(
            StoreIndex::build("s", orphan),
            Err(Error::CorruptStore { .. })
        ));
    }
}
