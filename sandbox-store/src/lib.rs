//! # sandbox-store: the sandbox state of VM-based runtimes
//!
//! This crate owns the sandbox state store of VM-based runtimes (the Kata virtcontainers
//! store): what such a runtime keeps about each sandbox and each of its containers, one
//! JSON file per [`Item`], with item locks, raw files, typed devices and its own
//! [`SandboxError`]. It does not own layers, images or containers' filesystems (those are
//! `storage-core`'s contract and the `catalog` crate's store), and it needs no catalog:
//! from `storage-core` it takes only the run root's atomic file write and lock-then-verify
//! `flock` ([`storage_core::run_root`]).
//!
//! Layout, for a sandbox `sb` and a container `c` in it:
//!
//! ```text
//! <persistent root>/sb/config.json        Item::Configuration (survives a reboot)
//! <persistent root>/sb/c/config.json
//! <run root>/sb/{state,network,hypervisor,agent,process,mounts,devices,uuid}.json
//! <run root>/sb/c/….json
//! <run root>/sb/.locks/<item>.lock         item locks (flock)
//! <run root>/sb/.raw/<id>                  caller-owned raw files
//! ```
//!
//! The roots are `/var/lib/strata/sbs` and `/run/strata/sbs` for root; rootless users get
//! them from `XDG_DATA_HOME` and `XDG_RUNTIME_DIR` ([`Roots::for_current_user`]); tests
//! pass their own ([`Roots::new`]).
//!
//! What it promises:
//! - **Atomic items.** A write goes to a hidden temporary file in the item's directory,
//!   is fsynced, renamed over the item and the directory is fsynced: a reader or a crash
//!   sees the old item or the new one, never part of one. Temporary files are named
//!   `.<item>.json.<pid>.<n>.tmp` and are never read as items.
//! - **Locks across processes.** [`Items::lock_item`] and [`Items::try_lock_item`] take
//!   a shared or exclusive `flock` on the item's lock file and return a guard that
//!   unlocks on drop. Locks are advisory: items are atomic with or without them, and a
//!   lock serialises a caller's read-modify-write. [`Sandbox::delete`] refuses
//!   ([`SandboxError::LockBusy`]) while any item lock of the sandbox or its containers is
//!   held.
//! - **Checked ids.** Sandbox, container and raw ids are single, plain path components
//!   ([`validate`]): `../x`, `/`, empty, NUL and overlong ids are refused.
//! - **Typed devices.** The Devices item is a list of [`Device`] stored as
//!   `{"Type": …, "Data": …}`; an unknown type is [`SandboxError::UnknownDeviceType`].
//!
//! It does not own the meaning of the items (runtimes define their state types; this
//! store only keeps them) and it does not list or clean up leftover temporary files of
//! a writer that was killed; they go with their sandbox.
//!
//! **Blocking.** Every call does synchronous filesystem work, and the blocking lock
//! calls wait for other holders. From async code, call it inside
//! `tokio::task::spawn_blocking`; handles are `Clone + Send + Sync` for that purpose.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sandbox_store::{Item, LockMode, Roots, SandboxError, SandboxStore};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct State { state: String, pid: u32 }
//!
//! # fn main() -> Result<(), SandboxError> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = SandboxStore::new(Roots::new(dir.path().join("lib"), dir.path().join("run")))?;
//!
//! let sandbox = store.sandbox("sb-1")?;
//! {
//!     let _guard = sandbox.lock_item(Item::State, LockMode::Exclusive)?;
//!     sandbox.store_item(Item::State, &State { state: "running".into(), pid: 42 })?;
//! } // unlocked here
//! let state: State = sandbox.fetch_item(Item::State)?;
//! assert_eq!(state.pid, 42);
//!
//! let container = sandbox.container("ctr-1")?;
//! container.store_item(Item::Configuration, &serde_json::json!({"image": "busybox"}))?;
//! assert!(matches!(
//!     container.fetch_item::<State>(Item::State),
//!     Err(SandboxError::NotFound { .. })
//! ));
//! assert!(store.sandbox("../x").is_err());
//!
//! let block = sandbox.raw("block0")?; // file:///…/run/sb-1/.raw/block0
//! assert_eq!(block.scheme(), "file");
//!
//! sandbox.delete()?; // both roots' directories
//! assert!(store.sandbox_ids()?.is_empty());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod device;
mod error;
mod id;
mod item;
mod roots;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use serde::Serialize;
use serde::de::DeserializeOwned;
use storage_core::run_root::{flock_path, write_file_atomic};
use url::Url;

pub use device::{
    BlockDevice, BlockDrive, Device, DeviceInfo, GenericDevice, VfioDev, VfioDevice, VfioKind,
    VhostUserAttrs, VhostUserDevice,
};
pub use error::{Result, SandboxError};
pub use id::{IdKind, MAX_ID_LEN, validate};
pub use item::{Item, Persistence};
pub use roots::Roots;

/// Mode of the store's directories: owner and group only.
const DIR_MODE: u32 = 0o750;
/// Mode of item and raw files.
const FILE_MODE: u32 = 0o640;
/// Where item locks live in a sandbox's or container's run directory.
const LOCKS_DIR: &str = ".locks";
/// Where raw files live in a sandbox's or container's run directory.
const RAW_DIR: &str = ".raw";

/// The store: two roots holding one directory per sandbox.
#[derive(Debug, Clone)]
pub struct SandboxStore {
    roots: Roots,
}

impl SandboxStore {
    /// A store over `roots` (made absolute against the current directory). Nothing is
    /// created until something is stored.
    pub fn new(roots: Roots) -> Result<Self> {
        let absolute =
            |p: &Path| std::path::absolute(p).map_err(|e| SandboxError::io("resolve", p, e));
        Ok(SandboxStore {
            roots: Roots {
                persistent: absolute(&roots.persistent)?,
                run: absolute(&roots.run)?,
            },
        })
    }

    /// A store over [`Roots::for_current_user`].
    pub fn for_current_user() -> Result<Self> {
        SandboxStore::new(Roots::for_current_user()?)
    }

    /// The (absolute) roots.
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// The sandbox `id` (checked with [`validate`]); it need not exist yet.
    pub fn sandbox(&self, id: &str) -> Result<Sandbox> {
        validate(IdKind::Sandbox, id)?;
        Ok(Sandbox {
            id: id.to_owned(),
            items: Items {
                owner: format!("sandbox {id}"),
                persistent_dir: self.roots.persistent.join(id),
                run_dir: self.roots.run.join(id),
            },
        })
    }

    /// The ids of the sandboxes with a directory under either root, sorted.
    pub fn sandbox_ids(&self) -> Result<Vec<String>> {
        list_ids(IdKind::Sandbox, [&self.roots.persistent, &self.roots.run])
    }

    /// Deletes the sandbox `id`: see [`Sandbox::delete`].
    pub fn delete_sandbox(&self, id: &str) -> Result<()> {
        self.sandbox(id)?.delete()
    }
}

/// How an item lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once; excludes exclusive holders.
    Shared,
    /// One holder; excludes everyone else.
    Exclusive,
}

impl LockMode {
    fn operation(self, wait: bool) -> FlockOperation {
        match (self, wait) {
            (LockMode::Shared, true) => FlockOperation::LockShared,
            (LockMode::Shared, false) => FlockOperation::NonBlockingLockShared,
            (LockMode::Exclusive, true) => FlockOperation::LockExclusive,
            (LockMode::Exclusive, false) => FlockOperation::NonBlockingLockExclusive,
        }
    }
}

/// A held item lock. Dropping it unlocks. It is an open file description with an
/// `flock` on it: it is released when the process dies, and not inherited by programs
/// the process runs (the file is close-on-exec).
#[derive(Debug)]
pub struct ItemLock {
    _file: File,
    item: Item,
    mode: LockMode,
    path: PathBuf,
}

impl ItemLock {
    /// The item locked.
    pub fn item(&self) -> Item {
        self.item
    }

    /// How it is held.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The items of one sandbox or one container: what [`Sandbox`] and [`Container`] share
/// (both dereference to it).
#[derive(Debug, Clone)]
pub struct Items {
    owner: String,
    persistent_dir: PathBuf,
    run_dir: PathBuf,
}

impl Items {
    /// The directory for items of `persistence`.
    pub fn dir(&self, persistence: Persistence) -> &Path {
        match persistence {
            Persistence::Persistent => &self.persistent_dir,
            Persistence::Volatile => &self.run_dir,
        }
    }

    /// Where `item` is stored.
    pub fn item_path(&self, item: Item) -> PathBuf {
        self.dir(item.persistence()).join(item.file_name())
    }

    /// Stores `value` as `item`, replacing what was there atomically.
    pub fn store_item<T: Serialize + ?Sized>(&self, item: Item, value: &T) -> Result<()> {
        let json = serde_json::to_vec(value).map_err(|source| SandboxError::Encode {
            owner: self.owner.clone(),
            item,
            source,
        })?;
        let dir = self.dir(item.persistence());
        make_dir(dir)?;
        write_file_atomic(&dir.join(item.file_name()), &json, FILE_MODE)
            .map_err(|f| SandboxError::io(f.step, f.path, f.source))
    }

    /// Fetches `item` as a `T`: [`SandboxError::NotFound`] when it was never stored,
    /// [`SandboxError::Decode`] when it is not a `T` (and
    /// [`SandboxError::UnknownDeviceType`] for a Devices item holding an unknown type).
    pub fn fetch_item<T: DeserializeOwned>(&self, item: Item) -> Result<T> {
        let path = self.item_path(item);
        let json = match std::fs::read(&path) {
            Ok(json) => json,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SandboxError::NotFound {
                    owner: self.owner.clone(),
                    item,
                    path,
                });
            }
            Err(e) => return Err(SandboxError::io("read", path, e)),
        };
        serde_json::from_slice(&json).map_err(|source| match (item, device::unknown_type(&json)) {
            (Item::Devices, Some(device_type)) => SandboxError::UnknownDeviceType {
                device_type,
                path: path.clone(),
            },
            _ => SandboxError::Decode {
                path: path.clone(),
                type_name: std::any::type_name::<T>(),
                source,
            },
        })
    }

    /// Stores the Devices item.
    pub fn store_devices(&self, devices: &[Device]) -> Result<()> {
        self.store_item(Item::Devices, devices)
    }

    /// Fetches the Devices item; none stored yet is an empty list.
    pub fn fetch_devices(&self) -> Result<Vec<Device>> {
        match self.fetch_item(Item::Devices) {
            Err(SandboxError::NotFound { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    fn lock_path(&self, item: Item) -> PathBuf {
        self.run_dir
            .join(LOCKS_DIR)
            .join(format!("{}.lock", item.name()))
    }

    /// Locks `item` in `mode`, waiting while others hold it in a conflicting mode. Holders
    /// in this process count as others: each guard is its own lock, so taking a second
    /// exclusive lock on an item this thread already holds waits forever.
    pub fn lock_item(&self, item: Item, mode: LockMode) -> Result<ItemLock> {
        let (file, path) = self.flock(item, mode.operation(true))?;
        match file {
            Some(file) => Ok(ItemLock {
                _file: file,
                item,
                mode,
                path,
            }),
            None => Err(SandboxError::io(
                "lock",
                path,
                io::ErrorKind::WouldBlock.into(),
            )),
        }
    }

    /// Locks `item` in `mode` if nobody holds it in a conflicting mode;
    /// [`SandboxError::LockBusy`] otherwise.
    pub fn try_lock_item(&self, item: Item, mode: LockMode) -> Result<ItemLock> {
        let (file, path) = self.flock(item, mode.operation(false))?;
        match file {
            Some(file) => Ok(ItemLock {
                _file: file,
                item,
                mode,
                path,
            }),
            None => Err(SandboxError::LockBusy {
                owner: self.owner.clone(),
                item,
                path,
            }),
        }
    }

    fn flock(&self, item: Item, op: FlockOperation) -> Result<(Option<File>, PathBuf)> {
        let path = self.lock_path(item);
        let dir = self.run_dir.join(LOCKS_DIR);
        // A concurrent delete can remove the directory between its creation and the
        // open; take it again a few times before calling that an error.
        let mut attempts = 0;
        loop {
            make_dir(&dir)?;
            match flock_path(&path, op) {
                Ok(file) => return Ok((file, path)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 8 => attempts += 1,
                Err(e) => return Err(SandboxError::io("lock", path, e)),
            }
        }
    }

    /// Takes every existing item lock exclusively without waiting, for a deletion.
    fn lock_all_for_delete(&self) -> Result<Vec<File>> {
        let mut held = Vec::new();
        for item in Item::ALL {
            let path = self.lock_path(item);
            let file = match OpenOptions::new().write(true).open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SandboxError::io("open lock", path, e)),
            };
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => held.push(file),
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(SandboxError::LockBusy {
                        owner: self.owner.clone(),
                        item,
                        path,
                    });
                }
                Err(e) => return Err(SandboxError::io("lock", path, e.into())),
            }
        }
        Ok(held)
    }

    /// Removes both directories (after [`Items::lock_all_for_delete`]).
    fn remove_dirs(&self) -> Result<()> {
        for dir in [&self.persistent_dir, &self.run_dir] {
            dirtree::remove_all(dir).map_err(|e| SandboxError::io("remove", dir, e.into()))?;
        }
        Ok(())
    }

    /// Whether either directory exists.
    fn exists(&self) -> bool {
        self.persistent_dir.is_dir() || self.run_dir.is_dir()
    }

    /// A `file://` URL to the caller-owned file `id` in the run directory, created empty
    /// if it does not exist (and left as it is if it does). The store never reads it;
    /// it is removed with its sandbox or container. Runtimes use it for files a
    /// hypervisor needs beside the state, such as a placeholder block device's backing
    /// file.
    pub fn raw(&self, id: &str) -> Result<Url> {
        validate(IdKind::Raw, id)?;
        let dir = self.run_dir.join(RAW_DIR);
        make_dir(&dir)?;
        let path = dir.join(id);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| SandboxError::io("create", &path, e))?;
        Url::from_file_path(&path).map_err(|()| {
            SandboxError::io(
                "make a file URL of",
                &path,
                io::Error::new(io::ErrorKind::InvalidInput, "not an absolute path"),
            )
        })
    }
}

/// One sandbox. Dereferences to its [`Items`].
#[derive(Debug, Clone)]
pub struct Sandbox {
    id: String,
    items: Items,
}

impl Sandbox {
    /// The sandbox's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container `id` of this sandbox (checked with [`validate`]); it need not
    /// exist yet.
    pub fn container(&self, id: &str) -> Result<Container> {
        validate(IdKind::Container, id)?;
        Ok(Container {
            sandbox: self.id.clone(),
            id: id.to_owned(),
            items: Items {
                owner: format!("container {id} of sandbox {}", self.id),
                persistent_dir: self.items.persistent_dir.join(id),
                run_dir: self.items.run_dir.join(id),
            },
        })
    }

    /// The ids of this sandbox's containers with a directory under either root, sorted.
    pub fn container_ids(&self) -> Result<Vec<String>> {
        list_ids(
            IdKind::Container,
            [&self.items.persistent_dir, &self.items.run_dir],
        )
    }

    /// Whether the sandbox has a directory under either root.
    pub fn exists(&self) -> bool {
        self.items.exists()
    }

    /// Deletes the sandbox, its containers and its raw files from both roots. Refused
    /// with [`SandboxError::LockBusy`], before anything is removed, while any item lock
    /// of the sandbox or of one of its containers is held (also by this process).
    /// Deleting a sandbox that does not exist succeeds, so an interrupted delete can be
    /// repeated.
    pub fn delete(&self) -> Result<()> {
        let mut held = self.items.lock_all_for_delete()?;
        for id in self.container_ids()? {
            held.extend(self.container(&id)?.items.lock_all_for_delete()?);
        }
        self.items.remove_dirs()
    }
}

impl Deref for Sandbox {
    type Target = Items;
    fn deref(&self) -> &Items {
        &self.items
    }
}

/// One container of a sandbox. Dereferences to its [`Items`].
#[derive(Debug, Clone)]
pub struct Container {
    sandbox: String,
    id: String,
    items: Items,
}

impl Container {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id of its sandbox.
    pub fn sandbox_id(&self) -> &str {
        &self.sandbox
    }

    /// Whether the container has a directory under either root.
    pub fn exists(&self) -> bool {
        self.items.exists()
    }

    /// Deletes the container from both roots; refused with [`SandboxError::LockBusy`]
    /// while one of its item locks is held. Deleting one that does not exist succeeds.
    pub fn delete(&self) -> Result<()> {
        let _held = self.items.lock_all_for_delete()?;
        self.items.remove_dirs()
    }
}

impl Deref for Container {
    type Target = Items;
    fn deref(&self) -> &Items {
        &self.items
    }
}

fn make_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| SandboxError::io("create directory", dir, e))
}

/// The valid ids of the subdirectories of `dirs` (missing directories hold none).
fn list_ids<'a>(kind: IdKind, dirs: impl IntoIterator<Item = &'a PathBuf>) -> Result<Vec<String>> {
    let mut ids = BTreeSet::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SandboxError::io("list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| SandboxError::io("list", dir, e))?;
            let is_dir = entry
                .file_type()
                .map_err(|e| SandboxError::io("stat", entry.path(), e))?
                .is_dir();
            if let (true, Some(name)) = (is_dir, entry.file_name().to_str())
                && validate(kind, name).is_ok()
            {
                ids.insert(name.to_owned());
            }
        }
    }
    Ok(ids.into_iter().collect())
}
