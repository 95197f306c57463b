//! What `docker save` (and `skopeo copy … docker-archive:`) writes: a tar holding
//! `manifest.json`, each image's config and its layers as tars. The image gets the docker
//! v2 schema 2 manifest containers/image makes for such an archive.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::blobs::{Blobs, sha256_digest};
use crate::error::{Error, Result, io};
use crate::oci::{LayerBlob, SourceImage, diff_ids};

/// One image of `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Item {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A descriptor as containers/image marshals it (field order kept).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Desc<'a> {
    media_type: &'a str,
    size: u64,
    digest: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Schema2<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Desc<'a>,
    layers: Vec<Desc<'a>>,
}

const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Opens the image `image` (a `RepoTags` entry, `@N`, or the only one) of a docker archive.
pub(crate) fn open(blobs: &Blobs, image: Option<&str>) -> Result<SourceImage> {
    let invalid = |reason: String| Error::Invalid {
        what: "manifest.json".into(),
        location: blobs.location(),
        reason,
    };
    let list = blobs
        .read("manifest.json", "manifest.json")?
        .ok_or_else(|| invalid("missing: this is not a docker archive".into()))?;
    let items: Vec<Item> = serde_json::from_slice(&list).map_err(|e| invalid(e.to_string()))?;
    let not_found = |wanted: String| Error::NotFound {
        location: blobs.location(),
        wanted,
    };
    let item = match image {
        None if items.len() == 1 => &items[0],
        None => {
            return Err(not_found(format!(
                "the only image ({} images: name one by tag or @N)",
                items.len()
            )));
        }
        Some(n) if n.starts_with('@') => n[1..]
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get(i))
            .ok_or_else(|| not_found(n.to_owned()))?,
        Some(tag) => items
            .iter()
            .find(|i| i.repo_tags.iter().flatten().any(|t| t == tag))
            .ok_or_else(|| not_found(tag.to_owned()))?,
    };
    let names = match image {
        Some(tag) if !tag.starts_with('@') => vec![tag.to_owned()],
        _ => item.repo_tags.clone().unwrap_or_default(),
    };
    let config = blobs
        .read(&item.config, "the config")?
        .ok_or_else(|| invalid(format!("its config {} is missing", item.config)))?;
    let config_digest = sha256_digest(&config);
    let ids = diff_ids(blobs, &config, &config_digest)?;
    if ids.len() != item.layers.len() {
        return Err(invalid(format!(
            "{} layers, but the config lists {} diff_ids",
            item.layers.len(),
            ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (path, diff_id) in item.layers.iter().zip(ids) {
        let location = blobs.locate(path)?.ok_or_else(|| Error::MissingBlob {
            digest: diff_id.clone(),
            location: format!("{} (as {path})", blobs.location()),
        })?;
        let mut head = [0u8; 4];
        let n = location
            .open()?
            .read(&mut head)
            .map_err(io("read", &location.file))?;
        // A plain tar's digest is its diff_id; a compressed one is hashed here.
        let plain =
            !(head[..n].starts_with(&[0x1f, 0x8b]) || head[..n] == [0x28, 0xb5, 0x2f, 0xfd]);
        let digest = if plain {
            diff_id.clone()
        } else {
            let mut hasher = crate::blobs::Digester::new(std::io::sink());
            std::io::copy(&mut location.open()?, &mut hasher)
                .map_err(io("read", &location.file))?;
            hasher.finish().1
        };
        layers.push(LayerBlob {
            digest,
            media_type: LAYER_TYPE.to_owned(),
            diff_id,
            location,
        });
    }
    let manifest = serde_json::to_vec(&Schema2 {
        schema_version: 2,
        media_type: "application/vnd.docker.distribution.manifest.v2+json",
        config: Desc {
            media_type: "application/vnd.docker.container.image.v1+json",
            size: config.len() as u64,
            digest: &config_digest,
        },
        layers: layers
            .iter()
            .map(|l| Desc {
                media_type: LAYER_TYPE,
                size: l.location.len,
                digest: &l.digest,
            })
            .collect(),
    })
    .map_err(|e| invalid(e.to_string()))?;
    Ok(SourceImage {
        manifest_digest: sha256_digest(&manifest),
        manifest,
        config,
        config_digest,
        layers,
        names,
    })
}
