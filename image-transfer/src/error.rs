//! The one error of this crate: each kind names the object (a blob's digest, a path, a
//! reference) and says what went wrong, so a caller can branch on it.

use std::path::PathBuf;

/// What went wrong reading or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A transport reference that cannot be parsed.
    #[error("{reference:?} is not an image reference: {reason}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// A blob the image needs is not in the layout.
    #[error("blob {digest} is missing from {location}")]
    MissingBlob {
        /// The blob's digest.
        digest: String,
        /// The layout or archive.
        location: String,
    },
    /// A blob whose content does not hash to its digest.
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    DigestMismatch {
        /// The digest it is named by.
        digest: String,
        /// What its content hashes to.
        actual: String,
    },
    /// A blob of another length than its descriptor says (truncated, or grown).
    #[error("blob {digest} is {actual} bytes long, its descriptor says {expected}")]
    SizeMismatch {
        /// The blob's digest.
        digest: String,
        /// The descriptor's size.
        expected: u64,
        /// The blob's length.
        actual: u64,
    },
    /// A document (index, manifest, config, `manifest.json`) that is not what it must be.
    #[error("{what} in {location} is invalid: {reason}")]
    Invalid {
        /// Which document.
        what: String,
        /// The layout or archive.
        location: String,
        /// Why.
        reason: String,
    },
    /// Nothing in the source matches what was asked for (a tag, a digest, a platform).
    #[error("no image in {location} matches {wanted}")]
    NotFound {
        /// The layout or archive.
        location: String,
        /// What was asked for.
        wanted: String,
    },
    /// Something this crate does not handle (a digest algorithm, a media type).
    #[error("{what} is not supported: {reason}")]
    Unsupported {
        /// What.
        what: String,
        /// Why.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done ("read", "write", "rename").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an I/O error with what was done to which file.
pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
