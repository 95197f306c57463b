//! Object URLs of the port layer: `/storage/images/<store>/<id>` and
//! `/storage/volumes/<store>/<id>`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ObjectKind, Result};
use crate::id::validate_file_name;

/// The URL of an image or a volume inside a named store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ObjectUrl {
    /// `/storage/images/<store>/<id>`
    Image {
        /// The image store's name.
        store: String,
        /// The image id.
        id: String,
    },
    /// `/storage/images/<store>`: an image store itself.
    ImageStore {
        /// The image store's name.
        store: String,
    },
    /// `/storage/volumes/<store>/<id>`
    Volume {
        /// The volume store's name.
        store: String,
        /// The volume id.
        id: String,
    },
}

impl ObjectUrl {
    /// The URL of an image.
    pub fn image(store: &str, id: &str) -> Self {
        ObjectUrl::Image {
            store: store.to_owned(),
            id: id.to_owned(),
        }
    }

    /// The URL of an image store.
    pub fn image_store(store: &str) -> Self {
        ObjectUrl::ImageStore {
            store: store.to_owned(),
        }
    }

    /// The URL of a volume.
    pub fn volume(store: &str, id: &str) -> Self {
        ObjectUrl::Volume {
            store: store.to_owned(),
            id: id.to_owned(),
        }
    }

    /// The object's id (the store's name, for an image store).
    pub fn id(&self) -> &str {
        match self {
            ObjectUrl::Image { id, .. } | ObjectUrl::Volume { id, .. } => id,
            ObjectUrl::ImageStore { store } => store,
        }
    }

    /// The store's name.
    pub fn store(&self) -> &str {
        match self {
            ObjectUrl::Image { store, .. }
            | ObjectUrl::Volume { store, .. }
            | ObjectUrl::ImageStore { store } => store,
        }
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectUrl::Image { store, id } => write!(f, "/storage/images/{store}/{id}"),
            ObjectUrl::ImageStore { store } => write!(f, "/storage/images/{store}"),
            ObjectUrl::Volume { store, id } => write!(f, "/storage/volumes/{store}/{id}"),
        }
    }
}

impl FromStr for ObjectUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: s.to_owned(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if let ["", "storage", "images", store] = parts.as_slice() {
            validate_file_name(ObjectKind::Store, store)?;
            return Ok(ObjectUrl::image_store(store));
        }
        let ["", "storage", kind, store, id] = parts.as_slice() else {
            return Err(bad("expected /storage/{images|volumes}/<store>/<id>"));
        };
        let kind = match *kind {
            "images" => ObjectKind::Image,
            "volumes" => ObjectKind::Volume,
            _ => return Err(bad("the kind must be `images` or `volumes`")),
        };
        validate_file_name(ObjectKind::Store, store)?;
        validate_file_name(kind, id)?;
        Ok(match kind {
            ObjectKind::Image => ObjectUrl::image(store, id),
            _ => ObjectUrl::volume(store, id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_urls_round_trip() {
        for s in [
            "/storage/images/default/abc",
            "/storage/volumes/nfs1/data",
            "/storage/images/default",
        ] {
            assert_eq!(s.parse::<ObjectUrl>().unwrap().to_string(), s);
        }
        let u: ObjectUrl = "/storage/volumes/st/v1".parse().unwrap();
        assert_eq!((u.store(), u.id()), ("st", "v1"));
    }

    #[test]
    fn malformed_object_urls_are_refused() {
        for s in [
            "/storage/volumes/default",
            "/storage/disks/a/b",
            "/storage/images/../x",
            "storage/images/a/b",
            "/storage/volumes/a/b/c",
        ] {
            assert!(s.parse::<ObjectUrl>().is_err(), "{s} accepted");
        }
    }
}
