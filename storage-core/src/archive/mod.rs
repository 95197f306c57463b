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
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            filter: FilterSpec::default(),
            data: true,
        }
    }
}
