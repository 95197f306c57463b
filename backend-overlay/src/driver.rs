//! The overlay `LayerDriver`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use storage_core::run_root::{RunRoot, write_atomic};
use storage_core::{
    CreateOpts, DiffOpts, Error, IoContext, LayerDriver, MountOpts, MountProblem, ObjectKind, Op,
    Result, TarReader,
};
use tar_engine::{
    self, ApplyOptions, ApplyReport, ArchiveStream, Change, ExportOptions, WhiteoutMode,
};

use crate::layout::Layout;
use mounts::overlay::{self, MountApi, Stack};

/// Layers as directories, stacked with overlayfs. Cheap to clone.
#[derive(Clone)]
pub struct OverlayDriver {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    run: RunRoot,
    api: MountApi,
}

/// A read-only group of bottom layers mounted once and used as one lower by deeper stacks.
struct Nest {
    key: String,
    target: PathBuf,
    stack: Stack,
}

/// Everything needed to mount one layer.
struct Plan {
    stack: Stack,
    nests: Vec<Nest>,
}

const MOUNTS_LOCK: &str = "overlay-mounts";

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("overlay background task", std::io::Error::other(e)))?
}

impl OverlayDriver {
    /// Opens (creating) an overlay store at `root` with per-boot state in `run`.
    pub fn open(root: &Path, run: RunRoot) -> Result<Self> {
        Self::open_with_additional(root, run, &[])
    }

    /// Opens an overlay store that may also stack layers on the layers of the read-only
    /// overlay stores rooted at `additional` (it never writes there).
    pub fn open_with_additional(root: &Path, run: RunRoot, additional: &[PathBuf]) -> Result<Self> {
        let layout = Layout::new(root).with_additional(additional);
        layout.ensure()?;
        for sub in ["nest", "uses", "mounting"] {
            std::fs::create_dir_all(run.path().join(sub))
                .ctx(|| format!("create {}", run.path().join(sub).display()))?;
        }
        let inner = Inner {
            layout,
            run,
            api: MountApi::detect(),
        };
        inner.finish_interrupted_mounts()?;
        Ok(OverlayDriver {
            inner: Arc::new(inner),
        })
    }

    /// The store's layout.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }
}

impl Inner {
    fn require(&self, id: &str) -> Result<()> {
        if self.layout.layer(id).join("link").exists() {
            Ok(())
        } else {
            Err(Error::NotFound {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            })
        }
    }

    fn create(&self, id: &str, parent: Option<&str>) -> Result<()> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        let dir = self.layout.layer(id);
        if dir.exists() {
            return Err(Error::AlreadyExists {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            });
        }
        let lower = match parent {
            Some(p) => {
                let mut chain = vec![self.layout.link_of(p)?];
                chain.extend(self.layout.lower_links(p)?);
                chain.join(":")
            }
            None => String::new(),
        };
        use std::os::unix::fs::DirBuilderExt;
        let mut private = std::fs::DirBuilder::new();
        private.mode(0o700);
        private
            .create(&dir)
            .ctx(|| format!("create layer directory {}", dir.display()))?;
        let mut public = std::fs::DirBuilder::new();
        public.mode(0o755);
        public
            .create(self.layout.diff(id))
            .and_then(|()| private.create(self.layout.work(id)))
            .and_then(|()| private.create(self.layout.merged(id)))
            .ctx(|| format!("create layer directories in {}", dir.display()))?;
        if !lower.is_empty() {
            write_atomic(&dir.join("lower"), lower.as_bytes())?;
        }
        let link = Layout::new_link()?;
        std::os::unix::fs::symlink(
            Path::new("..").join(id).join("diff"),
            self.layout.links_dir().join(&link),
        )
        .ctx(|| format!("create short link {link} for layer {id}"))?;
        // The link file is written last: its presence means the layer exists.
        write_atomic(&dir.join("link"), link.as_bytes())
    }

    fn remove(&self, id: &str) -> Result<()> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        let _lock = self.run.lock(MOUNTS_LOCK)?;
        let mounts = self.run.count(id)?;
        if mounts > 0 {
            return Err(Error::LayerInUse {
                id: id.to_owned(),
                mounts,
            });
        }
        let dir = self.layout.layer(id);
        if !dir.exists() {
            return Err(Error::NotFound {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            });
        }
        match self.layout.link_of(id) {
            Ok(link) => {
                let _ = std::fs::remove_file(self.layout.links_dir().join(link));
            }
            // `create` was interrupted between making the short link and writing `link`:
            // only a scan of `l/` finds that link.
            Err(_) => self.remove_links_to(id)?,
        }
        // Unlink the marker first so a crash midway leaves no layer that looks whole.
        let _ = std::fs::remove_file(dir.join("link"));
        dirtree::remove_all(&dir)
            .map(drop)
            .ctx(|| format!("remove layer {}", dir.display()))
    }

    /// Removes every short link pointing at `id`'s diff directory.
    fn remove_links_to(&self, id: &str) -> Result<()> {
        let dir = self.layout.links_dir();
        let target = Path::new("..").join(id).join("diff");
        for entry in std::fs::read_dir(&dir).ctx(|| format!("list {}", dir.display()))? {
            let path = entry.ctx(|| format!("list {}", dir.display()))?.path();
            if std::fs::read_link(&path).is_ok_and(|t| t == target) {
                std::fs::remove_file(&path).ctx(|| format!("remove {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// The directories to stack for `id`, nesting the bottom of deep chains.
    fn plan(&self, id: &str, read_only: bool) -> Result<Plan> {
        let mut layers: Vec<(String, PathBuf)> = Vec::new(); // (id, short path), topmost first
        if read_only {
            layers.push((
                id.to_owned(),
                self.layout.link_path(&self.layout.link_of(id)?),
            ));
        }
        for link in self.layout.lower_links(id)? {
            layers.push((self.layout.id_of_link(&link)?, self.layout.link_path(&link)));
        }
        // Links of additional stores may be longer than this store's own.
        let path_len = layers
            .iter()
            .map(|(_, p)| p.as_os_str().len())
            .max()
            .unwrap_or(0);
        let max = self.api.max_lowers(path_len);
        // Bottom-aligned groups, so every layer above a group shares its mount.
        let mut nests = Vec::new();
        while layers.len() + nests.len() > max {
            let group = layers.split_off(layers.len() - max);
            let top = group[0].0.clone();
            nests.push(Nest {
                key: format!("nest-{top}"),
                target: self.run.path().join("nest").join(&top),
                stack: Stack {
                    lowers: group.into_iter().map(|(_, p)| p).collect(),
                    upper: None,
                },
            });
        }
        let mut lowers: Vec<PathBuf> = layers.into_iter().map(|(_, p)| p).collect();
        lowers.extend(nests.iter().rev().map(|n| n.target.clone()));
        if lowers.len() < 2 && (read_only || lowers.is_empty()) {
            lowers.push(self.layout.empty());
        }
        let upper = (!read_only).then(|| (self.layout.diff(id), self.layout.work(id)));
        Ok(Plan {
            stack: Stack { lowers, upper },
            nests,
        })
    }

    fn acquire(&self, key: &str, target: &Path, stack: &Stack) -> Result<()> {
        let n = self.run.count(key)?;
        if n == 0 || !mounts::is_mounted(target) {
            std::fs::create_dir_all(target).ctx(|| format!("create {}", target.display()))?;
            overlay::mount(self.api, stack, target)?;
            self.run.set_count(key, 1)
        } else {
            self.run.set_count(key, n + 1)
        }
    }

    fn release(&self, key: &str, target: &Path) -> Result<()> {
        let n = self.run.count(key)?;
        if n <= 1 {
            mounts::unmount(target)?;
            self.run.set_count(key, 0)
        } else {
            self.run.set_count(key, n - 1)
        }
    }

    /// Where a mount or unmount of `id` in progress is marked, until its record is true.
    fn mounting_marker(&self, id: &str) -> PathBuf {
        self.run.path().join("mounting").join(id)
    }

    /// Makes the mount records true where a mount or an unmount was cut short (a killed
    /// process leaves its marker): run at open, so a kill anywhere in `mount` or
    /// `unmount` leaves nothing the next command does not set right.
    fn finish_interrupted_mounts(&self) -> Result<()> {
        let dir = self.run.path().join("mounting");
        let pending = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).count())
            .unwrap_or(0);
        if pending == 0 {
            return Ok(());
        }
        // Under the mounts lock nobody is mounting: every marker left is stale.
        let _lock = self.run.lock(MOUNTS_LOCK)?;
        for p in &self.check_mounts_locked(true)? {
            tracing::info!(layer = %p.id, "set right after an interrupted mount: {}", p.detail);
        }
        for entry in std::fs::read_dir(&dir).ctx(|| format!("list {}", dir.display()))? {
            let entry = entry.ctx(|| format!("list {}", dir.display()))?;
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(())
    }

    fn get(&self, id: &str, read_only: bool) -> Result<PathBuf> {
        self.require(id)?;
        let merged = self.layout.merged(id);
        let _lock = self.run.lock(MOUNTS_LOCK)?;
        let n = self.run.count(id)?;
        if n > 0 && mounts::is_mounted(&merged) {
            self.run.set_count(id, n + 1)?;
            return Ok(merged);
        }
        let marker = self.mounting_marker(id);
        write_atomic(&marker, b"")?;
        let mounted = self.mount_new(id, read_only, &merged);
        let _ = std::fs::remove_file(&marker);
        mounted
    }

    /// Mounts `id` at `merged` (nothing is mounted there) and records it.
    fn mount_new(&self, id: &str, read_only: bool, merged: &Path) -> Result<PathBuf> {
        let plan = self.plan(id, read_only)?;
        let mut taken: Vec<&Nest> = Vec::new();
        for nest in &plan.nests {
            if let Err(e) = self.acquire(&nest.key, &nest.target, &nest.stack) {
                for t in taken {
                    let _ = self.release(&t.key, &t.target);
                }
                return Err(e);
            }
            taken.push(nest);
        }
        if let Err(e) = overlay::mount(self.api, &plan.stack, merged) {
            for t in taken {
                let _ = self.release(&t.key, &t.target);
            }
            return Err(e);
        }
        let uses: Vec<&str> = plan.nests.iter().map(|n| n.key.as_str()).collect();
        write_atomic(&self.uses_file(id), uses.join("\n").as_bytes())?;
        self.run.set_count(id, 1)?;
        Ok(merged.to_owned())
    }

    fn uses_file(&self, id: &str) -> PathBuf {
        self.run.path().join("uses").join(id)
    }

    fn nest_target(&self, key: &str) -> PathBuf {
        let top = key.strip_prefix("nest-").unwrap_or(key);
        self.run.path().join("nest").join(top)
    }

    fn put(&self, id: &str) -> Result<()> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        let _lock = self.run.lock(MOUNTS_LOCK)?;
        let n = self.run.count(id)?;
        if n > 1 {
            return self.run.set_count(id, n - 1);
        }
        let marker = self.mounting_marker(id);
        write_atomic(&marker, b"")?;
        let unmounted = self.unmount_last(id);
        let _ = std::fs::remove_file(&marker);
        unmounted
    }

    /// Unmounts `id`'s last mount and the nested mounts only it used.
    fn unmount_last(&self, id: &str) -> Result<()> {
        mounts::unmount(&self.layout.merged(id))?;
        self.run.set_count(id, 0)?;
        let uses = std::fs::read_to_string(self.uses_file(id)).unwrap_or_default();
        for key in uses.lines().filter(|l| !l.is_empty()) {
            self.release(key, &self.nest_target(key))?;
        }
        let _ = std::fs::remove_file(self.uses_file(id));
        Ok(())
    }

    /// See [`LayerDriver::check_mounts`].
    fn check_mounts(&self, repair: bool) -> Result<Vec<MountProblem>> {
        let _lock = self.run.lock(MOUNTS_LOCK)?;
        self.check_mounts_locked(repair)
    }

    /// [`Inner::check_mounts`], with the mounts lock held.
    fn check_mounts_locked(&self, repair: bool) -> Result<Vec<MountProblem>> {
        let mut out = Vec::new();
        let counted = self.run.counted()?;
        // Layers before the nested groups they stand on, as cleanup releases them.
        let mut stale: Vec<&(String, u64)> = counted
            .iter()
            .filter(|(key, _)| !mounts::is_mounted(&self.target_of(key)))
            .collect();
        stale.sort_by_key(|(k, _)| k.starts_with("nest-"));
        for (key, n) in stale {
            let target = self.target_of(key);
            if repair {
                self.run.set_count(key, 0)?;
                if !key.starts_with("nest-") {
                    let uses = std::fs::read_to_string(self.uses_file(key)).unwrap_or_default();
                    for nest in uses.lines().filter(|l| !l.is_empty()) {
                        self.release(nest, &self.nest_target(nest))?;
                    }
                    let _ = std::fs::remove_file(self.uses_file(key));
                }
            }
            out.push(MountProblem {
                id: key.clone(),
                detail: format!(
                    "recorded as mounted {n} time(s), but nothing is mounted at {}",
                    target.display()
                ),
                repaired: repair,
            });
        }
        let counted: HashSet<&str> = counted.iter().map(|(k, _)| k.as_str()).collect();
        let mut unrecorded = Vec::new();
        for dir in [self.layout.layers_dir(), self.run.path().join("nest")] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = if dir == self.layout.layers_dir() {
                    name
                } else {
                    format!("nest-{name}")
                };
                if !counted.contains(key.as_str()) && mounts::is_mounted(&self.target_of(&key)) {
                    unrecorded.push(key);
                }
            }
        }
        for key in unrecorded {
            let target = self.target_of(&key);
            if repair {
                mounts::unmount(&target)?;
            }
            out.push(MountProblem {
                detail: format!("{} is mounted with no record of it", target.display()),
                id: key,
                repaired: repair,
            });
        }
        Ok(out)
    }

    /// Where the mount counted under `key` lives.
    fn target_of(&self, key: &str) -> PathBuf {
        if key.starts_with("nest-") {
            self.nest_target(key)
        } else {
            self.layout.merged(key)
        }
    }

    fn cleanup(&self) -> Result<()> {
        let _lock = self.run.lock(MOUNTS_LOCK)?;
        let mut counted = self.run.counted()?;
        // Layers before the nested groups they stand on.
        counted.sort_by_key(|(k, _)| k.starts_with("nest-"));
        for (key, _) in counted {
            let target = if key.starts_with("nest-") {
                self.nest_target(&key)
            } else {
                let _ = std::fs::remove_file(self.uses_file(&key));
                self.layout.merged(&key)
            };
            mounts::unmount(&target)?;
            self.run.set_count(&key, 0)?;
        }
        Ok(())
    }

    /// The parent recorded for `id`.
    fn parent_of(&self, id: &str) -> Result<Option<String>> {
        Ok(self.layout.lower_ids(id)?.into_iter().next())
    }

    /// True when `from` is what `id`'s own diff directory is relative to.
    fn native(&self, id: &str, from: Option<&str>) -> Result<bool> {
        Ok(self.parent_of(id)?.as_deref() == from)
    }

    /// Native changes: the diff directory read against the lower diff directories.
    fn native_changes(&self, id: &str) -> Result<Vec<Change>> {
        tar_engine::layer_changes(&self.layout.diff(id), &self.layout.lower_diffs(id)?)
    }
}

/// Changes between two mounted layers, releasing the mounts afterwards.
/// Mounts `id` (and `from`) read-only, compares the trees, and runs `use_changes` while
/// the mounts are still held: the changes point into them (an export reads file data
/// from there).
fn with_mounted_changes<T>(
    inner: &Inner,
    id: &str,
    from: Option<&str>,
    use_changes: impl FnOnce(Vec<Change>) -> Result<T>,
) -> Result<T> {
    let new = inner.get(id, true)?;
    let old = match from {
        Some(f) => match inner.get(f, true) {
            Ok(p) => p,
            Err(e) => {
                let _ = inner.put(id);
                return Err(e);
            }
        },
        None => inner.layout.empty(),
    };
    let result = tar_engine::compare_trees(&old, &new).and_then(use_changes);
    let released = inner.put(id).and(from.map_or(Ok(()), |f| inner.put(f)));
    let out = result?;
    released?;
    Ok(out)
}

/// The changes of `id` over `from`, handed to `use_changes` while the trees they point
/// into are readable: read natively from `diff/` when `from` is the parent, through
/// read-only mounts otherwise.
fn with_changes<T>(
    inner: &Inner,
    id: &str,
    from: Option<&str>,
    use_changes: impl FnOnce(Vec<Change>) -> Result<T>,
) -> Result<T> {
    inner.require(id)?;
    if inner.native(id, from)? {
        use_changes(inner.native_changes(id)?)
    } else {
        with_mounted_changes(inner, id, from, use_changes)
    }
}

#[async_trait]
impl LayerDriver for OverlayDriver {
    fn name(&self) -> &'static str {
        "overlay"
    }

    async fn create(
        &self,
        _op: &Op,
        id: &str,
        parent: Option<&str>,
        _opts: &CreateOpts,
    ) -> Result<()> {
        let (inner, id, parent) = (self.inner.clone(), id.to_owned(), parent.map(str::to_owned));
        blocking(move || inner.create(&id, parent.as_deref())).await
    }

    async fn remove(&self, _op: &Op, id: &str) -> Result<()> {
        let (inner, id) = (self.inner.clone(), id.to_owned());
        blocking(move || inner.remove(&id)).await
    }

    async fn get(&self, _op: &Op, id: &str, opts: &MountOpts) -> Result<PathBuf> {
        let (inner, id, ro) = (self.inner.clone(), id.to_owned(), opts.read_only);
        blocking(move || inner.get(&id, ro)).await
    }

    async fn put(&self, _op: &Op, id: &str) -> Result<()> {
        let (inner, id) = (self.inner.clone(), id.to_owned());
        blocking(move || inner.put(&id)).await
    }

    async fn mount_count(&self, _op: &Op, id: &str) -> Result<u64> {
        let (inner, id) = (self.inner.clone(), id.to_owned());
        blocking(move || inner.run.count(&id)).await
    }

    async fn exists(&self, _op: &Op, id: &str) -> Result<bool> {
        let (inner, id) = (self.inner.clone(), id.to_owned());
        blocking(move || Ok(inner.require(&id).is_ok())).await
    }

    async fn apply_diff(
        &self,
        op: &Op,
        id: &str,
        _parent: Option<&str>,
        diff: TarReader,
        opts: &DiffOpts,
    ) -> Result<ApplyReport> {
        let (inner, id) = (self.inner.clone(), id.to_owned());
        let target = self.inner.layout.diff(&id);
        let mut apply = ApplyOptions::new(WhiteoutMode::Overlay);
        apply.expected_digest = opts.expected_digest.clone();
        apply.filter = opts.filter.clone();
        let op = op.clone();
        let input = tokio_util::io::SyncIoBridge::new(diff);
        blocking(move || {
            inner.require(&id)?;
            tar_engine::apply_tar(&op, &target, input, &apply)
        })
        .await
    }

    async fn diff(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &ExportOptions,
    ) -> Result<ArchiveStream> {
        let (inner, id, from) = (self.inner.clone(), id.to_owned(), parent.map(str::to_owned));
        let check = (inner.clone(), id.clone());
        blocking(move || check.0.require(&check.1)).await?;
        let (op, opts) = (op.clone(), opts.clone());
        ArchiveStream::spawn(move |pipe| {
            // The tar writer buffers by itself, so the pipe is handed over as it is.
            inner.require(&id)?;
            if inner.native(&id, from.as_deref())? {
                // One walk of the diff directory, writing as it goes.
                let lowers = inner.layout.lower_diffs(&id)?;
                tar_engine::write_layer(&op, &inner.layout.diff(&id), &lowers, &opts, pipe)
                    .map(drop)
            } else {
                // The changes point into the mounts, which stay up while data is read.
                with_mounted_changes(&inner, &id, from.as_deref(), |changes| {
                    tar_engine::write_changes(&op, &changes, &opts, pipe).map(drop)
                })
            }
        })
    }

    async fn changes(&self, _op: &Op, id: &str, parent: Option<&str>) -> Result<Vec<Change>> {
        let (inner, id, from) = (self.inner.clone(), id.to_owned(), parent.map(str::to_owned));
        blocking(move || with_changes(&inner, &id, from.as_deref(), Ok)).await
    }

    async fn diff_size(&self, op: &Op, id: &str, parent: Option<&str>) -> Result<u64> {
        let changes = self.changes(op, id, parent).await?;
        Ok(tar_engine::changes_size(&changes))
    }

    async fn status(&self, _op: &Op) -> Result<Vec<(String, String)>> {
        let inner = self.inner.clone();
        blocking(move || {
            let root = inner.layout.root();
            let fs = nix::sys::statfs::statfs(root)
                .map(|s| fs_name(s.filesystem_type().0))
                .unwrap_or_else(|_| "unknown".into());
            let layers = std::fs::read_dir(inner.layout.layers_dir())
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .filter(|e| e.path().join("link").exists())
                        .count()
                })
                .unwrap_or(0);
            let path_len = inner.layout.links_dir().as_os_str().len() + 27;
            Ok(vec![
                ("Backing Filesystem".into(), fs),
                ("Mount API".into(), inner.api.describe().into()),
                (
                    "Lowers per mount".into(),
                    inner.api.max_lowers(path_len).to_string(),
                ),
                ("Layers".into(), layers.to_string()),
                ("Run Root".into(), inner.run.path().display().to_string()),
            ])
        })
        .await
    }

    async fn metadata(&self, _op: &Op, id: &str) -> Result<BTreeMap<String, String>> {
        let (inner, id) = (self.inner.clone(), id.to_owned());
        blocking(move || {
            inner.require(&id)?;
            let l = &inner.layout;
            let lower = l.lower_links(&id)?;
            Ok(BTreeMap::from([
                ("diff".into(), l.diff(&id).display().to_string()),
                ("work".into(), l.work(&id).display().to_string()),
                ("merged".into(), l.merged(&id).display().to_string()),
                ("link".into(), l.link_of(&id)?),
                ("depth".into(), (lower.len() + 1).to_string()),
                ("lower".into(), lower.join(":")),
            ]))
        })
        .await
    }

    async fn cleanup(&self, _op: &Op) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || inner.cleanup()).await
    }

    async fn check_mounts(&self, _op: &Op, repair: bool) -> Result<Vec<MountProblem>> {
        let inner = self.inner.clone();
        blocking(move || inner.check_mounts(repair)).await
    }

    async fn stored_layers(&self, _op: &Op) -> Result<Vec<String>> {
        let inner = self.inner.clone();
        blocking(move || {
            let dir = inner.layout.layers_dir();
            let mut ids = Vec::new();
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
                Err(e) => return Err(Error::io_path("list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.ctx(|| format!("list {}", dir.display()))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                // Layer directories are named by their 64-hex id; `l/` holds short links.
                if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    ids.push(name.into_owned());
                }
            }
            ids.sort();
            Ok(ids)
        })
        .await
    }
}

fn fs_name(magic: i64) -> String {
    match magic {
        0xEF53 => "extfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794C_7630 => "overlayfs".into(),
        other => format!("0x{other:x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_layer_whose_create_was_cut_short_leaves_no_short_link() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunRoot::open(&dir.path().join("run")).unwrap();
        let driver = OverlayDriver::open(&dir.path().join("store"), run).unwrap();
        let inner = &driver.inner;
        let id = "ab".repeat(32);
        inner.create(&id, None).unwrap();
        // What a kill between the short link and the `link` file leaves.
        std::fs::remove_file(inner.layout.layer(&id).join("link")).unwrap();
        inner.remove(&id).unwrap();
        assert!(!inner.layout.layer(&id).exists());
        let links: Vec<_> = std::fs::read_dir(inner.layout.links_dir())
            .unwrap()
            .collect();
        assert!(links.is_empty(), "short links left: {links:?}");
    }
}
