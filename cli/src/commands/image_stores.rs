//! Port-layer commands: image-store, write-image, delete-branch, export, stat.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use catalog::image_store::{ImageStorer, NameLookupCache, NewImage};
use storage_core::Op;

use crate::commands::layers::{done, filter_spec, input, write_stream};
use crate::context::Context;
use crate::flags::{FilterFlags, ImageStoreCommand};
use crate::output;

async fn cache(ctx: &Context, op: &Op) -> Result<NameLookupCache> {
    let storer: Arc<dyn ImageStorer> = ctx.store.clone();
    Ok(NameLookupCache::open(op, storer).await?)
}

/// `image-store create|list|rm|images`.
pub async fn image_store(ctx: &Context, op: &Op, cmd: &ImageStoreCommand) -> Result<()> {
    let cache = cache(ctx, op).await?;
    match cmd {
        ImageStoreCommand::Create { name } => {
            println!("{}", cache.create_image_store(op, name).await?);
        }
        ImageStoreCommand::List { json } => {
            let urls: Vec<String> = cache
                .list_image_stores(op)
                .await?
                .iter()
                .map(|u| u.to_string())
                .collect();
            if *json {
                let out: Vec<serde_json::Value> = urls
                    .iter()
                    .map(|u| {
                        let id = u.rsplit('/').next().unwrap_or(u);
                        serde_json::json!({ "id": id, "url": u })
                    })
                    .collect();
                output::json(&out)?;
            } else {
                for u in urls {
                    println!("{u}");
                }
            }
        }
        ImageStoreCommand::Rm { name } => cache.delete_image_store(op, name).await?,
        ImageStoreCommand::Images { name, json } => {
            let images = cache.list_images(op, name, &[]).await?;
            if *json {
                output::json(&images)?;
            } else {
                for i in images {
                    println!("{}\t{}", i.id, i.parent.unwrap_or_default());
                }
            }
        }
    }
    Ok(())
}

/// Parses `KEY=VALUE` metadata flags.
fn meta(pairs: &[String]) -> Result<BTreeMap<String, Vec<u8>>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.as_bytes().to_vec())),
            _ => bail!("--meta must be KEY=VALUE, got {p:?}"),
        })
        .collect()
}

/// Everything `write-image` takes from the command line.
pub struct WriteImage<'a> {
    /// The image store.
    pub store: &'a str,
    /// The new image's id.
    pub id: &'a str,
    /// Its parent.
    pub parent: &'a str,
    /// `KEY=VALUE` metadata.
    pub meta: &'a [String],
    /// The sum the stream must have.
    pub sum: Option<&'a str>,
    /// The tar file or `-`.
    pub file: &'a str,
    /// Print JSON.
    pub json: bool,
}

/// `write-image`.
pub async fn write_image(ctx: &Context, op: &Op, w: WriteImage<'_>) -> Result<()> {
    let cache = cache(ctx, op).await?;
    let image = NewImage {
        id: w.id.to_owned(),
        parent: w.parent.to_owned(),
        metadata: meta(w.meta)?,
        sum: w.sum.map(str::to_owned),
    };
    let (tar, bar) = input(w.file, "writing image").await?;
    let result = cache.write_image(op, w.store, image, tar).await;
    done(bar);
    let image = result.with_context(|| format!("write image {} from {}", w.id, w.file))?;
    if w.json {
        return output::json(&image);
    }
    println!(
        "{}",
        storage_core::ObjectUrl::image(&image.store, &image.id)
    );
    Ok(())
}

/// `delete-branch`.
pub async fn delete_branch(
    ctx: &Context,
    op: &Op,
    store: &str,
    id: &str,
    keep: &[String],
    json: bool,
) -> Result<()> {
    let cache = cache(ctx, op).await?;
    let deleted = cache.delete_branch(op, store, id, keep).await?;
    if json {
        return output::json(&deleted);
    }
    for d in deleted {
        println!("{d}");
    }
    Ok(())
}

/// `export`.
pub async fn export(
    ctx: &Context,
    op: &Op,
    store: &str,
    id: &str,
    ancestor: Option<&str>,
    filter: &FilterFlags,
    no_data: bool,
) -> Result<()> {
    let stream = ctx
        .store
        .export_image(op, store, id, ancestor, &filter_spec(filter), !no_data)
        .await?;
    write_stream(stream)
        .await
        .with_context(|| format!("export image {id} of image store {store}"))
}

/// `stat PATH ID`.
pub async fn stat(
    ctx: &Context,
    op: &Op,
    store: &str,
    path: &str,
    id: &str,
    json: bool,
) -> Result<()> {
    let st = ctx.store.stat_image_path(op, store, id, path).await?;
    crate::commands::volumes::print_stat(&st, json)
}
