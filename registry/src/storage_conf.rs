//! containers-storage's `storage.conf`: which file is in effect, as containers-storage
//! looks for it, and the settings strata takes from it (the driver, the graph and run
//! roots, rootless paths, additional image stores and the driver's options).
//!
//! The file is found the way containers-storage finds it:
//! 1. `$CONTAINERS_STORAGE_CONF`, when set (the file must then be readable);
//! 2. for an unprivileged user, `$XDG_CONFIG_HOME/containers/storage.conf`, else
//!    `$HOME/.config/containers/storage.conf`;
//! 3. `/etc/containers/storage.conf`, else `/usr/share/containers/storage.conf`.
//!
//! As in containers-storage, an unprivileged user reading a system file does not take its
//! `graphroot` and `runroot` (they are root's): the graph root is `rootless_storage_path`
//! (with `$HOME`, `$UID` and `$USER` expanded) or `$XDG_DATA_HOME/containers/storage`,
//! and the run root `$XDG_RUNTIME_DIR/containers`.
//!
//! What strata makes of the roots is the caller's business: strata keeps its own data in a
//! `strata/` directory under them, never in containers-storage's own directories.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::RegistryError;

/// The environment variable that names the file outright.
pub const CONF_VAR: &str = "CONTAINERS_STORAGE_CONF";

/// containers-storage's drivers, whose options are tables of `[storage.options]` named
/// after them.
const DRIVER_TABLES: [&str; 6] = ["aufs", "btrfs", "overlay", "thinpool", "vfs", "zfs"];

/// The system files, most specific first.
pub const SYSTEM_FILES: [&str; 2] = [
    "/etc/containers/storage.conf",
    "/usr/share/containers/storage.conf",
];

/// What the lookup depends on: environment variables, the system files, who is asking.
/// [`Environment::current`] is the process's; tests make their own.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Environment variables (`CONTAINERS_STORAGE_CONF`, `HOME`, `XDG_*`, `USER`).
    pub vars: BTreeMap<String, OsString>,
    /// The system files, in order of preference.
    pub system_files: Vec<PathBuf>,
    /// The effective user id.
    pub uid: u32,
}

impl Environment {
    /// This process's environment.
    pub fn current() -> Self {
        let vars = [
            CONF_VAR,
            "HOME",
            "USER",
            "XDG_CONFIG_HOME",
            "XDG_DATA_HOME",
            "XDG_RUNTIME_DIR",
        ]
        .into_iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (k.to_owned(), v)))
        .collect();
        Environment {
            vars,
            system_files: SYSTEM_FILES.iter().map(PathBuf::from).collect(),
            uid: nix::unistd::geteuid().as_raw(),
        }
    }

    fn var(&self, name: &str) -> Option<&OsString> {
        self.vars.get(name).filter(|v| !v.is_empty())
    }

    fn rootless(&self) -> bool {
        self.uid != 0
    }

    /// `$NAME`, else `$HOME/<fallback>`.
    fn xdg(&self, name: &str, fallback: &str) -> Option<PathBuf> {
        match self.var(name) {
            Some(dir) => Some(PathBuf::from(dir)),
            None => self.var("HOME").map(|h| Path::new(h).join(fallback)),
        }
    }
}

/// Where the file in effect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfSource {
    /// Named by `$CONTAINERS_STORAGE_CONF`.
    Named,
    /// The user's own (`~/.config/containers/storage.conf`).
    User,
    /// A system file, shared with every program that uses containers-storage.
    System,
}

/// The `[storage]` table, with what strata reads named and the rest kept to report.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct StorageTable {
    #[serde(default)]
    driver: Option<String>,
    #[serde(default)]
    graphroot: Option<PathBuf>,
    #[serde(default)]
    runroot: Option<PathBuf>,
    #[serde(default)]
    rootless_storage_path: Option<String>,
    #[serde(default)]
    options: OptionsTable,
    #[serde(flatten)]
    rest: BTreeMap<String, toml::Value>,
}

/// `[storage.options]`: the additional image stores, the per-driver tables, the rest.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct OptionsTable {
    #[serde(default)]
    additionalimagestores: Vec<PathBuf>,
    #[serde(flatten)]
    rest: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct File {
    #[serde(default)]
    storage: StorageTable,
}

/// A `storage.conf` that was found and read.
#[derive(Debug, Clone)]
pub struct StorageConf {
    /// The file.
    pub path: PathBuf,
    /// How it was found.
    pub source: ConfSource,
    storage: StorageTable,
    env: Environment,
}

impl StorageConf {
    /// The file in effect for `env`, read; `None` when there is none.
    pub fn find(env: &Environment) -> Result<Option<Self>, RegistryError> {
        if let Some(named) = env.var(CONF_VAR) {
            let path = PathBuf::from(named);
            return Self::load(&path, ConfSource::Named, env).map(Some);
        }
        if env.rootless()
            && let Some(dir) = env.xdg("XDG_CONFIG_HOME", ".config")
        {
            let path = dir.join("containers/storage.conf");
            if path.exists() {
                return Self::load(&path, ConfSource::User, env).map(Some);
            }
        }
        match env.system_files.iter().find(|p| p.exists()) {
            Some(path) => Self::load(path, ConfSource::System, env).map(Some),
            None => Ok(None),
        }
    }

    /// Reads `path` as a `storage.conf` found through `source`.
    pub fn load(path: &Path, source: ConfSource, env: &Environment) -> Result<Self, RegistryError> {
        let fail = |reason: String| RegistryError::Config {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let file: File = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
        Ok(StorageConf {
            path: path.to_owned(),
            source,
            storage: file.storage,
            env: env.clone(),
        })
    }

    /// Whether the roots the file names are this user's: always as root, and for an
    /// unprivileged user only in a file of their own (a system file's are root's).
    fn roots_are_ours(&self) -> bool {
        !self.env.rootless() || self.source != ConfSource::System
    }

    /// containers-storage's graph root for this user.
    pub fn graph_root(&self) -> Option<PathBuf> {
        if self.roots_are_ours()
            && let Some(g) = &self.storage.graphroot
        {
            return Some(g.clone());
        }
        if !self.env.rootless() {
            return None;
        }
        if let Some(p) = &self.storage.rootless_storage_path {
            return Some(PathBuf::from(self.expand(p)));
        }
        self.env
            .xdg("XDG_DATA_HOME", ".local/share")
            .map(|d| d.join("containers/storage"))
    }

    /// containers-storage's run root for this user.
    pub fn run_root(&self) -> Option<PathBuf> {
        if self.roots_are_ours()
            && let Some(r) = &self.storage.runroot
        {
            return Some(r.clone());
        }
        if !self.env.rootless() {
            return None;
        }
        self.env
            .var("XDG_RUNTIME_DIR")
            .map(|d| Path::new(d).join("containers"))
    }

    /// The driver it names, if any (`""` is containers-storage's "choose one").
    pub fn driver(&self) -> Option<&str> {
        self.storage.driver.as_deref().filter(|d| !d.is_empty())
    }

    /// `additionalimagestores`.
    pub fn additional_image_stores(&self) -> &[PathBuf] {
        &self.storage.options.additionalimagestores
    }

    /// The scalar settings of `[storage.options.<driver>]`, as store options.
    pub fn driver_options(&self, driver: &str) -> BTreeMap<String, String> {
        let Some(toml::Value::Table(table)) = self.storage.options.rest.get(driver) else {
            return BTreeMap::new();
        };
        table
            .iter()
            .filter_map(|(k, v)| scalar(v).map(|s| (k.clone(), s)))
            .collect()
    }

    /// The settings strata does not read, as dotted keys (`storage.options.pull_options`),
    /// so that a status can say so rather than pass over them in silence. The tables of
    /// drivers other than `driver` are left out: they are for other drivers.
    pub fn unread(&self, driver: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .storage
            .rest
            .keys()
            .map(|k| format!("storage.{k}"))
            .collect();
        for (k, v) in &self.storage.options.rest {
            match v {
                toml::Value::Table(_) if k != driver && DRIVER_TABLES.contains(&k.as_str()) => {}
                toml::Value::Table(t) if k == driver => keys.extend(
                    t.iter()
                        .filter(|(_, v)| scalar(v).is_none())
                        .map(|(sub, _)| format!("storage.options.{k}.{sub}")),
                ),
                _ => keys.push(format!("storage.options.{k}")),
            }
        }
        keys
    }

    /// `$HOME`, `$UID` and `$USER` (also as `${…}`) replaced, as containers-storage does in
    /// `rootless_storage_path`.
    fn expand(&self, s: &str) -> String {
        let home = self
            .env
            .var("HOME")
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let user = self
            .env
            .var("USER")
            .map(|u| u.to_string_lossy().into_owned())
            .unwrap_or_default();
        let uid = self.env.uid.to_string();
        let mut out = s.to_owned();
        for (name, value) in [("HOME", &home), ("UID", &uid), ("USER", &user)] {
            out = out
                .replace(&format!("${{{name}}}"), value)
                .replace(&format!("${name}"), value);
        }
        out
    }
}

/// A TOML scalar as a store option's text; `None` for arrays and tables.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The Debian package's file, as installed in /usr/share/containers.
    const DEBIAN: &str = r#"
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
[storage.options]
additionalimagestores = [
]
pull_options = {enable_partial_images = "false", use_hard_links = "false", ostree_repos=""}
[storage.options.overlay]
mountopt = "nodev"
[storage.options.thinpool]
"#;

    fn env(dir: &Path, uid: u32, vars: &[(&str, &str)]) -> Environment {
        Environment {
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
                .collect(),
            system_files: vec![dir.join("etc.conf"), dir.join("usr-share.conf")],
            uid,
        }
    }

    #[test]
    fn no_file_anywhere_is_no_conf() {
        let dir = tempfile::tempdir().unwrap();
        let found = StorageConf::find(&env(dir.path(), 0, &[])).unwrap();
        assert!(found.is_none());
    }

    #[test]
    fn root_takes_the_system_files_roots_driver_and_options() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("usr-share.conf"), DEBIAN).unwrap();
        let conf = StorageConf::find(&env(dir.path(), 0, &[]))
            .unwrap()
            .unwrap();
        assert_eq!(conf.path, dir.path().join("usr-share.conf"));
        assert_eq!(conf.source, ConfSource::System);
        assert_eq!(
            conf.graph_root(),
            Some(PathBuf::from("/var/lib/containers/storage"))
        );
        assert_eq!(
            conf.run_root(),
            Some(PathBuf::from("/run/containers/storage"))
        );
        assert_eq!(conf.driver(), Some("overlay"));
        assert!(conf.additional_image_stores().is_empty());
        assert_eq!(
            conf.driver_options("overlay"),
            BTreeMap::from([("mountopt".to_owned(), "nodev".to_owned())])
        );
        assert_eq!(conf.unread("overlay"), ["storage.options.pull_options"]);
    }

    #[test]
    fn etc_comes_before_usr_share_and_the_named_file_before_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("usr-share.conf"), DEBIAN).unwrap();
        std::fs::write(
            dir.path().join("etc.conf"),
            "[storage]\ngraphroot = \"/srv/etc\"\n",
        )
        .unwrap();
        let named = dir.path().join("named.conf");
        std::fs::write(
            &named,
            "[storage]\ngraphroot = \"/srv/named\"\n[storage.options]\nadditionalimagestores = [\"/ro\"]\n",
        )
        .unwrap();
        let conf = StorageConf::find(&env(dir.path(), 0, &[]))
            .unwrap()
            .unwrap();
        assert_eq!(conf.graph_root(), Some(PathBuf::from("/srv/etc")));
        let e = env(dir.path(), 0, &[(CONF_VAR, named.to_str().unwrap())]);
        let conf = StorageConf::find(&e).unwrap().unwrap();
        assert_eq!(conf.source, ConfSource::Named);
        assert_eq!(conf.graph_root(), Some(PathBuf::from("/srv/named")));
        assert_eq!(conf.additional_image_stores(), [PathBuf::from("/ro")]);
    }

    #[test]
    fn a_named_file_that_cannot_be_read_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.conf");
        let e = env(dir.path(), 0, &[(CONF_VAR, missing.to_str().unwrap())]);
        let err = StorageConf::find(&e).unwrap_err().to_string();
        assert!(err.contains("nope.conf"), "{err}");
        std::fs::write(&missing, "[storage\n").unwrap();
        let err = StorageConf::find(&e).unwrap_err().to_string();
        assert!(err.contains("nope.conf"), "{err}");
    }

    #[test]
    fn an_unprivileged_user_takes_rootless_paths_not_the_system_files_roots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("usr-share.conf"), DEBIAN).unwrap();
        let vars = [
            ("HOME", "/home/u"),
            ("USER", "u"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ];
        let conf = StorageConf::find(&env(dir.path(), 1000, &vars))
            .unwrap()
            .unwrap();
        assert_eq!(
            conf.graph_root(),
            Some(PathBuf::from("/home/u/.local/share/containers/storage"))
        );
        assert_eq!(
            conf.run_root(),
            Some(PathBuf::from("/run/user/1000/containers"))
        );
        assert_eq!(conf.driver(), Some("overlay"));

        let with_path = format!(
            "{DEBIAN}\n",
        )
        .replace(
            "graphroot = \"/var/lib/containers/storage\"",
            "graphroot = \"/var/lib/containers/storage\"\nrootless_storage_path = \"/data/$USER/${UID}/storage\"",
        );
        std::fs::write(dir.path().join("usr-share.conf"), with_path).unwrap();
        let conf = StorageConf::find(&env(dir.path(), 1000, &vars))
            .unwrap()
            .unwrap();
        assert_eq!(
            conf.graph_root(),
            Some(PathBuf::from("/data/u/1000/storage"))
        );
    }

    #[test]
    fn an_unprivileged_users_own_file_wins_and_its_roots_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("usr-share.conf"), DEBIAN).unwrap();
        let config = dir.path().join("config/containers");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            config.join("storage.conf"),
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"/home/u/g\"\nrunroot = \"/home/u/r\"\n",
        )
        .unwrap();
        let xdg = dir.path().join("config");
        let vars = [
            ("HOME", "/home/u"),
            ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
        ];
        let conf = StorageConf::find(&env(dir.path(), 1000, &vars))
            .unwrap()
            .unwrap();
        assert_eq!(conf.source, ConfSource::User);
        assert_eq!(conf.graph_root(), Some(PathBuf::from("/home/u/g")));
        assert_eq!(conf.run_root(), Some(PathBuf::from("/home/u/r")));
        assert_eq!(conf.driver(), Some("vfs"));
    }
}
