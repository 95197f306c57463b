//! # mounts: the mounts every layer backend shares
//!
//! It owns how strata mounts things: overlay stacks ([`overlay`]: `lowerdir+` through the
//! new mount API where the kernel has it, a `lowerdir=` list through `mount(2)`
//! otherwise, the kernel's messages in every error), filesystems on block devices
//! ([`block`]: an ext4 read-only or read-write, with the options a container's root
//! needs), the mount table ([`mountinfo`]: what is mounted from a device) and the mount
//! points themselves ([`mount_point`]: is something mounted there, lazy unmount).
//!
//! It does not own where a backend keeps its layers, which layers a mount stacks, or how
//! a disk becomes a block device: a backend decides those and hands this crate the
//! directories and devices.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod block;
mod fs_context;
pub mod mount_point;
pub mod mountinfo;
pub mod overlay;

pub use block::BlockMount;
pub use mount_point::{is_mounted, unmount};
pub use overlay::{KERNEL_MAX_LOWERS, MountApi, Stack};
