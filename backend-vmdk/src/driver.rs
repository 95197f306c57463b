//! The vmdk `LayerDriver`: layers as delta disks, mounted through long-lived attachments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use disk_image::attach::{AttachOptions, Attachments, Server};
use mounts::{BlockMount, CountedMounts, Make, MountKey, MountSites, Plan};
use storage_core::run_root::{RunRoot, write_atomic};
use storage_core::{
    BlockingDriver, CreateOpts, DiffOpts, Error, IoContext, LayerDisk, MountOpts, MountProblem,
    ObjectKind, Op, Result,
};
use tar_engine::{ApplyOptions, ApplyReport, ArchiveStream, Change, ExportOptions, WhiteoutMode};

use crate::layout::{APPLIED, COMPLETE, LayerRecord, Layout, ROOTFS};
use crate::scratch;

/// The run-root lock that creating layers and sweeping half-made ones take.
const LAYERS_LOCK: &str = "vmdk-layers";
/// The run-root lock of the counted mounts.
const MOUNTS_LOCK: &str = "vmdk-mounts";

/// Layers as sparse VMDK delta disks chained down to a scratch disk. Cheap to clone.
#[derive(Clone)]
pub struct VmdkDriver {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    run: RunRoot,
    disks: Arc<Disks>,
    mounts: CountedMounts<Sites>,
    capacity: u64,
}

/// Attaching a disk chain as a block device and mounting its file system.
pub(crate) struct Disks {
    layout: Layout,
    attachments: Attachments,
    server: Option<Server>,
}

impl Disks {
    /// Attaches the chain whose top disk is `disk`, for `what` (named in errors); returns
    /// the device.
    pub(crate) fn attach_disk(&self, disk: &Path, read_only: bool, what: &str) -> Result<PathBuf> {
        let server = self.server.as_ref().ok_or_else(|| Error::Unsupported {
            what: format!("attaching the disk of {what}"),
            reason: "this program names no block view server (the store configuration's \
                     block_view_server is unset)"
                .into(),
        })?;
        let options = AttachOptions {
            read_only,
            within: None,
        };
        Ok(self.attachments.attach(disk, &options, server)?.device)
    }

    /// Drops one reference on `disk`'s attachment; not being attached is fine.
    pub(crate) fn release_disk(&self, disk: &Path) -> Result<()> {
        match self.attachments.release(disk) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == disk_image::ErrorKind::InvalidArgument => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Attaches the chain whose top is `disk` and mounts its ext4 at `target`; on failure
    /// nothing is left attached.
    pub(crate) fn mount_disk(
        &self,
        disk: &Path,
        read_only: bool,
        target: &Path,
        what: &str,
    ) -> Result<()> {
        let device = self.attach_disk(disk, read_only, what)?;
        let mut mount = BlockMount::new(device, target);
        if read_only {
            mount = mount.read_only();
        }
        if let Err(e) = mount.mount() {
            let _ = self.release_disk(disk);
            return Err(e);
        }
        Ok(())
    }

    /// True when something holds an attachment of `disk`.
    pub(crate) fn is_attached(&self, disk: &Path) -> Result<bool> {
        let Ok(top) = disk.canonicalize() else {
            return Ok(false);
        };
        Ok(self.attachments.list()?.iter().any(|a| a.top == top))
    }

    /// Drops one reference on layer `id`'s attachment; not being attached is fine.
    fn release(&self, id: &str) -> Result<()> {
        self.release_disk(&self.layout.disk(id))
    }

    /// Attaches layer `id`'s chain and mounts its ext4 at `target`.
    fn mount(&self, id: &str, read_only: bool, target: &Path) -> Result<()> {
        self.mount_disk(
            &self.layout.disk(id),
            read_only,
            target,
            &format!("layer {id}"),
        )
    }

    /// Lets go of every reference on layer `id`'s attachment, for a layer nothing may
    /// use any more (being removed, or left half-made by a killed process).
    fn detach_all(&self, id: &str) -> Result<()> {
        let _ = mounts::unmount(&self.layout.write_dir(id));
        let disk = self.layout.disk(id);
        let Ok(top) = disk.canonicalize() else {
            return Ok(());
        };
        for attachment in self.attachments.list()? {
            if attachment.top == top {
                for _ in 0..attachment.refs.max(1) {
                    self.release(id)?;
                }
            }
        }
        Ok(())
    }
}

/// Layers' trees are bind mounts of `rootfs/` at `images/<id>/mount`, standing on a base
/// per layer: its chain attached and its ext4 mounted in the run root.
struct Sites {
    layout: Layout,
    disks: Arc<Disks>,
}

impl MountSites for Sites {
    fn target(&self, key: &str) -> PathBuf {
        self.layout.mount_dir(key)
    }

    fn keys(&self) -> Result<Vec<String>> {
        self.layout.layer_dirs()
    }

    fn take_down(&self, key: MountKey<'_>, target: &Path) -> Result<()> {
        mounts::unmount(target)?;
        match key {
            MountKey::Base(id) => self.disks.release(id),
            MountKey::Top(_) | MountKey::Nest(_) => Ok(()),
        }
    }
}

/// The run-root lock held while layer `id`'s disk is attached for writing a diff.
fn write_lock(id: &str) -> String {
    format!("vmdk-write-{id}")
}

/// Binds `source` at `target`.
fn bind(source: &Path, target: &Path) -> Result<()> {
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        Error::io(
            format!("bind {} at {}", source.display(), target.display()),
            std::io::Error::from(e),
        )
    })
}

fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .ctx(|| format!("create {}", path.display()))
}

impl VmdkDriver {
    /// Opens (creating) a vmdk store at `root`, with per-boot state (mount counts, disk
    /// attachments) in `run`; block views are served by `server`. A new store gets a
    /// scratch disk of `capacity` bytes. Layers whose creation a kill cut short are
    /// removed, and so are attachments of layers' disks that nothing uses.
    pub fn open(root: &Path, run: RunRoot, server: Option<Server>, capacity: u64) -> Result<Self> {
        let layout = Layout::new(root);
        layout.ensure()?;
        let attachments = Attachments::open(&run.attachments())?;
        let disks = Arc::new(Disks {
            layout: layout.clone(),
            attachments,
            server,
        });
        let sites = Sites {
            layout: layout.clone(),
            disks: disks.clone(),
        };
        let mounts = CountedMounts::open(run.clone(), MOUNTS_LOCK, sites)?;
        let inner = Inner {
            layout,
            run,
            disks,
            mounts,
            capacity,
        };
        {
            let _lock = inner.run.lock(LAYERS_LOCK)?;
            inner.ensure_scratch()?;
            inner.sweep()?;
        }
        // A mount killed between attaching a chain and recording it left an attachment
        // nothing stands on: it goes now, as the counted mounts set their records right.
        inner.stray_attachments(true)?;
        Ok(VmdkDriver {
            inner: Arc::new(inner),
        })
    }

    /// The store's layout.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// How this store attaches and mounts disks, for its volumes.
    pub(crate) fn disk_mounts(&self) -> Arc<Disks> {
        self.inner.disks.clone()
    }

    /// The store's run root.
    pub(crate) fn run_root(&self) -> &RunRoot {
        &self.inner.run
    }
}

impl Inner {
    /// Makes the scratch disk unless a whole one is there. Under the layers lock.
    fn ensure_scratch(&self) -> Result<()> {
        let dir = self.layout.scratch_dir();
        if dir.join(COMPLETE).exists() {
            return Ok(());
        }
        if dir.exists() {
            dirtree::remove_all(&dir)
                .map(drop)
                .ctx(|| format!("remove the half-made scratch disk in {}", dir.display()))?;
        }
        private_dir(&dir)?;
        scratch::create(&self.layout.scratch_disk(), self.capacity)?;
        write_atomic(&dir.join(COMPLETE), b"")
    }

    /// Removes the folders of layers whose creation was cut short. Under the layers lock.
    fn sweep(&self) -> Result<()> {
        for id in self.layout.layer_dirs()? {
            if !self.layout.is_complete(&id) {
                self.disks.detach_all(&id)?;
                let dir = self.layout.layer(&id);
                dirtree::remove_all(&dir)
                    .map(drop)
                    .ctx(|| format!("remove the half-made layer {id} in {}", dir.display()))?;
            }
        }
        Ok(())
    }

    /// The disk a child of `parent` (or of scratch) is a delta on.
    fn parent_disk(&self, parent: Option<&str>) -> PathBuf {
        parent.map_or_else(|| self.layout.scratch_disk(), |p| self.layout.disk(p))
    }

    fn create(&self, id: &str, parent: Option<&str>, read_write: bool) -> Result<()> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        let _lock = self.run.lock(LAYERS_LOCK)?;
        let dir = self.layout.layer(id);
        if dir.exists() {
            return Err(Error::AlreadyExists {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            });
        }
        if let Some(p) = parent {
            // The chain's disks: this layer's, its parents', scratch.
            let depth = self.layout.chain_ids(p)?.len() + 2;
            if depth > disk_image::chain::MAX_CHAIN_DEPTH + 1 {
                return Err(Error::Unsupported {
                    what: format!("layer {id} on {p}"),
                    reason: format!(
                        "its chain would be {depth} disks; a chain holds at most {}",
                        disk_image::chain::MAX_CHAIN_DEPTH + 1
                    ),
                });
            }
        }
        private_dir(&dir)?;
        let made = self.fill(id, parent, read_write);
        if made.is_err() {
            let _ = dirtree::remove_all(&dir);
        }
        made
    }

    /// Writes a new layer's folder: its delta disk, its record, and the marker, last.
    fn fill(&self, id: &str, parent: Option<&str>, read_write: bool) -> Result<()> {
        private_dir(&self.layout.mount_dir(id))?;
        private_dir(&self.layout.write_dir(id))?;
        self.new_delta(id, parent)?;
        let record = LayerRecord {
            parent: parent.map(str::to_owned),
            read_write,
        };
        let json = serde_json::to_vec(&record)
            .map_err(|e| Error::io(format!("write the record of layer {id}"), e))?;
        write_atomic(&self.layout.record(id), &json)?;
        write_atomic(&self.layout.layer(id).join(COMPLETE), b"")
    }

    /// Creates layer `id`'s empty delta disk on its parent's.
    fn new_delta(&self, id: &str, parent: Option<&str>) -> Result<()> {
        let mut disk = disk_image::create_child(&self.layout.disk(id), &self.parent_disk(parent))?;
        disk.flush()?;
        Ok(())
    }

    /// Refuses with `LayerInUse` while layer `id` is mounted.
    fn refuse_if_mounted(&self, id: &str) -> Result<()> {
        match self.mounts.count(id)? {
            0 => Ok(()),
            mounts => Err(Error::LayerInUse {
                id: id.to_owned(),
                mounts,
            }),
        }
    }

    fn require(&self, id: &str) -> Result<LayerRecord> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        self.layout.read_record(id)
    }

    fn remove(&self, id: &str) -> Result<()> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        let _lock = self.mounts.lock()?;
        self.refuse_if_mounted(id)?;
        let dir = self.layout.layer(id);
        if !dir.exists() {
            return Err(Error::NotFound {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            });
        }
        // The marker goes first, so a crash midway leaves a folder the next open sweeps.
        let marker = dir.join(COMPLETE);
        match std::fs::remove_file(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io_path("remove", &marker, e)),
        }
        self.disks.detach_all(id)?;
        dirtree::remove_all(&dir)
            .map(drop)
            .ctx(|| format!("remove layer {id} in {}", dir.display()))
    }

    /// How layer `id`'s tree is mounted: its chain attached (read-write for a
    /// container's layer) with its ext4 mounted as a base, and `rootfs/` bound on top.
    fn plan(&self, id: &str) -> Result<Plan<'static>> {
        let record = self.require(id)?;
        let base = self.mounts.base_target(id);
        let disks = self.disks.clone();
        let owned = id.to_owned();
        Ok(
            Plan::new(Make::with(move |target| bind(&base.join(ROOTFS), target))).on_base(
                id,
                Make::with(move |at| disks.mount(&owned, !record.read_write, at)),
            ),
        )
    }

    fn get(&self, id: &str) -> Result<PathBuf> {
        self.require(id)?;
        self.mounts.mount(id, || self.plan(id))
    }

    fn put(&self, id: &str) -> Result<()> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        self.mounts.unmount(id)
    }

    /// Writes a tar into layer `id`: its chain attached read-write, its ext4 mounted,
    /// the tar applied into `rootfs/`, then unmounted and released. A failure leaves the
    /// layer's delta empty again.
    fn apply(
        &self,
        op: &Op,
        id: &str,
        input: impl std::io::Read + Send,
        options: &ApplyOptions,
    ) -> Result<ApplyReport> {
        let record = self.require(id)?;
        let dir = self.layout.layer(id);
        if dir.join(APPLIED).exists() {
            return Err(Error::Unsupported {
                what: format!("applying a diff to layer {id}"),
                reason: "its diff is in already, and a complete layer is never written again"
                    .into(),
            });
        }
        self.refuse_if_mounted(id)?;
        // Held while the disk is attached for writing: no sweep of stray attachments
        // takes this one for a leftover.
        let _writing = self.run.lock(&write_lock(id))?;
        // An image layer is written once and mounted read-only after: it keeps what its
        // tar needs to come back byte for byte.
        let mut options = options.clone();
        if !record.read_write && options.filter.is_identity() {
            options.tar_split = Some(dir.join(tar_engine::split::FILE_NAME));
        }
        let write = self.layout.write_dir(id);
        self.disks.mount(id, false, &write)?;
        let applied = tar_engine::apply_tar(op, &write.join(ROOTFS), input, &options);
        let down = mounts::unmount(&write).and_then(|()| self.disks.release(id));
        match (applied, down) {
            (Ok(report), Ok(())) => {
                if !record.read_write {
                    write_atomic(&dir.join(APPLIED), b"")?;
                }
                Ok(report)
            }
            (Err(e), Ok(())) => {
                // Nothing of a refused tar stays: the delta is made again, empty.
                let disk = self.layout.disk(id);
                std::fs::remove_file(&disk).map_err(|e| Error::io_path("remove", &disk, e))?;
                self.new_delta(id, record.parent.as_deref())?;
                Err(e)
            }
            (Err(e), Err(_)) | (Ok(_), Err(e)) => Err(e),
        }
    }

    /// Writes image layer `id`'s diff over `from` as the tar it was imported from, when
    /// `from` is its parent and its tree still gives that tar back byte for byte (its
    /// tar-split records, replayed over its read-only mount); `false`, with nothing
    /// written, otherwise.
    fn exact_diff(
        &self,
        op: &Op,
        id: &str,
        from: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> Result<bool> {
        let record = self.require(id)?;
        let split = self.layout.layer(id).join(tar_engine::split::FILE_NAME);
        if record.read_write || record.parent.as_deref() != from || !split.exists() {
            return Ok(false);
        }
        let root = self.get(id)?;
        let written = tar_engine::reassemble(op, &root, &split, out);
        let released = self.put(id);
        let written = written?;
        released?;
        Ok(written.is_some())
    }

    /// Attachments of layers' disks that nothing uses: no counted mount stands on them
    /// and no diff is being written (what a kill between attaching and recording left).
    /// With `repair` they are let go, with anything still mounted for a write.
    fn stray_attachments(&self, repair: bool) -> Result<Vec<MountProblem>> {
        let _lock = self.mounts.lock()?;
        let Ok(images) = self.layout.images().canonicalize() else {
            return Ok(Vec::new());
        };
        let mut problems = Vec::new();
        for attachment in self.disks.attachments.list()? {
            let Some(id) = attachment
                .top
                .strip_prefix(&images)
                .ok()
                .and_then(|rel| rel.iter().next())
                .and_then(|first| first.to_str())
                .map(str::to_owned)
            else {
                continue;
            };
            if storage_core::id::validate_id(ObjectKind::Layer, &id).is_err() {
                continue;
            }
            let Some(_writing) = self.run.try_lock(&write_lock(&id))? else {
                continue;
            };
            let base = MountKey::Base(&id).record();
            if self.run.count(&base)? > 0 && mounts::is_mounted(&self.mounts.base_target(&id)) {
                continue;
            }
            if repair {
                self.disks.detach_all(&id)?;
            }
            problems.push(MountProblem {
                id: id.clone(),
                detail: format!(
                    "{} is attached at {} with no mount of the layer on it",
                    attachment.top.display(),
                    attachment.device.display()
                ),
                repaired: repair,
            });
        }
        Ok(problems)
    }

    fn disks(&self, id: &str) -> Result<Vec<LayerDisk>> {
        let record = self.require(id)?;
        let mut disks: Vec<LayerDisk> = self
            .layout
            .chain_ids(id)?
            .iter()
            .enumerate()
            .map(|(i, layer)| LayerDisk {
                path: self.layout.disk(layer),
                format: "vmdk".into(),
                writable: i == 0 && record.read_write,
            })
            .collect();
        disks.push(LayerDisk {
            path: self.layout.scratch_disk(),
            format: "vmdk".into(),
            writable: false,
        });
        Ok(disks)
    }
}

/// Mounts `id` (and `from`) read-only, compares the trees, and runs `use_changes` while
/// the mounts are still held: the changes point into them (an export reads file data
/// from there).
fn with_mounted_changes<T>(
    inner: &Inner,
    id: &str,
    from: Option<&str>,
    use_changes: impl FnOnce(Vec<Change>) -> Result<T>,
) -> Result<T> {
    mounts::with_held_pair(
        |layer| inner.get(layer),
        |layer| inner.put(layer),
        id,
        from,
        &inner.layout.empty(),
        |old, new| {
            tar_engine::compare_trees(old, new)
                .map(|changes| crate::emptied::fold_emptied_dirs(old, changes))
                .and_then(use_changes)
        },
    )
}

impl BlockingDriver for VmdkDriver {
    fn name(&self) -> &'static str {
        "vmdk"
    }

    fn create(&self, _op: &Op, id: &str, parent: Option<&str>, _opts: &CreateOpts) -> Result<()> {
        self.inner.create(id, parent, false)
    }

    fn create_read_write(
        &self,
        _op: &Op,
        id: &str,
        parent: Option<&str>,
        _opts: &CreateOpts,
    ) -> Result<()> {
        self.inner.create(id, parent, true)
    }

    fn remove(&self, _op: &Op, id: &str) -> Result<()> {
        self.inner.remove(id)
    }

    fn get(&self, _op: &Op, id: &str, _opts: &MountOpts) -> Result<PathBuf> {
        self.inner.get(id)
    }

    fn put(&self, _op: &Op, id: &str) -> Result<()> {
        self.inner.put(id)
    }

    fn mount_count(&self, _op: &Op, id: &str) -> Result<u64> {
        self.inner.mounts.count(id)
    }

    fn exists(&self, _op: &Op, id: &str) -> Result<bool> {
        Ok(self.inner.require(id).is_ok())
    }

    fn apply_diff(
        &self,
        op: &Op,
        id: &str,
        _parent: Option<&str>,
        diff: Box<dyn std::io::Read + Send>,
        opts: &DiffOpts,
    ) -> Result<ApplyReport> {
        let mut apply = ApplyOptions::new(WhiteoutMode::Delete);
        apply.expected_digest = opts.expected_digest.clone();
        apply.filter = opts.filter.clone();
        self.inner.apply(op, id, diff, &apply)
    }

    fn diff(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &ExportOptions,
    ) -> Result<ArchiveStream> {
        self.inner.require(id)?;
        let (inner, id, from) = (self.inner.clone(), id.to_owned(), parent.map(str::to_owned));
        let (op, opts) = (op.clone(), opts.clone());
        ArchiveStream::spawn(move |mut pipe| {
            // The imported tar itself, while the layer is unchanged.
            if opts.data
                && opts.filter.is_identity()
                && inner.exact_diff(&op, &id, from.as_deref(), &mut pipe)?
            {
                return Ok(());
            }
            with_mounted_changes(&inner, &id, from.as_deref(), |changes| {
                tar_engine::write_changes(&op, &changes, &opts, pipe).map(drop)
            })
        })
    }

    fn changes(&self, _op: &Op, id: &str, parent: Option<&str>) -> Result<Vec<Change>> {
        with_mounted_changes(&self.inner, id, parent, Ok)
    }

    fn status(&self, _op: &Op) -> Result<Vec<(String, String)>> {
        let inner = &self.inner;
        let layers = inner
            .layout
            .layer_dirs()?
            .iter()
            .filter(|id| inner.layout.is_complete(id))
            .count();
        Ok(vec![
            (
                "Scratch Disk".into(),
                inner.layout.scratch_disk().display().to_string(),
            ),
            ("Layers".into(), layers.to_string()),
            (
                "Deepest Chain".into(),
                format!("{} disks", disk_image::chain::MAX_CHAIN_DEPTH + 1),
            ),
            (
                "Block View Server".into(),
                if inner.disks.server.is_some() {
                    "configured".into()
                } else {
                    "none".into()
                },
            ),
            (
                "Attachment Registry".into(),
                inner.disks.attachments.dir().display().to_string(),
            ),
            (
                "Run Root".into(),
                inner.mounts.run_root().path().display().to_string(),
            ),
        ])
    }

    fn metadata(&self, _op: &Op, id: &str) -> Result<BTreeMap<String, String>> {
        let inner = &self.inner;
        let record = inner.require(id)?;
        let chain = inner.layout.chain_ids(id)?;
        Ok(BTreeMap::from([
            ("disk".into(), inner.layout.disk(id).display().to_string()),
            (
                "parent".into(),
                record.parent.clone().unwrap_or_else(|| "scratch".into()),
            ),
            (
                "scratch".into(),
                inner.layout.scratch_disk().display().to_string(),
            ),
            ("depth".into(), chain.len().to_string()),
            (
                "merged".into(),
                inner.layout.mount_dir(id).display().to_string(),
            ),
            ("read_write".into(), record.read_write.to_string()),
        ]))
    }

    fn cleanup(&self, _op: &Op) -> Result<()> {
        self.inner.mounts.cleanup()?;
        self.inner.stray_attachments(true).map(drop)
    }

    fn check_mounts(&self, _op: &Op, repair: bool) -> Result<Vec<MountProblem>> {
        let mut problems = self.inner.mounts.check(repair)?;
        problems.extend(self.inner.stray_attachments(repair)?);
        Ok(problems)
    }

    fn disks(&self, _op: &Op, id: &str) -> Result<Vec<LayerDisk>> {
        self.inner.disks(id)
    }

    fn stored_layers(&self, _op: &Op) -> Result<Vec<String>> {
        self.inner.layout.layer_dirs()
    }
}
