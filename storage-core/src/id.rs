//! Identifiers: layer/image/container ids (64 lowercase hex) and object names.

use crate::error::{Error, IoContext, ObjectKind, Result};

/// Length of a full object id in hex characters.
pub const ID_LEN: usize = 64;

/// Checks that `id` is a full id: 64 lowercase hex characters.
pub fn validate_id(kind: ObjectKind, id: &str) -> Result<()> {
    if id.len() != ID_LEN {
        return Err(Error::InvalidId {
            kind,
            id: id.to_owned(),
            reason: format!(
                "must be {ID_LEN} lowercase hex characters, has {}",
                id.len()
            ),
        });
    }
    if let Some(c) = id.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(Error::InvalidId {
            kind,
            id: id.to_owned(),
            reason: format!("{c:?} is not a lowercase hex digit"),
        });
    }
    Ok(())
}

/// The entries of `dir` named by a full id (a store's per-layer directories), sorted;
/// none when `dir` does not exist. Other names (`l/`, `empty/`) are left out.
pub fn ids_in(dir: &std::path::Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io_path("list", dir, e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        if let Some(name) = entry.file_name().to_str()
            && validate_id(ObjectKind::Layer, name).is_ok()
        {
            ids.push(name.to_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

/// True when `s` could be a prefix of an id (1 to 64 lowercase hex characters).
pub fn is_id_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= ID_LEN && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

/// Checks a user-chosen name (volume id, store name, image name):
/// 1 to 255 bytes of `[A-Za-z0-9_.:@/-]`, not starting with a separator, with no `.` or `..`
/// component, so that it can never become a path traversal when used as a file name part.
pub fn validate_name(kind: ObjectKind, name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidId {
            kind,
            id: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() || name.len() > 255 {
        return bad("must be 1 to 255 bytes long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '@' | '/'))
    {
        return bad("may hold only letters, digits and _ . - : @ /");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("must start with a letter or digit");
    }
    if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("must not have empty, `.` or `..` components");
    }
    Ok(())
}

/// Checks a name that becomes a single file name (volume id, store name): [`validate_name`]
/// without `/`.
pub fn validate_file_name(kind: ObjectKind, name: &str) -> Result<()> {
    validate_name(kind, name)?;
    if name.contains('/') {
        return Err(Error::InvalidId {
            kind,
            id: name.to_owned(),
            reason: "must not contain `/`".into(),
        });
    }
    Ok(())
}

/// `N` bytes from the kernel's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    let mut filled = 0;
    while filled < N {
        let n = rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())
            .map_err(|e| Error::io("read random bytes", e))?;
        filled += n;
    }
    Ok(buf)
}

/// A new random id: 32 random bytes as 64 hex characters.
pub fn random_id() -> Result<String> {
    Ok(hex::encode(random_bytes::<32>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ids_are_64_lowercase_hex() {
        let id = random_id().unwrap();
        assert_eq!(id.len(), 64);
        validate_id(ObjectKind::Layer, &id).unwrap();
        assert!(validate_id(ObjectKind::Layer, &id.to_uppercase()).is_err());
        assert!(validate_id(ObjectKind::Layer, &id[..63]).is_err());
        assert!(validate_id(ObjectKind::Layer, "../etc").is_err());
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_id().unwrap(), random_id().unwrap());
    }

    #[test]
    fn names_cannot_traverse() {
        for bad in [
            "", "..", "../x", "a/../b", "/abs", "a//b", "a b", ".hidden", "a\0b",
        ] {
            assert!(
                validate_name(ObjectKind::Volume, bad).is_err(),
                "{bad:?} accepted"
            );
        }
        for good in ["vol1", "my-vol_2.data", "registry.io/app:1.0", "a@sha256"] {
            validate_name(ObjectKind::Image, good).unwrap();
        }
        assert!(validate_file_name(ObjectKind::Volume, "a/b").is_err());
    }

    #[test]
    fn prefixes_are_short_hex() {
        assert!(is_id_prefix("ab12"));
        assert!(!is_id_prefix(""));
        assert!(!is_id_prefix("xyz"));
    }
}
