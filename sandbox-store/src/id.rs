//! Sandbox, container and raw-file ids: each becomes one path component, so each is
//! checked before it is joined to a root.

use std::fmt;

use super::error::{Result, SandboxError};
use super::item::Item;

/// The longest id accepted, in bytes: a file name's limit (`NAME_MAX`) on Linux.
pub const MAX_ID_LEN: usize = 255;

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A sandbox (a directory under each root).
    Sandbox,
    /// A container (a directory inside its sandbox's directories).
    Container,
    /// A caller-owned raw file (see `Items::raw`).
    Raw,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Sandbox => "sandbox",
            IdKind::Container => "container",
            IdKind::Raw => "raw file",
        })
    }
}

/// Checks an id: 1 to [`MAX_ID_LEN`] bytes of ASCII letters, digits, `_`, `.`, `+` and
/// `-`, starting with a letter or digit. That refuses `..`, `/`, NUL and anything hidden,
/// which keeps ids apart from the store's own dot-named files (`.locks`, `.raw`, temp
/// files). A container id must also differ from the item file names that share its
/// sandbox's directory (`state.json`, …).
pub fn validate(kind: IdKind, id: &str) -> Result<()> {
    let refuse = |reason| {
        Err(SandboxError::InvalidId {
            kind,
            id: id.to_owned(),
            reason,
        })
    };
    if id.is_empty() {
        return refuse("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return refuse("it is longer than 255 bytes");
    }
    if id.contains('\0') {
        return refuse("it contains a NUL byte");
    }
    if id.contains('/') {
        return refuse("it contains '/'");
    }
    if id == "." || id == ".." {
        return refuse("it names a directory itself");
    }
    if !id.as_bytes()[0].is_ascii_alphanumeric() {
        return refuse("it must start with an ASCII letter or digit");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'))
    {
        return refuse("it may hold only ASCII letters, digits, '_', '.', '+' and '-'");
    }
    if kind == IdKind::Container && Item::ALL.iter().any(|item| item.file_name() == id) {
        return refuse("it is the name of a sandbox item file");
    }
    Ok(())
}
