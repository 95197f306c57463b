//! [`ImageStorer`] over a [`Store`]: image stores and their images as catalog layers.

use std::io::Cursor;

use async_trait::async_trait;
use storage_core::archive::{ArchiveStream, ExportOptions};
use storage_core::driver::TarReader;
use storage_core::error::{Error, ObjectKind, Result};
use storage_core::file_stat::FileStat;
use storage_core::filter::FilterSpec;
use storage_core::id::validate_file_name;
use storage_core::object_url::ObjectUrl;
use storage_core::op::Op;

use crate::db::{self, image_stores, layers};
use crate::image_store::scratch::{self, SCRATCH};
use crate::image_store::{Image, ImageStorer, NewImage};
use crate::store::{LayerSpec, Store};

fn store_not_found(name: &str) -> Error {
    Error::StoreNotFound {
        store: name.to_owned(),
        reason: "no image store has this name".into(),
    }
}

fn image_not_found(store: &str, id: &str) -> Error {
    Error::NotFound {
        kind: ObjectKind::Image,
        id: format!("{id} in image store {store}"),
    }
}

impl Store {
    async fn store_image(&self, store: &str, id: &str) -> Result<Image> {
        let (s, i) = (store.to_owned(), id.to_owned());
        self.read(move |sql| {
            if image_stores::store_scratch(sql, &s)?.is_none() {
                return Err(store_not_found(&s));
            }
            image_stores::image(sql, &s, &i)?.ok_or_else(|| image_not_found(&s, &i))
        })
        .await
    }

    /// An image store image as a tar stream: whole, or its difference from `ancestor`
    /// (default: its parent), filtered by `spec`, headers only without `data`.
    pub async fn export_image(
        &self,
        op: &Op,
        store: &str,
        id: &str,
        ancestor: Option<&str>,
        spec: &FilterSpec,
        data: bool,
    ) -> Result<ArchiveStream> {
        let image = self.store_image(store, id).await?;
        let from = match ancestor {
            Some(a) => Some(self.store_image(store, a).await?.layer),
            None => None,
        };
        let opts = ExportOptions {
            filter: spec.clone(),
            data,
            ..ExportOptions::default()
        };
        match from {
            Some(f) => self.diff(op, &image.layer, Some(&f), &opts).await,
            None => self.driver().diff(op, &image.layer, None, &opts).await,
        }
    }

    /// Facts about `path` inside an image store image, resolved inside the image's root
    /// without following a final symlink.
    pub async fn stat_image_path(
        &self,
        op: &Op,
        store: &str,
        id: &str,
        path: &str,
    ) -> Result<FileStat> {
        let image = self.store_image(store, id).await?;
        let root = self.mount(op, &image.layer, true).await?;
        let owned = path.to_owned();
        let stat = tokio::task::spawn_blocking(move || {
            FileStat::in_root(&root, &owned, ObjectKind::Image)
        })
        .await
        .map_err(crate::store::join_error);
        let released = self.unmount(op, &image.layer).await;
        let stat = stat??;
        released?;
        Ok(stat)
    }
}

#[async_trait]
impl ImageStorer for Store {
    async fn create_image_store(&self, op: &Op, name: &str) -> Result<ObjectUrl> {
        validate_file_name(ObjectKind::Store, name)?;
        let n = name.to_owned();
        let exists = self
            .read(move |sql| image_stores::store_scratch(sql, &n))
            .await?;
        if exists.is_some() {
            return Err(Error::AlreadyExists {
                kind: ObjectKind::Store,
                id: name.to_owned(),
            });
        }
        let tar: TarReader = Box::new(Cursor::new(scratch::tar()?));
        let n = name.to_owned();
        self.import_layer_and(op, LayerSpec::default(), tar, None, move |sql, layer| {
            // Checked again in the committing transaction: two creators, one winner.
            image_stores::insert_store(sql, &n, layer)?;
            image_stores::insert_image(
                sql,
                &Image {
                    store: n.clone(),
                    id: SCRATCH.to_owned(),
                    parent: None,
                    layer: layer.to_owned(),
                    created: layers::get(sql, layer)?.created,
                    metadata: Default::default(),
                },
            )
        })
        .await?;
        Ok(ObjectUrl::image_store(name))
    }

    async fn get_image_store(&self, _op: &Op, name: &str) -> Result<ObjectUrl> {
        let n = name.to_owned();
        match self
            .read(move |sql| image_stores::store_scratch(sql, &n))
            .await?
        {
            Some(_) => Ok(ObjectUrl::image_store(name)),
            None => Err(store_not_found(name)),
        }
    }

    async fn list_image_stores(&self, _op: &Op) -> Result<Vec<ObjectUrl>> {
        let names = self.read(image_stores::store_names).await?;
        Ok(names.iter().map(|n| ObjectUrl::image_store(n)).collect())
    }

    async fn delete_image_store(&self, op: &Op, name: &str) -> Result<()> {
        let n = name.to_owned();
        let scratch = self
            .read(move |sql| image_stores::store_scratch(sql, &n))
            .await?
            .ok_or_else(|| store_not_found(name))?;
        let n = name.to_owned();
        self.delete_layer_with(op, &scratch, move |sql, _| {
            let held: Vec<String> = image_stores::images(sql, &n)?
                .into_iter()
                .map(|i| i.id)
                .filter(|i| i != SCRATCH)
                .collect();
            if !held.is_empty() {
                return Err(Error::ImageInUse {
                    id: format!("image store {n}"),
                    reason: format!("it holds images {}", held.join(", ")),
                });
            }
            image_stores::delete_image(sql, &n, SCRATCH)?;
            image_stores::delete_store(sql, &n)
        })
        .await
    }

    async fn write_image(
        &self,
        op: &Op,
        store: &str,
        image: NewImage,
        tar: TarReader,
    ) -> Result<Image> {
        validate_file_name(ObjectKind::Image, &image.id)?;
        if image.id == SCRATCH {
            return Err(Error::AlreadyExists {
                kind: ObjectKind::Image,
                id: format!("{SCRATCH} in image store {store}"),
            });
        }
        if let Ok(existing) = self.store_image(store, &image.id).await {
            return Ok(existing);
        }
        let parent = self.store_image(store, &image.parent).await?;
        let s = store.to_owned();
        let (record, _) = self
            .import_layer_and(
                op,
                LayerSpec {
                    parent: Some(&parent.layer),
                    ..LayerSpec::default()
                },
                tar,
                image.sum.clone(),
                move |sql, layer| {
                    if image_stores::image(sql, &s, &image.parent)?.is_none() {
                        return Err(image_not_found(&s, &image.parent));
                    }
                    if image_stores::image(sql, &s, &image.id)?.is_some() {
                        return Err(Error::AlreadyExists {
                            kind: ObjectKind::Image,
                            id: format!("{} in image store {s}", image.id),
                        });
                    }
                    image_stores::insert_image(
                        sql,
                        &Image {
                            store: s.clone(),
                            id: image.id.clone(),
                            parent: Some(image.parent.clone()),
                            layer: layer.to_owned(),
                            created: db::layers::get(sql, layer)?.created,
                            metadata: image.metadata.clone(),
                        },
                    )
                },
            )
            .await?;
        let (s, l) = (store.to_owned(), record.id);
        self.read(move |sql| {
            let (_, id) =
                image_stores::image_of_layer(sql, &l)?.ok_or_else(|| image_not_found(&s, &l))?;
            image_stores::image(sql, &s, &id)?.ok_or_else(|| image_not_found(&s, &id))
        })
        .await
    }

    async fn get_image(&self, _op: &Op, store: &str, id: &str) -> Result<Image> {
        self.store_image(store, id).await
    }

    async fn list_images(&self, _op: &Op, store: &str, ids: &[String]) -> Result<Vec<Image>> {
        let (s, ids) = (store.to_owned(), ids.to_vec());
        self.read(move |sql| {
            if image_stores::store_scratch(sql, &s)?.is_none() {
                return Err(store_not_found(&s));
            }
            Ok(image_stores::images(sql, &s)?
                .into_iter()
                .filter(|i| i.id != SCRATCH && (ids.is_empty() || ids.contains(&i.id)))
                .collect())
        })
        .await
    }

    async fn delete_image(&self, op: &Op, store: &str, id: &str) -> Result<()> {
        if id == SCRATCH {
            return Err(Error::ImageInUse {
                id: format!("{SCRATCH} in image store {store}"),
                reason: "scratch is the root of its store; delete the store instead".into(),
            });
        }
        let image = self.store_image(store, id).await?;
        let (s, i) = (store.to_owned(), id.to_owned());
        self.delete_layer_with(op, &image.layer, move |sql, layer| {
            let children = image_stores::children(sql, &s, &i)?;
            if !children.is_empty() {
                return Err(Error::ImageInUse {
                    id: format!("{i} in image store {s}"),
                    reason: format!("it has child images {}", children.join(", ")),
                });
            }
            let built_on = layers::children(sql, layer)?;
            if !built_on.is_empty() {
                return Err(Error::ImageInUse {
                    id: format!("{i} in image store {s}"),
                    reason: format!(
                        "containers' read-write layers {} are built on it",
                        built_on.join(", ")
                    ),
                });
            }
            image_stores::delete_image(sql, &s, &i)
        })
        .await
    }
}
