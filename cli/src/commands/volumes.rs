//! Volume commands: create, ls, rm, import, export, stat. They use only the store's volume face,
//! so they work the same on every store that has volumes (overlay, nfs).

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use storage_core::{FileStat, FilterSpec, Op, VolumeStorer};

use crate::commands::layers::{done, filter_spec, input, write_stream};
use crate::context::Volumes;
use crate::flags::FilterFlags;
use crate::output;

/// `volume create ID [--opt KEY=VALUE]...`.
pub async fn create(vols: &dyn VolumeStorer, op: &Op, id: &str, opts: &[String]) -> Result<()> {
    let mut info = BTreeMap::new();
    for o in opts {
        let Some((k, v)) = o.split_once('=') else {
            bail!("--opt {o:?}: expected KEY=VALUE");
        };
        info.insert(k.to_owned(), v.as_bytes().to_vec());
    }
    let v = vols
        .volume_create(op, id, 0, info)
        .await
        .with_context(|| format!("create volume {id}"))?;
    println!("{}", v.id);
    Ok(())
}

#[derive(Serialize)]
struct VolumeOut {
    id: String,
    info: BTreeMap<String, String>,
}

/// `volume ls [--json]`. A volume that cannot be read is reported on standard error, and
/// the listing goes on; the command then fails.
pub async fn list(vols: &dyn VolumeStorer, op: &Op, json: bool) -> Result<()> {
    let mut out = Vec::new();
    let mut broken = 0;
    for v in vols.volumes_list(op).await? {
        match v {
            Ok(v) => out.push(VolumeOut {
                id: v.id,
                info: v
                    .info
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect(),
            }),
            Err(e) => {
                broken += 1;
                eprintln!("strata: {}", storage_core::Report(&e));
            }
        }
    }
    if json {
        output::json(&out)?;
    } else {
        for v in &out {
            let info: Vec<String> = v.info.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("{}\t{}", v.id, info.join(","));
        }
    }
    if broken > 0 {
        bail!("{broken} volume(s) could not be read");
    }
    Ok(())
}

/// `volume rm ID`.
/// Refused while a container uses the volume (the catalog records the uses).
pub async fn remove(vols: &Volumes, op: &Op, id: &str) -> Result<()> {
    vols.cache
        .add_store(op, &vols.name, vols.storer.clone())
        .await
        .with_context(|| format!("list volume store {}", vols.name))?;
    vols.cache
        .volume_destroy(op, &vols.name, id)
        .await
        .with_context(|| format!("remove volume {id}"))
}

/// `volume import ID [FILE|-]`.
pub async fn import(vols: &dyn VolumeStorer, op: &Op, id: &str, file: &str) -> Result<()> {
    let (tar, bar) = input(file, "import").await?;
    let result = vols.import(op, id, &FilterSpec::default(), tar).await;
    done(bar);
    let report = result.with_context(|| format!("import {file} into volume {id}"))?;
    eprintln!(
        "{} entries applied, {} skipped, {} ({} bytes)",
        report.entries,
        report.skipped,
        report.digest.as_deref().unwrap_or("not hashed"),
        report.size
    );
    Ok(())
}

/// `volume export ID > out.tar`.
pub async fn export(
    vols: &dyn VolumeStorer,
    op: &Op,
    id: &str,
    filter: &FilterFlags,
    no_data: bool,
) -> Result<()> {
    let stream = vols
        .export(op, id, None, &filter_spec(filter), !no_data)
        .await
        .with_context(|| format!("export volume {id}"))?;
    write_stream(stream)
        .await
        .with_context(|| format!("export volume {id}"))
}

/// `volume stat ID PATH`: one path's metadata, through a data source held for the call.
pub async fn stat(
    vols: &dyn VolumeStorer,
    op: &Op,
    id: &str,
    path: &str,
    json: bool,
) -> Result<()> {
    let mut source = vols
        .new_data_source(op, id)
        .await
        .with_context(|| format!("open volume {id}"))?;
    let st = source.stat(op, path).await;
    let closed = source.close(op).await;
    let st = st.with_context(|| format!("stat {path} in volume {id}"))?;
    closed.with_context(|| format!("let go of volume {id}"))?;
    print_stat(&st, json)
}

/// Prints what `stat` found: JSON, or one `Key: value` line each.
pub fn print_stat(st: &FileStat, json: bool) -> Result<()> {
    if json {
        return output::json(st);
    }
    println!("Path: {}", st.path);
    println!("Mode: {:o}", st.mode);
    println!("Owner: {}:{}", st.uid, st.gid);
    println!("Size: {}", st.size);
    println!("Modified: {}", st.mtime);
    if let Some(t) = &st.link_target {
        println!("Link: {t}");
    }
    Ok(())
}
