//! Resolved configuration: the flags turned into an opened store.

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow};
use std::sync::{Arc, Mutex};
use storage_core::catalog::Catalog;
use storage_core::image_store::VolumeLookupCache;
use storage_core::run_root::RunRoot;

use storage_core::{Op, Store, VolumeStorer};

use crate::flags::Flags;

/// Where things are, after defaults are applied.
pub struct Paths {
    /// The store's data and catalog.
    pub root: PathBuf,
    /// Per-boot state.
    pub run_root: PathBuf,
    /// The store URL or name.
    pub store: String,
}

impl Paths {
    /// Applies the defaults: root-owned paths as root, XDG paths otherwise.
    pub fn resolve(flags: &Flags) -> Result<Self> {
        let is_root = nix::unistd::geteuid().is_root();
        let root = match &flags.root {
            Some(r) => r.clone(),
            None if is_root => PathBuf::from("/var/lib/strata"),
            None => xdg("XDG_DATA_HOME", ".local/share")?.join("strata"),
        };
        let root = std::path::absolute(&root)
            .with_context(|| format!("resolve root {}", root.display()))?;
        let run_root = match &flags.run_root {
            Some(r) => r.clone(),
            None if is_root => PathBuf::from("/run/strata"),
            None => match std::env::var_os("XDG_RUNTIME_DIR") {
                Some(d) => PathBuf::from(d).join("strata"),
                None => std::env::temp_dir().join(format!("strata-{}", nix::unistd::geteuid())),
            },
        };
        let store = flags
            .store
            .clone()
            .unwrap_or_else(|| format!("overlay://{}", root.display()));
        Ok(Paths {
            root,
            run_root,
            store,
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
}

/// A store resolved and its backend opened, before any catalog is.
struct Opened {
    paths: Paths,
    resolved: registry::Resolved,
    backend: registry::Backend,
    /// Where the catalog lives: in the store's own directory for local stores, in
    /// `--root` for remote ones.
    catalog_root: PathBuf,
    additional: Vec<PathBuf>,
}

impl Opened {
    fn open(flags: &Flags) -> Result<Self> {
        let paths = Paths::resolve(flags)?;
        let config = match &flags.config {
            Some(p) => registry::Config::load(p)?,
            None => registry::Config::default(),
        };
        let mut resolved = registry::resolve(&paths.store, &config, &paths.run_root)?;
        let additional = flags
            .additional_stores
            .iter()
            .map(std::path::absolute)
            .collect::<std::io::Result<Vec<_>>>()
            .context("resolve --additional-store")?;
        resolved.config.additional_stores = additional.clone();
        let catalog_root = match resolved.config.url.scheme() {
            "nfs" => paths.root.clone(),
            _ => PathBuf::from(resolved.config.url.path()),
        };
        let backend = resolved
            .open()
            .with_context(|| format!("open store {}", paths.store))?;
        Ok(Opened {
            paths,
            resolved,
            backend,
            catalog_root,
            additional,
        })
    }
}

impl Context {
    /// Resolves the store and opens it.
    pub async fn open(flags: &Flags, op: &Op) -> Result<Self> {
        let Opened {
            paths,
            resolved,
            backend,
            catalog_root,
            additional,
        } = Opened::open(flags)?;
        let driver = backend.layers.clone().ok_or_else(|| {
            anyhow!(
                "store {} ({}) holds no layers",
                paths.store,
                resolved.descriptor.name
            )
        })?;
        let run = RunRoot::open(&paths.run_root)?;
        let store = Store::open_with_additional(op, &catalog_root, run, driver, &additional);
        let store = Arc::new(
            store
                .await
                .with_context(|| format!("open store {}", catalog_root.display()))?,
        );
        Ok(Context {
            store,
            backend,
            paths,
            name: resolved.config.name.clone(),
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
    let opened = Opened::open(flags)?;
    let storer = opened.backend.volumes.clone().ok_or_else(|| {
        anyhow!(
            "store {} ({}) holds no volumes",
            opened.paths.store,
            opened.resolved.descriptor.name
        )
    })?;
    let db = opened.catalog_root.join("catalog.db");
    let catalog = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(db.parent().unwrap_or(&db))
            .with_context(|| format!("create {}", db.display()))?;
        Catalog::open(&db).with_context(|| format!("open catalog {}", db.display()))
    })
    .await
    .context("catalog opener")??;
    let cache = VolumeLookupCache::new(Arc::new(Mutex::new(catalog)));
    let name = opened.resolved.config.name.clone();
    Ok(Volumes {
        storer,
        cache,
        name,
    })
}
