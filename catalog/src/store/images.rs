//! Images: create, list, delete (removing the layers nobody else needs).

use storage_core::error::{Error, ObjectKind, Result};
use storage_core::id::{random_id, validate_id};
use storage_core::op::Op;

use crate::db::{self, ImageRecord, Sql, containers, images, layers};
use crate::store::big_data::big_data_lock;
use crate::store::layers::check_unused;
use crate::store::{Store, layer_lock};

/// What `delete_image` removed, or would remove on a dry run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageDeletion {
    /// The image's id.
    pub image: String,
    /// The layers no other image or container needed, top first.
    pub layers: Vec<String>,
}

/// The layers from `top` down that only this image needs, top first: each is not another
/// image's top, not a container's layer, and has no children but the one above it.
fn removable_chain(sql: &Sql<'_>, image: &str, top: Option<&str>) -> Result<Vec<String>> {
    let mut chain = Vec::new();
    let mut next = top.map(str::to_owned);
    while let Some(id) = next {
        // A layer of a read-only additional store is never ours to remove.
        if !sql.exists("SELECT 1 FROM layers WHERE id = ?1", [&id])? {
            break;
        }
        let others: Vec<String> = images::with_top_layer(sql, &id)?
            .into_iter()
            .filter(|i| i != image)
            .collect();
        let only_child_is_ours = layers::children(sql, &id)?
            .iter()
            .all(|c| chain.last() == Some(c));
        if !others.is_empty()
            || !only_child_is_ours
            || containers::with_layer(sql, &id)?.is_some()
            || db::image_stores::image_of_layer(sql, &id)?.is_some()
        {
            break;
        }
        next = layers::get(sql, &id)?.parent;
        chain.push(id);
    }
    Ok(chain)
}

fn check_no_containers(sql: &Sql<'_>, image: &str) -> Result<()> {
    let users = containers::of_image(sql, image)?;
    if users.is_empty() {
        Ok(())
    } else {
        Err(Error::ImageUsedByContainer {
            id: image.to_owned(),
            containers: users,
        })
    }
}

impl Store {
    /// Every image, oldest first, then those of the additional stores.
    pub async fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut all = self.read(images::list).await?;
        all.extend(self.foreign_images().await?);
        Ok(all)
    }

    /// An image by id, name or unique id prefix: this store's, or an additional store's.
    pub async fn image(&self, key: &str) -> Result<ImageRecord> {
        let k = key.to_owned();
        match self.read(move |sql| images::get(sql, &k)).await {
            Err(e @ Error::NotFound { .. }) => Ok(self.foreign_image(key).await?.ok_or(e)?),
            other => other,
        }
    }

    /// The images with this digest (given at creation, or of a `manifest*` item).
    pub async fn images_by_digest(&self, digest: &str) -> Result<Vec<ImageRecord>> {
        let digest = digest.to_owned();
        self.read(move |sql| images::by_digest(sql, &digest)).await
    }

    /// Creates an image whose top layer is `top_layer` (or an image of no layers).
    pub async fn create_image(
        &self,
        top_layer: Option<&str>,
        id: Option<&str>,
        names: &[String],
        metadata: &str,
        digest: Option<&str>,
    ) -> Result<ImageRecord> {
        let id = match id {
            Some(i) => {
                validate_id(ObjectKind::Image, i)?;
                i.to_owned()
            }
            None => random_id()?,
        };
        let foreign = match top_layer {
            Some(t) if !self.additional.is_empty() => self.foreign_layer(t).await?.map(|l| l.id),
            _ => None,
        };
        let (top, names, metadata, digest) = (
            top_layer.map(str::to_owned),
            names.to_vec(),
            metadata.to_owned(),
            digest.map(str::to_owned),
        );
        self.write(move |sql| {
            let top = match top {
                Some(t) => match db::names::resolve(sql, ObjectKind::Layer, &t) {
                    Err(Error::NotFound { .. }) if foreign.is_some() => foreign,
                    other => Some(other?),
                },
                None => None,
            };
            images::insert(
                sql,
                &id,
                top.as_deref(),
                &names,
                &metadata,
                digest.as_deref(),
            )?;
            images::get(sql, &id)
        })
        .await
    }

    /// Deletes an image and the layers that no other image or container needs. Refused
    /// while containers use it. With `dry_run`, only says what it would remove.
    pub async fn delete_image(&self, op: &Op, key: &str, dry_run: bool) -> Result<ImageDeletion> {
        let image = self.image(key).await?;
        if image.read_only {
            return Err(self.read_only_error(ObjectKind::Image, &image.id));
        }
        let (i, top) = (image.id.clone(), image.top_layer.clone());
        let candidates = self
            .read(move |sql| {
                check_no_containers(sql, &i)?;
                removable_chain(sql, &i, top.as_deref())
            })
            .await?;
        // A layer that is mounted, or whose lock another process holds (mounting,
        // importing a child), stays, and so does everything below it.
        let mut locks = Vec::new();
        let mut chain = Vec::new();
        for layer in candidates {
            let Some(lock) = self.run.try_lock(&layer_lock(&layer))? else {
                break;
            };
            if self.driver.mount_count(op, &layer).await? > 0 {
                break;
            }
            locks.push(lock);
            chain.push(layer);
        }
        if dry_run {
            return Ok(ImageDeletion {
                image: image.id,
                layers: chain,
            });
        }
        let marked = chain.clone();
        self.delete_image_record(&image.id, move |sql, i| {
            for (n, layer) in marked.iter().enumerate() {
                // The layers above it, marked in this transaction, no longer count as
                // its children.
                check_unused_except_image(sql, layer, &marked[..n], i)?;
                layers::mark_incomplete(sql, layer)?;
            }
            Ok(())
        })
        .await?;
        for layer in &chain {
            self.discard_layer(op, layer).await?;
        }
        drop(locks);
        Ok(ImageDeletion {
            image: image.id,
            layers: chain,
        })
    }
}

impl Store {
    /// Removes an image's record and big data (refused while containers use it), after
    /// `first` has run in the same transaction (marking the layers that go with it).
    pub(crate) async fn delete_image_record(
        &self,
        id: &str,
        first: impl FnOnce(&Sql<'_>, &str) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let _big_data = self.lock(&big_data_lock(ObjectKind::Image, id)).await?;
        let i = id.to_owned();
        self.write(move |sql| {
            check_no_containers(sql, &i)?;
            first(sql, &i)?;
            forget_image(sql, &i)
        })
        .await?;
        self.remove_path(&db::big_data::dir(ObjectKind::Image, id))
            .await
    }
}

/// The catalog half of deleting an image, inside the caller's transaction: its record
/// goes and its big data is queued for removal (its directory is
/// `db::big_data::dir(ObjectKind::Image, id)`).
pub(crate) fn forget_image(sql: &Sql<'_>, id: &str) -> Result<()> {
    let dir = db::big_data::dir(ObjectKind::Image, id);
    db::add_pending_removal(sql, &dir, &big_data_lock(ObjectKind::Image, id))?;
    images::delete(sql, id)
}

/// [`check_unused`], except that `image` (being deleted) may still name the layer as its
/// top.
fn check_unused_except_image(
    sql: &Sql<'_>,
    layer: &str,
    removing: &[String],
    image: &str,
) -> Result<()> {
    match check_unused(sql, layer, removing) {
        Err(Error::LayerUsedByImage { images, .. }) if images.iter().all(|x| x == image) => Ok(()),
        other => other,
    }
}
