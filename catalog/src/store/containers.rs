//! Containers: a read-write layer on an image's top layer, with a data directory in the
//! store root and a run directory in the run root.

use std::path::PathBuf;

use storage_core::error::{Error, IoContext, ObjectKind, Result};
use storage_core::id::{random_id, validate_id};
use storage_core::op::Op;

use crate::db::{self, ContainerRecord, containers, images, layers};
use crate::store::big_data::big_data_lock;
use crate::store::{Store, container_lock, layer_lock};

/// The container's data directory, relative to the store root.
fn data_dir(id: &str) -> String {
    format!("containers/{id}")
}

/// The container's run directory, as a pending-removal path (`run:` is the run root).
fn run_dir(id: &str) -> String {
    format!("run:containers/{id}")
}

impl Store {
    /// Every container, oldest first.
    pub async fn containers(&self) -> Result<Vec<ContainerRecord>> {
        self.read(containers::list).await
    }

    /// A container by id, name or unique id prefix.
    pub async fn container(&self, key: &str) -> Result<ContainerRecord> {
        let key = key.to_owned();
        self.read(move |sql| containers::get(sql, &key)).await
    }

    /// The container's data directory (`get-container-dir`).
    pub async fn container_dir(&self, key: &str) -> Result<PathBuf> {
        let c = self.container(key).await?;
        Ok(self.root.join(data_dir(&c.id)).join("userdata"))
    }

    /// The container's run directory (`get-container-run-dir`).
    pub async fn container_run_dir(&self, key: &str) -> Result<PathBuf> {
        let c = self.container(key).await?;
        Ok(self.resolve_path(&run_dir(&c.id)).join("userdata"))
    }

    /// Creates a container of `image`: a read-write layer on its top layer, its
    /// directories, and its record, all committed together.
    pub async fn create_container(
        &self,
        op: &Op,
        image: &str,
        id: Option<&str>,
        names: &[String],
        metadata: &str,
    ) -> Result<ContainerRecord> {
        self.create_container_on_layer(op, image, id, None, names, metadata)
            .await
    }

    /// [`create_container`](Self::create_container), its read-write layer given the id
    /// `layer_id` (64 lowercase hex digits; `AlreadyExists` when taken) rather than a
    /// random one, as a copy of another store's container keeps it.
    pub async fn create_container_on_layer(
        &self,
        op: &Op,
        image: &str,
        id: Option<&str>,
        layer_id: Option<&str>,
        names: &[String],
        metadata: &str,
    ) -> Result<ContainerRecord> {
        let image = self.image(image).await?;
        let id = match id {
            Some(i) => {
                validate_id(ObjectKind::Container, i)?;
                i.to_owned()
            }
            None => random_id()?,
        };
        let _lock = self.lock(&container_lock(&id)).await?;
        let (i, n) = (id.clone(), names.to_vec());
        // Refuse a taken id or name before any data exists.
        self.read(move |sql| {
            if sql.exists("SELECT 1 FROM containers WHERE id = ?1", [&i])? {
                return Err(Error::AlreadyExists {
                    kind: ObjectKind::Container,
                    id: i,
                });
            }
            for name in &n {
                if let Ok(holder) = db::names::resolve(sql, ObjectKind::Container, name)
                    && holder != i
                {
                    return Err(Error::DuplicateName {
                        kind: ObjectKind::Container,
                        name: name.clone(),
                        holder,
                    });
                }
            }
            Ok(())
        })
        .await?;
        let layer = self
            .begin_layer(op, layer_id, image.top_layer.as_deref(), &[], true)
            .await?;
        let (i, lock) = (id.clone(), container_lock(&id));
        self.write(move |sql| {
            db::add_pending_removal(sql, &data_dir(&i), &lock)?;
            db::add_pending_removal(sql, &run_dir(&i), &lock)
        })
        .await?;
        for dir in [data_dir(&id), run_dir(&id)] {
            let path = self.resolve_path(&dir).join("userdata");
            let made = tokio::fs::create_dir_all(&path)
                .await
                .ctx(|| format!("create {}", path.display()));
            if let Err(e) = made {
                return Err(self.abandon_layer(op, &layer.id, e).await);
            }
        }
        let (i, image_id, local_image, n, m) = (
            id.clone(),
            image.id.clone(),
            !image.read_only,
            names.to_vec(),
            metadata.to_owned(),
        );
        let finished = self
            .finish_layer(op, layer, Default::default(), move |sql, layer| {
                // The image may have been deleted while the layer was made (an additional
                // store's image cannot be).
                if local_image {
                    images::get(sql, &image_id)?;
                }
                containers::insert(sql, &i, &image_id, layer, &n, &m)?;
                db::clear_pending_removal(sql, &data_dir(&i))?;
                db::clear_pending_removal(sql, &run_dir(&i))
            })
            .await;
        if let Err(e) = finished {
            self.remove_path(&data_dir(&id)).await?;
            self.remove_path(&run_dir(&id)).await?;
            return Err(e);
        }
        self.container(&id).await
    }

    /// Deletes a container with its read-write layer, directories and big data. Refused
    /// while its layer is mounted.
    pub async fn delete_container(&self, op: &Op, key: &str) -> Result<()> {
        let c = self.container(key).await?;
        let _lock = self.lock(&container_lock(&c.id)).await?;
        let _layer_lock = self.lock(&layer_lock(&c.layer)).await?;
        let _big_data_lock = self
            .lock(&big_data_lock(ObjectKind::Container, &c.id))
            .await?;
        let mounts = self.driver.mount_count(op, &c.layer).await?;
        if mounts > 0 {
            return Err(Error::LayerInUse {
                id: c.layer,
                mounts,
            });
        }
        let (i, layer) = (c.id.clone(), c.layer.clone());
        self.write(move |sql| {
            containers::get(sql, &i)?;
            forget_container(sql, &i, &layer)
        })
        .await?;
        self.remove_container_dirs(&c.id).await?;
        self.discard_layer(op, &c.layer).await
    }

    /// Removes the directories [`forget_container`] queued for removal.
    pub(crate) async fn remove_container_dirs(&self, id: &str) -> Result<()> {
        self.remove_path(&data_dir(id)).await?;
        self.remove_path(&run_dir(id)).await?;
        self.remove_path(&db::big_data::dir(ObjectKind::Container, id))
            .await?;
        self.run.forget_lock(&container_lock(id));
        Ok(())
    }
}

/// The catalog half of deleting a container, inside the caller's transaction: its record
/// goes, its data and run directories and its big data are queued for removal (finished
/// when the store opens next if a crash cuts the removal short) and its read-write
/// `layer` is marked incomplete, to be discarded.
pub(crate) fn forget_container(sql: &db::Sql<'_>, id: &str, layer: &str) -> Result<()> {
    let lock = container_lock(id);
    db::add_pending_removal(sql, &data_dir(id), &lock)?;
    db::add_pending_removal(sql, &run_dir(id), &lock)?;
    let big = db::big_data::dir(ObjectKind::Container, id);
    db::add_pending_removal(sql, &big, &lock)?;
    containers::delete(sql, id)?;
    layers::mark_incomplete(sql, layer)
}
