//! The one error type of the storage contract.
//!
//! Every backend returns [`Error`]; callers branch on its variants (`NotFound`,
//! `LayerHasChildren`, `DigestMismatch`, …) rather than on message text. Messages name the
//! object (layer id, path, URL) and the cause.
//!
//! **Each cause is printed once.** An error that keeps its cause as
//! [`source()`](std::error::Error::source) does not repeat it in its own message: `Io`
//! displays only its context, `Catalog` only the database's path. Whoever prints an error
//! for a person (the CLI, a log line, a message folded into another error's reason) walks
//! the chain, with [`Report`] or `anyhow`'s `{:#}`. An error whose cause is only text (a
//! `reason` string) exposes no source. The same holds for every error type of the
//! workspace.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What kind of object an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A layer (read-only image layer or a container's read-write layer).
    Layer,
    /// An image: a named top layer.
    Image,
    /// A container: a read-write layer on an image.
    Container,
    /// A volume.
    Volume,
    /// A store (a backend instance at a URL).
    Store,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Layer => "layer",
            ObjectKind::Image => "image",
            ObjectKind::Container => "container",
            ObjectKind::Volume => "volume",
            ObjectKind::Store => "store",
        })
    }
}

/// Errors of the storage contract.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for.
        kind: ObjectKind,
        /// The id or name that was asked for.
        id: String,
    },
    /// An object with this id already exists.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// What kind of object.
        kind: ObjectKind,
        /// Its id.
        id: String,
    },
    /// A name is already taken by another object of the same kind.
    #[error("{kind} name {name:?} is already used by {holder}")]
    DuplicateName {
        /// What kind of object.
        kind: ObjectKind,
        /// The contested name.
        name: String,
        /// The id of the object that holds it.
        holder: String,
    },
    /// A prefix or name matches more than one object.
    #[error("{kind} {id:?} is ambiguous: it matches {matches}")]
    Ambiguous {
        /// What kind of object.
        kind: ObjectKind,
        /// The prefix that was given.
        id: String,
        /// How many objects matched.
        matches: usize,
    },
    /// The layer cannot be removed because other layers are built on it.
    #[error("layer {id} has child layers: {}", children.join(", "))]
    LayerHasChildren {
        /// The layer.
        id: String,
        /// Its children's ids.
        children: Vec<String>,
    },
    /// The layer cannot be removed because an image has it as its top layer.
    #[error("layer {id} is used by image(s) {}", images.join(", "))]
    LayerUsedByImage {
        /// The layer.
        id: String,
        /// The images whose top layer it is.
        images: Vec<String>,
    },
    /// The layer cannot be removed because it is a container's read-write layer.
    #[error("layer {id} is the read-write layer of container {container}")]
    LayerUsedByContainer {
        /// The layer.
        id: String,
        /// The container.
        container: String,
    },
    /// The image cannot be removed because containers were created from it.
    #[error("image {id} is used by container(s) {}", containers.join(", "))]
    ImageUsedByContainer {
        /// The image.
        id: String,
        /// The containers created from it.
        containers: Vec<String>,
    },
    /// The store cannot shut down (or be wiped) while layers are mounted.
    #[error("store at {} has mounted layers: {}", path.display(), mounted.join(", "))]
    StoreBusy {
        /// The store's root.
        path: PathBuf,
        /// The mounted layers' ids.
        mounted: Vec<String>,
    },
    /// The layer is mounted (or otherwise held) and the operation needs it free.
    #[error("layer {id} is in use: mounted {mounts} time(s)")]
    LayerInUse {
        /// The layer.
        id: String,
        /// Its current mount count.
        mounts: u64,
    },
    /// The image is in use (it has children or a container uses it).
    #[error("image {id} is in use: {reason}")]
    ImageInUse {
        /// The image.
        id: String,
        /// Who uses it.
        reason: String,
    },
    /// The volume is in use by a container.
    #[error("volume {id} is in use: {reason}")]
    VolumeInUse {
        /// The volume.
        id: String,
        /// Who uses it.
        reason: String,
    },
    /// A volume with this id exists in the store.
    #[error("volume {id} already exists in store {store}")]
    VolumeExists {
        /// The volume.
        id: String,
        /// The store.
        store: String,
    },
    /// No store is known under this name or URL.
    #[error("store {store} not found: {reason}")]
    StoreNotFound {
        /// The store's name or URL.
        store: String,
        /// Why it could not be found or opened.
        reason: String,
    },
    /// No volume store is known under this name.
    #[error("volume store {store} not found; known stores: {}", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    VolumeStoreNotFound {
        /// The name asked for.
        store: String,
        /// The names that are known.
        known: Vec<String>,
    },
    /// The store's on-disk state contradicts itself.
    #[error("store at {} is corrupt: {reason}", path.display())]
    CorruptStore {
        /// Where the store lives.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The received data does not have the digest the caller expected.
    #[error("digest mismatch for {object}: expected {expected}, received {actual}")]
    DigestMismatch {
        /// What was being received (e.g. "layer `<id>`").
        object: String,
        /// The digest the caller gave.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// An archive entry tried to leave the root or otherwise cannot be applied safely.
    #[error("unsafe archive entry {entry:?}: {reason}")]
    UnsafeArchive {
        /// The entry's name as it appears in the archive.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// The input is not a readable tar stream (garbage, truncated, bad header).
    #[error("invalid archive{}: {reason}", entry.as_deref().map(|e| format!(" at entry {e:?}")).unwrap_or_default())]
    InvalidArchive {
        /// The entry being read when the stream broke, if any.
        entry: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// An id or name is not well formed.
    #[error("invalid {kind} id {id:?}: {reason}")]
    InvalidId {
        /// What kind of object.
        kind: ObjectKind,
        /// The rejected id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A URL is not well formed or names no known backend.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend does not support the operation, or the machine cannot do it.
    #[error("{what} is not supported: {reason}")]
    Unsupported {
        /// The operation or feature.
        what: String,
        /// Why not.
        reason: String,
    },
    /// The operation was cancelled through its [`Op`](crate::Op).
    #[error("operation {op} was cancelled")]
    Cancelled {
        /// The operation's id.
        op: String,
    },
    /// An operating-system call failed.
    #[error("{context}")]
    Io {
        /// What was being done, naming the object and path.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The catalog database failed.
    #[error("catalog at {}", path.display())]
    Catalog {
        /// The database file.
        path: PathBuf,
        /// The database's own error (SQLite's: the `catalog` crate converts its errors
        /// into this variant, so the contract does not build SQLite).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `Result` with the contract's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] with a context naming what was being done.
    pub fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            context: context.into(),
            source: source.into(),
        }
    }

    /// An [`Error::Io`] about a path: "`what` `path`: cause".
    pub fn io_path(what: &str, path: &Path, source: impl Into<io::Error>) -> Self {
        Error::io(format!("{what} {}", path.display()), source)
    }

    /// The OS error number behind an [`Error::Io`], if that is what this is.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Displays an error followed by each of its causes ([`source()`](std::error::Error::source)
/// in turn), joined by `": "`: how an error is printed for a person, or folded into another
/// error's text, without losing or repeating a cause.
///
/// ```
/// use storage_core::error::{Error, Report};
/// let e = Error::io("write /x/y", std::io::Error::from_raw_os_error(28));
/// assert_eq!(e.to_string(), "write /x/y");
/// assert_eq!(
///     Report(&e).to_string(),
///     "write /x/y: No space left on device (os error 28)"
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

/// Adds a context to `io::Result`s (and anything that converts into `io::Error`, such as
/// `nix::Errno`), turning them into [`Error::Io`].
pub trait IoContext<T> {
    /// Wraps the error with a context computed only on failure.
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<io::Error>> IoContext<T> for std::result::Result<T, E> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENOSPC: i32 = 28;

    fn enospc() -> io::Error {
        io::Error::from_raw_os_error(ENOSPC)
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn an_io_error_displays_its_context_and_leaves_the_cause_to_its_source() {
        let e = Error::io_path("write", Path::new("/x/layer/f"), enospc());
        let cause = enospc().to_string();
        assert_eq!(e.to_string(), "write /x/layer/f");
        assert_eq!(
            std::error::Error::source(&e).map(ToString::to_string),
            Some(cause.clone())
        );
        let printed = Report(&e).to_string();
        assert_eq!(printed, format!("write /x/layer/f: {cause}"));
        assert_eq!(count(&printed, &cause), 1, "{printed}");
    }

    #[test]
    fn an_io_error_inside_an_io_error_still_names_its_cause_once() {
        // What a reader of an `ArchiveStream` whose producer failed receives.
        let inner = Error::io("export layer abc", enospc());
        let outer = Error::io("copy the tar stream", io::Error::other(inner));
        let cause = enospc().to_string();
        let printed = Report(&outer).to_string();
        assert_eq!(
            printed,
            format!("copy the tar stream: export layer abc: {cause}")
        );
        assert_eq!(count(&printed, &cause), 1, "{printed}");
    }

    #[test]
    fn a_catalog_error_names_the_database_and_its_cause_once() {
        let e = Error::Catalog {
            path: PathBuf::from("/var/lib/strata/catalog.db"),
            source: "database is locked".into(),
        };
        assert_eq!(e.to_string(), "catalog at /var/lib/strata/catalog.db");
        let printed = Report(&e).to_string();
        assert_eq!(
            printed,
            "catalog at /var/lib/strata/catalog.db: database is locked"
        );
    }

    #[test]
    fn errors_without_a_cause_print_as_they_display() {
        let e = Error::NotFound {
            kind: ObjectKind::Layer,
            id: "abc".into(),
        };
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(Report(&e).to_string(), e.to_string());
    }
}
