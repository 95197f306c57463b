//! What can go wrong walking or removing a tree.

use std::io;
use std::path::PathBuf;

/// Errors of walks and removals. Each names the path it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done (`open`, `list`, `unlink`, …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A directory the walk had left was no longer where it was when the walk came back
    /// to it (moved, or replaced by another).
    #[error("{} was moved or replaced during the walk", path.display())]
    Moved {
        /// The directory.
        path: PathBuf,
    },
    /// A path below the walk's root is longer than the walk's limit.
    #[error(
        "{} is {len} bytes long below {}, more than the limit of {limit}",
        abbreviated(path),
        root.display()
    )]
    TooLong {
        /// The path, in full.
        path: PathBuf,
        /// The walk's root.
        root: PathBuf,
        /// Its length in bytes below the root.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A removal was asked for a name that is not one plain component.
    #[error("remove {name:?}: not a plain name (empty, `.`, `..`, or holding `/` or NUL)")]
    NotPlainName {
        /// The name, as given.
        name: String,
    },
}

/// `path` for a message: whole when short, else its start and end around an ellipsis.
pub fn abbreviated(path: &std::path::Path) -> String {
    const KEEP: usize = 60;
    let s = path.display().to_string();
    if s.len() <= 2 * KEEP + 3 {
        return s;
    }
    let mut head = KEEP;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - KEEP;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}…{}", &s[..head], &s[tail..])
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: PathBuf, source: impl Into<io::Error>) -> Self {
        Error::Io {
            op,
            path,
            source: source.into(),
        }
    }

    /// The OS error number behind an [`Error::Io`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    /// Keeps the kind of the OS error underneath (`NotFound`, `PermissionDenied`, …), so a
    /// caller that only knows `io::Error` can still branch on it.
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Io { source, .. } => source.kind(),
            Error::Moved { .. } => io::ErrorKind::Other,
            Error::TooLong { .. } => io::ErrorKind::InvalidFilename,
            Error::NotPlainName { .. } => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}
