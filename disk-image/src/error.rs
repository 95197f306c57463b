//! The crate's one public error: a kind a caller can branch on, the object it concerns
//! (path, offset) and the underlying cause.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, coarse enough to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operating system refused or failed an I/O operation.
    Io,
    /// The file is not in any format this crate knows.
    UnknownFormat,
    /// The file claims a known format but its structures are broken (bad magic, bad
    /// checksum, offsets out of range, inconsistent sizes).
    Corrupt,
    /// The file is valid but uses a feature this crate does not implement.
    Unsupported,
    /// A parent named by a child disk could not be found.
    ParentMissing,
    /// A parent was found but does not match the child (CID or unique id).
    ParentMismatch,
    /// A read or write reaches past the end of the virtual disk.
    OutOfRange,
    /// A write was attempted on a disk opened read-only.
    ReadOnly,
    /// The caller passed an argument the operation cannot accept.
    InvalidArgument,
    /// The disk is in use in a way the operation conflicts with: attached in another
    /// mode, a parent of an attached chain, or still mounted.
    Busy,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ErrorKind::Io => "I/O error",
            ErrorKind::UnknownFormat => "unknown disk format",
            ErrorKind::Corrupt => "corrupt image",
            ErrorKind::Unsupported => "unsupported feature",
            ErrorKind::ParentMissing => "parent disk missing",
            ErrorKind::ParentMismatch => "parent disk does not match",
            ErrorKind::OutOfRange => "access out of range",
            ErrorKind::ReadOnly => "disk is read-only",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Busy => "disk in use",
        };
        f.write_str(text)
    }
}

/// An error from this crate: kind, the path and offset it concerns, a message, and the
/// I/O error that caused it, if any.
///
/// Its message names the kind, object and what was being done; the I/O cause is its
/// [`source()`](std::error::Error::source), never repeated in the message (print the chain,
/// as `storage_core::Report` does, to see both).
#[derive(Debug, thiserror::Error)]
#[error("{}", self.what())]
pub struct Error {
    kind: ErrorKind,
    path: Option<PathBuf>,
    offset: Option<u64>,
    message: String,
    #[source]
    source: Option<io::Error>,
}

impl Error {
    /// Kind, object and message, without the cause.
    fn what(&self) -> String {
        let mut s = self.kind.to_string();
        if let Some(path) = &self.path {
            s.push_str(&format!(" in {}", path.display()));
        }
        if let Some(offset) = self.offset {
            s.push_str(&format!(" at offset {offset}"));
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }
}

impl Error {
    /// A new error of `kind` with a message and no context yet.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            path: None,
            offset: None,
            message: message.into(),
            source: None,
        }
    }

    /// An I/O error on `path` with a message saying what was being done.
    pub fn io(path: &Path, message: impl Into<String>, source: io::Error) -> Self {
        Error {
            kind: ErrorKind::Io,
            path: Some(path.to_path_buf()),
            offset: None,
            message: message.into(),
            source: Some(source),
        }
    }

    /// A `Corrupt` error about `path` at `offset`.
    pub fn corrupt(path: &Path, offset: u64, message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, message)
            .with_path(path)
            .with_offset(offset)
    }

    /// Sets the path this error concerns (kept if one is already set).
    #[must_use]
    pub fn with_path(mut self, path: &Path) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_path_buf());
        }
        self
    }

    /// Sets the offset this error concerns (kept if one is already set).
    #[must_use]
    pub fn with_offset(mut self, offset: u64) -> Self {
        if self.offset.is_none() {
            self.offset = Some(offset);
        }
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file this error concerns, if known.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The byte offset (in the file or the virtual disk, as the message says) this error
    /// concerns, if known.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for storage_core::Error {
    /// The contract's error of the nearest kind, its message naming the disk: a broken or
    /// unknown image, or a broken parent chain, is a corrupt store; I/O keeps its cause;
    /// a read-only disk, a reach past the end, a bad argument and a disk in use are I/O
    /// errors of kinds `ReadOnlyFilesystem`, `InvalidInput` and `ResourceBusy`.
    fn from(e: Error) -> Self {
        use storage_core::Error as E;
        let message = e.what();
        match e.kind {
            ErrorKind::Io => match e.source {
                // The cause stays the source, named once.
                Some(source) => E::io(message, source),
                None => E::io(message, io::ErrorKind::Other),
            },
            ErrorKind::UnknownFormat
            | ErrorKind::Corrupt
            | ErrorKind::ParentMissing
            | ErrorKind::ParentMismatch => E::CorruptStore {
                path: e.path.unwrap_or_default(),
                reason: message,
            },
            ErrorKind::Unsupported => E::Unsupported {
                what: match &e.path {
                    Some(p) => format!("disk image {}", p.display()),
                    None => "disk image".into(),
                },
                reason: message,
            },
            ErrorKind::ReadOnly => E::io(message, io::ErrorKind::ReadOnlyFilesystem),
            ErrorKind::OutOfRange | ErrorKind::InvalidArgument => {
                E::io(message, io::ErrorKind::InvalidInput)
            }
            ErrorKind::Busy => E::io(message, io::ErrorKind::ResourceBusy),
        }
    }
}

impl From<Error> for io::Error {
    /// The error as an [`io::Error`] (what a [`DiskFile`](crate::DiskFile) returns) of the
    /// nearest kind: I/O keeps its cause's kind (`ENOSPC` stays `StorageFull`); a read-only
    /// disk is `ReadOnlyFilesystem`; a broken, unknown or mismatched image is
    /// `InvalidData`; a missing parent `NotFound`; an unsupported feature `Unsupported`; a
    /// reach past the end and a bad argument `InvalidInput`; a disk in use `ResourceBusy`.
    ///
    /// The disk's error is kept whole inside, so its path and offset are not lost: an
    /// `io::Error` prints it (and then its cause) and gives it back with
    /// `io_error.downcast::<disk_image::Error>()`.
    fn from(e: Error) -> Self {
        let kind = match e.kind {
            ErrorKind::Io => e
                .source
                .as_ref()
                .map_or(io::ErrorKind::Other, io::Error::kind),
            ErrorKind::ReadOnly => io::ErrorKind::ReadOnlyFilesystem,
            ErrorKind::UnknownFormat | ErrorKind::Corrupt | ErrorKind::ParentMismatch => {
                io::ErrorKind::InvalidData
            }
            ErrorKind::ParentMissing => io::ErrorKind::NotFound,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::OutOfRange | ErrorKind::InvalidArgument => io::ErrorKind::InvalidInput,
            ErrorKind::Busy => io::ErrorKind::ResourceBusy,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use storage_core::Report;

    const ENOSPC: i32 = 28;

    #[test]
    fn display_names_the_object_and_the_chain_adds_the_cause_once() {
        let e = Error::io(
            Path::new("/x/a.vmdk"),
            "reading header",
            io::Error::other("boom"),
        )
        .with_offset(512);
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(
            e.to_string(),
            "I/O error in /x/a.vmdk at offset 512: reading header"
        );
        assert_eq!(
            Report(&e).to_string(),
            "I/O error in /x/a.vmdk at offset 512: reading header: boom"
        );
    }

    #[test]
    fn an_enospc_crossing_into_the_contract_error_is_printed_once() {
        let cause = io::Error::from_raw_os_error(ENOSPC).to_string();
        let e = Error::io(
            Path::new("/x/a.vhdx"),
            "writing block 7",
            io::Error::from_raw_os_error(ENOSPC),
        );
        assert_eq!(Report(&e).to_string().matches(&cause).count(), 1);
        let contract = storage_core::Error::from(e);
        assert_eq!(contract.raw_os_error(), Some(ENOSPC));
        let printed = Report(&contract).to_string();
        assert_eq!(
            printed,
            format!("I/O error in /x/a.vhdx: writing block 7: {cause}")
        );
        assert_eq!(printed.matches(&cause).count(), 1, "{printed}");
    }

    #[test]
    fn as_an_io_error_it_keeps_the_cause_kind_prints_once_and_comes_back_whole() {
        let e = Error::io(
            Path::new("/x/a.vhdx"),
            "writing block 7",
            io::Error::from_raw_os_error(ENOSPC),
        )
        .with_offset(4096);
        let cause = io::Error::from_raw_os_error(ENOSPC).to_string();
        let as_io = io::Error::from(e);
        assert_eq!(as_io.kind(), io::ErrorKind::StorageFull);
        assert_eq!(
            Report(&as_io).to_string(),
            format!("I/O error in /x/a.vhdx at offset 4096: writing block 7: {cause}")
        );
        let back = as_io.downcast::<Error>().unwrap();
        assert_eq!(back.kind(), ErrorKind::Io);
        assert_eq!(back.offset(), Some(4096));
        for (kind, io_kind) in [
            (ErrorKind::ReadOnly, io::ErrorKind::ReadOnlyFilesystem),
            (ErrorKind::Corrupt, io::ErrorKind::InvalidData),
            (ErrorKind::ParentMissing, io::ErrorKind::NotFound),
            (ErrorKind::Unsupported, io::ErrorKind::Unsupported),
            (ErrorKind::OutOfRange, io::ErrorKind::InvalidInput),
        ] {
            assert_eq!(io::Error::from(Error::new(kind, "x")).kind(), io_kind);
        }
    }

    #[test]
    fn the_contract_error_keeps_the_kind_and_names_the_cause_once() {
        let io = storage_core::Error::from(Error::io(
            Path::new("/x/a.vmdk"),
            "reading header",
            io::Error::from(io::ErrorKind::PermissionDenied),
        ));
        assert_eq!(
            Report(&io).to_string(),
            "I/O error in /x/a.vmdk: reading header: permission denied"
        );
        let corrupt = storage_core::Error::from(Error::corrupt(Path::new("/x/b.vhdx"), 64, "bad"));
        assert!(
            matches!(&corrupt, storage_core::Error::CorruptStore { path, .. } if path == Path::new("/x/b.vhdx")),
            "{corrupt}"
        );
        let ro = storage_core::Error::from(Error::new(ErrorKind::ReadOnly, "write"));
        assert!(
            matches!(ro, storage_core::Error::Io { ref source, .. } if source.kind() == io::ErrorKind::ReadOnlyFilesystem)
        );
        let unsupported = storage_core::Error::from(Error::new(ErrorKind::Unsupported, "x"));
        assert!(matches!(
            unsupported,
            storage_core::Error::Unsupported { .. }
        ));
    }
}
