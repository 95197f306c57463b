//! Resolved configuration: the flags turned into an opened store.

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow, bail};
use catalog::image_store::VolumeLookupCache;
use catalog::{Catalog, Listing, Store};
use std::sync::{Arc, Mutex};
use storage_core::backend::Capabilities;
use storage_core::run_root::RunRoot;

use storage_core::{Op, VolumeStorer};

use crate::flags::Flags;

/// Where things are, after defaults are applied.
pub struct Paths {
    /// The store's data and catalog.
    pub root: PathBuf,
    /// Per-boot state.
    pub run_root: PathBuf,
    /// The store URL or name.
    pub store: String,
    /// containers-storage's `storage.conf`, when one is in effect.
    pub storage_conf: Option<registry::StorageConf>,
    /// What of it strata did not take, to report (`storage.options.pull_options`, …).
    pub conf_unread: Vec<String>,
}

/// The directory strata keeps its store in under a root that `storage.conf` names:
/// containers-storage's own directories there are never strata's.
const UNDER_CONF_ROOT: &str = "strata";

impl Paths {
    /// Applies the defaults: the command line first, then `storage.conf` (strata's data
    /// in a `strata/` directory under its roots), then strata's own: root-owned paths as
    /// root, XDG paths otherwise.
    pub fn resolve(flags: &Flags) -> Result<Self> {
        let env = registry::storage_conf::Environment::current();
        let conf = registry::StorageConf::find(&env)?;
        Self::resolve_with(flags, conf)
    }

    /// [`resolve`](Self::resolve) with the `storage.conf` already found.
    fn resolve_with(flags: &Flags, conf: Option<registry::StorageConf>) -> Result<Self> {
        let is_root = nix::unistd::geteuid().is_root();
        let mut conf_unread = Vec::new();
        let conf_root = |dir: Option<PathBuf>| dir.map(|d| d.join(UNDER_CONF_ROOT));
        let root = match &flags.root {
            Some(r) => r.clone(),
            None => match conf_root(conf.as_ref().and_then(|c| c.graph_root())) {
                Some(r) => r,
                None if is_root => PathBuf::from("/var/lib/strata"),
                None => xdg("XDG_DATA_HOME", ".local/share")?.join("strata"),
            },
        };
        let root = std::path::absolute(&root)
            .with_context(|| format!("resolve root {}", root.display()))?;
        let run_root = match &flags.run_root {
            Some(r) => r.clone(),
            None => match conf_root(conf.as_ref().and_then(|c| c.run_root())) {
                Some(r) => r,
                None if is_root => PathBuf::from("/run/strata"),
                None => match std::env::var_os("XDG_RUNTIME_DIR") {
                    Some(d) => PathBuf::from(d).join("strata"),
                    None => std::env::temp_dir().join(format!("strata-{}", nix::unistd::geteuid())),
                },
            },
        };
        let store = match (&flags.store, flags.storage_driver.as_deref()) {
            (Some(store), None) => store.clone(),
            (Some(store), Some(driver)) => {
                bail!("--storage-driver {driver} and --store {store}: give one of the two")
            }
            (None, driver) => {
                let known: Vec<&str> = registry::backends()
                    .iter()
                    .filter(|d| d.capabilities.layers && d.capabilities.local_root)
                    .map(|d| d.scheme)
                    .collect();
                let driver = match (driver, conf.as_ref().and_then(|c| Some((c, c.driver()?)))) {
                    (Some(d), _) => d,
                    (None, Some((_, d))) if known.contains(&d) => d,
                    (None, Some((c, d))) if c.source == registry::ConfSource::Named => bail!(
                        "{}: driver {d:?} is not one of strata's ({}); give --storage-driver",
                        c.path.display(),
                        known.join(", ")
                    ),
                    (None, Some((_, d))) => {
                        conf_unread.push(format!("storage.driver ({d} is not a strata driver)"));
                        "overlay"
                    }
                    (None, None) => "overlay",
                };
                if !known.contains(&driver) {
                    bail!(
                        "strata has no storage driver {driver:?}; its drivers: {}",
                        known.join(", ")
                    );
                }
                format!("{driver}://{}", root.display())
            }
        };
        Ok(Paths {
            root,
            run_root,
            store,
            storage_conf: conf,
            conf_unread,
        })
    }
}

fn xdg(var: &str, fallback: &str) -> Result<PathBuf> {
    if let Some(d) = std::env::var_os(var) {
        return Ok(PathBuf::from(d));
    }
    let home =
        std::env::var_os("HOME").ok_or_else(|| anyhow!("neither ${var} nor $HOME is set"))?;
    Ok(PathBuf::from(home).join(fallback))
}

/// The opened store.
pub struct Context {
    /// The store (catalog plus driver).
    pub store: Arc<Store>,
    /// The backend behind it.
    pub backend: registry::Backend,
    /// Where things are.
    pub paths: Paths,
    /// The store's name (from the config file, or derived from its URL).
    pub name: String,
    /// The store's URL.
    pub url: String,
    /// The store options it was opened with, as `KEY=VALUE`.
    pub options: Vec<String>,
    /// The backend's name (`overlay`, …).
    pub backend_name: &'static str,
    /// What the backend can do; commands decide from this, never from a scheme.
    pub capabilities: Capabilities,
}

impl Context {
    /// Refuses a new layer on `parent` when the chain would be deeper than the backend
    /// mounts, before anything is created.
    pub async fn check_depth(&self, parent: Option<&str>) -> Result<()> {
        let (Some(max), Some(parent)) = (self.capabilities.max_depth, parent) else {
            return Ok(());
        };
        let below = self.store.chain_depth(parent, max).await?;
        if below >= max {
            bail!(
                "a layer on {parent} would make a chain of more than {max} layers, the deepest \
                 the {} backend of store {} mounts",
                self.backend_name,
                self.paths.store
            );
        }
        Ok(())
    }

    /// Refuses a command that hands a VM a layer's disks when the backend keeps none.
    pub fn require_vm_disks(&self) -> Result<()> {
        if self.capabilities.vm_disks {
            return Ok(());
        }
        bail!(
            "store {} ({}) keeps no layer on a disk to hand a VM; its layers are mounted on the host",
            self.paths.store,
            self.backend_name
        )
    }
}

/// `--storage-opt KEY=VALUE`s as store options; a `DRIVER.` prefix is dropped.
fn storage_opts(flags: &Flags) -> Result<Vec<(String, String)>> {
    flags
        .storage_opts
        .iter()
        .map(|o| {
            let (key, value) = o
                .split_once('=')
                .ok_or_else(|| anyhow!("--storage-opt {o:?}: expected KEY=VALUE"))?;
            let key = key.rsplit_once('.').map_or(key, |(_, k)| k);
            Ok((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// A store found from the flags and the config file, before anything of it is opened.
struct Located {
    paths: Paths,
    resolved: registry::Resolved,
    /// Where the catalog lives: in the store's own directory for local stores, in
    /// `--root` for remote ones.
    catalog_root: PathBuf,
    additional: Vec<PathBuf>,
}

impl Located {
    fn find(flags: &Flags) -> Result<Self> {
        let paths = Paths::resolve(flags)?;
        let config = match &flags.config {
            Some(p) => registry::Config::load(p)?,
            None => registry::Config::default(),
        };
        let mut paths = paths;
        let resolved = registry::resolve(&paths.store, &config, &paths.run_root)?;
        // A default store takes its driver's options from storage.conf, those the backend
        // reads; a store named on the command line or in strata's config has its own.
        let mut opts = Vec::new();
        if flags.store.is_none()
            && let Some(conf) = &paths.storage_conf
        {
            let driver = resolved.descriptor.scheme;
            for (key, value) in conf.driver_options(driver) {
                if resolved.descriptor.options.contains(&key.as_str()) {
                    opts.push((key, value));
                } else {
                    let unread = format!("storage.options.{driver}.{key}");
                    paths.conf_unread.push(unread);
                }
            }
            paths.conf_unread.extend(conf.unread(driver));
        }
        opts.extend(storage_opts(flags)?);
        let mut resolved = resolved.with_options(opts)?;
        let from_conf = paths
            .storage_conf
            .iter()
            .flat_map(|c| c.additional_image_stores());
        let additional = flags
            .additional_stores
            .iter()
            .chain(from_conf)
            .map(std::path::absolute)
            .collect::<std::io::Result<Vec<_>>>()
            .context("resolve --additional-store")?;
        resolved.config.additional_stores = additional.clone();
        // Disk backends re-execute this binary to serve block views.
        let this = std::env::current_exe().context("find the strata binary")?;
        resolved.config.block_view_server = Some(vec![this.into(), crate::SERVE_BLOCK_VIEW.into()]);
        let catalog_root = if resolved.descriptor.capabilities.local_root {
            PathBuf::from(resolved.config.url.path())
        } else {
            paths.root.clone()
        };
        Ok(Located {
            paths,
            resolved,
            catalog_root,
            additional,
        })
    }

    /// The error for a layer command on a store whose backend keeps no layers (nfs).
    fn holds_no_layers(&self) -> anyhow::Error {
        anyhow!(
            "store {} ({}) holds no layers",
            self.paths.store,
            self.resolved.descriptor.name
        )
    }

    /// Opens the store's backend.
    fn open(self) -> Result<Opened> {
        let backend = self
            .resolved
            .open()
            .with_context(|| format!("open store {}", self.paths.store))?;
        Ok(Opened {
            located: self,
            backend,
        })
    }
}

/// A store with its backend opened, before any catalog is.
struct Opened {
    located: Located,
    backend: registry::Backend,
}

/// Opens only the catalogs of the store and its additional stores, for the listing
/// commands: no backend, no run root, no runtime. Blocking. `None` when the store has
/// unfinished work, which only opening the whole store finishes.
pub fn open_listing(flags: &Flags) -> Result<Option<Listing>> {
    let located = Located::find(flags)?;
    if !located.resolved.descriptor.capabilities.layers {
        return Err(located.holds_no_layers());
    }
    let root = &located.catalog_root;
    let listing = Listing::open(root, &located.additional)
        .with_context(|| format!("open store {}", root.display()))?;
    let unfinished = listing
        .unfinished()
        .with_context(|| format!("open store {}", root.display()))?;
    Ok((!unfinished).then_some(listing))
}

impl Context {
    /// Resolves the store and opens it.
    pub async fn open(flags: &Flags, op: &Op) -> Result<Self> {
        let Opened { located, backend } = Located::find(flags)?.open()?;
        let Some(driver) = backend.layers.clone() else {
            return Err(located.holds_no_layers());
        };
        let Located {
            paths,
            resolved,
            catalog_root,
            additional,
        } = located;
        let run = RunRoot::open(&paths.run_root)?;
        let store = Store::open_with_additional(op, &catalog_root, run, driver, &additional);
        let store = Arc::new(
            store
                .await
                .with_context(|| format!("open store {}", catalog_root.display()))?,
        );
        for problem in store.recovery_problems() {
            eprintln!(
                "warning: store {}: recovery at open left work undone (run `strata check --repair`): {}",
                catalog_root.display(),
                storage_core::Report(problem)
            );
        }
        Ok(Context {
            store,
            backend,
            paths,
            name: resolved.config.name.clone(),
            url: resolved.config.url.to_string(),
            options: resolved
                .config
                .options
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            backend_name: resolved.descriptor.name,
            capabilities: resolved.descriptor.capabilities,
        })
    }
}

/// A store's volume face, for the volume commands.
pub struct Volumes {
    /// The volume store.
    pub storer: Arc<dyn VolumeStorer>,
    /// The cache in front of it, which knows which containers use which volume.
    pub cache: VolumeLookupCache,
    /// The store's name, as the cache knows it.
    pub name: String,
}

/// Opens only the store's volume face and its catalog (volume uses are recorded there):
/// volume commands need no layer driver, so they work on stores that hold no layers
/// (nfs).
pub async fn open_volumes(flags: &Flags) -> Result<Volumes> {
    let Opened { located, backend } = Located::find(flags)?.open()?;
    let storer = backend.volumes.clone().ok_or_else(|| {
        anyhow!(
            "store {} ({}) holds no volumes",
            located.paths.store,
            located.resolved.descriptor.name
        )
    })?;
    let root = located.catalog_root.clone();
    let catalog = tokio::task::spawn_blocking(move || {
        Catalog::open_in(&root).with_context(|| format!("open catalog in {}", root.display()))
    })
    .await
    .context("catalog opener")??;
    let cache = VolumeLookupCache::new(Arc::new(Mutex::new(catalog)));
    let name = located.resolved.config.name.clone();
    Ok(Volumes {
        storer,
        cache,
        name,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[tokio::test]
    async fn a_layer_deeper_than_the_backend_mounts_is_refused_before_anything_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let flags = Flags::try_parse_from([
            "strata".as_ref(),
            "--root".as_ref(),
            dir.path().join("root").as_os_str(),
            "--run-root".as_ref(),
            dir.path().join("run").as_os_str(),
            "status".as_ref(),
        ])
        .unwrap();
        let op = Op::new("test");
        let mut ctx = Context::open(&flags, &op).await.unwrap();
        // A backend that mounts chains of at most three layers.
        ctx.capabilities.max_depth = Some(3);
        let mut parent: Option<String> = None;
        for _ in 0..3 {
            ctx.check_depth(parent.as_deref()).await.unwrap();
            let layer = ctx
                .store
                .create_layer(&op, parent.as_deref(), &[], false)
                .await
                .unwrap();
            parent = Some(layer.id);
        }
        let e = ctx.check_depth(parent.as_deref()).await.unwrap_err();
        let said = format!("{e:#}");
        assert!(said.contains("more than 3 layers"), "{said}");
        assert!(said.contains("overlay backend"), "{said}");
        ctx.capabilities.max_depth = None;
        ctx.check_depth(parent.as_deref()).await.unwrap();
    }
}
