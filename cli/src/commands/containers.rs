//! Container commands: create-container, containers, container, delete-container and the
//! container directories.

use anyhow::Result;
use storage_core::Op;

use crate::commands::metadata;
use crate::context::Context;
use crate::flags::MetadataFlags;
use crate::output;

/// `create-container`.
pub async fn create(
    ctx: &Context,
    op: &Op,
    image: &str,
    id: Option<&str>,
    names: &[String],
    meta: &MetadataFlags,
) -> Result<()> {
    let c = ctx
        .store
        .create_container(op, image, id, names, &metadata(meta)?)
        .await?;
    println!("{}", c.id);
    Ok(())
}

/// `containers`.
pub async fn list(ctx: &Context, json: bool) -> Result<()> {
    let all = ctx.store.containers().await?;
    if json {
        return output::json(&all);
    }
    for c in &all {
        println!("{}", c.id);
        for n in &c.names {
            println!("\tname: {n}");
        }
    }
    Ok(())
}

/// `container ID...`.
pub async fn show(ctx: &Context, ids: &[String], json: bool) -> Result<()> {
    let mut all = Vec::new();
    for id in ids {
        all.push(ctx.store.container(id).await?);
    }
    if json {
        return output::json(&all);
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
