//! Volumes of an overlay store: plain directories, with their info map kept beside them
//! (`volumes/<id>/` and `volumes_metadata/<id>/<key>`, the layout of the VIC volume store).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use storage_core::id::validate_file_name;
use storage_core::run_root::write_atomic;
use storage_core::{
    DataSink, DataSource, Error, Exporter, FileStat, FilterSpec, Importer, IoContext, ObjectKind,
    ObjectUrl, Op, Resolver, Result, TarReader, Volume, VolumeStorer, blocking,
};
use tar_engine::{self, ApplyOptions, ApplyReport, ArchiveStream, ExportOptions, WhiteoutMode};

use crate::layout::Layout;

/// The volume face of an overlay store.
#[derive(Clone)]
pub struct DirVolumes {
    store: String,
    layout: Layout,
}

/// What blocking work is called in an error when the pool loses it.
const TASK: &str = "volume background task";

impl DirVolumes {
    /// The volumes of the store named `store` rooted at `root`.
    pub fn new(store: &str, root: &Path) -> Self {
        DirVolumes {
            store: store.to_owned(),
            layout: Layout::new(root),
        }
    }

    fn data(&self, id: &str) -> Result<PathBuf> {
        validate_file_name(ObjectKind::Volume, id)?;
        let p = self.layout.volumes().join(id);
        if !p.is_dir() {
            return Err(Error::NotFound {
                kind: ObjectKind::Volume,
                id: id.to_owned(),
            });
        }
        Ok(p)
    }

    fn read_volume(&self, id: &str) -> Result<Volume> {
        self.data(id)?;
        let meta = self.layout.volumes_metadata().join(id);
        let mut info = BTreeMap::new();
        if meta.exists() {
            for entry in std::fs::read_dir(&meta).ctx(|| format!("list {}", meta.display()))? {
                let entry = entry.ctx(|| format!("list {}", meta.display()))?;
                let key = entry.file_name().to_string_lossy().into_owned();
                // Keys start with a letter or digit; a dot file is a temporary file an
                // interrupted atomic write left.
                if key.starts_with('.') {
                    continue;
                }
                let value = std::fs::read(entry.path())
                    .ctx(|| format!("read {}", entry.path().display()))?;
                info.insert(key, value);
            }
        }
        Ok(Volume {
            id: id.to_owned(),
            store: self.store.clone(),
            info,
        })
    }
}

#[async_trait]
impl VolumeStorer for DirVolumes {
    async fn volume_create(
        &self,
        _op: &Op,
        id: &str,
        _capacity_bytes: u64,
        info: BTreeMap<String, Vec<u8>>,
    ) -> Result<Volume> {
        validate_file_name(ObjectKind::Volume, id)?;
        for key in info.keys() {
            validate_file_name(ObjectKind::Volume, key)?;
        }
        let this = self.clone();
        let id = id.to_owned();
        blocking(TASK, move || {
            let data = this.layout.volumes().join(&id);
            // mkdir is the atomic claim: of two racing creators exactly one succeeds.
            match std::fs::create_dir(&data) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::VolumeExists {
                        id: id.clone(),
                        store: this.store.clone(),
                    });
                }
                Err(e) => return Err(Error::io_path("create volume", &data, e)),
            }
            let meta = this.layout.volumes_metadata().join(&id);
            let written = std::fs::create_dir_all(&meta)
                .ctx(|| format!("create {}", meta.display()))
                .and_then(|()| {
                    info.iter()
                        .try_for_each(|(k, v)| write_atomic(&meta.join(k), v))
                });
            if let Err(e) = written {
                let _ = dirtree::remove_all(&meta);
                let _ = std::fs::remove_dir(&data);
                return Err(e);
            }
            this.read_volume(&id)
        })
        .await
    }

    async fn volume_destroy(&self, _op: &Op, id: &str) -> Result<()> {
        let this = self.clone();
        let id = id.to_owned();
        blocking(TASK, move || {
            let data = this.data(&id)?;
            let meta = this.layout.volumes_metadata().join(&id);
            dirtree::remove_all(&meta).ctx(|| format!("remove {}", meta.display()))?;
            dirtree::remove_all(&data)
                .map(drop)
                .ctx(|| format!("remove {}", data.display()))
        })
        .await
    }

    async fn volumes_list(&self, _op: &Op) -> Result<Vec<Result<Volume>>> {
        let this = self.clone();
        blocking(TASK, move || {
            let dir = this.layout.volumes();
            let mut ids: Vec<String> = std::fs::read_dir(&dir)
                .ctx(|| format!("list {}", dir.display()))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            ids.sort();
            Ok(ids.iter().map(|id| this.read_volume(id)).collect())
        })
        .await
    }
}

#[async_trait]
impl Importer for DirVolumes {
    async fn import(
        &self,
        op: &Op,
        id: &str,
        spec: &FilterSpec,
        tar: TarReader,
    ) -> Result<ApplyReport> {
        let target = self.data(id)?;
        let mut opts = ApplyOptions::new(WhiteoutMode::Delete);
        opts.filter = spec.clone();
        // A volume outlives a failed import: take back what it added.
        opts.rollback = true;
        let op = op.clone();
        let input = tokio_util::io::SyncIoBridge::new(tar);
        blocking(TASK, move || {
            tar_engine::apply_tar(&op, &target, input, &opts)
        })
        .await
    }

    async fn new_data_sink(&self, _op: &Op, id: &str) -> Result<Box<dyn DataSink>> {
        Ok(Box::new(DirHandle {
            volumes: self.clone(),
            id: id.to_owned(),
            path: self.data(id)?,
        }))
    }
}

#[async_trait]
impl Exporter for DirVolumes {
    async fn export(
        &self,
        op: &Op,
        id: &str,
        ancestor: Option<&str>,
        spec: &FilterSpec,
        data: bool,
    ) -> Result<ArchiveStream> {
        let root = self.data(id)?;
        let base = ancestor.map(|a| self.data(a)).transpose()?;
        let opts = ExportOptions {
            filter: spec.clone(),
            data,
            ..ExportOptions::default()
        };
        let op = op.clone();
        ArchiveStream::spawn(move |pipe| {
            // The tar writer buffers by itself, so the pipe is handed over as it is.
            match base {
                Some(b) => {
                    let changes = tar_engine::compare_trees(&b, &root)?;
                    tar_engine::write_changes(&op, &changes, &opts, pipe)?
                }
                None => tar_engine::write_layer(&op, &root, &[], &opts, pipe)?,
            };
            Ok(())
        })
    }

    async fn new_data_source(&self, _op: &Op, id: &str) -> Result<Box<dyn DataSource>> {
        Ok(Box::new(DirHandle {
            volumes: self.clone(),
            id: id.to_owned(),
            path: self.data(id)?,
        }))
    }
}

#[async_trait]
impl Resolver for DirVolumes {
    async fn url(&self, _op: &Op, id: &str) -> Result<ObjectUrl> {
        validate_file_name(ObjectKind::Volume, id)?;
        Ok(ObjectUrl::volume(&self.store, id))
    }

    async fn owners(&self, _op: &Op, _url: &ObjectUrl) -> Result<Vec<String>> {
        // A directory volume is held by nothing this store tracks; containers that bind it
        // are recorded by the catalog.
        Ok(Vec::new())
    }
}

/// A volume directory held open for reading or writing.
struct DirHandle {
    volumes: DirVolumes,
    id: String,
    path: PathBuf,
}

#[async_trait]
impl DataSource for DirHandle {
    async fn export(&mut self, op: &Op, spec: &FilterSpec, data: bool) -> Result<ArchiveStream> {
        self.volumes.export(op, &self.id, None, spec, data).await
    }

    async fn stat(&mut self, _op: &Op, path: &str) -> Result<FileStat> {
        let (root, path) = (self.path.clone(), path.to_owned());
        blocking("stat in a volume", move || {
            FileStat::in_root(&root, &path, ObjectKind::Volume)
        })
        .await
    }

    fn source(&self) -> &Path {
        &self.path
    }

    async fn close(self: Box<Self>, _op: &Op) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl DataSink for DirHandle {
    async fn import(&mut self, op: &Op, spec: &FilterSpec, tar: TarReader) -> Result<ApplyReport> {
        self.volumes.import(op, &self.id, spec, tar).await
    }

    fn sink(&self) -> &Path {
        &self.path
    }

    async fn close(self: Box<Self>, _op: &Op) -> Result<()> {
        Ok(())
    }
}
