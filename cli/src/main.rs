//! `strata`: parse the flags, open the store, dispatch. Each command lives in
//! [`commands`]; nothing else happens here.
#![forbid(unsafe_code)]

mod commands;
mod context;
mod flags;
mod progress;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use serde::Serialize;
use storage_core::Op;

use commands::{layers, volumes};
use context::Context;
use flags::{Command, Flags, VolumeCommand};

fn main() -> ExitCode {
    let flags = Flags::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Serialize)]
struct BackendOut {
    id: &'static str,
    scheme: &'static str,
    summary: &'static str,
    layers: bool,
    volumes: bool,
}

async fn run(flags: Flags) -> Result<()> {
    if let Command::Backends { json } = flags.command {
        let all: Vec<BackendOut> = registry::backends()
            .iter()
            .map(|d| BackendOut {
                id: d.name,
                scheme: d.scheme,
                summary: d.summary,
                layers: d.capabilities.layers,
                volumes: d.capabilities.volumes,
            })
            .collect();
        if json {
            println!("{}", serde_json::to_string_pretty(&all)?);
        } else {
            for b in all {
                println!("{}\t{}://\t{}", b.id, b.scheme, b.summary);
            }
        }
        return Ok(());
    }
    let op = Op::new(command_name(&flags.command));
    if let Command::Volume { command } = &flags.command {
        let vols = context::open_volumes(&flags)?;
        let vols = vols.as_ref();
        return match command {
            VolumeCommand::Create { id, opts } => volumes::create(vols, &op, id, opts).await,
            VolumeCommand::Ls { json } => volumes::list(vols, &op, *json).await,
            VolumeCommand::Rm { id } => volumes::remove(vols, &op, id).await,
            VolumeCommand::Import { id, file } => volumes::import(vols, &op, id, file).await,
            VolumeCommand::Export {
                id,
                filter,
                no_data,
            } => volumes::export(vols, &op, id, filter, *no_data).await,
        };
    }
    let ctx = Context::open(&flags, &op).await?;
    match &flags.command {
        Command::ImportLayer {
            parent,
            sum,
            names,
            file,
        } => layers::import(&ctx, &op, parent.as_deref(), names, sum.clone(), file).await,
        Command::CreateLayer { parent, rw, names } => {
            layers::create(&ctx, &op, parent.as_deref(), *rw, names).await
        }
        Command::Applydiff { id, file } => layers::apply(&ctx, &op, id, file).await,
        Command::Mount { id, read_only } => layers::mount(&ctx, &op, id, *read_only).await,
        Command::Unmount { id } => layers::unmount(&ctx, &op, id).await,
        Command::Diff {
            id,
            from,
            filter,
            no_data,
        } => layers::diff(&ctx, &op, id, from.as_deref(), filter, *no_data).await,
        Command::Changes { id, from, json } => {
            layers::changes(&ctx, &op, id, from.as_deref(), *json).await
        }
        Command::Diffsize { id, from } => layers::diff_size(&ctx, &op, id, from.as_deref()).await,
        Command::DeleteLayer { id } => layers::delete(&ctx, &op, id).await,
        Command::Layers { json } => layers::list(&ctx, *json).await,
        Command::Layer { id, json } => layers::show(&ctx, &op, id, *json).await,
        Command::Status { json } => status(&ctx, &op, *json).await,
        Command::Cleanup => Ok(ctx.layers.driver().cleanup(&op).await?),
        Command::Backends { .. } | Command::Volume { .. } => Ok(()),
    }
}

async fn status(ctx: &Context, op: &Op, json: bool) -> Result<()> {
    let mut facts = vec![
        ("Store".to_owned(), ctx.paths.store.clone()),
        ("Driver".to_owned(), ctx.layers.driver().name().to_owned()),
        ("Root".to_owned(), ctx.paths.root.display().to_string()),
    ];
    facts.extend(ctx.layers.driver().status(op).await?);
    facts.push((
        "Volumes".to_owned(),
        if ctx.backend.volumes.is_some() {
            "yes".into()
        } else {
            "no".into()
        },
    ));
    if json {
        let map: serde_json::Map<String, serde_json::Value> = facts
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        println!("{}", serde_json::to_string_pretty(&map)?);
    } else {
        for (k, v) in facts {
            println!("{k}: {v}");
        }
    }
    Ok(())
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::ImportLayer { .. } => "import-layer",
        Command::CreateLayer { .. } => "create-layer",
        Command::Applydiff { .. } => "applydiff",
        Command::Mount { .. } => "mount",
        Command::Unmount { .. } => "unmount",
        Command::Diff { .. } => "diff",
        Command::Changes { .. } => "changes",
        Command::Diffsize { .. } => "diffsize",
        Command::DeleteLayer { .. } => "delete-layer",
        Command::Layers { .. } => "layers",
        Command::Layer { .. } => "layer",
        Command::Status { .. } => "status",
        Command::Backends { .. } => "backends",
        Command::Cleanup => "cleanup",
        Command::Volume { command } => match command {
            VolumeCommand::Create { .. } => "volume-create",
            VolumeCommand::Ls { .. } => "volume-ls",
            VolumeCommand::Rm { .. } => "volume-rm",
            VolumeCommand::Import { .. } => "volume-import",
            VolumeCommand::Export { .. } => "volume-export",
        },
    }
}
