//! `migrate --from GRAPHROOT [--from-run RUNROOT]`: copies a containers-storage overlay
//! store into this store, keeping ids, names, metadata, creation times, digests and big
//! data.
//!
//! The source is read under its own locks (shared), held for the whole copy: its
//! writers wait, and what is copied is one consistent view of it. Layers go first,
//! parents before children, each as the tar it was imported from (reassembled from its
//! tar-split, else written from its diff directory) with its recorded `diff-digest` as
//! the digest the import must see. Then images with their big data, then containers
//! (a read-write layer of the source's id on the copied image, the source's changes
//! applied to it, and the big data). An object this store already holds whole is skipped, so a migrate
//! interrupted for any reason is finished by running it again; an image or container
//! an interruption left unfinished is made again: right after it is made its creation
//! time is set to a placeholder, and to the source's only once all of it is copied.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use catalog::containers_storage::{CsContainer, CsImage, CsLayer, CsStore, created_seconds};
use catalog::{KeptLayer, LayerSpec};
use storage_core::archive::{ArchiveStream, ExportOptions};
use storage_core::{Error, ObjectKind, Op};

use crate::commands::layers::warn_lost;
use crate::context::Context;

/// `migrate`.
pub async fn migrate(ctx: &Context, op: &Op, from: &Path, from_run: Option<&Path>) -> Result<()> {
    let root = from.to_owned();
    eprintln!("migrate: waiting for {}'s locks", from.display());
    let src = tokio::task::spawn_blocking(move || {
        if !catalog::containers_storage::is_containers_storage(&root) {
            return Ok(None);
        }
        CsStore::open(&root).map(Some)
    })
    .await
    .context("containers-storage reader")?
    .with_context(|| format!("read containers-storage store {}", from.display()))?;
    let Some(src) = src else {
        bail!(
            "{} is not a containers-storage overlay store (no overlay-layers/layers.json, or it has a strata catalog)",
            from.display()
        );
    };
    let mounted = mounted_layers(from, from_run).await?;

    let container_layers: HashSet<&str> = src.containers.iter().map(|c| c.layer.as_str()).collect();
    let mut copied = 0usize;
    for layer in src
        .layers()
        .iter()
        .filter(|l| !container_layers.contains(l.id.as_str()))
    {
        if copy_layer(ctx, op, &src, layer).await? {
            copied += 1;
        }
    }
    for image in &src.images {
        if copy_image(ctx, op, &src, image).await? {
            copied += 1;
        }
    }
    let mut skipped = Vec::new();
    for c in &src.containers {
        if mounted.contains(&c.layer) {
            eprintln!(
                "migrate: container {} skipped: its layer {} is mounted in the source",
                c.id, c.layer
            );
            skipped.push(c.id.clone());
            continue;
        }
        if copy_container(ctx, op, &src, c).await? {
            copied += 1;
        }
    }
    eprintln!("migrate: {copied} objects copied from {}", from.display());
    if !skipped.is_empty() {
        bail!(
            "containers not copied because their layers are mounted in the source (unmount them and run migrate again): {}",
            skipped.join(", ")
        );
    }
    Ok(())
}

/// The layers mounted in the source: by its run root's `mountpoints.json`, and by the
/// live mount table (`<graph root>/overlay/<id>/merged`).
async fn mounted_layers(from: &Path, from_run: Option<&Path>) -> Result<HashSet<String>> {
    let (from, run) = (from.to_owned(), from_run.map(Path::to_owned));
    tokio::task::spawn_blocking(move || -> Result<HashSet<String>> {
        let mut ids = HashSet::new();
        if let Some(run) = run {
            for (id, _) in CsStore::mounted_layers(&run)
                .with_context(|| format!("read the mounts recorded in {}", run.display()))?
            {
                ids.insert(id);
            }
        }
        let layers_dir = std::fs::canonicalize(&from).unwrap_or(from).join("overlay");
        for mount in mounts::mountinfo::read()? {
            if let Ok(rest) = mount.mount_point.strip_prefix(&layers_dir)
                && rest.file_name().is_some_and(|n| n == "merged")
                && let Some(id) = rest.parent().and_then(|p| p.to_str())
            {
                ids.insert(id.to_owned());
            }
        }
        Ok(ids)
    })
    .await
    .context("mount table reader")?
}

/// Whether `kind` `id` is in this store (not an additional store's).
async fn present(ctx: &Context, kind: ObjectKind, id: &str) -> Result<bool> {
    let id = id.to_owned();
    let found = ctx
        .store
        .read(move |sql| catalog::db::names::resolve(sql, kind, &id).map(|found| found == id))
        .await;
    match found {
        Ok(yes) => Ok(yes),
        Err(Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The diff directories under layer `id` in the source, nearest first.
fn lower_diffs(src: &CsStore, parent: Option<&str>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut next = parent.map(str::to_owned);
    while let Some(p) = next {
        out.push(src.layer_diff(&p));
        next = src.layer(&p).and_then(|l| l.parent.clone());
    }
    out
}

/// The tar of a source layer: the one it was imported from when its tar-split still
/// matches, else one written from its diff directory.
fn layer_tar(op: &Op, src: &CsStore, layer: &CsLayer) -> Result<ArchiveStream> {
    let (op, own, split) = (
        op.clone(),
        src.layer_diff(&layer.id),
        src.tar_split(&layer.id),
    );
    let lowers = lower_diffs(src, layer.parent.as_deref());
    Ok(ArchiveStream::spawn(move |mut pipe| {
        if split.exists()
            && tar_engine::cs_split::reassemble_cs(&op, &own, &split, &mut pipe)?.is_some()
        {
            return Ok(());
        }
        tar_engine::write_layer(&op, &own, &lowers, &ExportOptions::default(), pipe).map(drop)
    })?)
}

/// Copies one layer; `false` when this store has it already.
async fn copy_layer(ctx: &Context, op: &Op, src: &CsStore, layer: &CsLayer) -> Result<bool> {
    if present(ctx, ObjectKind::Layer, &layer.id).await? {
        // Its big data is copied after the layer: finish what an interruption left.
        let have = ctx
            .store
            .big_data_list(ObjectKind::Layer, &layer.id)
            .await?;
        let missing: Vec<String> = layer
            .big_data
            .big_data_names
            .iter()
            .filter(|k| !have.iter().any(|h| &h.key == *k))
            .cloned()
            .collect();
        copy_big_data(ctx, src, ObjectKind::Layer, &layer.id, &missing).await?;
        eprintln!("migrate: layer {} already here", layer.id);
        return Ok(false);
    }
    eprintln!("migrate: layer {}", layer.id);
    // With its tar-split the tar is the one the layer was imported from, so it must hash
    // to the recorded digest (a tree changed since fails the copy, naming the layer);
    // without, it is written from the tree and its digest is what it is.
    let has_split = tokio::fs::try_exists(src.tar_split(&layer.id))
        .await
        .with_context(|| format!("look for layer {}'s tar-split", layer.id))?;
    let expected = if has_split {
        layer.diff_digest.clone()
    } else {
        None
    };
    let tar = layer_tar(op, src, layer)?;
    let kept = KeptLayer {
        created: created_seconds(layer.created.as_deref()),
        metadata: layer.metadata.clone().unwrap_or_default(),
        compressed_digest: layer.compressed_diff_digest.clone(),
        compressed_size: layer.compressed_size.map(|s| s as u64),
    };
    let spec = LayerSpec {
        id: Some(&layer.id),
        parent: layer.parent.as_deref(),
        names: &layer.names,
        // The tar arrives uncompressed: `expected` (its diff-digest) is checked as what
        // was received.
        tar_digest: None,
    };
    let (_, report) = ctx
        .store
        .import_layer_kept(op, spec, Box::new(tar), expected, kept)
        .await
        .with_context(|| format!("copy layer {}", layer.id))?;
    warn_lost(&format!("layer {}", layer.id), &report);
    copy_big_data(
        ctx,
        src,
        ObjectKind::Layer,
        &layer.id,
        &layer.big_data.big_data_names,
    )
    .await?;
    Ok(true)
}

/// The creation time an image or container copy carries from just after it is made
/// until everything of it is copied (no source records it: a missing time reads as 0).
const UNFINISHED: i64 = -1;

/// Whether this store holds `kind` `id` whole: every big-data item of the source there,
/// and the source's creation time, which replaces [`UNFINISHED`] last. One an
/// interruption left unfinished is removed.
async fn finished(
    ctx: &Context,
    op: &Op,
    kind: ObjectKind,
    id: &str,
    created: i64,
    keys: &[String],
) -> Result<bool> {
    if !present(ctx, kind, id).await? {
        return Ok(false);
    }
    let i = id.to_owned();
    let at = ctx
        .store
        .read(move |sql| catalog::db::names::created(sql, kind, &i))
        .await?;
    let have = ctx.store.big_data_list(kind, id).await?;
    let all_items = keys.iter().all(|k| have.iter().any(|h| &h.key == k));
    if at == Some(created) && created != UNFINISHED && all_items {
        return Ok(true);
    }
    eprintln!("migrate: {kind} {id} was left unfinished; copying it again");
    ctx.store
        .delete_any(op, id)
        .await
        .with_context(|| format!("remove the unfinished copy of {kind} {id}"))?;
    Ok(false)
}

/// Copies the big-data items of an image or container.
async fn copy_big_data(
    ctx: &Context,
    src: &CsStore,
    kind: ObjectKind,
    id: &str,
    keys: &[String],
) -> Result<()> {
    for key in keys {
        let path = src.root().join(CsStore::big_data_file(kind, id, key));
        let data = tokio::fs::read(&path).await.with_context(|| {
            format!(
                "read {kind} {id} big-data item {key:?} from {}",
                path.display()
            )
        })?;
        ctx.store
            .set_big_data(kind, id, key, data)
            .await
            .with_context(|| format!("copy {kind} {id} big-data item {key:?}"))?;
    }
    Ok(())
}

/// Copies one image; `false` when this store has it already.
async fn copy_image(ctx: &Context, op: &Op, src: &CsStore, image: &CsImage) -> Result<bool> {
    let created = created_seconds(image.created.as_deref());
    if finished(
        ctx,
        op,
        ObjectKind::Image,
        &image.id,
        created,
        &image.big_data.big_data_names,
    )
    .await?
    {
        eprintln!("migrate: image {} already here", image.id);
        return Ok(false);
    }
    eprintln!("migrate: image {}", image.id);
    ctx.store
        .create_image(
            image.layer.as_deref(),
            Some(&image.id),
            &image.names,
            image.metadata.as_deref().unwrap_or(""),
            image.digest.as_deref(),
        )
        .await
        .with_context(|| format!("copy image {}", image.id))?;
    let rest = async {
        ctx.store
            .set_created(ObjectKind::Image, &image.id, UNFINISHED)
            .await?;
        copy_big_data(
            ctx,
            src,
            ObjectKind::Image,
            &image.id,
            &image.big_data.big_data_names,
        )
        .await?;
        ctx.store
            .set_names_history(&image.id, &image.names_history)
            .await?;
        ctx.store
            .set_created(ObjectKind::Image, &image.id, created)
            .await?;
        anyhow::Ok(())
    };
    if let Err(e) = rest.await {
        if let Err(undo) = ctx.store.delete_any(op, &image.id).await {
            eprintln!("migrate: image {} left unfinished: {undo}", image.id);
        }
        return Err(e);
    }
    Ok(true)
}

/// Copies one container; `false` when this store has it already.
async fn copy_container(ctx: &Context, op: &Op, src: &CsStore, c: &CsContainer) -> Result<bool> {
    let created = created_seconds(c.created.as_deref());
    if finished(
        ctx,
        op,
        ObjectKind::Container,
        &c.id,
        created,
        &c.big_data.big_data_names,
    )
    .await?
    {
        eprintln!("migrate: container {} already here", c.id);
        return Ok(false);
    }
    eprintln!("migrate: container {}", c.id);
    let made = ctx
        .store
        .create_container_on_layer(
            op,
            &c.image,
            Some(&c.id),
            Some(&c.layer),
            &c.names,
            c.metadata.as_deref().unwrap_or(""),
        )
        .await
        .with_context(|| format!("copy container {}", c.id))?;
    let rest = async {
        ctx.store
            .set_created(ObjectKind::Container, &c.id, UNFINISHED)
            .await?;
        let Some(layer) = src.layer(&c.layer) else {
            bail!(
                "container {}'s layer {} is not in the source",
                c.id,
                c.layer
            );
        };
        // The changes, not the tar-split: a container's layer is written after it is made.
        let (op2, own) = (op.clone(), src.layer_diff(&layer.id));
        let lowers = lower_diffs(src, layer.parent.as_deref());
        let tar = ArchiveStream::spawn(move |pipe| {
            tar_engine::write_layer(&op2, &own, &lowers, &ExportOptions::default(), pipe).map(drop)
        })?;
        let report = ctx
            .store
            .apply_diff(op, &made.layer, Box::new(tar), None)
            .await
            .with_context(|| format!("copy the files of container {}", c.id))?;
        warn_lost(&format!("container {}", c.id), &report);
        copy_big_data(
            ctx,
            src,
            ObjectKind::Container,
            &c.id,
            &c.big_data.big_data_names,
        )
        .await?;
        ctx.store
            .set_created(ObjectKind::Container, &c.id, created)
            .await?;
        anyhow::Ok(())
    };
    if let Err(e) = rest.await {
        if let Err(undo) = ctx.store.delete_any(op, &c.id).await {
            eprintln!("migrate: container {} left unfinished: {undo}", c.id);
        }
        return Err(e);
    }
    Ok(true)
}
