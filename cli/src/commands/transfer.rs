//! `pull` and `push`: whole images between the store and OCI layouts or docker archives.
//! The formats are `image-transfer`'s; this module moves layers through the store and
//! records the image as containers/image's storage transport does: the config's hex as
//! the image's id, the manifest under `manifest` and `manifest-<digest>`, the config
//! under its digest, the manifest's digest as the image's.

use anyhow::{Context as _, Result, bail};
use catalog::LayerRecord;
use image_transfer::{
    Compress, DestRef, LayerBlob, LayoutWriter, Platform, SourceImage, SourceRef, open_source,
};
use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};
use storage_core::archive::ExportOptions;
use storage_core::{ObjectKind, Op};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::commands::layers::done;
use crate::context::Context;
use crate::progress::ProgressReader;

/// The big-data key of the image's manifest, as containers-storage names it.
const MANIFEST_KEY: &str = "manifest";

/// `manifest-<digest>`: the key a manifest is also kept under.
fn manifest_key(digest: &str) -> String {
    format!("{MANIFEST_KEY}-{digest}")
}

/// `pull SOURCE`: reads the image, imports the layers the store does not hold as a chain,
/// creates the image with its manifest and config, gives it its names (taking them from
/// any image that held them), and prints its id. On failure nothing this pull created
/// remains.
pub async fn pull(
    ctx: &Context,
    op: &Op,
    source: &str,
    names: &[String],
    platform: Option<&str>,
) -> Result<()> {
    let src: SourceRef = source.parse()?;
    let platform = platform.map(str::parse::<Platform>).transpose()?;
    let image = tokio::task::spawn_blocking(move || open_source(&src, platform.as_ref()))
        .await
        .context("image reader")?
        .with_context(|| format!("pull {source}"))?;
    let names = if names.is_empty() {
        image.names.clone()
    } else {
        names.to_vec()
    };
    let mut created = Vec::new();
    let pulled = pull_into(ctx, op, &image, &names, &mut created).await;
    match pulled {
        Ok(id) => {
            println!("{id}");
            Ok(())
        }
        Err(e) => {
            // Undo: the layers this pull imported, topmost first.
            // (Deleting a half-recorded image may have taken some already.)
            for layer in created.iter().rev() {
                match ctx.store.delete_layer(op, layer).await {
                    Ok(()) | Err(storage_core::Error::NotFound { .. }) => {}
                    Err(undo) => eprintln!(
                        "strata: could not remove layer {layer} of the failed pull: {}",
                        storage_core::Report(&undo)
                    ),
                }
            }
            Err(e.context(format!("pull {source}")))
        }
    }
}

/// Imports what is missing and records the image; `created` collects the layers made.
async fn pull_into(
    ctx: &Context,
    op: &Op,
    image: &SourceImage,
    names: &[String],
    created: &mut Vec<String>,
) -> Result<String> {
    let held = ctx.store.layers().await?;
    let mut parent: Option<String> = None;
    let count = image.layers.len();
    for (i, blob) in image.layers.iter().enumerate() {
        if let Some(have) = held_layer(&held, parent.as_deref(), &blob.diff_id) {
            parent = Some(have.id.clone());
            continue;
        }
        ctx.check_depth(parent.as_deref()).await?;
        let id = import(
            ctx,
            op,
            blob,
            parent.as_deref(),
            &format!("layer {}/{count}", i + 1),
        )
        .await?;
        created.push(id.clone());
        parent = Some(id);
    }
    let id = image_transfer::blobs::sha256_hex(&image.config_digest)?.to_owned();
    let existing = match ctx.store.image(&id).await {
        Ok(found) => Some(found),
        Err(storage_core::Error::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    if existing
        .as_ref()
        .is_some_and(|found| found.top_layer != parent)
    {
        bail!("image {id} is already in the store on other layers; delete it to pull it again");
    }
    let made = existing.is_none();
    if made {
        ctx.store
            .create_image(
                parent.as_deref(),
                Some(&id),
                &[],
                "",
                Some(&image.manifest_digest),
            )
            .await?;
    }
    let finished = async {
        if made {
            record(ctx, &id, image).await?;
        }
        // The names last, once the image is whole, moved from any image that holds them:
        // a tag moves to the image pulled under it, as containers/image's `AddNames` does.
        if !names.is_empty() {
            let (kind, named, add) = (ObjectKind::Image, id.clone(), names.to_vec());
            ctx.store
                .db(move |c| c.change_names(kind, &named, &add, catalog::NameChange::Add))
                .await?;
        }
        Ok(())
    };
    if let Err(e) = finished.await {
        if made {
            let _ = ctx.store.delete_image(op, &id, false).await;
        }
        return Err(e);
    }
    Ok(id)
}

/// The image's manifest and config as big data.
async fn record(ctx: &Context, id: &str, image: &SourceImage) -> Result<()> {
    for (key, data) in [
        (MANIFEST_KEY.to_owned(), &image.manifest),
        (manifest_key(&image.manifest_digest), &image.manifest),
        (image.config_digest.clone(), &image.config),
    ] {
        ctx.store
            .set_big_data(ObjectKind::Image, id, &key, data.clone())
            .await
            .with_context(|| format!("record {key} of image {id}"))?;
    }
    Ok(())
}

/// A complete image layer on `parent` whose tar had digest `diff_id`.
fn held_layer<'a>(
    held: &'a [LayerRecord],
    parent: Option<&str>,
    diff_id: &str,
) -> Option<&'a LayerRecord> {
    held.iter().find(|l| {
        !l.incomplete
            && !l.read_write
            && l.parent.as_deref() == parent
            && l.uncompressed_digest.as_deref() == Some(diff_id)
    })
}

/// The id containers/image gives a pulled layer, so that the same chain has the same
/// layer ids here and in containers-storage: a base layer's is its `diff_id`'s hex, and a
/// layer on a parent has the sha256 of `<parent id>+<diff_id hex>`. `None` (a random id)
/// for a `diff_id` that is not sha256.
fn layer_id(parent: Option<&str>, diff_id: &str) -> Option<String> {
    let hex = diff_id.strip_prefix("sha256:")?;
    Some(match parent {
        None => hex.to_owned(),
        Some(p) => {
            let chained = image_transfer::sha256_digest(format!("{p}+{hex}").as_bytes());
            chained.trim_start_matches("sha256:").to_owned()
        }
    })
}

/// Imports one layer blob on `parent`, checking the blob's digest as it is read and the
/// tar's against the config's `diff_id`.
async fn import(
    ctx: &Context,
    op: &Op,
    blob: &LayerBlob,
    parent: Option<&str>,
    what: &str,
) -> Result<String> {
    let at = &blob.location;
    let mut file = tokio::fs::File::open(&at.file)
        .await
        .with_context(|| format!("open blob {} in {}", blob.digest, at.file.display()))?;
    file.seek(std::io::SeekFrom::Start(at.offset))
        .await
        .with_context(|| format!("seek to blob {} in {}", blob.digest, at.file.display()))?;
    file.set_max_buf_size(1 << 20);
    let short = blob.digest.get(7..19).unwrap_or(&blob.digest);
    let reader = ProgressReader::new(file.take(at.len), Some(at.len), &format!("{what} {short}"));
    let bar = reader.bar();
    let id = layer_id(parent, &blob.diff_id);
    let result = ctx
        .store
        .import_layer_as(
            op,
            catalog::LayerSpec {
                id: id.as_deref(),
                parent,
                names: &[],
                tar_digest: Some(&blob.diff_id),
            },
            Box::new(reader),
            Some(blob.digest.clone()),
        )
        .await;
    done(bar);
    // A tar other than the config's diff_id fails the import before the layer is
    // completed (`LayerSpec::tar_digest`).
    let (layer, report) = result.with_context(|| {
        format!(
            "{what}: blob {} (the config's diff_id {})",
            blob.digest, blob.diff_id
        )
    })?;
    crate::commands::layers::warn_lost(&format!("{what}: blob {}", blob.digest), &report);
    Ok(layer.id)
}

/// `push IMAGE DEST`: writes the image's layers (their diffs, compressed as asked) into
/// an OCI layout or archive, with the manifest and config it was pulled with when the
/// layers come out the same, new ones otherwise; prints the manifest's digest.
pub async fn push(ctx: &Context, op: &Op, key: &str, dest: &str, compress: &str) -> Result<()> {
    let dest: DestRef = dest.parse()?;
    let compress: Compress = compress.parse()?;
    let image = ctx.store.image(key).await?;
    let mut chain = Vec::new();
    let mut next = image.top_layer.clone();
    while let Some(id) = next {
        let layer = ctx.store.layer(&id).await?;
        next = layer.parent.clone();
        chain.push(layer.id);
    }
    chain.reverse();
    let (dir, tag, archive) = match &dest {
        DestRef::Oci { dir, tag } => (dir.clone(), tag.clone(), None),
        DestRef::OciArchive { file, tag } => {
            let mut tmp = file.as_os_str().to_owned();
            tmp.push(format!(".layout-{}", std::process::id()));
            (tmp.into(), tag.clone(), Some(file.clone()))
        }
    };
    let pushed = push_layout(ctx, op, &image.id, &chain, &dir, tag.as_deref(), compress).await;
    let result = match (pushed, &archive) {
        (Ok(digest), Some(file)) => {
            let (d, f) = (dir.clone(), file.clone());
            tokio::task::spawn_blocking(move || image_transfer::archive_layout(&d, &f))
                .await
                .context("archive writer")?
                .map(|()| digest)
                .map_err(anyhow::Error::from)
        }
        (other, _) => other,
    };
    if archive.is_some() {
        let d = dir.clone();
        let _ = tokio::task::spawn_blocking(move || dirtree::remove_all(&d)).await;
    }
    let digest = result.with_context(|| format!("push {key} to {dest:?}"))?;
    println!("{digest}");
    Ok(())
}

/// Writes the image into the layout at `dir`; returns the manifest's digest.
async fn push_layout(
    ctx: &Context,
    op: &Op,
    id: &str,
    chain: &[String],
    dir: &std::path::Path,
    tag: Option<&str>,
    compress: Compress,
) -> Result<String> {
    let d = dir.to_owned();
    let writer = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || LayoutWriter::create(&d))
            .await
            .context("layout writer")??,
    );
    let mut blobs = Vec::new();
    for layer in chain {
        let stream = ctx
            .store
            .diff(op, layer, None, &ExportOptions::default())
            .await?;
        let w = writer.clone();
        let blob = tokio::task::spawn_blocking(move || {
            w.write_layer::<anyhow::Error>(compress, |mut out| {
                stream.copy_to_blocking(&mut out)?;
                Ok(())
            })
        })
        .await
        .context("layer writer")?
        .with_context(|| format!("write layer {layer}"))?;
        blobs.push(blob);
    }
    let stored = ctx
        .store
        .big_data(ObjectKind::Image, id, MANIFEST_KEY)
        .await
        .ok();
    let kept = match &stored {
        Some(m) => kept_documents(ctx, id, m, &blobs).await?,
        None => None,
    };
    let (manifest, config, media_type) = match kept {
        Some(docs) => docs,
        None => new_documents(ctx, id, stored.as_deref(), &blobs).await?,
    };
    let (w, tag) = (writer.clone(), tag.map(str::to_owned));
    tokio::task::spawn_blocking(move || {
        w.write_blob(&config)?;
        let digest = w.write_blob(&manifest)?;
        w.add_to_index(&digest, manifest.len() as u64, &media_type, tag.as_deref())?;
        Ok::<_, image_transfer::Error>(digest)
    })
    .await
    .context("layout writer")?
    .map_err(Into::into)
}

/// A manifest, its config, and the manifest's media type.
type Documents = (Vec<u8>, Vec<u8>, String);

/// The manifest and config the image was pulled with, when the layers just written are
/// exactly the blobs that manifest names.
async fn kept_documents(
    ctx: &Context,
    id: &str,
    manifest: &[u8],
    blobs: &[image_transfer::WrittenBlob],
) -> Result<Option<Documents>> {
    let Ok(parsed) = ImageManifest::from_reader(manifest) else {
        return Ok(None);
    };
    let same = parsed.layers().len() == blobs.len()
        && parsed
            .layers()
            .iter()
            .zip(blobs)
            .all(|(l, b)| l.digest().to_string() == b.digest && l.size() == b.size);
    if !same {
        return Ok(None);
    }
    let config_digest = parsed.config().digest().to_string();
    let Ok(config) = ctx
        .store
        .big_data(ObjectKind::Image, id, &config_digest)
        .await
    else {
        return Ok(None);
    };
    let media_type = parsed
        .media_type()
        .as_ref()
        .map_or_else(|| MediaType::ImageManifest.to_string(), ToString::to_string);
    Ok(Some((manifest.to_vec(), config, media_type)))
}

/// A new OCI manifest for the layers written, and a config: the pulled one as it was
/// when the layers' tars are the ones it names (so the image keeps its id), with its
/// `rootfs.diff_ids` replaced when they are not, or a minimal one for an image that came
/// without.
async fn new_documents(
    ctx: &Context,
    id: &str,
    stored: Option<&[u8]>,
    blobs: &[image_transfer::WrittenBlob],
) -> Result<Documents> {
    let old_config = match stored.and_then(|m| ImageManifest::from_reader(m).ok()) {
        Some(m) => ctx
            .store
            .big_data(ObjectKind::Image, id, m.config().digest().as_ref())
            .await
            .ok(),
        None => None,
    };
    let diff_ids: Vec<&str> = blobs.iter().map(|b| b.diff_id.as_str()).collect();
    let mut config: serde_json::Value = match &old_config {
        Some(c) => serde_json::from_slice(c).context("the image's stored config")?,
        None => {
            let host = Platform::host();
            serde_json::json!({ "architecture": host.arch, "os": host.os, "config": {} })
        }
    };
    let config = match old_config {
        Some(kept) if config["rootfs"]["diff_ids"] == serde_json::json!(diff_ids) => kept,
        _ => {
            config["rootfs"] = serde_json::json!({ "type": "layers", "diff_ids": diff_ids });
            serde_json::to_vec(&config)?
        }
    };
    let descriptor = |media: MediaType, size: u64, digest: &str| -> Result<Descriptor> {
        Ok(Descriptor::new(
            media,
            size,
            digest.parse::<oci_spec::image::Digest>()?,
        ))
    };
    let layers = blobs
        .iter()
        .map(|b| descriptor(MediaType::from(b.media_type), b.size, &b.digest))
        .collect::<Result<Vec<_>>>()?;
    let config_desc = descriptor(
        MediaType::ImageConfig,
        config.len() as u64,
        &image_transfer::sha256_digest(&config),
    )?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layers)
        .build()?;
    Ok((
        manifest.to_string()?.into_bytes(),
        config,
        MediaType::ImageManifest.to_string(),
    ))
}
