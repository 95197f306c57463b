//! # registry: from a store URL or name to a backend
//!
//! Backends submit a [`BackendDescriptor`] through `inventory` (see
//! [`storage_core::backend`]); this crate finds the one whose scheme a store URL names and
//! opens it. Stores can also be named in a TOML config file with per-store options:
//!
//! ```toml
//! [stores.local]
//! url = "overlay:///var/lib/strata"
//!
//! [stores.shared]
//! url = "nfs://127.0.0.1:2049/export?uid=1000&gid=1000"
//! options = { timeout = "10s" }
//! ```
//!
//! Each backend crate is a cargo feature (all on by default); a backend left out, or an
//! unknown scheme, gives an error naming the backends that are available. This is the
//! only crate that knows the backends, and it knows them only by what they submitted.
//!
//! It also reads containers-storage's `storage.conf` ([`storage_conf`]), which sets the
//! default driver, roots and additional stores where the command line does not.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use storage_core::backend::{Backend, BackendDescriptor, StoreConfig};

pub mod storage_conf;
pub use storage_conf::{ConfSource, StorageConf};

// Link the backends chosen by features, so their descriptors are submitted.
#[cfg(feature = "nfs")]
use backend_nfs as _;
#[cfg(feature = "overlay")]
use backend_overlay as _;
#[cfg(feature = "vhd")]
use backend_vhd as _;
#[cfg(feature = "vmdk")]
use backend_vmdk as _;

/// Errors of resolving and opening stores.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No linked backend serves the URL's scheme.
    #[error("no backend for scheme {scheme:?} in {url}; available: {}", available.join(", "))]
    UnknownScheme {
        /// The scheme asked for.
        scheme: String,
        /// The URL as given.
        url: String,
        /// The schemes of the linked backends.
        available: Vec<String>,
    },
    /// The name is neither a URL nor a store in the config file.
    #[error("no store named {name:?}{}; give a URL such as overlay:///var/lib/strata", if known.is_empty() { String::new() } else { format!(" (configured: {})", known.join(", ")) })]
    UnknownStore {
        /// The name asked for.
        name: String,
        /// The configured store names.
        known: Vec<String>,
    },
    /// The URL cannot be parsed.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The config file cannot be read or parsed.
    #[error("config file {}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A store option (from a config file or `--storage-opt`) its backend does not read.
    #[error("store {store:?}: the {backend} backend has no option {option:?} (it reads: {})", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    UnknownOption {
        /// The store's name.
        store: String,
        /// The backend's name.
        backend: String,
        /// The option given.
        option: String,
        /// The options the backend reads.
        known: Vec<String>,
    },
    /// The backend refused to open the store.
    #[error(transparent)]
    Backend(#[from] storage_core::Error),
}

/// The descriptors of every linked backend, sorted by name.
pub fn backends() -> Vec<&'static BackendDescriptor> {
    storage_core::backend::descriptors()
}

/// One store in the config file.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct StoreEntry {
    /// The store's URL.
    pub url: String,
    /// Backend-specific options.
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
}

/// The config file: named stores.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Config {
    /// Stores by name.
    #[serde(default)]
    pub stores: BTreeMap<String, StoreEntry>,
}

impl Config {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|e| RegistryError::Config {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| RegistryError::Config {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// A store resolved to its backend descriptor, not yet opened.
pub struct Resolved {
    /// The backend.
    pub descriptor: &'static BackendDescriptor,
    /// How to open it.
    pub config: StoreConfig,
}

impl Resolved {
    /// Adds store options given another way (`--storage-opt KEY=VALUE`), refused like a
    /// config file's when the backend does not read them.
    pub fn with_options(
        mut self,
        extra: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, RegistryError> {
        self.config.options.extend(extra);
        check_options(&self.config.name, self.descriptor, &self.config.options)?;
        Ok(self)
    }

    /// Opens the store.
    pub fn open(&self) -> Result<Backend, RegistryError> {
        Ok((self.descriptor.open)(&self.config)?)
    }
}

/// Refuses an option `descriptor`'s backend does not read, naming the store `name`.
fn check_options(
    name: &str,
    descriptor: &BackendDescriptor,
    options: &BTreeMap<String, String>,
) -> Result<(), RegistryError> {
    match options
        .keys()
        .find(|k| !descriptor.options.contains(&k.as_str()))
    {
        Some(option) => Err(RegistryError::UnknownOption {
            store: name.to_owned(),
            backend: descriptor.name.to_owned(),
            option: option.clone(),
            known: descriptor.options.iter().map(|o| (*o).to_owned()).collect(),
        }),
        None => Ok(()),
    }
}

/// Resolves `store` (a URL, or a name from `config`) to its backend.
pub fn resolve(store: &str, config: &Config, run_root: &Path) -> Result<Resolved, RegistryError> {
    let (name, url, options) = if store.contains("://") {
        let name = store.split("://").next().unwrap_or("store").to_owned();
        (name, store.to_owned(), BTreeMap::new())
    } else {
        let entry = config
            .stores
            .get(store)
            .ok_or_else(|| RegistryError::UnknownStore {
                name: store.to_owned(),
                known: config.stores.keys().cloned().collect(),
            })?;
        let options = entry
            .options
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect();
        (store.to_owned(), entry.url.clone(), options)
    };
    let parsed = url::Url::parse(&url).map_err(|e| RegistryError::InvalidUrl {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let all = backends();
    let descriptor = all
        .iter()
        .find(|d| d.scheme == parsed.scheme())
        .copied()
        .ok_or_else(|| RegistryError::UnknownScheme {
            scheme: parsed.scheme().to_owned(),
            url: url.clone(),
            available: all.iter().map(|d| d.scheme.to_owned()).collect(),
        })?;
    check_options(&name, descriptor, &options)?;
    Ok(Resolved {
        descriptor,
        config: StoreConfig {
            name,
            url: parsed,
            run_root: run_root.to_owned(),
            options,
            additional_stores: Vec::new(),
            block_view_server: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_backends_are_the_expected_set_sorted_by_name() {
        let names: Vec<&str> = backends().iter().map(|d| d.name).collect();
        // Exactly the backends whose features are on, in name order.
        let expected: Vec<&str> = [
            ("nfs", cfg!(feature = "nfs")),
            ("overlay", cfg!(feature = "overlay")),
            ("vhd", cfg!(feature = "vhd")),
            ("vmdk", cfg!(feature = "vmdk")),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| name)
        .collect();
        assert_eq!(names, expected);
        assert!(backends().iter().all(|d| d.scheme == d.name));
    }

    #[test]
    fn a_backend_error_passes_through_with_its_cause_once() {
        let cause = std::io::Error::from_raw_os_error(28).to_string();
        let e = RegistryError::from(storage_core::Error::io(
            "create store root /x",
            std::io::Error::from_raw_os_error(28),
        ));
        let printed = storage_core::Report(&e).to_string();
        assert_eq!(printed, format!("create store root /x: {cause}"));
    }

    #[test]
    fn unknown_scheme_names_the_available_backends() {
        let dir = tempfile::tempdir().unwrap();
        let err = match resolve("nosuch:///x", &Config::default(), dir.path()) {
            Err(e) => e,
            Ok(_) => panic!("resolved an unknown scheme"),
        };
        let msg = err.to_string();
        assert!(matches!(err, RegistryError::UnknownScheme { .. }));
        #[cfg(feature = "overlay")]
        assert!(msg.contains("overlay"), "{msg}");
        #[cfg(feature = "nfs")]
        assert!(msg.contains("nfs"), "{msg}");
    }

    #[cfg(not(feature = "nfs"))]
    #[test]
    fn a_compiled_out_nfs_backend_is_an_unknown_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve("nfs://127.0.0.1/export", &Config::default(), dir.path());
        assert!(matches!(err, Err(RegistryError::UnknownScheme { .. })));
    }

    #[cfg(feature = "nfs")]
    #[test]
    fn an_nfs_store_has_volumes_and_no_layers_and_contacts_nobody_at_open() {
        let dir = tempfile::tempdir().unwrap();
        // Port 9 (discard) on loopback: nothing is listening, and opening must not care.
        let r = match resolve(
            "nfs://127.0.0.1:9/export?uid=0&gid=0",
            &Config::default(),
            dir.path(),
        ) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let b = match r.open() {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        assert!(b.layers.is_none() && b.volumes.is_some());
    }

    #[cfg(not(feature = "overlay"))]
    #[test]
    fn a_compiled_out_backend_is_an_unknown_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve("overlay:///var/lib/strata", &Config::default(), dir.path());
        assert!(matches!(err, Err(RegistryError::UnknownScheme { .. })));
    }

    #[cfg(all(feature = "overlay", feature = "vmdk"))]
    #[test]
    fn named_stores_come_from_the_config_file_and_unknown_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("strata.toml");
        std::fs::write(
            &cfg_path,
            format!(
                "[stores.local]\nurl = \"overlay://{d}/store\"\n\
                 [stores.disks]\nurl = \"vmdk://{d}/disks\"\noptions = {{ scratch_size = \"1G\" }}\n\
                 [stores.typo]\nurl = \"overlay://{d}/typo\"\noptions = {{ depth = 7 }}\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        let cfg = Config::load(&cfg_path).unwrap();
        let r = match resolve("disks", &cfg, &dir.path().join("run")) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.config.name, "disks");
        assert_eq!(
            r.config.options.get("scratch_size").map(String::as_str),
            Some("1G")
        );
        assert!(resolve("local", &cfg, dir.path()).is_ok());
        match resolve("typo", &cfg, dir.path()) {
            Err(e @ RegistryError::UnknownOption { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("\"typo\"")
                        && text.contains("\"depth\"")
                        && text.contains("overlay"),
                    "{text}"
                );
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("an option the overlay backend does not read was accepted"),
        }
        assert!(matches!(
            resolve("other", &cfg, dir.path()),
            Err(RegistryError::UnknownStore { .. })
        ));
    }

    #[cfg(feature = "nfs")]
    #[test]
    fn an_nfs_stores_options_from_the_config_file_are_its_url_options() {
        let dir = tempfile::tempdir().unwrap();
        let cfg: Config = match toml::from_str(
            "[stores.shared]\nurl = \"nfs://127.0.0.1:9/export\"\noptions = { timeout = \"10s\", uid = 0 }\n\
             [stores.bad]\nurl = \"nfs://127.0.0.1:9/export\"\noptions = { timeout = \"soon\" }\n",
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let opened = resolve("shared", &cfg, dir.path()).and_then(|r| r.open());
        assert!(opened.is_ok(), "{:?}", opened.err().map(|e| e.to_string()));
        let bad = resolve("bad", &cfg, dir.path()).and_then(|r| r.open());
        match bad {
            Err(e) => assert!(e.to_string().contains("timeout"), "{e}"),
            Ok(_) => panic!("timeout = \"soon\" was accepted"),
        }
    }
}
