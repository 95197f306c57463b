//! The vhd `LayerDriver`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use disk_image::attach::{AttachOptions, Attachments, Server};
use disk_image::{ErrorKind, Format};
use mounts::counted::MountKey;
use mounts::{BlockMount, CountedMounts, Lower, Make, MountSites, Plan};
use storage_core::run_root::{RunRoot, write_atomic};
use storage_core::{
    BlockingDriver, CreateOpts, DiffOpts, Error, IoContext, LayerDisk, MountOpts, MountProblem,
    ObjectKind, Op, Result,
};
use tar_engine::{ApplyReport, ArchiveStream, Change, ExportOptions};

use crate::image::{self, LayerFormat, LayerInput};
use crate::layout::{Kind, LAYER_VHD, Layout, SANDBOX_VHDX};

/// The run-root lock every mount change of a vhd store is made under.
const MOUNTS_LOCK: &str = "vhd-mounts";
/// The store option (and container option) that sizes a sandbox.
pub const SANDBOX_SIZE_OPTION: &str = "sandbox_size";
/// The store option that lays new layers out as fixed (the default) or dynamic VHDs.
pub const LAYER_FORMAT_OPTION: &str = "layer_format";
/// The container option that sizes one sandbox.
const SIZE_OPTION: &str = "size";

/// Layers as `layer.vhd` images, containers as `sandbox.vhdx` disks, stacked with
/// overlayfs. Cheap to clone.
#[derive(Clone)]
pub struct VhdDriver {
    inner: Arc<Inner>,
}

/// How a vhd store is opened beyond its root and run root.
#[derive(Debug, Clone, Default)]
pub struct VhdOptions {
    /// The size of a new container's sandbox (LCOW's default, 20 GB, when `None`).
    pub sandbox_size: Option<u64>,
    /// How new layers' `layer.vhd` files are laid out (fixed, as LCOW, by default).
    pub layer_format: LayerFormat,
    /// The command serving block views (`strata serve-block-view`), program first; a
    /// sandbox is a dynamic VHDX, which only a block view attaches. `None`: containers
    /// are made but not mounted.
    pub block_view_server: Option<Vec<std::ffi::OsString>>,
}

struct Inner {
    layout: Layout,
    mounts: CountedMounts<Sites>,
    server: Option<Server>,
    sandbox_size: u64,
    layer_format: LayerFormat,
}

/// Where the layers' unions go, and how a base (an attached disk's ext4) is taken down.
struct Sites {
    layout: Layout,
    attachments: Attachments,
}

impl MountSites for Sites {
    fn target(&self, id: &str) -> PathBuf {
        self.layout.merged(id)
    }

    fn keys(&self) -> Result<Vec<String>> {
        self.layout.layer_dirs()
    }

    fn take_down(&self, key: MountKey<'_>, target: &Path) -> Result<()> {
        mounts::unmount(target)?;
        if let MountKey::Base(name) = key {
            self.release(&self.layout.disk_of_base(name))?;
        }
        Ok(())
    }
}

impl Sites {
    /// Lets go of the attachment of `disk` once; not being attached is fine (a repair
    /// after the device went).
    fn release(&self, disk: &Path) -> Result<()> {
        match self.attachments.release(disk) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::InvalidArgument => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The run-root lock held while layer `id`'s files change (create, apply), so that
/// another process's open does not take a layer being made for one left incomplete.
fn layer_lock(id: &str) -> String {
    format!("vhd-layer-{id}")
}

impl VhdDriver {
    /// Opens (creating) a vhd store at `root` with per-boot state in `run`, and sets
    /// right what a kill left: mounts and attachments cut short, layers never completed,
    /// disks half built.
    pub fn open(root: &Path, run: RunRoot, options: VhdOptions) -> Result<Self> {
        let layout = Layout::new(root);
        layout.ensure()?;
        let attachments = Attachments::open(&run.attachments())?;
        let sites = Sites {
            layout: layout.clone(),
            attachments,
        };
        let mounts = CountedMounts::open(run, MOUNTS_LOCK, sites)?;
        let server = options
            .block_view_server
            .as_ref()
            .and_then(|cmd| cmd.split_first())
            .map(|(program, args)| Server::new(program, args.iter().cloned()));
        let inner = Inner {
            layout,
            mounts,
            server,
            sandbox_size: options.sandbox_size.unwrap_or(image::DEFAULT_SANDBOX_SIZE),
            layer_format: options.layer_format,
        };
        inner.finish_interrupted()?;
        inner.check_attachments(true)?;
        Ok(VhdDriver {
            inner: Arc::new(inner),
        })
    }

    /// The store's layout.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }
}

impl Inner {
    fn run(&self) -> &RunRoot {
        self.mounts.run_root()
    }

    fn require(&self, id: &str) -> Result<Kind> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        self.layout.kind(id)
    }

    /// Removes the layers no create finished and the disks no build finished, each
    /// only when no process is making it (its lock is free).
    fn finish_interrupted(&self) -> Result<()> {
        for id in self.layout.layer_dirs()? {
            let Some(_held) = self.run().try_lock(&layer_lock(&id))? else {
                continue;
            };
            let dir = self.layout.layer(&id);
            if !self.layout.is_complete(&id) {
                tracing::info!(layer = %id, "removing a layer whose creation was cut short");
                dirtree::remove_all(&dir)
                    .map(drop)
                    .ctx(|| format!("remove the incomplete layer {}", dir.display()))?;
            } else {
                for name in [LAYER_VHD, SANDBOX_VHDX] {
                    let part = self.layout.part(&id, name);
                    if part.exists() {
                        std::fs::remove_file(&part)
                            .ctx(|| format!("remove the half-built {}", part.display()))?;
                    }
                }
            }
            drop(_held);
            self.run().forget_lock(&layer_lock(&id));
        }
        Ok(())
    }

    /// Attachments of this store's disks that no counted base stands on: left by a kill
    /// between attaching a disk and mounting or recording it. With `repair` they are let
    /// go.
    fn check_attachments(&self, repair: bool) -> Result<Vec<MountProblem>> {
        let _lock = self.mounts.lock()?;
        let ours = self
            .layout
            .layers_dir()
            .canonicalize()
            .ctx(|| format!("resolve {}", self.layout.layers_dir().display()))?;
        let mut out = Vec::new();
        for att in self.mounts.sites().attachments.list()? {
            let Ok(rest) = att.top.strip_prefix(&ours) else {
                continue;
            };
            let mut parts = rest.iter();
            let (Some(id), Some(file), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let id = id.to_string_lossy();
            let kind = if file == SANDBOX_VHDX {
                Kind::Container
            } else {
                Kind::Image
            };
            let base = Layout::base_name(&id, kind);
            let record = MountKey::Base(&base).record();
            if self.run().count(&record)? > 0 && mounts::is_mounted(&self.mounts.base_target(&base))
            {
                continue;
            }
            if repair {
                let _ = mounts::unmount(&self.mounts.base_target(&base));
                for _ in 0..att.refs.max(1) {
                    self.mounts.sites().release(&att.top)?;
                }
            }
            out.push(MountProblem {
                id: record,
                detail: format!(
                    "{} is attached at {} with no mount recorded on it",
                    att.top.display(),
                    att.device.display()
                ),
                repaired: repair,
            });
        }
        Ok(out)
    }

    /// Makes the directory of a new layer, with its parent chain; the caller writes its
    /// disk and then the marker.
    fn new_layer_dir(&self, id: &str, parent: Option<&str>) -> Result<()> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        let dir = self.layout.layer(id);
        if dir.exists() {
            return Err(Error::AlreadyExists {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            });
        }
        let parents = match parent {
            Some(p) => {
                if self.require(p)? == Kind::Container {
                    return Err(Error::Unsupported {
                        what: format!("layer {id} on container layer {p}"),
                        reason: "a sandbox.vhdx is never a parent; commit it as a layer first"
                            .into(),
                    });
                }
                let mut chain = vec![p.to_owned()];
                chain.extend(self.layout.parents(p)?);
                Some(chain.join("\n"))
            }
            None => None,
        };
        use std::os::unix::fs::DirBuilderExt;
        let mut private = std::fs::DirBuilder::new();
        private.mode(0o700);
        private
            .create(&dir)
            .and_then(|()| private.create(self.layout.merged(id)))
            .ctx(|| format!("create layer directory {}", dir.display()))?;
        if let Some(parents) = parents {
            write_atomic(&self.layout.parents_file(id), parents.as_bytes())?;
        }
        Ok(())
    }

    /// An image layer: an empty `layer.vhd`, filled by [`apply`](Self::apply).
    fn create(&self, id: &str, parent: Option<&str>) -> Result<()> {
        let _held = self.run().lock(&layer_lock(id))?;
        self.new_layer_dir(id, parent)?;
        image::build_layer::<std::io::Empty>(
            image::uuid_of(id),
            &self.layout.layer_vhd(id),
            &self.layout.part(id, LAYER_VHD),
            self.layer_format,
            false,
            None,
        )?;
        // The marker is written last: its presence means the layer exists.
        write_atomic(&self.layout.complete(id), b"")
    }

    /// A container's layer: a `sandbox.vhdx` of the store's size, or the container's own.
    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        let size = match opts.storage_opts.get(SIZE_OPTION) {
            Some(v) => image::parse_size(SIZE_OPTION, v)?,
            None => self.sandbox_size,
        };
        let _held = self.run().lock(&layer_lock(id))?;
        self.new_layer_dir(id, parent)?;
        image::build_sandbox(
            image::uuid_of(id),
            &self.layout.sandbox(id),
            &self.layout.part(id, SANDBOX_VHDX),
            size,
        )?;
        write_atomic(&self.layout.complete(id), b"")
    }

    /// Refuses a change to `id` while it is mounted, or while a mount stands on its disk.
    fn refuse_if_mounted(&self, id: &str, kind: Kind) -> Result<()> {
        let top = self.mounts.count(id)?;
        let base = self
            .run()
            .count(&MountKey::Base(&Layout::base_name(id, kind)).record())?;
        if top + base > 0 {
            return Err(Error::LayerInUse {
                id: id.to_owned(),
                mounts: top.max(base),
            });
        }
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<()> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        let _lock = self.mounts.lock()?;
        let dir = self.layout.layer(id);
        if !dir.exists() {
            return Err(Error::NotFound {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            });
        }
        for kind in [Kind::Image, Kind::Container] {
            self.refuse_if_mounted(id, kind)?;
        }
        // Unlink the marker first so a crash midway leaves no layer that looks whole.
        let _ = std::fs::remove_file(self.layout.complete(id));
        dirtree::remove_all(&dir)
            .map(drop)
            .ctx(|| format!("remove layer {}", dir.display()))
    }

    /// Applies a tar to an image layer: its `layer.vhd` is built again with the tar on
    /// top of what it held.
    fn apply(
        &self,
        op: &Op,
        id: &str,
        input: impl std::io::Read + Send,
        opts: &DiffOpts,
    ) -> Result<ApplyReport> {
        let _held = self.run().lock(&layer_lock(id))?;
        if self.require(id)? == Kind::Container {
            return Err(Error::Unsupported {
                what: format!("applying a diff to container layer {id}"),
                reason: "a sandbox.vhdx is written by the container through its mount; \
                         import the diff as a layer instead"
                    .into(),
            });
        }
        {
            let _lock = self.mounts.lock()?;
            self.refuse_if_mounted(id, Kind::Image)?;
        }
        let vhd = self.layout.layer_vhd(id);
        let applied = self.layout.layer(id).join("applied");
        let existing = applied.exists();
        let target = format!("layer {id}");
        // The layer's tar comes back byte for byte only while its image holds that one tar.
        let split = self.layout.layer(id).join(tar_engine::split::FILE_NAME);
        match std::fs::remove_file(&split) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).ctx(|| format!("remove {}", split.display()));
            }
            _ => {}
        }
        let keep_split = !existing && opts.filter.is_identity();
        let report = image::build_layer(
            image::uuid_of(id),
            &vhd,
            &self.layout.part(id, LAYER_VHD),
            self.layer_format,
            existing,
            Some(LayerInput {
                op,
                tar: input,
                filter: &opts.filter,
                expected_digest: opts.expected_digest.as_deref(),
                target: &target,
                tar_split: keep_split.then_some(split.as_path()),
            }),
        )?;
        if !existing {
            write_atomic(&applied, b"")?;
        }
        // A build given a tar always reports on it.
        report.ok_or_else(|| {
            Error::io(
                format!("apply a diff to {target}"),
                std::io::Error::other("the image builder reported nothing"),
            )
        })
    }

    /// The base mount of layer `id`'s image: its `layer.vhd` on a read-only loop device,
    /// its ext4 mounted read-only.
    fn layer_base(&self, id: &str) -> Make<'_> {
        let disk = self.layout.layer_vhd(id);
        Make::with(move |target| {
            // A fixed VHD is raw-addressable: it goes straight on a loop device and no
            // server is started, whatever the one named. A dynamic one needs a server.
            let fallback;
            let server = match &self.server {
                Some(s) => s,
                None if disk_image::detect(&disk)? == Format::VhdFixed => {
                    fallback = Server::new("/nonexistent/block-view-server", Vec::<String>::new());
                    &fallback
                }
                None => {
                    return Err(Error::Unsupported {
                        what: format!("mounting {}", disk.display()),
                        reason: "a dynamic layer.vhd is attached only through a block view \
                                 server, and this program names none"
                            .into(),
                    });
                }
            };
            self.attach_and_mount(&disk, true, server, target)
        })
    }

    /// The base mount of container `id`'s sandbox: its `sandbox.vhdx` served by a block
    /// view and attached read-write, its ext4 mounted read-write.
    fn sandbox_base(&self, id: &str) -> Result<Make<'_>> {
        let Some(server) = &self.server else {
            return Err(Error::Unsupported {
                what: format!("mounting container layer {id}"),
                reason: "its sandbox.vhdx is a dynamic VHDX, attached only through a block \
                         view server, and this program names none"
                    .into(),
            });
        };
        let disk = self.layout.sandbox(id);
        Ok(Make::with(move |target| {
            self.attach_and_mount(&disk, false, server, target)
        }))
    }

    fn attach_and_mount(
        &self,
        disk: &Path,
        read_only: bool,
        server: &Server,
        target: &Path,
    ) -> Result<()> {
        let sites = self.mounts.sites();
        let att = sites.attachments.attach(
            disk,
            &AttachOptions {
                read_only,
                within: None,
            },
            server,
        )?;
        let mut mount = BlockMount::new(&att.device, target);
        if read_only {
            mount = mount.read_only();
        }
        mount.mount().inspect_err(|_| {
            let _ = sites.release(disk);
        })
    }

    /// The mount of `id`: the images of its chain (and its own, for an image layer), each
    /// a shared base, stacked under a container's sandbox `upper/` or read-only.
    fn plan(&self, id: &str) -> Result<Plan<'_>> {
        let kind = self.require(id)?;
        let mut images = Vec::new(); // topmost first
        if kind == Kind::Image {
            images.push(id.to_owned());
        }
        images.extend(self.layout.parents(id)?);
        let lowers = images
            .iter()
            .map(|l| Lower {
                name: l.clone(),
                path: self.mounts.base_target(l),
            })
            .collect();
        let sandbox = Layout::base_name(id, Kind::Container);
        let upper = (kind == Kind::Container).then(|| {
            let base = self.mounts.base_target(&sandbox);
            (base.join("upper"), base.join("work"))
        });
        let mut plan = self
            .mounts
            .plan_overlay(lowers, upper, &self.layout.empty())?;
        for l in images.iter().rev() {
            plan = plan.on_base(l, self.layer_base(l));
        }
        if kind == Kind::Container {
            plan = plan.on_base(&sandbox, self.sandbox_base(id)?);
        }
        Ok(plan)
    }

    /// Mounts `id`. An image layer's mount is read-only whatever is asked (its image
    /// never changes); a container's always has its sandbox as the writable upper.
    fn get(&self, id: &str) -> Result<PathBuf> {
        self.require(id)?;
        self.mounts.mount(id, || self.plan(id))
    }

    fn put(&self, id: &str) -> Result<()> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        self.mounts.unmount(id)
    }

    /// Where `id`'s own changes are while it is mounted, and the trees of its parents,
    /// nearest first: its image's root or its sandbox's `upper/`, over its parents'
    /// images.
    fn own_tree(&self, id: &str) -> Result<(PathBuf, Vec<PathBuf>)> {
        let kind = self.require(id)?;
        let own = match kind {
            Kind::Image => self.mounts.base_target(id),
            Kind::Container => self
                .mounts
                .base_target(&Layout::base_name(id, Kind::Container))
                .join("upper"),
        };
        let lowers = self
            .layout
            .parents(id)?
            .iter()
            .map(|p| self.mounts.base_target(p))
            .collect();
        Ok((own, lowers))
    }

    /// True when `from` is what `id`'s own tree is relative to.
    fn native(&self, id: &str, from: Option<&str>) -> Result<bool> {
        Ok(self.layout.parents(id)?.first().map(String::as_str) == from)
    }
}

/// Runs `use_trees` with `id` mounted (and so its own tree and its parents' images
/// readable), then lets the mount go.
fn with_own_tree<T>(
    inner: &Inner,
    id: &str,
    use_trees: impl FnOnce(&Path, &[PathBuf]) -> Result<T>,
) -> Result<T> {
    let (own, lowers) = inner.own_tree(id)?;
    inner.get(id)?;
    let result = use_trees(&own, &lowers);
    let released = inner.put(id);
    let out = result?;
    released?;
    Ok(out)
}

/// Mounts `id` (and `from`), compares the trees, and runs `use_changes` while the mounts
/// are still held: the changes point into them.
fn with_mounted_changes<T>(
    inner: &Inner,
    id: &str,
    from: Option<&str>,
    use_changes: impl FnOnce(Vec<Change>) -> Result<T>,
) -> Result<T> {
    mounts::with_held_pair(
        |l| inner.get(l),
        |l| inner.put(l),
        id,
        from,
        &inner.layout.empty(),
        |old, new| tar_engine::compare_trees(old, new).and_then(use_changes),
    )
}

/// The changes of `id` over `from`, handed to `use_changes` while the trees they point
/// into are mounted: its own tree read as an overlay diff over its parents' images when
/// `from` is its parent, two mounted trees compared otherwise.
fn with_changes<T>(
    inner: &Inner,
    id: &str,
    from: Option<&str>,
    use_changes: impl FnOnce(Vec<Change>) -> Result<T>,
) -> Result<T> {
    inner.require(id)?;
    if inner.native(id, from)? {
        with_own_tree(inner, id, |own, lowers| {
            use_changes(tar_engine::layer_changes(own, lowers)?)
        })
    } else {
        with_mounted_changes(inner, id, from, use_changes)
    }
}

impl BlockingDriver for VhdDriver {
    fn name(&self) -> &'static str {
        "vhd"
    }

    fn create(&self, _op: &Op, id: &str, parent: Option<&str>, _opts: &CreateOpts) -> Result<()> {
        self.inner.create(id, parent)
    }

    fn create_read_write(
        &self,
        _op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
    ) -> Result<()> {
        self.inner.create_read_write(id, parent, opts)
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
        self.inner.apply(op, id, diff, opts)
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
        ArchiveStream::spawn(move |pipe| {
            if inner.native(&id, from.as_deref())? {
                // One walk of the layer's own tree, writing as it goes.
                // The imported tar itself, while the layer is unchanged.
                let split = inner.layout.layer(&id).join(tar_engine::split::FILE_NAME);
                with_own_tree(&inner, &id, |own, lowers| {
                    tar_engine::write_layer_exact(&op, own, lowers, &split, &opts, pipe).map(drop)
                })
            } else {
                with_mounted_changes(&inner, &id, from.as_deref(), |changes| {
                    tar_engine::write_changes(&op, &changes, &opts, pipe).map(drop)
                })
            }
        })
    }

    fn changes(&self, _op: &Op, id: &str, parent: Option<&str>) -> Result<Vec<Change>> {
        with_changes(&self.inner, id, parent, Ok)
    }

    fn status(&self, _op: &Op) -> Result<Vec<(String, String)>> {
        let inner = &self.inner;
        let ids = inner.layout.layer_dirs()?;
        let (mut images, mut containers) = (0, 0);
        for id in &ids {
            match inner.layout.kind(id) {
                Ok(Kind::Image) => images += 1,
                Ok(Kind::Container) => containers += 1,
                Err(_) => {}
            }
        }
        Ok(vec![
            ("Layer Format".into(), "layer.vhd (fixed VHD, ext4)".into()),
            (
                "Sandbox Format".into(),
                "sandbox.vhdx (dynamic VHDX, ext4)".into(),
            ),
            ("Sandbox Size".into(), inner.sandbox_size.to_string()),
            ("Mount API".into(), inner.mounts.api().describe().into()),
            ("Image Layers".into(), images.to_string()),
            ("Container Layers".into(), containers.to_string()),
            (
                "Block View Server".into(),
                if inner.server.is_some() {
                    "configured"
                } else {
                    "none"
                }
                .into(),
            ),
            (
                "Run Root".into(),
                inner.mounts.run_root().path().display().to_string(),
            ),
        ])
    }

    fn metadata(&self, _op: &Op, id: &str) -> Result<BTreeMap<String, String>> {
        let kind = self.inner.require(id)?;
        let l = &self.inner.layout;
        let parents = l.parents(id)?;
        let disk = match kind {
            Kind::Image => l.layer_vhd(id),
            Kind::Container => l.sandbox(id),
        };
        Ok(BTreeMap::from([
            ("disk".into(), disk.display().to_string()),
            ("merged".into(), l.merged(id).display().to_string()),
            ("depth".into(), (parents.len() + 1).to_string()),
            ("parents".into(), parents.join(":")),
        ]))
    }

    fn cleanup(&self, _op: &Op) -> Result<()> {
        self.inner.mounts.cleanup()?;
        self.inner.check_attachments(true).map(drop)
    }

    fn check_mounts(&self, _op: &Op, repair: bool) -> Result<Vec<MountProblem>> {
        let mut problems = self.inner.mounts.check(repair)?;
        problems.extend(self.inner.check_attachments(repair)?);
        Ok(problems)
    }

    fn disks(&self, _op: &Op, id: &str) -> Result<Vec<LayerDisk>> {
        let inner = &self.inner;
        let kind = inner.require(id)?;
        let mut out = Vec::new();
        // Each layer.vhd as it was built: fixed, or dynamic under `layer_format`.
        let image = |l: &str| -> Result<LayerDisk> {
            let path = inner.layout.layer_vhd(l);
            Ok(LayerDisk {
                format: disk_image::detect(&path)?.name().to_owned(),
                path,
                writable: false,
            })
        };
        match kind {
            Kind::Container => out.push(LayerDisk {
                path: inner.layout.sandbox(id),
                format: Format::Vhdx.name().to_owned(),
                writable: true,
            }),
            Kind::Image => out.push(image(id)?),
        }
        for parent in inner.layout.parents(id)? {
            out.push(image(&parent)?);
        }
        Ok(out)
    }

    fn stored_layers(&self, _op: &Op) -> Result<Vec<String>> {
        self.inner.layout.layer_dirs()
    }
}
