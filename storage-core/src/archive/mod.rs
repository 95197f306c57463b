//! The contract's vocabulary for archives: what an import reports ([`ApplyReport`]), what
//! a change is ([`Change`]), how an export is asked for ([`ExportOptions`]) and the stream an
//! export arrives in ([`ArchiveStream`]).
//!
//! The engine that reads and writes tar streams is the `tar-engine` crate, built on these
//! types; the contract names them so that a caller of a backend needs no engine.

mod change;
mod report;
mod stream;

pub use change::{Change, ChangeKind, FileKind, Stat, changes_size};
pub use report::{ApplyReport, Compression};
pub use stream::ArchiveStream;

use crate::filter::FilterSpec;

/// What an export writes.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Which entries are kept and how they are renamed.
    pub filter: FilterSpec,
    /// Write file contents (`true`) or headers only, each with its change type (`false`).
    pub data: bool,
    /// Take owners and modes from `user.containers.override_stat` records, and opaque
    /// marks from the `user.` namespace, as an unprivileged store keeps them
    /// ([`unprivileged_marks`], the default). A process running as root takes every
    /// entry's real owner and mode and the kernel's own marks: there, a record could have
    /// been set by whoever owns the file (a container's process on its own files) and
    /// would forge a root-owned setuid file into the export.
    pub owner_records: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            filter: FilterSpec::default(),
            data: true,
            owner_records: unprivileged_marks(),
        }
    }
}

/// Whether this process reads the marks an unprivileged writer leaves (owner records,
/// `user.overlay.opaque`): only when it is not root, as only then does it write them.
pub fn unprivileged_marks() -> bool {
    !rustix::process::geteuid().is_root()
}
