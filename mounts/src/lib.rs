//! # mounts: the mounts every layer backend shares
//!
//! A layer backend hands a runtime a mounted root: an overlay of a layer's chain, or a
//! filesystem on a disk, or both stacked. This crate owns how those mounts are made and
//! kept:
//!
//! - [`overlay`]: stacking directories with overlayfs, with `lowerdir+` through the new
//!   mount API where the kernel has it and a `lowerdir=` list through `mount(2)`
//!   otherwise, the kernel's messages in every error;
//! - [`CountedMounts`] ([`counted`]): mount points shared by reference count and recorded
//!   in the store's run root. A backend asks for a mount by key and says how it is made
//!   (an overlay [`Stack`] planned by [`CountedMounts::plan_overlay`], which nests chains
//!   deeper than 500 lowers into shared read-only groups, or a closure of its own, such as
//!   "attach this disk and mount its ext4"); the crate counts, makes and takes down in
//!   order, marks a mount in progress so a killed one is set right at the next open, and
//!   compares the records with the real mounts;
//! - [`block`]: a filesystem (ext4 by default) on a block device, read-only or read-write,
//!   with the options a container's root needs;
//! - [`mountinfo`] and [`mount_point`]: what the mount table says (the mounts of a
//!   device), whether something is mounted at a path, and lazy unmounts.
//!
//! It does not own where a backend keeps its layers, which layers a mount stacks, or how
//! a disk becomes a block device (that is `disk-image`'s): a backend decides those and
//! hands this crate directories, devices and closures. It knows no backend.
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use mounts::{CountedMounts, Lower, MountSites};
//! use storage_core::run_root::RunRoot;
//!
//! /// A store whose layers' roots are mounted at `<root>/<id>/merged`.
//! struct Sites(PathBuf);
//!
//! impl MountSites for Sites {
//!     fn target(&self, key: &str) -> PathBuf {
//!         self.0.join(key).join("merged")
//!     }
//!     fn keys(&self) -> storage_core::Result<Vec<String>> {
//!         Ok(Vec::new())
//!     }
//! }
//!
//! # fn main() -> storage_core::Result<()> {
//! let run = RunRoot::open(Path::new("/run/strata"))?;
//! let mounts = CountedMounts::open(run, "my-mounts", Sites("/var/lib/strata".into()))?;
//! let lowers = vec![Lower { name: "base".into(), path: "/var/lib/strata/base/diff".into() }];
//! let upper = Some(("/var/lib/strata/top/diff".into(), "/var/lib/strata/top/work".into()));
//! let root = mounts.mount("top", || {
//!     mounts.plan_overlay(lowers, upper, Path::new("/var/lib/strata/empty"))
//! })?;
//! // … the container runs in `root` …
//! mounts.unmount("top")?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod block;
pub mod counted;
mod fs_context;
pub mod mount_point;
pub mod mountinfo;
mod nesting;
pub mod overlay;

pub use block::BlockMount;
pub use counted::{
    BASE_WORKERS, CountedMounts, Make, MakeFn, MountKey, MountSites, Plan, with_held_pair,
};
pub use mount_point::{is_mounted, unmount};
pub use nesting::Lower;
pub use overlay::{KERNEL_MAX_LOWERS, MountApi, Stack};
