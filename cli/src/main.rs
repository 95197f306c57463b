//! `strata`: parse the flags, open the store, dispatch. Each command lives in
//! [`commands`]; nothing else happens here.
#![forbid(unsafe_code)]

mod commands;
mod context;
mod cs_json;
mod flags;
mod output;
mod progress;

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{CommandFactory, FromArgMatches};
use serde::Serialize;
use storage_core::Op;

use catalog::NameChange;
use commands::big_data::{self, Verb};
use commands::{containers, image_stores, images, layers, migrate, objects, transfer, volumes};
use context::Context;
use flags::{Command, Flags, VolumeCommand};
use storage_core::ObjectKind;

/// The hidden first argument that makes `strata` a block view server (see
/// [`disk_image::attach::Server`]): disk attachments re-execute `strata` with it so that a
/// block view outlives the command that attached it.
pub const SERVE_BLOCK_VIEW: &str = "serve-block-view";

fn main() -> ExitCode {
    // The server takes the registry's arguments as they are, before any flag parsing.
    let mut raw = std::env::args_os().skip(1);
    if raw.next().is_some_and(|first| first == SERVE_BLOCK_VIEW) {
        return disk_image::attach::serve(raw);
    }
    let matches = Flags::command().get_matches();
    let name = matches.subcommand_name().unwrap_or("strata").to_owned();
    let flags = match Flags::from_arg_matches(&matches) {
        Ok(f) => f,
        Err(e) => e.exit(),
    };
    if let Some(listed) = list(&flags) {
        return exit(listed);
    }
    let mut builder = if flags.command.moves_data() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    exit(runtime.block_on(run(flags, name)))
}

fn exit(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", output::failure(&e));
            ExitCode::FAILURE
        }
    }
}

/// Runs the listing commands, which read only catalogs, on this thread and without a
/// runtime; `None` for every other command, and for a listing of a store with unfinished
/// work, which opening the store finishes first.
fn list(flags: &Flags) -> Option<Result<()>> {
    enum Listed<'a> {
        Layers { json: bool },
        Layer { key: &'a str },
        Images { json: bool, quiet: bool },
        Containers { json: bool },
    }
    let what = match &flags.command {
        Command::Layers { json, tree: false } => Listed::Layers { json: *json },
        // Its JSON is the catalog's record alone; the plain form adds the driver's.
        Command::Layer { id, json: true } => Listed::Layer { key: id },
        Command::Images { json, quiet } => Listed::Images {
            json: *json,
            quiet: *quiet,
        },
        Command::Containers { json } => Listed::Containers { json: *json },
        _ => return None,
    };
    let listing = match context::open_listing(flags) {
        Ok(Some(l)) => l,
        Ok(None) => return None,
        Err(e) => return Some(Err(e)),
    };
    let listed = || -> Result<()> {
        match what {
            Listed::Layers { json } => layers::print_listing(&listing, json),
            Listed::Layer { key } => layers::print_json(&listing.layer(key)?),
            Listed::Images { json, quiet } => images::print(&listing.images()?, json, quiet),
            Listed::Containers { json } => containers::print(&listing.containers()?, json),
        }
    };
    Some(listed())
}

#[derive(Serialize)]
struct BackendOut {
    id: &'static str,
    scheme: &'static str,
    summary: &'static str,
    layers: bool,
    volumes: bool,
    local_root: bool,
    vm_disks: bool,
    max_depth: Option<usize>,
}

async fn run(flags: Flags, name: String) -> Result<()> {
    if let Command::Version { json } = flags.command {
        let version = env!("CARGO_PKG_VERSION");
        return if json {
            output::json(&serde_json::json!({ "Version": version }))
        } else {
            println!("Version: {version}");
            Ok(())
        };
    }
    if let Command::Backends { json } = flags.command {
        let all: Vec<BackendOut> = registry::backends()
            .iter()
            .map(|d| BackendOut {
                id: d.name,
                scheme: d.scheme,
                summary: d.summary,
                layers: d.capabilities.layers,
                volumes: d.capabilities.volumes,
                local_root: d.capabilities.local_root,
                vm_disks: d.capabilities.vm_disks,
                max_depth: d.capabilities.max_depth,
            })
            .collect();
        if json {
            output::json(&all)?;
        } else {
            for b in all {
                println!("{}\t{}://\t{}", b.id, b.scheme, b.summary);
            }
        }
        return Ok(());
    }
    let op = Op::new(&name);
    if let Command::Volume { command } = &flags.command {
        let opened = context::open_volumes(&flags).await?;
        let vols = opened.storer.as_ref();
        return match command {
            VolumeCommand::Create { id, opts } => volumes::create(vols, &op, id, opts).await,
            VolumeCommand::Ls { json } => volumes::list(vols, &op, *json).await,
            VolumeCommand::Rm { id } => volumes::remove(&opened, &op, id).await,
            VolumeCommand::Import { id, file } => volumes::import(vols, &op, id, file).await,
            VolumeCommand::Stat { id, path, json } => {
                volumes::stat(vols, &op, id, path, *json).await
            }
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
            id,
            from_file,
            file,
        } => {
            let (file, parent) = layers::import_shape(
                &ctx,
                from_file.as_deref(),
                file.as_deref(),
                parent.as_deref(),
            )
            .await?;
            let new = catalog::LayerSpec {
                id: id.as_deref(),
                parent: parent.as_deref(),
                names,
                tar_digest: None,
            };
            layers::import(&ctx, &op, new, sum.clone(), &file).await
        }
        Command::Pull {
            names,
            platform,
            source,
        } => transfer::pull(&ctx, &op, source, names, platform.as_deref()).await,
        Command::Migrate { from, from_run } => {
            migrate::migrate(&ctx, &op, from, from_run.as_deref()).await
        }
        Command::Push {
            compress,
            image,
            dest,
        } => transfer::push(&ctx, &op, image, dest, compress).await,
        Command::CreateLayer {
            parent_flag,
            rw,
            names,
            parent,
        } => {
            let parent = parent.as_deref().or(parent_flag.as_deref());
            layers::create(&ctx, &op, parent, *rw, names).await
        }
        Command::Applydiff {
            id,
            from_file,
            file,
        } => layers::apply(&ctx, &op, id, from_file.as_deref().unwrap_or(file)).await,
        Command::Mount {
            ids,
            read_only,
            json,
        } => layers::mount(&ctx, &op, ids, *read_only, *json).await,
        Command::LayerDisks { id, json } => layers::disks(&ctx, &op, id, *json).await,
        Command::Unmount { id } => layers::unmount(&ctx, &op, id).await,
        Command::Diff {
            id,
            reference,
            from,
            filter,
            no_data,
            output,
            gzip,
            uncompressed: _,
        } => {
            let from = reference.as_deref().or(from.as_deref());
            let to = layers::DiffOutput {
                file: output.as_deref(),
                gzip: *gzip,
            };
            layers::diff(&ctx, &op, id, from, filter, *no_data, to).await
        }
        Command::Changes { id, from, json } => {
            layers::changes(&ctx, &op, id, from.as_deref(), *json).await
        }
        Command::Diffsize { id, from } => layers::diff_size(&ctx, &op, id, from.as_deref()).await,
        Command::DeleteLayer { ids } => layers::delete(&ctx, &op, ids).await,
        Command::Mounted { ids, json } => layers::mounted(&ctx, &op, ids, *json).await,
        Command::Copy { paths } => layers::copy(&ctx, &op, paths).await,
        Command::LayerParentOwners { ids, json } => {
            layers::parent_owners(&ctx, ids, ObjectKind::Layer, *json).await
        }
        Command::ContainerParentOwners { ids, json } => {
            layers::parent_owners(&ctx, ids, ObjectKind::Container, *json).await
        }
        Command::Layer { id, json } => layers::show(&ctx, &op, id, *json).await,
        Command::Status { json } => status(&ctx, &op, *json).await,
        Command::Attachments { json } => attachments(&ctx, *json).await,
        Command::Cleanup => Ok(ctx.store.driver().cleanup(&op).await?),
        Command::Check { repair, json } => objects::check(&ctx, &op, *repair, *json).await,
        Command::Backends { .. } | Command::Volume { .. } | Command::Version { .. } => Ok(()),
        Command::Layers { tree: true, .. } => layers::print_tree(&ctx.store.layers().await?),
        Command::Layers { json, .. } => layers::print(&ctx.store.layers().await?, *json),
        Command::Images { json, quiet } => images::print(&ctx.store.images().await?, *json, *quiet),
        Command::Containers { json } => containers::print(&ctx.store.containers().await?, *json),
        Command::CreateImage {
            layer,
            id,
            names,
            digest,
            metadata,
        } => {
            images::create(
                &ctx,
                layer.as_deref(),
                id.as_deref(),
                names,
                digest.as_deref(),
                metadata,
            )
            .await
        }
        Command::CreateContainer {
            image,
            volumes,
            id,
            names,
            metadata,
        } => {
            let c = containers::NewContainer {
                image,
                volumes,
                id: id.as_deref(),
                names,
                metadata,
            };
            containers::create(&ctx, &op, c).await
        }
        Command::Image { ids, json } => images::show(&ctx, ids, *json).await,
        Command::ImagesByDigest {
            digest,
            json,
            quiet,
        } => images::by_digest(&ctx, digest, *json, *quiet).await,
        Command::Container { ids, json } => containers::show(&ctx, ids, *json).await,
        Command::Exists {
            ids,
            layer,
            image,
            container,
            json,
            quiet,
        } => {
            let only = match (layer, image, container) {
                (true, _, _) => Some(ObjectKind::Layer),
                (_, true, _) => Some(ObjectKind::Image),
                (_, _, true) => Some(ObjectKind::Container),
                _ => None,
            };
            objects::exists(&ctx, ids, only, *json, *quiet).await
        }
        Command::DeleteImage { ids, test, json } => {
            images::delete(&ctx, &op, ids, *test, *json).await
        }
        Command::DeleteContainer { ids } => containers::delete(&ctx, &op, ids).await,
        Command::Delete { ids } => objects::delete(&ctx, &op, ids).await,
        Command::Wipe => objects::wipe(&ctx, &op).await,
        Command::Shutdown { force } => objects::shutdown(&ctx, &op, *force).await,
        Command::Metadata { ids, json, quiet } => {
            objects::show_metadata(&ctx, ids, *json, *quiet).await
        }
        Command::SetMetadata { id, metadata } => objects::set_metadata(&ctx, id, metadata).await,
        Command::GetNames { id, json } => objects::get_names(&ctx, id, *json).await,
        Command::AddNames(a) => objects::change_names(&ctx, a, NameChange::Add).await,
        Command::SetNames(a) => objects::change_names(&ctx, a, NameChange::Set).await,
        Command::RemoveNames(a) => objects::change_names(&ctx, a, NameChange::Remove).await,
        Command::ListLayerData(a) => big_data::list(&ctx, ObjectKind::Layer, a).await,
        Command::GetLayerData(a) => big_data::run(&ctx, ObjectKind::Layer, Verb::Get, a).await,
        Command::SetLayerData(a) => big_data::run(&ctx, ObjectKind::Layer, Verb::Set, a).await,
        Command::ListImageData(a) => big_data::list(&ctx, ObjectKind::Image, a).await,
        Command::GetImageData(a) => big_data::run(&ctx, ObjectKind::Image, Verb::Get, a).await,
        Command::SetImageData(a) => big_data::run(&ctx, ObjectKind::Image, Verb::Set, a).await,
        Command::GetImageDataSize(a) => big_data::run(&ctx, ObjectKind::Image, Verb::Size, a).await,
        Command::GetImageDataDigest(a) => {
            big_data::run(&ctx, ObjectKind::Image, Verb::Digest, a).await
        }
        Command::ListContainerData(a) => big_data::list(&ctx, ObjectKind::Container, a).await,
        Command::GetContainerData(a) => {
            big_data::run(&ctx, ObjectKind::Container, Verb::Get, a).await
        }
        Command::SetContainerData(a) => {
            big_data::run(&ctx, ObjectKind::Container, Verb::Set, a).await
        }
        Command::GetContainerDataSize(a) => {
            big_data::run(&ctx, ObjectKind::Container, Verb::Size, a).await
        }
        Command::GetContainerDataDigest(a) => {
            big_data::run(&ctx, ObjectKind::Container, Verb::Digest, a).await
        }
        Command::GetContainerDir { id } => containers::dir(&ctx, id, false).await,
        Command::GetContainerRunDir { id } => containers::dir(&ctx, id, true).await,
        Command::ImageStore(cmd) => image_stores::image_store(&ctx, &op, cmd).await,
        Command::WriteImage {
            id,
            parent,
            image_store,
            meta,
            sum,
            file,
            json,
        } => {
            let w = image_stores::WriteImage {
                store: image_store,
                id,
                parent,
                meta,
                sum: sum.as_deref(),
                file,
                json: *json,
            };
            image_stores::write_image(&ctx, &op, w).await
        }
        Command::DeleteBranch {
            id,
            image_store,
            keep,
            json,
        } => image_stores::delete_branch(&ctx, &op, image_store, id, keep, *json).await,
        Command::Export {
            id,
            image_store,
            ancestor,
            filter,
            no_data,
        } => {
            image_stores::export(
                &ctx,
                &op,
                image_store,
                id,
                ancestor.as_deref(),
                filter,
                *no_data,
            )
            .await
        }
        Command::Stat {
            path,
            id,
            image_store,
            json,
        } => image_stores::stat(&ctx, &op, image_store, path, id, *json).await,
    }
}

/// `status`: containers-storage's pairs (`Root`, `Run Root`, `Driver Name`, `Driver
/// Options`, then the driver's), then strata's own: the store, its URL, volumes, the
/// `storage.conf` in effect and what of it strata does not read, and how many disks are
/// attached in its run root (listed by `attachments`).
async fn status(ctx: &Context, op: &Op, json: bool) -> Result<()> {
    let mut facts = vec![
        // Where this store's catalog is: its own directory for a local store, `--root`
        // for a remote one; not the default root when the store is named elsewhere.
        ("Root".to_owned(), ctx.store.root().display().to_string()),
        (
            "Run Root".to_owned(),
            ctx.paths.run_root.display().to_string(),
        ),
        (
            "Driver Name".to_owned(),
            ctx.store.driver().name().to_owned(),
        ),
        (
            "Driver Options".to_owned(),
            format!("[{}]", ctx.options.join(" ")),
        ),
    ];
    facts.extend(ctx.store.driver().status(op).await?);
    facts.push(("Store".to_owned(), ctx.name.clone()));
    facts.push(("URL".to_owned(), ctx.url.clone()));
    let volumes = if ctx.backend.volumes.is_some() {
        "yes"
    } else {
        "no"
    };
    facts.push(("Volumes".to_owned(), volumes.into()));
    let conf = match &ctx.paths.storage_conf {
        Some(c) => c.path.display().to_string(),
        None => "none".to_owned(),
    };
    facts.push(("Storage Conf".to_owned(), conf));
    if !ctx.paths.conf_unread.is_empty() {
        let unread = ctx.paths.conf_unread.join(", ");
        facts.push(("Storage Conf Unread".to_owned(), unread));
    }
    let attachments = attachment_list(ctx).await?;
    facts.push(("Attachments".to_owned(), attachments.len().to_string()));
    if json {
        return output::json(&facts);
    }
    for (k, v) in facts {
        println!("{k}: {v}");
    }
    print_attachments(&attachments);
    Ok(())
}

/// Disks attached as block devices in this store's run root, by whatever attached them.
async fn attachment_list(ctx: &Context) -> Result<Vec<disk_image::attach::Attachment>> {
    let registry = storage_core::run_root::attachments_in(&ctx.paths.run_root);
    tokio::task::spawn_blocking(move || disk_image::attach::Attachments::list_in(&registry))
        .await
        .context("attachment listing")?
        .context("list attachments")
}

/// One line each: device, format, mode, users, server and the top disk.
fn print_attachments(attachments: &[disk_image::attach::Attachment]) {
    for a in attachments {
        let served = a.server.map_or("loop device only".to_string(), |s| {
            format!("server pid {}", s.pid)
        });
        let mode = if a.read_only { "ro" } else { "rw" };
        let problem = a
            .problem
            .as_ref()
            .map_or(String::new(), |p| format!(" (broken: {p})"));
        println!(
            "  {} {} {mode}, {} user(s), {served}: {}{problem}",
            a.device.display(),
            a.format,
            a.refs,
            a.top.display()
        );
    }
}

/// `attachments`: the disks attached in this store's run root.
async fn attachments(ctx: &Context, json: bool) -> Result<()> {
    let attachments = attachment_list(ctx).await?;
    if json {
        return output::json(&attachments);
    }
    print_attachments(&attachments);
    Ok(())
}
