//! Image commands: create-image, images, image, images-by-digest, delete-image.

use std::io::Write;

use anyhow::Result;
use catalog::ImageRecord;
use storage_core::Op;

use crate::commands::metadata;
use crate::context::Context;
use crate::cs_json;
use crate::flags::MetadataFlags;
use crate::output;

/// `create-image`.
pub async fn create(
    ctx: &Context,
    layer: Option<&str>,
    id: Option<&str>,
    names: &[String],
    digest: Option<&str>,
    meta: &MetadataFlags,
) -> Result<()> {
    let image = ctx
        .store
        .create_image(layer, id, names, &metadata(meta)?, digest)
        .await?;
    println!("{}", image.id);
    Ok(())
}

fn print_line(out: &mut impl Write, image: &ImageRecord, quiet: bool) -> std::io::Result<()> {
    writeln!(out, "{}", image.id)?;
    if quiet {
        return Ok(());
    }
    for n in &image.names {
        writeln!(out, "\tname: {n}")?;
    }
    if let Some(d) = &image.digest {
        writeln!(out, "\tdigest: {d}")?;
    }
    Ok(())
}

/// Images in containers-storage's JSON shape.
fn shaped(images: &[ImageRecord]) -> Vec<cs_json::Image<'_>> {
    images.iter().map(cs_json::Image::from).collect()
}

/// `images`: prints the listing.
pub fn print(images: &[ImageRecord], json: bool, quiet: bool) -> Result<()> {
    if json {
        return output::json(&shaped(images));
    }
    let mut out = output::buffered();
    for i in images {
        print_line(&mut out, i, quiet).map_err(output::write_error)?;
    }
    output::finish(out)
}

/// `images-by-digest`.
pub async fn by_digest(ctx: &Context, digest: &str, json: bool, quiet: bool) -> Result<()> {
    let images = ctx.store.images_by_digest(digest).await?;
    if json {
        return output::json(&shaped(&images));
    }
    let mut out = output::buffered();
    for i in &images {
        print_line(&mut out, i, quiet).map_err(output::write_error)?;
    }
    output::finish(out)
}

/// `image ID...`.
pub async fn show(ctx: &Context, ids: &[String], json: bool) -> Result<()> {
    let mut images = Vec::new();
    for id in ids {
        images.push(ctx.store.image(id).await?);
    }
    if json {
        return output::json(&shaped(&images));
    }
    for i in &images {
        println!("ID: {}", i.id);
        for n in &i.names {
            println!("Name: {n}");
        }
        if let Some(l) = &i.top_layer {
            println!("Top Layer: {l}");
        }
        if let Some(d) = &i.digest {
            println!("Digest: {d}");
        }
        for b in &i.big_data {
            println!("Data: {} ({} bytes, {})", b.key, b.size, b.digest);
        }
    }
    Ok(())
}

/// `delete-image [--test]`.
pub async fn delete(ctx: &Context, op: &Op, ids: &[String], test: bool, json: bool) -> Result<()> {
    let mut done = Vec::new();
    for id in ids {
        done.push(ctx.store.delete_image(op, id, test).await?);
    }
    if json {
        // containers-storage's shape: by the name given, the layers that went with it.
        let shaped: std::collections::BTreeMap<&str, serde_json::Value> = ids
            .iter()
            .zip(&done)
            .map(|(key, d)| {
                (
                    key.as_str(),
                    serde_json::json!({ "deleted-layers": d.layers }),
                )
            })
            .collect();
        return output::json(&shaped);
    }
    for d in &done {
        let verb = if test { "would remove" } else { "removed" };
        println!("{}", d.image);
        for l in &d.layers {
            println!("\t{verb} layer {l}");
        }
    }
    Ok(())
}
