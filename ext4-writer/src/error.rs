//! The crate's one error type.

use std::io;

/// Everything that can go wrong building or reading an image. Each variant is a kind a
/// caller can branch on; messages name the tar entry or the image offset, and the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tar stream could not be read or decoded (truncated, not a tar, bad compression).
    #[error("reading the tar stream{}: {source}", at_entry(.entry))]
    TarRead {
        /// The entry being read, when known.
        entry: Option<String>,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A tar entry is malformed or of a kind an ext4 image cannot hold.
    #[error("tar entry {entry:?}: {reason}")]
    InvalidEntry {
        /// The entry's path as written in the tar.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A hard link names a target that does not exist in the image (or is a directory).
    #[error("tar entry {entry:?}: hard-link target {target:?} {reason}")]
    HardLinkTarget {
        /// The link's path.
        entry: String,
        /// The target as written in the tar.
        target: String,
        /// Why it cannot be linked.
        reason: &'static str,
    },
    /// A path walks through something that is not a directory (or through too many symlinks).
    #[error("tar entry {entry:?}: {component:?} is not a directory")]
    NotADirectory {
        /// The entry's path as written in the tar.
        entry: String,
        /// The component that is not a directory.
        component: String,
    },
    /// The image would exceed a limit: the configured maximum size or an ext4 limit.
    #[error("image too large{}: {what}", at_entry(.entry))]
    TooLarge {
        /// The entry being added, when one pushed it over.
        entry: Option<String>,
        /// Which limit.
        what: String,
    },
    /// Writing the image failed.
    #[error("writing the image at byte offset {offset}: {source}")]
    Write {
        /// Byte offset in the image.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading the image failed.
    #[error("reading the image at byte offset {offset}: {source}")]
    Read {
        /// Byte offset in the image.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The image is not a valid ext4 file system.
    #[error("corrupt ext4 image at byte offset {offset}: {what}")]
    Corrupt {
        /// Byte offset of the structure that is wrong.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The image uses a feature the reader does not implement.
    #[error("unsupported ext4 image: {what}")]
    Unsupported {
        /// The feature.
        what: String,
    },
    /// Writing the output tar failed.
    #[error("writing the tar entry {entry:?}: {source}")]
    TarWrite {
        /// The entry being written.
        entry: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn at_entry(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!(" at entry {e:?}"),
        None => String::new(),
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
