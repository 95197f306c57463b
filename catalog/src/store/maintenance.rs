//! Whole-store operations: `delete` of any object, `wipe`, `shutdown`.

use storage_core::error::{Error, ObjectKind, Result};
use storage_core::op::Op;

use crate::store::Store;

impl Store {
    /// The kind and id of whatever `key` names (a container, an image or a layer).
    pub async fn resolve_any(&self, key: &str) -> Result<(ObjectKind, String)> {
        let key = key.to_owned();
        self.db(move |c| c.resolve_any(&key)).await
    }

    /// Deletes whatever `key` names, with containers/storage's `delete` rules: a
    /// container goes with its layer, an image goes alone (its layers stay), a layer goes
    /// if nothing uses it.
    pub async fn delete_any(&self, op: &Op, key: &str) -> Result<ObjectKind> {
        let (kind, id) = self.resolve_any(key).await?;
        match kind {
            ObjectKind::Container => self.delete_container(op, &id).await?,
            ObjectKind::Image => self.delete_image_record(&id, |_, _| Ok(())).await?,
            _ => self.delete_layer(op, &id).await?,
        }
        Ok(kind)
    }

    /// The ids of the layers mounted now.
    pub async fn mounted_layers(&self, op: &Op) -> Result<Vec<String>> {
        let mut mounted = Vec::new();
        for layer in self.layers().await? {
            if self.driver.mount_count(op, &layer.id).await? > 0 {
                mounted.push(layer.id);
            }
        }
        Ok(mounted)
    }

    /// Deletes every container, image and layer. Refused while anything is mounted.
    pub async fn wipe(&self, op: &Op) -> Result<()> {
        let mounted = self.mounted_layers(op).await?;
        if !mounted.is_empty() {
            return Err(Error::StoreBusy {
                path: self.root.clone(),
                mounted,
            });
        }
        for c in self.containers().await? {
            self.delete_container(op, &c.id).await?;
        }
        for i in self.images().await? {
            self.delete_image_record(&i.id, |_, _| Ok(())).await?;
        }
        // Newest first, so that children go before their parents.
        let mut all = self.layers().await?;
        all.reverse();
        for layer in all {
            self.delete_layer(op, &layer.id).await?;
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
