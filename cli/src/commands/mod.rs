//! One module per family of subcommands, named as containers-storage names them.

pub mod big_data;
pub mod containers;
pub mod image_stores;
pub mod images;
pub mod layers;
pub mod migrate;
pub mod objects;
pub mod transfer;
pub mod volumes;

use anyhow::{Context as _, Result};

use crate::flags::MetadataFlags;

/// The metadata given by `-m` or `-f` (empty when neither).
pub fn metadata(flags: &MetadataFlags) -> Result<String> {
    match (&flags.metadata, &flags.metadata_file) {
        (Some(m), _) => Ok(m.clone()),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("read metadata from {}", f.display())),
        (None, None) => Ok(String::new()),
    }
}
