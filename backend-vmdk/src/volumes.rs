//! Volumes of a vmdk store, as VIC kept them: a VMDK of its own per volume, with an ext4
//! that fills the requested capacity and its info map beside it.
//!
//! ```text
//! <root>/vmdk/volumes/<id>/<id>.vmdk     a sparse VMDK holding an ext4 labelled for the
//!                                        volume; its data is the file system's `rootfs/`
//! <root>/vmdk/volumes/<id>/info/<key>    one file per info key
//! <root>/vmdk/volumes/<id>/complete      written last by create
//! <root>/vmdk/volumes/<id>/mount/        where the disk is mounted while it is read or written
//! ```
//!
//! Imports and exports attach the disk read-write, mount it, work, unmount and release,
//! under the run root's lock of the volume, so two never mount it at once. A data source
//! or sink holds that mount and lock until it is closed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use storage_core::id::validate_file_name;
use storage_core::run_root::{RunLock, RunRoot, write_atomic};
use storage_core::{
    DataSink, DataSource, Error, Exporter, FileStat, FilterSpec, Importer, IoContext, ObjectKind,
    ObjectUrl, Op, Resolver, Result, TarReader, Volume, VolumeStorer,
};
use tar_engine::{ApplyOptions, ApplyReport, ArchiveStream, ExportOptions, WhiteoutMode};

use crate::driver::Disks;
use crate::layout::{COMPLETE, ROOTFS};
use crate::scratch;

/// The capacity of a volume created with none given (and no `size` info): 1 GiB.
pub const DEFAULT_VOLUME_CAPACITY: u64 = 1 << 30;

/// The volume face of a vmdk store. Cheap to clone.
#[derive(Clone)]
pub struct VmdkVolumes {
    store: String,
    dir: PathBuf,
    run: RunRoot,
    disks: Arc<Disks>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    storage_core::blocking("vmdk volume background task", f).await
}

/// A volume mounted for reading or writing, with its lock held; let go by [`Mounted::close`].
struct Mounted {
    volumes: VmdkVolumes,
    id: String,
    data: PathBuf,
    _lock: RunLock,
}

impl Mounted {
    fn close(self) -> Result<()> {
        let target = self.volumes.mount_dir(&self.id);
        mounts::unmount(&target).and_then(|()| {
            self.volumes
                .disks
                .release_disk(&self.volumes.disk(&self.id))
        })
    }
}

impl VmdkVolumes {
    /// The volumes of the store named `store` rooted at `root`, mounted through `disks`.
    pub(crate) fn new(store: &str, root: &Path, run: RunRoot, disks: Arc<Disks>) -> Self {
        VmdkVolumes {
            store: store.to_owned(),
            dir: root.join("vmdk").join("volumes"),
            run,
            disks,
        }
    }

    fn folder(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn disk(&self, id: &str) -> PathBuf {
        self.folder(id).join(format!("{id}.vmdk"))
    }

    fn mount_dir(&self, id: &str) -> PathBuf {
        self.folder(id).join("mount")
    }

    fn require(&self, id: &str) -> Result<()> {
        validate_file_name(ObjectKind::Volume, id)?;
        if self.folder(id).join(COMPLETE).exists() {
            Ok(())
        } else {
            Err(Error::NotFound {
                kind: ObjectKind::Volume,
                id: id.to_owned(),
            })
        }
    }

    /// Mounts volume `id` read-write under its lock.
    fn mount(&self, id: &str) -> Result<Mounted> {
        self.require(id)?;
        let lock = self.run.lock(&format!("vmdk-volume-{id}"))?;
        let target = self.mount_dir(id);
        // What a killed holder left mounted goes first.
        if mounts::is_mounted(&target) {
            mounts::unmount(&target)?;
            self.disks.release_disk(&self.disk(id))?;
        }
        self.disks
            .mount_disk(&self.disk(id), false, &target, &format!("volume {id}"))?;
        Ok(Mounted {
            volumes: self.clone(),
            id: id.to_owned(),
            data: target.join(ROOTFS),
            _lock: lock,
        })
    }

    fn read_volume(&self, id: &str) -> Result<Volume> {
        self.require(id)?;
        let meta = self.folder(id).join("info");
        let mut info = BTreeMap::new();
        for entry in std::fs::read_dir(&meta).ctx(|| format!("list {}", meta.display()))? {
            let entry = entry.ctx(|| format!("list {}", meta.display()))?;
            let key = entry.file_name().to_string_lossy().into_owned();
            // A dot file is a temporary file an interrupted atomic write left.
            if key.starts_with('.') {
                continue;
            }
            let value =
                std::fs::read(entry.path()).ctx(|| format!("read {}", entry.path().display()))?;
            info.insert(key, value);
        }
        Ok(Volume {
            id: id.to_owned(),
            store: self.store.clone(),
            info,
        })
    }

    fn create(&self, id: &str, capacity: u64, info: &BTreeMap<String, Vec<u8>>) -> Result<()> {
        std::fs::create_dir_all(&self.dir).ctx(|| format!("create {}", self.dir.display()))?;
        let folder = self.folder(id);
        // mkdir is the claim: of two racing creators exactly one succeeds.
        match std::fs::create_dir(&folder) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::VolumeExists {
                    id: id.to_owned(),
                    store: self.store.clone(),
                });
            }
            Err(e) => return Err(Error::io_path("create volume", &folder, e)),
        }
        let made = self.fill(id, capacity, info);
        if made.is_err() {
            let _ = dirtree::remove_all(&folder);
        }
        made
    }

    fn fill(&self, id: &str, capacity: u64, info: &BTreeMap<String, Vec<u8>>) -> Result<()> {
        let folder = self.folder(id);
        let meta = folder.join("info");
        for dir in [&meta, &self.mount_dir(id)] {
            std::fs::create_dir(dir).ctx(|| format!("create {}", dir.display()))?;
        }
        for (key, value) in info {
            write_atomic(&meta.join(key), value)?;
        }
        // With no capacity given, a `size` option (`docker volume create --opt size=…`)
        // gives it, else the default.
        let capacity = match capacity {
            0 => info
                .get("size")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(scratch::parse_capacity)
                .unwrap_or(DEFAULT_VOLUME_CAPACITY),
            given => given,
        };
        // The label: as much of the id as ext4's 16 bytes hold.
        let label: String = id.chars().take(16).collect();
        let label = if label.len() <= 16 {
            label
        } else {
            "strata-volume".into()
        };
        scratch::create_ext4_disk(&self.disk(id), capacity, &label)?;
        write_atomic(&folder.join(COMPLETE), b"")
    }

    fn destroy(&self, id: &str) -> Result<()> {
        self.require(id)?;
        let Some(_lock) = self.run.try_lock(&format!("vmdk-volume-{id}"))? else {
            return Err(Error::VolumeInUse {
                id: id.to_owned(),
                reason: "it is being read or written".into(),
            });
        };
        if self.disks.is_attached(&self.disk(id))? {
            return Err(Error::VolumeInUse {
                id: id.to_owned(),
                reason: "its disk is attached".into(),
            });
        }
        let folder = self.folder(id);
        let marker = folder.join(COMPLETE);
        std::fs::remove_file(&marker).map_err(|e| Error::io_path("remove", &marker, e))?;
        dirtree::remove_all(&folder)
            .map(drop)
            .ctx(|| format!("remove volume {id} in {}", folder.display()))
    }

    fn import_into(
        &self,
        op: &Op,
        id: &str,
        input: impl std::io::Read + Send,
        options: &ApplyOptions,
    ) -> Result<ApplyReport> {
        let mounted = self.mount(id)?;
        let applied = tar_engine::apply_tar(op, &mounted.data, input, options);
        let closed = mounted.close();
        let report = applied.map_err(|e| full_names_volume(e, id))?;
        closed?;
        Ok(report)
    }
}

/// A write that found the volume full names the volume.
fn full_names_volume(e: Error, id: &str) -> Error {
    match e {
        Error::Io { context, source } if source.kind() == std::io::ErrorKind::StorageFull => {
            Error::Io {
                context: format!("volume {id} is full: {context}"),
                source,
            }
        }
        other => other,
    }
}

#[async_trait]
impl VolumeStorer for VmdkVolumes {
    async fn volume_create(
        &self,
        _op: &Op,
        id: &str,
        capacity_bytes: u64,
        info: BTreeMap<String, Vec<u8>>,
    ) -> Result<Volume> {
        validate_file_name(ObjectKind::Volume, id)?;
        for key in info.keys() {
            validate_file_name(ObjectKind::Volume, key)?;
        }
        let (this, id) = (self.clone(), id.to_owned());
        blocking(move || {
            this.create(&id, capacity_bytes, &info)?;
            this.read_volume(&id)
        })
        .await
    }

    async fn volume_destroy(&self, _op: &Op, id: &str) -> Result<()> {
        let (this, id) = (self.clone(), id.to_owned());
        blocking(move || this.destroy(&id)).await
    }

    async fn volumes_list(&self, _op: &Op) -> Result<Vec<Result<Volume>>> {
        let this = self.clone();
        blocking(move || {
            let mut ids: Vec<String> = match std::fs::read_dir(&this.dir) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|id| this.folder(id).join(COMPLETE).exists())
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(Error::io_path("list", &this.dir, e)),
            };
            ids.sort();
            Ok(ids.iter().map(|id| this.read_volume(id)).collect())
        })
        .await
    }
}

#[async_trait]
impl Importer for VmdkVolumes {
    async fn import(
        &self,
        op: &Op,
        id: &str,
        spec: &FilterSpec,
        tar: TarReader,
    ) -> Result<ApplyReport> {
        let mut opts = ApplyOptions::new(WhiteoutMode::Delete);
        opts.filter = spec.clone();
        // A volume outlives a failed import: take back what it added.
        opts.rollback = true;
        let (this, id, op) = (self.clone(), id.to_owned(), op.clone());
        let input = tokio_util::io::SyncIoBridge::new(tar);
        blocking(move || this.import_into(&op, &id, input, &opts)).await
    }

    async fn new_data_sink(&self, _op: &Op, id: &str) -> Result<Box<dyn DataSink>> {
        let (this, id) = (self.clone(), id.to_owned());
        let mounted = blocking(move || this.mount(&id)).await?;
        Ok(Box::new(Handle(mounted)))
    }
}

#[async_trait]
impl Exporter for VmdkVolumes {
    async fn export(
        &self,
        op: &Op,
        id: &str,
        ancestor: Option<&str>,
        spec: &FilterSpec,
        data: bool,
    ) -> Result<ArchiveStream> {
        self.require(id)?;
        if let Some(a) = ancestor {
            self.require(a)?;
        }
        let opts = ExportOptions {
            filter: spec.clone(),
            data,
            ..ExportOptions::default()
        };
        let (this, id, ancestor) = (self.clone(), id.to_owned(), ancestor.map(str::to_owned));
        let op = op.clone();
        ArchiveStream::spawn(move |pipe| {
            let mounted = this.mount(&id)?;
            let base = match ancestor.as_deref().map(|a| this.mount(a)).transpose() {
                Ok(base) => base,
                Err(e) => {
                    let _ = mounted.close();
                    return Err(e);
                }
            };
            let written = match &base {
                Some(b) => tar_engine::compare_trees(&b.data, &mounted.data)
                    .and_then(|changes| tar_engine::write_changes(&op, &changes, &opts, pipe)),
                None => tar_engine::write_layer(&op, &mounted.data, &[], &opts, pipe),
            };
            let closed = mounted.close().and(base.map_or(Ok(()), Mounted::close));
            written?;
            closed
        })
    }

    async fn new_data_source(&self, _op: &Op, id: &str) -> Result<Box<dyn DataSource>> {
        let (this, id) = (self.clone(), id.to_owned());
        let mounted = blocking(move || this.mount(&id)).await?;
        Ok(Box::new(Handle(mounted)))
    }
}

#[async_trait]
impl Resolver for VmdkVolumes {
    async fn url(&self, _op: &Op, id: &str) -> Result<ObjectUrl> {
        validate_file_name(ObjectKind::Volume, id)?;
        Ok(ObjectUrl::volume(&self.store, id))
    }

    async fn owners(&self, _op: &Op, _url: &ObjectUrl) -> Result<Vec<String>> {
        // Containers that use a volume are recorded by the catalog.
        Ok(Vec::new())
    }
}

/// A volume held mounted for reading or writing until closed.
struct Handle(Mounted);

#[async_trait]
impl DataSource for Handle {
    async fn export(&mut self, op: &Op, spec: &FilterSpec, data: bool) -> Result<ArchiveStream> {
        let root = self.0.data.clone();
        let opts = ExportOptions {
            filter: spec.clone(),
            data,
            ..ExportOptions::default()
        };
        let op = op.clone();
        ArchiveStream::spawn(move |pipe| {
            tar_engine::write_layer(&op, &root, &[], &opts, pipe).map(drop)
        })
    }

    async fn stat(&mut self, _op: &Op, path: &str) -> Result<FileStat> {
        let (root, path) = (self.0.data.clone(), path.to_owned());
        blocking(move || FileStat::in_root(&root, &path, ObjectKind::Volume)).await
    }

    fn source(&self) -> &Path {
        &self.0.data
    }

    async fn close(self: Box<Self>, _op: &Op) -> Result<()> {
        let Handle(mounted) = *self;
        blocking(move || mounted.close()).await
    }
}

#[async_trait]
impl DataSink for Handle {
    async fn import(&mut self, op: &Op, spec: &FilterSpec, tar: TarReader) -> Result<ApplyReport> {
        let mut opts = ApplyOptions::new(WhiteoutMode::Delete);
        opts.filter = spec.clone();
        opts.rollback = true;
        let (root, id, op) = (self.0.data.clone(), self.0.id.clone(), op.clone());
        let input = tokio_util::io::SyncIoBridge::new(tar);
        blocking(move || {
            tar_engine::apply_tar(&op, &root, input, &opts).map_err(|e| full_names_volume(e, &id))
        })
        .await
    }

    fn sink(&self) -> &Path {
        &self.0.data
    }

    async fn close(self: Box<Self>, _op: &Op) -> Result<()> {
        let Handle(mounted) = *self;
        blocking(move || mounted.close()).await
    }
}
