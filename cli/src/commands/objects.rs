//! Commands that take a layer, an image or a container alike: exists, delete, metadata,
//! names; and the whole-store ones: wipe, shutdown, check.

use anyhow::{Context as _, Result, bail};
use catalog::{NameChange, ProblemKind};
use serde::Serialize;
use storage_core::{Error, ObjectKind, Op};

use crate::commands::metadata;
use crate::context::Context;
use crate::flags::{MetadataFlags, NamesArgs};
use crate::output;

#[derive(Serialize)]
struct Found {
    id: String,
    kind: Option<ObjectKind>,
    exists: bool,
}

/// `exists [-l|-i|-c] ID...`: fails when any is missing (or of another kind).
pub async fn exists(
    ctx: &Context,
    ids: &[String],
    only: Option<ObjectKind>,
    json: bool,
    quiet: bool,
) -> Result<()> {
    let mut found = Vec::new();
    for id in ids {
        let kind = match only {
            Some(kind) => {
                let found = match kind {
                    ObjectKind::Layer => ctx.store.layer(id).await.map(drop),
                    ObjectKind::Image => ctx.store.image(id).await.map(drop),
                    _ => ctx.store.container(id).await.map(drop),
                };
                match found {
                    Ok(()) => Some(kind),
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => return Err(e.into()),
                }
            }
            None => match ctx.store.read_visible(id, |_, _, _| Ok(())).await {
                Ok((kind, _, ())) => Some(kind),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
        };
        found.push(Found {
            id: id.clone(),
            kind,
            exists: kind.is_some(),
        });
    }
    if json {
        // containers-storage's shape: each name given, and whether it exists.
        let shaped: std::collections::BTreeMap<&str, bool> =
            found.iter().map(|f| (f.id.as_str(), f.exists)).collect();
        output::json(&shaped)?;
    } else if !quiet {
        for f in &found {
            println!("{}: {}", f.id, f.exists);
        }
    }
    if let Some(missing) = found.iter().find(|f| !f.exists) {
        bail!("{} does not exist", missing.id);
    }
    Ok(())
}

/// `delete ID...`.
pub async fn delete(ctx: &Context, op: &Op, ids: &[String]) -> Result<()> {
    for id in ids {
        let kind = ctx.store.delete_any(op, id).await?;
        println!("{id}: deleted {kind}");
    }
    Ok(())
}

/// `metadata ID...`.
pub async fn show_metadata(ctx: &Context, ids: &[String], json: bool, quiet: bool) -> Result<()> {
    let mut out = Vec::new();
    for key in ids {
        let (_, id, metadata) = ctx
            .store
            .read_visible(key, |c, kind, id| c.metadata(kind, id))
            .await?;
        out.push((key.as_str(), id, metadata));
    }
    if json {
        // containers-storage's shape: each name given, and its metadata.
        let shaped: std::collections::BTreeMap<&str, &str> =
            out.iter().map(|(key, _, m)| (*key, m.as_str())).collect();
        return output::json(&shaped);
    }
    for (_, id, metadata) in &out {
        if quiet {
            println!("{metadata}");
        } else {
            println!("{id}: {metadata}");
        }
    }
    Ok(())
}

/// `set-metadata ID`.
pub async fn set_metadata(ctx: &Context, key: &str, meta: &MetadataFlags) -> Result<()> {
    let (kind, id) = ctx.store.resolve_own(key).await?;
    let m = metadata(meta)?;
    ctx.store.db(move |c| c.set_metadata(kind, &id, &m)).await?;
    Ok(())
}

/// `get-names ID`.
pub async fn get_names(ctx: &Context, key: &str, json: bool) -> Result<()> {
    let (_, _, names) = ctx
        .store
        .read_visible(key, |c, kind, id| c.names(kind, id))
        .await?;
    print_names(key, &names, json)
}

/// `add-names`, `set-names`, `remove-names`.
pub async fn change_names(ctx: &Context, args: &NamesArgs, how: NameChange) -> Result<()> {
    let (kind, id) = ctx.store.resolve_own(&args.id).await?;
    let names = args.names.clone();
    let now = ctx
        .store
        .db(move |c| c.change_names(kind, &id, &names, how))
        .await?;
    print_names(&args.id, &now, args.json)
}

fn print_names(key: &str, names: &[String], json: bool) -> Result<()> {
    if json {
        return output::json(names);
    }
    println!("{key}: {names:?}");
    Ok(())
}

/// `wipe`.
pub async fn wipe(ctx: &Context, op: &Op) -> Result<()> {
    Ok(ctx.store.wipe(op).await?)
}

/// `shutdown [-f]`.
pub async fn shutdown(ctx: &Context, op: &Op, force: bool) -> Result<()> {
    for id in ctx.store.shutdown(op, force).await? {
        println!("unmounted {id}");
    }
    Ok(())
}

/// `check [--repair] [--json]`: prints what it checked and each problem (with what
/// `--repair` did about it); fails when a problem is left.
pub async fn check(ctx: &Context, op: &Op, repair: bool, json: bool) -> Result<()> {
    let mut report = ctx.store.check(op, repair).await?;
    let registry = storage_core::run_root::attachments_in(&ctx.paths.run_root);
    let broken = tokio::task::spawn_blocking(move || {
        disk_image::attach::Attachments::check_in(&registry, repair)
    })
    .await
    .context("attachment check")??;
    for p in broken {
        let how = p.repaired.then(|| "tore it down".to_string());
        report.add(
            ProblemKind::BrokenAttachment,
            p.disk.display().to_string(),
            p.detail,
            how,
        );
    }
    if json {
        output::json(&report)?;
    } else {
        println!(
            "checked {} layer(s) and {} big-data item(s): {} problem(s)",
            report.layers,
            report.big_data,
            report.problems.len()
        );
        for p in &report.problems {
            let kind = serde_json::to_value(p.kind)?;
            let kind = kind.as_str().unwrap_or("problem");
            match &p.repaired {
                Some(how) => println!("{kind}: {}: {} (repaired: {how})", p.object, p.detail),
                None => println!("{kind}: {}: {}", p.object, p.detail),
            }
        }
    }
    let left = report.unrepaired().count();
    if left > 0 {
        bail!(
            "{left} problem(s) left{}",
            if repair {
                " (damaged objects are reported, not deleted: delete them to repair)"
            } else {
                "; `strata check --repair` removes what nothing refers to and finishes what was left half-done"
            }
        );
    }
    Ok(())
}
