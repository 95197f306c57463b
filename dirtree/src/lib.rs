//! Walking and removing directory trees of any depth.
//!
//! A tree in a store can be as deep as whoever wrote it made it: an archive can reach
//! thousands of levels through symlinks, and a container can `mkdir` in a loop. Recursion
//! over such a tree overflows the stack, and one open descriptor per level runs out of
//! descriptors. Everything here is iterative, with its state on the heap, and keeps at most
//! [`OPEN_LEVELS`] directories open whatever the depth: a level whose descriptor was
//! closed is reopened through `..` on the way back up and checked against the device and
//! inode it had, so a directory moved or swapped during the walk stops it with
//! [`Error::Moved`] instead of sending it elsewhere.
//!
//! Owns: [`remove_at`] and [`remove_all`] (a tree of any depth, never following a symlink)
//! and [`Walk`] (a sorted depth-first cursor over a tree, descriptor-relative, with a limit
//! on path length). Does not own: what a walk is for (changes, export, sizes: the tar
//! engine), nor any policy on which trees may be removed (callers name them).
#![forbid(unsafe_code)]

mod error;
mod level;
mod remove;
mod walk;

pub use error::{Error, Result, abbreviated};
pub use level::list;
pub use remove::{remove_all, remove_at};
pub use walk::{Entered, Entry, Walk};

/// How many directories a walk or a removal keeps open at once, whatever the depth.
pub const OPEN_LEVELS: usize = 16;

/// True for a name that can stand as one directory entry: not empty, not `.` or `..`, and
/// free of `/` and NUL. Removal by name refuses anything else, so no name can reach a
/// directory itself or its parent.
pub fn is_plain_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}
