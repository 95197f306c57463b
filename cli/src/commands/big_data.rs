//! Big-data commands: `{list,get,set}-{layer,image,container}-data` and
//! `get-{image,container}-data-{size,digest}`.

use std::io::{Read, Write};

use anyhow::{Context as _, Result};
use storage_core::ObjectKind;

use crate::context::Context;
use crate::flags::{DataArgs, ListDataArgs};
use crate::output;

/// What a big-data command does.
#[derive(Debug, Clone, Copy)]
pub enum Verb {
    /// Write the item's bytes out.
    Get,
    /// Read the item's bytes in.
    Set,
    /// Print its size.
    Size,
    /// Print its digest.
    Digest,
}

/// `list-*-data`.
pub async fn list(ctx: &Context, kind: ObjectKind, args: &ListDataArgs) -> Result<()> {
    let items = ctx.store.big_data_list(kind, &args.id).await?;
    if args.json {
        // containers-storage lists the names; sizes and digests have their own verbs.
        return output::json(&items.iter().map(|i| &i.key).collect::<Vec<_>>());
    }
    for i in &items {
        println!("{}", i.key);
    }
    Ok(())
}

/// `get-*-data`, `set-*-data`, `get-*-data-size`, `get-*-data-digest`.
pub async fn run(ctx: &Context, kind: ObjectKind, verb: Verb, args: &DataArgs) -> Result<()> {
    let what = || format!("{kind} {} item {:?}", args.id, args.key);
    match verb {
        Verb::Get => {
            let data = ctx.store.big_data(kind, &args.id, &args.key).await?;
            match &args.file {
                Some(f) => tokio::fs::write(f, &data)
                    .await
                    .with_context(|| format!("write {}", f.display()))?,
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&data)
                        .and_then(|()| out.flush())
                        .map_err(output::write_error)?;
                }
            }
        }
        Verb::Set => {
            let data = match &args.file {
                Some(f) => tokio::fs::read(f)
                    .await
                    .with_context(|| format!("read {}", f.display()))?,
                None => tokio::task::spawn_blocking(|| {
                    let mut buf = Vec::new();
                    std::io::stdin().read_to_end(&mut buf).map(|_| buf)
                })
                .await
                .context("standard input reader")?
                .context("read standard input")?,
            };
            ctx.store
                .set_big_data(kind, &args.id, &args.key, data)
                .await
                .with_context(what)?;
        }
        Verb::Size => {
            let info = ctx.store.big_data_info(kind, &args.id, &args.key).await?;
            println!("{}", info.size);
        }
        Verb::Digest => {
            let info = ctx.store.big_data_info(kind, &args.id, &args.key).await?;
            println!("{}", info.digest);
        }
    }
    Ok(())
}
