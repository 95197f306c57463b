//! The volume store on the export, in the VIC layout:
//!
//! ```text
//! <export>/volumes/<id>/                 the volume's data
//! <export>/volumes_metadata/<id>/<key>   one file per info key, holding its value
//! <export>/volume_claims/<id>           the creation claim (strata's; VIC ignores it)
//! ```
//!
//! Creating a volume first claims its id with an NFS exclusive CREATE of the claim file:
//! the server lets exactly one of several racing creators (on any host) make it, where
//! `flock` would mean nothing over NFS. Only the winner then makes the data and metadata
//! directories. A volume made by VIC (no claim) is still seen as existing, through its
//! data directory. Destroying removes data, metadata, then the claim.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nfs3_client::nfs3_types::nfs3::{createhow3, createverf3, ftype3, nfsstat3};
use storage_core::id::{random_bytes, validate_file_name};
use storage_core::{
    DataSink, DataSource, Error, Exporter, FileStat, FilterSpec, Importer, ObjectKind, ObjectUrl,
    Op, Resolver, Result, TarReader, Volume, VolumeStorer,
};
use tar_engine::{ApplyReport, ArchiveStream};
use tokio::sync::OnceCell;

use crate::error::NfsError;
use crate::session::{Fh, Session};
use crate::tree::{ensure_dir, read_all, remove_tree, write_new};
use crate::url::NfsUrl;

/// Directory of volume data.
pub const VOLUMES: &[u8] = b"volumes";
/// Directory of volume metadata.
pub const METADATA: &[u8] = b"volumes_metadata";
/// Directory of creation claims, beside the other two so that they hold only volumes.
pub const CLAIMS: &[u8] = b"volume_claims";

/// The session and the handles of the store's top directories.
pub(crate) struct Store {
    pub(crate) session: Session,
    volumes: Fh,
    metadata: Fh,
    claims: Fh,
}

/// An NFS volume store.
#[derive(Clone)]
pub struct NfsVolumes {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    url: NfsUrl,
    store: OnceCell<Arc<Store>>,
    /// Who holds each volume now: the ops of open data handles, in this process.
    holders: Mutex<HashMap<String, Vec<String>>>,
}

fn not_found(id: &str) -> Error {
    Error::NotFound {
        kind: ObjectKind::Volume,
        id: id.to_owned(),
    }
}

impl NfsVolumes {
    /// The store named `name` at `url`. Nothing is contacted until the first call.
    pub fn new(name: &str, url: NfsUrl) -> Self {
        NfsVolumes {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                url,
                store: OnceCell::new(),
                holders: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The parsed store URL.
    pub fn url(&self) -> &NfsUrl {
        &self.inner.url
    }

    /// Mounts the export (once) and makes the layout's top directories.
    pub(crate) async fn store(&self) -> Result<Arc<Store>> {
        let store = self
            .inner
            .store
            .get_or_try_init(|| async {
                let session = Session::open(&self.inner.url).await?;
                let root = session.root().clone();
                let volumes = ensure_dir(&session, &root, VOLUMES).await?;
                let metadata = ensure_dir(&session, &root, METADATA).await?;
                let claims = ensure_dir(&session, &root, CLAIMS).await?;
                Ok::<_, NfsError>(Arc::new(Store {
                    session,
                    volumes,
                    metadata,
                    claims,
                }))
            })
            .await?;
        Ok(store.clone())
    }

    /// The handle of the volume's data directory.
    pub(crate) async fn data(&self, id: &str) -> Result<(Arc<Store>, Fh)> {
        validate_file_name(ObjectKind::Volume, id)?;
        let store = self.store().await?;
        match store.session.lookup(&store.volumes, id.as_bytes()).await? {
            Some((fh, attr)) if attr.type_ == ftype3::NF3DIR => Ok((store, fh)),
            Some(_) => Err(Error::CorruptStore {
                path: self.location(id),
                reason: "the volume's data is not a directory".into(),
            }),
            None => Err(not_found(id)),
        }
    }

    /// Where a volume's data is, for messages and `DataSink::sink`.
    pub fn location(&self, id: &str) -> PathBuf {
        let u = &self.inner.url;
        PathBuf::from(format!("nfs://{}/volumes/{id}", u.display()))
    }

    async fn read_volume(&self, store: &Store, id: &str) -> Result<Volume> {
        let s = &store.session;
        match s.lookup(&store.volumes, id.as_bytes()).await? {
            Some((_, a)) if a.type_ == ftype3::NF3DIR => {}
            Some(_) => {
                return Err(Error::CorruptStore {
                    path: self.location(id),
                    reason: "the volume's data is not a directory".into(),
                });
            }
            None => return Err(not_found(id)),
        }
        let mut info = BTreeMap::new();
        if let Some((meta, attr)) = s.lookup(&store.metadata, id.as_bytes()).await? {
            if attr.type_ != ftype3::NF3DIR {
                return Err(Error::CorruptStore {
                    path: PathBuf::from(format!(
                        "nfs://{}/volumes_metadata/{id}",
                        self.inner.url.display()
                    )),
                    reason: "the volume's metadata is not a directory".into(),
                });
            }
            for e in s.readdir(&meta, id.as_bytes()).await? {
                if e.attr.type_ != ftype3::NF3REG {
                    continue;
                }
                let value = read_all(s, &e.fh, e.attr.size, &e.name).await?;
                info.insert(String::from_utf8_lossy(&e.name).into_owned(), value);
            }
        }
        Ok(Volume {
            id: id.to_owned(),
            store: self.inner.name.clone(),
            info,
        })
    }

    fn hold(&self, id: &str, op: &Op) {
        if let Ok(mut h) = self.inner.holders.lock() {
            h.entry(id.to_owned()).or_default().push(op.id().to_owned());
        }
    }

    fn release(&self, id: &str, holder: &str) {
        if let Ok(mut h) = self.inner.holders.lock()
            && let Some(v) = h.get_mut(id)
        {
            v.retain(|o| o != holder);
            if v.is_empty() {
                h.remove(id);
            }
        }
    }

    fn holders(&self, id: &str) -> Vec<String> {
        self.inner
            .holders
            .lock()
            .ok()
            .and_then(|h| h.get(id).cloned())
            .unwrap_or_default()
    }

    async fn create_claimed(
        &self,
        store: &Store,
        id: &str,
        info: &BTreeMap<String, Vec<u8>>,
    ) -> Result<()> {
        let s = &store.session;
        let exists = || Error::VolumeExists {
            id: id.to_owned(),
            store: self.inner.name.clone(),
        };
        match s
            .mkdir(
                &store.volumes,
                id.as_bytes(),
                crate::session::owner_mode(s.owner().0, s.owner().1, 0o755),
            )
            .await
        {
            Ok(_) => {}
            // A volume made without a claim (by VIC).
            Err(e) if e.is(nfsstat3::NFS3ERR_EXIST) => return Err(exists()),
            Err(e) => return Err(e.into()),
        }
        let meta = ensure_dir(s, &store.metadata, id.as_bytes()).await?;
        for (k, v) in info {
            write_new(s, &meta, k.as_bytes(), v).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl VolumeStorer for NfsVolumes {
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
        let store = self.store().await?;
        let s = &store.session;
        // The claim: an exclusive create succeeds for exactly one caller. A retransmission
        // of our own call carries the same verifier, so the server answers it as a success.
        let verifier = createverf3(random_bytes::<8>()?);
        match s
            .create(
                &store.claims,
                id.as_bytes(),
                createhow3::EXCLUSIVE(verifier),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is(nfsstat3::NFS3ERR_EXIST) => {
                return Err(Error::VolumeExists {
                    id: id.to_owned(),
                    store: self.inner.name.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        if let Err(e) = self.create_claimed(&store, id, &info).await {
            // Undo what we made, the claim last; a VIC volume that was there stays.
            if !matches!(e, Error::VolumeExists { .. }) {
                let _ = remove_tree(s, &store.metadata, id.as_bytes()).await;
                let _ = remove_tree(s, &store.volumes, id.as_bytes()).await;
            }
            let _ = s.remove(&store.claims, id.as_bytes()).await;
            return Err(e);
        }
        self.read_volume(&store, id).await
    }

    async fn volume_destroy(&self, _op: &Op, id: &str) -> Result<()> {
        validate_file_name(ObjectKind::Volume, id)?;
        let holders = self.holders(id);
        if !holders.is_empty() {
            return Err(Error::VolumeInUse {
                id: id.to_owned(),
                reason: format!("held by {}", holders.join(", ")),
            });
        }
        let store = self.store().await?;
        let s = &store.session;
        let data = remove_tree(s, &store.volumes, id.as_bytes()).await?;
        let meta = remove_tree(s, &store.metadata, id.as_bytes()).await?;
        // A claim left by a creator that died before finishing goes too.
        let claim = remove_tree(s, &store.claims, id.as_bytes()).await?;
        if !(data || meta || claim) {
            return Err(not_found(id));
        }
        Ok(())
    }

    async fn volumes_list(&self, _op: &Op) -> Result<Vec<Result<Volume>>> {
        let store = self.store().await?;
        let mut ids: Vec<Vec<u8>> = store
            .session
            .readdir(&store.volumes, VOLUMES)
            .await?
            .into_iter()
            .map(|e| e.name)
            .collect();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for raw in ids {
            let id = String::from_utf8_lossy(&raw).into_owned();
            let v = match validate_file_name(ObjectKind::Volume, &id) {
                Ok(()) => self.read_volume(&store, &id).await,
                Err(e) => Err(e),
            };
            out.push(v);
        }
        Ok(out)
    }
}

#[async_trait]
impl Importer for NfsVolumes {
    async fn import(
        &self,
        op: &Op,
        id: &str,
        spec: &FilterSpec,
        tar: TarReader,
    ) -> Result<ApplyReport> {
        let (store, root) = self.data(id).await?;
        self.hold(id, op);
        let result = crate::import::import(op, store, root, self.location(id), spec, tar).await;
        self.release(id, op.id());
        result
    }

    async fn new_data_sink(&self, op: &Op, id: &str) -> Result<Box<dyn DataSink>> {
        Ok(Box::new(self.open_handle(op, id).await?))
    }
}

impl NfsVolumes {
    /// A held handle on an existing volume: the one kind of data source and data sink.
    async fn open_handle(&self, op: &Op, id: &str) -> Result<Handle> {
        self.data(id).await?;
        self.hold(id, op);
        Ok(Handle {
            volumes: self.clone(),
            id: id.to_owned(),
            holder: op.id().to_owned(),
            path: self.location(id),
        })
    }
}

#[async_trait]
impl Exporter for NfsVolumes {
    async fn export(
        &self,
        op: &Op,
        id: &str,
        ancestor: Option<&str>,
        spec: &FilterSpec,
        data: bool,
    ) -> Result<ArchiveStream> {
        if let Some(a) = ancestor {
            return Err(Error::Unsupported {
                what: format!("exporting NFS volume {id} as a difference from {a}"),
                reason: "volumes have no parents; export the whole volume".into(),
            });
        }
        let (store, root) = self.data(id).await?;
        crate::export::export(op, store, root, spec, data)
    }

    async fn new_data_source(&self, op: &Op, id: &str) -> Result<Box<dyn DataSource>> {
        Ok(Box::new(self.open_handle(op, id).await?))
    }
}

#[async_trait]
impl Resolver for NfsVolumes {
    async fn url(&self, _op: &Op, id: &str) -> Result<ObjectUrl> {
        validate_file_name(ObjectKind::Volume, id)?;
        Ok(ObjectUrl::volume(&self.inner.name, id))
    }

    async fn owners(&self, _op: &Op, url: &ObjectUrl) -> Result<Vec<String>> {
        Ok(self.holders(url.id()))
    }
}

/// A volume held open for reading or writing; it blocks `volume_destroy` until closed.
struct Handle {
    volumes: NfsVolumes,
    id: String,
    holder: String,
    path: PathBuf,
}

#[async_trait]
impl DataSource for Handle {
    async fn export(&mut self, op: &Op, spec: &FilterSpec, data: bool) -> Result<ArchiveStream> {
        let (store, root) = self.volumes.data(&self.id).await?;
        crate::export::export(op, store, root, spec, data)
    }

    async fn stat(&mut self, _op: &Op, path: &str) -> Result<FileStat> {
        let (store, root) = self.volumes.data(&self.id).await?;
        crate::resolve::stat_in(&store.session, &root, &self.path, path).await
    }

    fn source(&self) -> &Path {
        &self.path
    }

    async fn close(self: Box<Self>, _op: &Op) -> Result<()> {
        self.volumes.release(&self.id, &self.holder);
        Ok(())
    }
}

#[async_trait]
impl DataSink for Handle {
    async fn import(&mut self, op: &Op, spec: &FilterSpec, tar: TarReader) -> Result<ApplyReport> {
        let (store, root) = self.volumes.data(&self.id).await?;
        crate::import::import(op, store, root, self.path.clone(), spec, tar).await
    }

    fn sink(&self) -> &Path {
        &self.path
    }

    async fn close(self: Box<Self>, _op: &Op) -> Result<()> {
        self.volumes.release(&self.id, &self.holder);
        Ok(())
    }
}
