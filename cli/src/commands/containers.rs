//! Container commands: create-container, containers, container, delete-container and the
//! container directories.

use std::io::Write;

use anyhow::{Context as _, Result, anyhow};
use catalog::ContainerRecord;
use catalog::image_store::VolumeLookupCache;
use storage_core::Op;

use crate::commands::metadata;
use crate::context::Context;
use crate::cs_json;
use crate::flags::MetadataFlags;
use crate::output;

/// What `create-container` takes from the command line.
pub struct NewContainer<'a> {
    /// The image.
    pub image: &'a str,
    /// Volumes of this store it uses.
    pub volumes: &'a [String],
    /// Its id, if given.
    pub id: Option<&'a str>,
    /// Its names.
    pub names: &'a [String],
    /// Its metadata.
    pub metadata: &'a MetadataFlags,
}

/// `create-container`. The volumes it uses must exist first; if recording a use fails,
/// the container goes again.
pub async fn create(ctx: &Context, op: &Op, new: NewContainer<'_>) -> Result<()> {
    let cache = VolumeLookupCache::new(ctx.store.catalog());
    if !new.volumes.is_empty() {
        let storer = ctx.backend.volumes.clone().ok_or_else(|| {
            anyhow!(
                "store {} holds no volumes, so --volume cannot name one",
                ctx.name
            )
        })?;
        cache.add_store(op, &ctx.name, storer).await?;
        for v in new.volumes {
            cache.volume_get(&ctx.name, v)?;
        }
    }
    let top = ctx.store.image(new.image).await?.top_layer;
    ctx.check_depth(top.as_deref()).await?;
    let c = ctx
        .store
        .create_container(op, new.image, new.id, new.names, &metadata(new.metadata)?)
        .await?;
    for v in new.volumes {
        if let Err(e) = cache.join(&c.id, &ctx.name, v).await {
            ctx.store.delete_container(op, &c.id).await?;
            return Err(e)
                .with_context(|| format!("record that container {} uses volume {v}", c.id));
        }
    }
    println!("{}", c.id);
    Ok(())
}

/// `containers`: prints the listing.
pub fn print(all: &[ContainerRecord], json: bool) -> Result<()> {
    if json {
        return output::json(&all.iter().map(cs_json::Container::from).collect::<Vec<_>>());
    }
    let mut out = output::buffered();
    let line = |out: &mut dyn Write, c: &ContainerRecord| -> std::io::Result<()> {
        writeln!(out, "{}", c.id)?;
        for n in &c.names {
            writeln!(out, "\tname: {n}")?;
        }
        Ok(())
    };
    for c in all {
        line(&mut out, c).map_err(output::write_error)?;
    }
    output::finish(out)
}

/// `container ID...`.
pub async fn show(ctx: &Context, ids: &[String], json: bool) -> Result<()> {
    let mut all = Vec::new();
    for id in ids {
        all.push(ctx.store.container(id).await?);
    }
    if json {
        return output::json(&all.iter().map(cs_json::Container::from).collect::<Vec<_>>());
    }
    for c in &all {
        println!("ID: {}", c.id);
        for n in &c.names {
            println!("Name: {n}");
        }
        println!("Image: {}", c.image);
        println!("Layer: {}", c.layer);
        for b in &c.big_data {
            println!("Data: {} ({} bytes, {})", b.key, b.size, b.digest);
        }
    }
    Ok(())
}

/// `delete-container ID...`.
pub async fn delete(ctx: &Context, op: &Op, ids: &[String]) -> Result<()> {
    for id in ids {
        ctx.store.delete_container(op, id).await?;
    }
    Ok(())
}

/// `get-container-dir` and `get-container-run-dir`.
pub async fn dir(ctx: &Context, id: &str, run: bool) -> Result<()> {
    let path = if run {
        ctx.store.container_run_dir(id).await?
    } else {
        ctx.store.container_dir(id).await?
    };
    println!("{}", path.display());
    Ok(())
}
