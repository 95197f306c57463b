//! The overlay `LayerDriver`, written as a [`BlockingDriver`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use storage_core::run_root::{RunRoot, write_atomic};
use storage_core::{
    BlockingDriver, CreateOpts, DiffOpts, Error, IoContext, MountOpts, MountProblem, ObjectKind,
    Op, Result,
};
use tar_engine::{
    self, ApplyOptions, ApplyReport, ArchiveStream, Change, ExportOptions, WhiteoutMode,
};

use crate::fuse;
use crate::layout::Layout;
use mounts::{CountedMounts, Lower, Make, MountKey, MountSites, Plan};

/// Layers as directories, stacked with overlayfs. Cheap to clone.
#[derive(Clone)]
pub struct OverlayDriver {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    mounts: CountedMounts<Merged>,
}

/// Layers are mounted at their `merged/` directories, counted by layer id.
struct Merged {
    layout: Layout,
}

impl MountSites for Merged {
    fn target(&self, id: &str) -> PathBuf {
        self.layout.merged(id)
    }

    /// A kernel overlay is unmounted as `mounts` does; a process that is not root took
    /// its mounts through fuse-overlayfs, and gives them back with `fusermount3`.
    fn take_down(&self, _key: MountKey<'_>, target: &Path) -> Result<()> {
        if fuse::unprivileged() {
            fuse::unmount(target)
        } else {
            mounts::unmount(target)
        }
    }

    fn keys(&self) -> Result<Vec<String>> {
        let dir = self.layout.layers_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io_path("list", &dir, e)),
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }
}

const MOUNTS_LOCK: &str = "overlay-mounts";

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
        let merged = Merged {
            layout: layout.clone(),
        };
        let mounts = CountedMounts::open(run, MOUNTS_LOCK, merged)?;
        Ok(OverlayDriver {
            inner: Arc::new(Inner { layout, mounts }),
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

    /// Like [`require`](Self::require), also finding a layer of an additional store:
    /// for reading it, never writing.
    fn require_found(&self, id: &str) -> Result<()> {
        if self.layout.find_layer(id).join("link").exists() {
            Ok(())
        } else {
            Err(Error::NotFound {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            })
        }
    }

    /// containers-storage's tar-split file of `id` when the layer belongs to an
    /// additional store that is a containers-storage store
    /// (`<root>/overlay-layers/<id>.tar-split.gz`).
    fn cs_tar_split(&self, id: &str, dir: &Path) -> Option<PathBuf> {
        if dir == self.layout.layer(id) {
            return None;
        }
        let root = dir.parent()?.parent()?;
        let split = root
            .join("overlay-layers")
            .join(format!("{id}.tar-split.gz"));
        split.exists().then_some(split)
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
        let _lock = self.mounts.lock()?;
        let mounts = self.mounts.count(id)?;
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

    /// The directories to stack for `id`: its lower chain, and itself when read-only.
    fn plan(&self, id: &str, read_only: bool) -> Result<Plan<'static>> {
        let mut lowers = Vec::new(); // topmost first
        if read_only {
            lowers.push(Lower {
                name: id.to_owned(),
                path: self.layout.link_path(&self.layout.link_of(id)?),
            });
        }
        for link in self.layout.lower_links(id)? {
            lowers.push(Lower {
                name: self.layout.id_of_link(&link)?,
                path: self.layout.link_path(&link),
            });
        }
        let upper = (!read_only).then(|| (self.layout.diff(id), self.layout.work(id)));
        if fuse::unprivileged() {
            // fuse-overlayfs takes any number of lowers in one mount: nothing is nested.
            let mut dirs: Vec<PathBuf> = lowers.into_iter().map(|l| l.path).collect();
            if dirs.is_empty() {
                dirs.push(self.layout.empty());
            }
            return Ok(Plan::new(Make::with(move |target: &Path| {
                let upper = upper.as_ref().map(|(u, w)| (u.as_path(), w.as_path()));
                fuse::mount(&dirs, upper, target)
            })));
        }
        self.mounts
            .plan_overlay(lowers, upper, &self.layout.empty())
    }

    fn get(&self, id: &str, read_only: bool) -> Result<PathBuf> {
        self.require(id)?;
        if !read_only {
            // Whatever is written through the mount is not in the imported tar.
            self.forget_tar_split(id)?;
        }
        self.mounts.mount(id, || self.plan(id, read_only))
    }

    fn put(&self, id: &str) -> Result<()> {
        storage_core::id::validate_id(ObjectKind::Layer, id)?;
        self.mounts.unmount(id)
    }

    /// Removes layer `id`'s tar-split records (if any) and returns where they go.
    fn forget_tar_split(&self, id: &str) -> Result<PathBuf> {
        let split = self.layout.layer(id).join(tar_engine::split::FILE_NAME);
        match std::fs::remove_file(&split) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).ctx(|| format!("remove {}", split.display()))
            }
            _ => Ok(split),
        }
    }

    /// The parent recorded for `id`.
    fn parent_of(&self, id: &str) -> Result<Option<String>> {
        Ok(self.layout.lower_ids(id)?.into_iter().next())
    }

    /// True when `from` is what `id`'s own diff directory is relative to.
    fn native(&self, id: &str, from: Option<&str>) -> Result<bool> {
        Ok(self.parent_of(id)?.as_deref() == from)
    }

    /// `id`'s changes over `from`, read from the diff directories without a mount, when
    /// `from` is in `id`'s chain (its parent, any other ancestor) or is nothing (the whole
    /// tree); `None` when `from` is some other layer. The diff directories above `from`
    /// are merged as overlayfs would merge them, over `from`'s own stack.
    fn stacked_changes(&self, id: &str, from: Option<&str>) -> Result<Option<Vec<Change>>> {
        let links = self.layout.lower_links(id)?;
        let cut = match from {
            None => links.len(),
            Some(from) => {
                let link = self.layout.link_of(from)?;
                match links.iter().position(|l| *l == link) {
                    Some(at) => at,
                    None => return Ok(None),
                }
            }
        };
        let (above, below) = links.split_at(cut);
        let mut uppers = vec![self.layout.found_diff(id)];
        uppers.extend(above.iter().map(|l| self.layout.link_path(l)));
        let lowers: Vec<PathBuf> = below.iter().map(|l| self.layout.link_path(l)).collect();
        tar_engine::stack_changes(&uppers, &lowers).map(Some)
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
        |layer| inner.get(layer, true),
        |layer| inner.put(layer),
        id,
        from,
        &inner.layout.empty(),
        |old, new| tar_engine::compare_trees(old, new).and_then(use_changes),
    )
}

/// The changes of `id` over `from`, handed to `use_changes` while the trees they point
/// into are readable: read from the diff directories when `from` is in `id`'s chain or
/// nothing, through read-only mounts of both layers otherwise.
fn with_changes<T>(
    inner: &Inner,
    id: &str,
    from: Option<&str>,
    use_changes: impl FnOnce(Vec<Change>) -> Result<T>,
) -> Result<T> {
    inner.require_found(id)?;
    match inner.stacked_changes(id, from)? {
        Some(changes) => use_changes(changes),
        None => with_mounted_changes(inner, id, from, use_changes),
    }
}

impl BlockingDriver for OverlayDriver {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn create(&self, _op: &Op, id: &str, parent: Option<&str>, _opts: &CreateOpts) -> Result<()> {
        self.inner.create(id, parent)
    }

    fn remove(&self, _op: &Op, id: &str) -> Result<()> {
        self.inner.remove(id)
    }

    fn get(&self, _op: &Op, id: &str, opts: &MountOpts) -> Result<PathBuf> {
        self.inner.get(id, opts.read_only)
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
        let inner = &self.inner;
        inner.require(id)?;
        let target = inner.layout.diff(id);
        let mut apply = ApplyOptions::new(WhiteoutMode::Overlay);
        apply.expected_digest = opts.expected_digest.clone();
        apply.filter = opts.filter.clone();
        // The layer's tar comes back byte for byte only while it holds that one tar.
        let split = inner.forget_tar_split(id)?;
        if apply.filter.is_identity() && is_empty_dir(&target)? {
            apply.tar_split = Some(split);
        }
        tar_engine::apply_tar(op, &target, diff, &apply)
    }

    fn diff(
        &self,
        op: &Op,
        id: &str,
        parent: Option<&str>,
        opts: &ExportOptions,
    ) -> Result<ArchiveStream> {
        self.inner.require_found(id)?;
        let (inner, id, from) = (self.inner.clone(), id.to_owned(), parent.map(str::to_owned));
        let (op, opts) = (op.clone(), opts.clone());
        ArchiveStream::spawn(move |mut pipe| {
            // The tar writer buffers by itself, so the pipe is handed over as it is.
            inner.require_found(&id)?;
            if inner.native(&id, from.as_deref())? {
                // One walk of the diff directory, writing as it goes.
                // The imported tar itself, while the layer is unchanged.
                let lowers = inner.layout.lower_diffs(&id)?;
                // The layer's own directory: this store's, or an additional store's
                // (with its own tar-split records, or containers-storage's).
                let dir = inner.layout.find_layer(&id);
                let split = dir.join(tar_engine::split::FILE_NAME);
                let own = dir.join("diff");
                if opts.data
                    && opts.filter.is_identity()
                    && let Some(cs) = inner.cs_tar_split(&id, &dir)
                    && tar_engine::cs_split::reassemble_cs(&op, &own, &cs, &mut pipe)?.is_some()
                {
                    return Ok(());
                }
                tar_engine::write_layer_exact(&op, &own, &lowers, &split, &opts, pipe).map(drop)
            } else {
                // From the diff directories, or from mounts that stay up while data is read.
                with_changes(&inner, &id, from.as_deref(), |changes| {
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
            ("Mount API".into(), inner.mounts.api().describe().into()),
            (
                "Lowers per mount".into(),
                inner.mounts.api().max_lowers(path_len).to_string(),
            ),
            ("Layers".into(), layers.to_string()),
            (
                "Run Root".into(),
                inner.mounts.run_root().path().display().to_string(),
            ),
        ])
    }

    fn metadata(&self, _op: &Op, id: &str) -> Result<BTreeMap<String, String>> {
        let l = &self.inner.layout;
        // This store's layer, or an additional store's it may stack on.
        let dir = l.find_layer(id);
        if !dir.join("link").exists() {
            return Err(Error::NotFound {
                kind: ObjectKind::Layer,
                id: id.to_owned(),
            });
        }
        let lower = l.lower_links(id)?;
        Ok(BTreeMap::from([
            ("diff".into(), dir.join("diff").display().to_string()),
            ("work".into(), dir.join("work").display().to_string()),
            ("merged".into(), dir.join("merged").display().to_string()),
            ("link".into(), l.link_of(id)?),
            ("depth".into(), (lower.len() + 1).to_string()),
            ("lower".into(), lower.join(":")),
        ]))
    }

    fn cleanup(&self, _op: &Op) -> Result<()> {
        self.inner.mounts.cleanup()
    }

    fn check_mounts(&self, _op: &Op, repair: bool) -> Result<Vec<MountProblem>> {
        self.inner.mounts.check(repair)
    }

    fn stored_layers(&self, _op: &Op) -> Result<Vec<String>> {
        let dir = self.inner.layout.layers_dir();
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
    }
}

/// True when the directory `dir` has no entries.
fn is_empty_dir(dir: &Path) -> Result<bool> {
    let mut entries = std::fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))?;
    Ok(entries.next().is_none())
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
