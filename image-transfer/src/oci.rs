//! Reading an image out of an OCI layout (a directory or a tar of one) or a docker
//! archive: its manifest and config verified, its layers located.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::REF_NAME;
use crate::blobs::{BlobLocation, Blobs};
use crate::error::{Error, Result};
use crate::reference::SourceRef;

/// An OS, architecture and variant, as an index's `platform` says them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`…, as Go names them.
    pub arch: String,
    /// `v7`, `v8`…, when it matters.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this program runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_owned(),
            arch: arch.to_owned(),
            variant: None,
        }
    }

    /// True when an index entry for `os`/`arch`/`variant` runs here.
    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.arch == arch
            && (self.variant.is_none() || self.variant.as_deref() == variant)
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_owned(),
                arch: arch.to_owned(),
                variant: parts
                    .get(2)
                    .map(|v| (*v).to_owned())
                    .filter(|v| !v.is_empty()),
            }),
            _ => Err(Error::BadReference {
                reference: s.to_owned(),
                reason: "a platform is OS/ARCH[/VARIANT]".into(),
            }),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

/// One layer of a source image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// The blob's digest as the manifest names it.
    pub digest: String,
    /// The blob's media type (plain, gzip or zstd tar). Its content is checked against
    /// `digest` by whoever reads it (the tar engine, given it as the expected digest).
    pub media_type: String,
    /// The uncompressed tar's digest (`rootfs.diff_ids` of the config).
    pub diff_id: String,
    /// Where the blob lies.
    pub location: BlobLocation,
}

/// An image read from a source, every document verified.
#[derive(Debug)]
pub struct SourceImage {
    /// The manifest, byte for byte.
    pub manifest: Vec<u8>,
    /// Its digest: the image's digest.
    pub manifest_digest: String,
    /// The config, byte for byte.
    pub config: Vec<u8>,
    /// Its digest.
    pub config_digest: String,
    /// The layers, bottom first.
    pub layers: Vec<LayerBlob>,
    /// The names the source gives the image (a tag, a `RepoTags` entry).
    pub names: Vec<String>,
}

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Layer media types read (the tar engine takes plain, gzip and zstd tars).
const LAYER_TYPES: [&str; 8] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

/// Opens the image `src` names, for `platform` when it is a multi-platform index (the
/// host's by default).
pub fn open_source(src: &SourceRef, platform: Option<&Platform>) -> Result<SourceImage> {
    let host = Platform::host();
    let platform = platform.unwrap_or(&host);
    match src {
        SourceRef::Oci { dir, image } => {
            open_layout(&Blobs::Dir(dir.clone()), image.as_deref(), platform)
        }
        SourceRef::OciArchive { file, image } => {
            open_layout(&Blobs::archive(file)?, image.as_deref(), platform)
        }
        SourceRef::DockerArchive { file, image } => {
            crate::docker::open(&Blobs::archive(file)?, image.as_deref())
        }
    }
}

fn invalid(blobs: &Blobs, what: &str, reason: impl fmt::Display) -> Error {
    Error::Invalid {
        what: what.to_owned(),
        location: blobs.location(),
        reason: reason.to_string(),
    }
}

fn open_layout(blobs: &Blobs, image: Option<&str>, platform: &Platform) -> Result<SourceImage> {
    let layout = blobs
        .read("oci-layout", "oci-layout")?
        .ok_or_else(|| invalid(blobs, "oci-layout", "missing: this is not an OCI layout"))?;
    let layout: serde_json::Value =
        serde_json::from_slice(&layout).map_err(|e| invalid(blobs, "oci-layout", e))?;
    if layout.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
        return Err(invalid(
            blobs,
            "oci-layout",
            "imageLayoutVersion is not 1.0.0",
        ));
    }
    let index = blobs
        .read("index.json", "index.json")?
        .ok_or_else(|| invalid(blobs, "index.json", "missing"))?;
    let index = ImageIndex::from_reader(&index[..]).map_err(|e| invalid(blobs, "index.json", e))?;
    let wanted = || image.map_or_else(|| "the only image".to_owned(), str::to_owned);
    let chosen: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| match image {
            None => true,
            Some(digest) if digest.starts_with('@') => d.digest().to_string() == digest[1..],
            Some(tag) => ref_name(d) == Some(tag),
        })
        .collect();
    let top = match chosen[..] {
        [one] => one.clone(),
        [] => {
            // A digest may name a manifest that only an index inside the layout lists.
            let digest =
                image
                    .and_then(|i| i.strip_prefix('@'))
                    .ok_or_else(|| Error::NotFound {
                        location: blobs.location(),
                        wanted: wanted(),
                    })?;
            let at = blobs.locate_blob(digest, None)?;
            Descriptor::new(
                oci_spec::image::MediaType::ImageManifest,
                at.len,
                oci_spec::image::Digest::from_str(digest)
                    .map_err(|e| invalid(blobs, "the digest asked for", e))?,
            )
        }
        _ => {
            return Err(Error::NotFound {
                location: blobs.location(),
                wanted: format!(
                    "{} ({} images: name one by tag or digest)",
                    wanted(),
                    chosen.len()
                ),
            });
        }
    };
    let mut names = Vec::new();
    if let Some(name) = ref_name(&top) {
        names.push(name.to_owned());
    }
    let (manifest, manifest_digest) = resolve(blobs, &top, platform)?;
    let parsed = ImageManifest::from_reader(&manifest[..])
        .map_err(|e| invalid(blobs, &format!("manifest {manifest_digest}"), e))?;
    let config_digest = parsed.config().digest().to_string();
    let config = blobs.read_blob(&config_digest, Some(parsed.config().size()))?;
    let diff_ids = diff_ids(blobs, &config, &config_digest)?;
    if diff_ids.len() != parsed.layers().len() {
        return Err(invalid(
            blobs,
            &format!("manifest {manifest_digest}"),
            format!(
                "{} layers, but its config lists {} diff_ids",
                parsed.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (desc, diff_id) in parsed.layers().iter().zip(diff_ids) {
        let digest = desc.digest().to_string();
        let media_type = desc.media_type().to_string();
        if !LAYER_TYPES.contains(&media_type.as_str()) {
            return Err(Error::Unsupported {
                what: format!("layer {digest} of type {media_type}"),
                reason: "only plain, gzip and zstd tar layers are read".into(),
            });
        }
        let location = blobs.locate_blob(&digest, Some(desc.size()))?;
        layers.push(LayerBlob {
            digest,
            media_type,
            diff_id,
            location,
        });
    }
    Ok(SourceImage {
        manifest,
        manifest_digest,
        config,
        config_digest,
        layers,
        names,
    })
}

/// The `ref.name` annotation of a descriptor.
fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// Follows `desc` through indexes (picking `platform`) to a manifest; returns its bytes
/// and digest.
fn resolve(blobs: &Blobs, desc: &Descriptor, platform: &Platform) -> Result<(Vec<u8>, String)> {
    let mut desc = desc.clone();
    // Indexes of indexes are allowed, a few deep.
    for _ in 0..4 {
        let digest = desc.digest().to_string();
        let data = blobs.read_blob(&digest, Some(desc.size()))?;
        let media_type = desc.media_type().to_string();
        // A descriptor found by digest alone says nothing: the document's own mediaType
        // does.
        let declared: Option<String> = serde_json::from_slice::<serde_json::Value>(&data)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            });
        let is_index = INDEX_TYPES.contains(&media_type.as_str())
            || declared
                .as_deref()
                .is_some_and(|m| INDEX_TYPES.contains(&m))
            || (declared.is_none()
                && serde_json::from_slice::<serde_json::Value>(&data)
                    .ok()
                    .is_some_and(|v| v.get("manifests").is_some()));
        if !is_index {
            if !MANIFEST_TYPES.contains(&media_type.as_str())
                && !declared
                    .as_deref()
                    .is_some_and(|m| MANIFEST_TYPES.contains(&m))
                && declared.is_some()
            {
                return Err(Error::Unsupported {
                    what: format!("manifest {digest} of type {media_type}"),
                    reason: "only OCI and docker v2 schema 2 image manifests are read".into(),
                });
            }
            return Ok((data, digest));
        }
        let index = ImageIndex::from_reader(&data[..])
            .map_err(|e| invalid(blobs, &format!("index {digest}"), e))?;
        let found = index.manifests().iter().find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                platform.matches(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
        });
        desc = found
            .ok_or_else(|| Error::NotFound {
                location: blobs.location(),
                wanted: format!("platform {platform} in index {digest}"),
            })?
            .clone();
    }
    Err(invalid(
        blobs,
        "index.json",
        "indexes nest more than 4 deep",
    ))
}

/// The `rootfs.diff_ids` of a config whose bytes the caller has checked against `digest`.
pub(crate) fn diff_ids(blobs: &Blobs, config: &[u8], digest: &str) -> Result<Vec<String>> {
    let parsed = ImageConfiguration::from_reader(config)
        .map_err(|e| invalid(blobs, &format!("config {digest}"), e))?;
    let ids = parsed.rootfs().diff_ids().clone();
    for id in &ids {
        crate::blobs::sha256_hex(id)?;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match_with_or_without_a_variant() {
        let p: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!(p.matches("linux", "arm", Some("v7")));
        assert!(!p.matches("linux", "arm", Some("v6")));
        let any: Platform = "linux/arm64".parse().unwrap();
        assert!(any.matches("linux", "arm64", Some("v8")));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/".parse::<Platform>().is_err());
    }
}
