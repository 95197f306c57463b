//! Whole-store operations: `delete` of any object, `wipe`, `shutdown`.

use storage_core::error::{Error, ObjectKind, Result};
use storage_core::op::Op;

use crate::db::{Catalog, LayerRecord, big_data, containers, images, layers};
use crate::store::Store;
use crate::store::containers::forget_container;
use crate::store::images::forget_image;

impl Store {
    /// The kind and id of whatever `key` names (a container, an image or a layer).
    pub async fn resolve_any(&self, key: &str) -> Result<(ObjectKind, String)> {
        let key = key.to_owned();
        self.db(move |c| c.resolve_any(&key)).await
    }

    /// [`resolve_any`](Self::resolve_any) for a change: an object that only an
    /// additional store has is refused as read-only (naming it and the store), never
    /// reported as not found.
    pub async fn resolve_own(&self, key: &str) -> Result<(ObjectKind, String)> {
        match self.resolve_any(key).await {
            Err(e @ Error::NotFound { .. }) => {
                match self.read_foreign(key, |_, _, _| Ok(())).await? {
                    Some((kind, id, ())) => Err(self.read_only_error(kind, &id)),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// Runs `f` on the catalog that holds the object `key` names, with its kind and id:
    /// this store's (containers, images, then layers), else the first additional
    /// store's that has it. For reads (metadata, names) of whatever a listing shows.
    pub async fn read_visible<T: Send + 'static>(
        &self,
        key: &str,
        f: impl Fn(&Catalog, ObjectKind, &str) -> Result<T> + Clone + Send + 'static,
    ) -> Result<(ObjectKind, String, T)> {
        let (k, own) = (key.to_owned(), f.clone());
        let mine = self
            .db(move |c| {
                let (kind, id) = c.resolve_any(&k)?;
                own(c, kind, &id).map(|v| (kind, id, v))
            })
            .await;
        match mine {
            Err(e @ Error::NotFound { .. }) => self.read_foreign(key, f).await?.ok_or(e),
            other => other,
        }
    }

    /// Deletes whatever `key` names, with containers/storage's `delete` rules: a
    /// container goes with its layer, an image goes alone (its layers stay), a layer goes
    /// if nothing uses it.
    pub async fn delete_any(&self, op: &Op, key: &str) -> Result<ObjectKind> {
        let (kind, id) = self.resolve_own(key).await?;
        match kind {
            ObjectKind::Container => self.delete_container(op, &id).await?,
            ObjectKind::Image => self.delete_image_record(&id, |_, _| Ok(())).await?,
            _ => self.delete_layer(op, &id).await?,
        }
        Ok(kind)
    }

    /// The ids of the layers mounted now.
    pub async fn mounted_layers(&self, op: &Op) -> Result<Vec<String>> {
        self.mounted_among(op, self.layers().await?).await
    }

    /// The ids of `layers` mounted now.
    async fn mounted_among(&self, op: &Op, layers: Vec<LayerRecord>) -> Result<Vec<String>> {
        let mut mounted = Vec::new();
        for layer in layers {
            if self.driver.mount_count(op, &layer.id).await? > 0 {
                mounted.push(layer.id);
            }
        }
        Ok(mounted)
    }

    /// Deletes every container, image and layer of this store; an additional store's are
    /// never touched. Refused, with nothing removed, while any of them is mounted.
    /// Otherwise one catalog transaction forgets all of it (containers and images go,
    /// every layer is marked incomplete) before any data is removed, so a failure or a
    /// crash while the data goes leaves nothing listed, and what is left on disk is
    /// removed when the store opens next (or by `check --repair`).
    pub async fn wipe(&self, op: &Op) -> Result<()> {
        let mounted = self
            .mounted_among(op, self.read(layers::list).await?)
            .await?;
        if !mounted.is_empty() {
            return Err(Error::StoreBusy {
                path: self.root.clone(),
                mounted,
            });
        }
        let (gone_containers, gone_images, gone_layers) = self
            .write(|sql| {
                let all_layers = layers::list(sql)?;
                let cs = containers::list(sql)?;
                for c in &cs {
                    forget_container(sql, &c.id, &c.layer)?;
                }
                let is = images::list(sql)?;
                for i in &is {
                    forget_image(sql, &i.id)?;
                }
                for l in &all_layers {
                    layers::mark_incomplete(sql, &l.id)?;
                }
                Ok((
                    cs.into_iter().map(|c| c.id).collect::<Vec<_>>(),
                    is.into_iter().map(|i| i.id).collect::<Vec<_>>(),
                    all_layers.into_iter().map(|l| l.id).collect::<Vec<_>>(),
                ))
            })
            .await?;
        for id in &gone_containers {
            self.remove_container_dirs(id).await?;
        }
        for id in &gone_images {
            self.remove_path(&big_data::dir(ObjectKind::Image, id))
                .await?;
        }
        // Newest first, so that children go before their parents.
        for id in gone_layers.iter().rev() {
            self.discard_layer(op, id).await?;
        }
        Ok(())
    }

    /// Releases the store's mounts. Refused while layers are mounted unless `force`,
    /// which unmounts them first.
    pub async fn shutdown(&self, op: &Op, force: bool) -> Result<Vec<String>> {
        let mounted = self.mounted_layers(op).await?;
        if !mounted.is_empty() && !force {
            return Err(Error::StoreBusy {
                path: self.root.clone(),
                mounted,
            });
        }
        for id in &mounted {
            while self.driver.mount_count(op, id).await? > 0 {
                self.driver.put(op, id).await?;
            }
        }
        self.driver.cleanup(op).await?;
        Ok(mounted)
    }
}
