//! An attachment's record in the registry directory: one JSON file per attachment,
//! `<dir>/<key>/record.json`, replaced atomically at each step, so that whoever finds it
//! after a crash knows how far the step got.

use std::path::{Path, PathBuf};

use crate::attach::process::ProcessId;
use crate::error::{Error, ErrorKind, Result};

/// How far an attachment got. Only [`State::Attached`] is a resting state: under the
/// registry lock, a record in any other state was left by a process killed mid-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum State {
    /// The record is written; a loop device may be attached to `backing` or not.
    Attaching,
    /// Its server was started; it may be serving `backing`, and a loop device may be
    /// attached to it.
    Starting,
    /// Attached to `device`, in use by `refs` users.
    Attached,
    /// Being detached: the device and the server may be gone or not.
    Detaching,
}

/// What the registry records about one attachment.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Record {
    /// The top disk of the chain, as an absolute path with symlinks resolved.
    pub top: PathBuf,
    /// Every file of the chain, the top first.
    pub chain: Vec<PathBuf>,
    /// The top disk's format (a [`crate::Format::name`]).
    pub format: String,
    /// The virtual size in bytes.
    pub size: u64,
    /// Whether the device is read-only.
    pub read_only: bool,
    /// The directory every parent was required to lie in, if any.
    pub within: Option<PathBuf>,
    /// How far the attachment got.
    pub state: State,
    /// The boot it was made in: nothing of it survives a reboot.
    pub boot_id: String,
    /// How many users hold it.
    pub refs: u64,
    /// The file the loop device reads: the raw extent of a raw-addressable disk, or the
    /// block view's file.
    pub backing: PathBuf,
    /// Where in `backing` the disk starts.
    pub offset: u64,
    /// The loop device, once attached.
    pub device: Option<PathBuf>,
    /// The process serving the block view, for disks that need one.
    pub server: Option<ProcessId>,
}

/// The file holding the record of the attachment whose directory is `dir`.
pub(crate) fn path_in(dir: &Path) -> PathBuf {
    dir.join("record.json")
}

impl Record {
    /// Reads the record in `dir`; `None` when there is none (the directory was made but
    /// its first record never written).
    pub(crate) fn read(dir: &Path) -> Result<Option<Record>> {
        let path = path_in(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, "reading attachment record", e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::new(ErrorKind::Corrupt, format!("attachment record: {e}")).with_path(&path)
        })
    }

    /// Replaces the record in `dir` atomically.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let path = path_in(dir);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("attachment record: {e}"),
            )
            .with_path(&path)
        })?;
        storage_core::run_root::write_file_atomic(&path, &bytes, 0o600)
            .map_err(|f| Error::io(&f.path, format!("{} attachment record", f.step), f.source))
    }
}
