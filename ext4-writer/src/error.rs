//! The crate's one error type.

use std::io;

/// Everything that can go wrong building or reading an image. Each variant is a kind a
/// caller can branch on; messages name the tar entry or the image offset, and the cause:
/// an I/O cause is the variant's [`source()`](std::error::Error::source), never repeated
/// in its message (print the chain, as `storage_core::Report` does, to see both).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tar engine refused the archive: garbage, truncation, an unsafe or invalid entry,
    /// a digest mismatch, a cancelled operation. It keeps the engine's kind, so it turns
    /// back into the same `storage_core::Error`.
    #[error(transparent)]
    Archive(#[from] storage_core::Error),
    /// A tar entry is of a kind an ext4 image cannot hold.
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
    #[error("writing the image at byte offset {offset}")]
    Write {
        /// Byte offset in the image.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading the image failed.
    #[error("reading the image at byte offset {offset}")]
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
    /// A build option cannot be used as given.
    #[error("option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// Writing the output tar failed.
    #[error("writing the tar entry {entry:?}")]
    TarWrite {
        /// The entry being written.
        entry: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl From<Error> for storage_core::Error {
    /// The contract's error of the same kind: refused archives stay what the engine said,
    /// entries the image cannot hold are invalid or unsafe archives, a full image is an
    /// I/O error of kind `StorageFull`, I/O keeps its cause.
    fn from(e: Error) -> Self {
        use storage_core::Error as E;
        let message = e.to_string();
        match e {
            Error::Archive(e) => e,
            Error::InvalidEntry { entry, reason } => E::InvalidArchive {
                entry: Some(entry),
                reason,
            },
            Error::HardLinkTarget { entry, .. } | Error::NotADirectory { entry, .. } => {
                E::UnsafeArchive {
                    entry,
                    reason: message,
                }
            }
            Error::TooLarge { .. } => E::io(message, io::ErrorKind::StorageFull),
            // The cause stays the source, named once.
            Error::Write { offset, source } => E::io(
                format!("writing the ext4 image at byte offset {offset}"),
                source,
            ),
            Error::Read { offset, source } => E::io(
                format!("reading the ext4 image at byte offset {offset}"),
                source,
            ),
            Error::TarWrite { entry, source } => {
                E::io(format!("writing the tar entry {entry:?}"), source)
            }
            Error::Corrupt { .. } => E::io(message, io::ErrorKind::InvalidData),
            Error::InvalidOption { .. } => E::io(message, io::ErrorKind::InvalidInput),
            Error::Unsupported { what } => E::Unsupported {
                what: "ext4 image".into(),
                reason: what,
            },
        }
    }
}

fn at_entry(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!(" at entry {e:?}"),
        None => String::new(),
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use storage_core::Report;

    use super::*;

    const ENOSPC: i32 = 28;

    #[test]
    fn the_contract_error_keeps_the_kind_and_names_the_cause_once() {
        let refused = storage_core::Error::UnsafeArchive {
            entry: "x".into(),
            reason: "r".into(),
        };
        let back = storage_core::Error::from(Error::from(refused));
        assert!(matches!(back, storage_core::Error::UnsafeArchive { .. }));
        let full = storage_core::Error::from(Error::TooLarge {
            entry: None,
            what: "the maximum size".into(),
        });
        assert!(
            matches!(&full, storage_core::Error::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
        );
        let write = storage_core::Error::from(Error::Write {
            offset: 4096,
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        });
        assert_eq!(
            Report(&write).to_string(),
            "writing the ext4 image at byte offset 4096: permission denied"
        );
    }

    #[test]
    fn an_enospc_writing_the_image_is_printed_once_on_both_sides_of_the_conversion() {
        let cause = io::Error::from_raw_os_error(ENOSPC).to_string();
        let e = Error::Write {
            offset: 1 << 20,
            source: io::Error::from_raw_os_error(ENOSPC),
        };
        assert_eq!(e.to_string(), "writing the image at byte offset 1048576");
        let own = Report(&e).to_string();
        assert_eq!(own.matches(&cause).count(), 1, "{own}");
        let contract = storage_core::Error::from(e);
        assert_eq!(contract.raw_os_error(), Some(ENOSPC));
        let printed = Report(&contract).to_string();
        assert_eq!(
            printed,
            format!("writing the ext4 image at byte offset 1048576: {cause}")
        );
        assert_eq!(printed.matches(&cause).count(), 1, "{printed}");
    }

    #[test]
    fn a_refused_archive_passes_through_with_its_cause_once() {
        // `Archive` is transparent: its message and its source are the contract error's.
        let cause = io::Error::from_raw_os_error(ENOSPC).to_string();
        let inner = storage_core::Error::io("write /x/f", io::Error::from_raw_os_error(ENOSPC));
        let e = Error::from(inner);
        let printed = Report(&e).to_string();
        assert_eq!(printed, format!("write /x/f: {cause}"));
        let back = storage_core::Error::from(e);
        assert_eq!(Report(&back).to_string(), printed);
    }
}
