//! The sandbox store's error type.

use std::io;
use std::path::PathBuf;

use super::id::IdKind;
use super::item::Item;

/// What the sandbox store can fail with. Callers branch on the variant; every message
/// names the sandbox or container, the item and the path involved. A cause (the OS's or
/// serde's error) is the variant's [`source()`](std::error::Error::source) and is not
/// repeated in its message: print the chain (`storage_core::Report`) to see both.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A sandbox, container or raw-file id is not acceptable as one path component.
    #[error("invalid {kind} id {id:?}: {reason}")]
    InvalidId {
        /// Which kind of id.
        kind: IdKind,
        /// The id as given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The item has never been stored (or its sandbox or container was deleted).
    #[error("{item} of {owner} not found at {}", path.display())]
    NotFound {
        /// `sandbox <id>` or `container <id> of sandbox <id>`.
        owner: String,
        /// The item asked for.
        item: Item,
        /// Where it would be.
        path: PathBuf,
    },
    /// The Devices item holds a device whose `Type` this version does not know.
    #[error(
        "unknown device type {device_type:?} in {} (known: {})",
        path.display(),
        super::device::Device::TYPES.join(", ")
    )]
    UnknownDeviceType {
        /// The `Type` found in the file.
        device_type: String,
        /// The Devices file.
        path: PathBuf,
    },
    /// A try-lock found the item lock held by another holder (this or another process).
    #[error("{item} lock of {owner} is held elsewhere ({})", path.display())]
    LockBusy {
        /// `sandbox <id>` or `container <id> of sandbox <id>`.
        owner: String,
        /// The item whose lock is held.
        item: Item,
        /// The lock file.
        path: PathBuf,
    },
    /// A filesystem call failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done ("create", "rename into place", "lock", …).
        op: &'static str,
        /// The file or directory it was done on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A stored item is not valid JSON for the type it was fetched as.
    #[error("cannot decode {} as {type_name}", path.display())]
    Decode {
        /// The item file.
        path: PathBuf,
        /// The Rust type it was decoded into.
        type_name: &'static str,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be encoded as JSON (for example a map with non-string keys).
    #[error("cannot encode {item} of {owner} as JSON")]
    Encode {
        /// `sandbox <id>` or `container <id> of sandbox <id>`.
        owner: String,
        /// The item being stored.
        item: Item,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
    /// No default root can be worked out for this user (rootless, without
    /// `XDG_DATA_HOME`, `HOME` or a passwd entry).
    #[error("no default sandbox {which} root: {reason}")]
    NoDefaultRoot {
        /// "persistent" or "run".
        which: &'static str,
        /// Why.
        reason: String,
    },
}

impl SandboxError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SandboxError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`SandboxError`].
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
