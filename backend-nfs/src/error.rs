//! What can go wrong talking to the server, and how it reaches the contract's `Error`.

use std::io;
use std::time::Duration;

use nfs3_client::nfs3_types::nfs3::nfsstat3;

/// A failure of one NFS call.
#[derive(Debug, thiserror::Error)]
pub enum NfsError {
    /// The server did not answer within the timeout.
    #[error("NFS server {server} did not answer {call} within {}s", timeout.as_secs())]
    Timeout {
        /// `host:port/export`.
        server: String,
        /// The call that timed out (`WRITE usr/lib/blob`).
        call: String,
        /// The timeout in force.
        timeout: Duration,
    },
    /// The server could not be reached, or the mount was refused.
    #[error("cannot reach NFS server {server}: {reason}")]
    Connect {
        /// `host:port/export`.
        server: String,
        /// What failed.
        reason: String,
    },
    /// The transport or the RPC layer failed (a reset connection, a garbled reply).
    #[error("NFS server {server}: {call} failed: {reason}")]
    Rpc {
        /// `host:port/export`.
        server: String,
        /// The call.
        call: String,
        /// What failed.
        reason: String,
    },
    /// The server answered with an NFS error status.
    #[error("NFS {call}: {}", status_text(*status))]
    Status {
        /// The call, naming the object.
        call: String,
        /// The server's status.
        status: nfsstat3,
    },
}

impl NfsError {
    /// The NFS status, when the server answered with one.
    pub fn status(&self) -> Option<nfsstat3> {
        match self {
            NfsError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the server answered `status`.
    pub fn is(&self, status: nfsstat3) -> bool {
        self.status() == Some(status)
    }
}

fn status_text(s: nfsstat3) -> String {
    let text = match s {
        nfsstat3::NFS3ERR_PERM => "operation not permitted",
        nfsstat3::NFS3ERR_NOENT => "no such file or directory",
        nfsstat3::NFS3ERR_IO => "I/O error",
        nfsstat3::NFS3ERR_ACCES => "permission denied",
        nfsstat3::NFS3ERR_EXIST => "file exists",
        nfsstat3::NFS3ERR_NOTDIR => "not a directory",
        nfsstat3::NFS3ERR_ISDIR => "is a directory",
        nfsstat3::NFS3ERR_INVAL => "invalid argument",
        nfsstat3::NFS3ERR_NOSPC => "no space left on the export",
        nfsstat3::NFS3ERR_ROFS => "read-only export",
        nfsstat3::NFS3ERR_NAMETOOLONG => "name too long",
        nfsstat3::NFS3ERR_NOTEMPTY => "directory not empty",
        nfsstat3::NFS3ERR_DQUOT => "quota exceeded",
        nfsstat3::NFS3ERR_STALE => {
            "stale file handle (the object was removed, or the export changed)"
        }
        nfsstat3::NFS3ERR_NOTSUPP => "not supported by the server",
        nfsstat3::NFS3ERR_JUKEBOX => "server busy, try again",
        _ => "",
    };
    if text.is_empty() {
        format!("{s:?}")
    } else {
        format!("{text} ({s:?})")
    }
}

fn io_kind(s: nfsstat3) -> io::ErrorKind {
    match s {
        nfsstat3::NFS3ERR_PERM | nfsstat3::NFS3ERR_ACCES => io::ErrorKind::PermissionDenied,
        nfsstat3::NFS3ERR_NOENT | nfsstat3::NFS3ERR_STALE => io::ErrorKind::NotFound,
        nfsstat3::NFS3ERR_EXIST => io::ErrorKind::AlreadyExists,
        nfsstat3::NFS3ERR_NOTDIR => io::ErrorKind::NotADirectory,
        nfsstat3::NFS3ERR_ISDIR => io::ErrorKind::IsADirectory,
        nfsstat3::NFS3ERR_INVAL => io::ErrorKind::InvalidInput,
        nfsstat3::NFS3ERR_NOSPC | nfsstat3::NFS3ERR_DQUOT => io::ErrorKind::StorageFull,
        nfsstat3::NFS3ERR_ROFS => io::ErrorKind::ReadOnlyFilesystem,
        nfsstat3::NFS3ERR_NOTEMPTY => io::ErrorKind::DirectoryNotEmpty,
        nfsstat3::NFS3ERR_NOTSUPP => io::ErrorKind::Unsupported,
        _ => io::ErrorKind::Other,
    }
}

impl From<NfsError> for storage_core::Error {
    fn from(e: NfsError) -> Self {
        let kind = match &e {
            NfsError::Timeout { .. } => io::ErrorKind::TimedOut,
            NfsError::Connect { .. } => io::ErrorKind::ConnectionRefused,
            NfsError::Rpc { .. } => io::ErrorKind::ConnectionAborted,
            NfsError::Status { status, .. } => io_kind(*status),
        };
        // The NFS error names the server (or the object) itself.
        storage_core::Error::io("NFS volume store", io::Error::new(kind, e))
    }
}

#[cfg(test)]
mod tests {
    use storage_core::Report;

    use super::*;

    #[test]
    fn a_full_export_reaches_the_contract_as_storage_full_named_once() {
        let e = storage_core::Error::from(NfsError::Status {
            call: "WRITE usr/lib/blob".into(),
            status: nfsstat3::NFS3ERR_NOSPC,
        });
        assert!(
            matches!(&e, storage_core::Error::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull),
            "{e}"
        );
        let printed = Report(&e).to_string();
        assert_eq!(
            printed,
            "NFS volume store: NFS WRITE usr/lib/blob: no space left on the export (NFS3ERR_NOSPC)"
        );
    }

    #[test]
    fn a_timeout_names_the_server_and_the_call_once() {
        let e = storage_core::Error::from(NfsError::Timeout {
            server: "127.0.0.1:2049/export".into(),
            call: "COMMIT data".into(),
            timeout: Duration::from_secs(30),
        });
        let printed = Report(&e).to_string();
        assert_eq!(
            printed.matches("127.0.0.1:2049/export").count(),
            1,
            "{printed}"
        );
        assert_eq!(printed.matches("did not answer").count(), 1, "{printed}");
    }
}
