//! Layer commands: import, create, apply, mount, diff, changes, delete, list.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use catalog::{LayerRecord, LayerSpec, LayerSummary, LayerView, Listing};
use serde::Serialize;
use storage_core::archive::ApplyReport;
use storage_core::archive::{ArchiveStream, ChangeKind, ExportOptions};
use storage_core::{FileStat, FilterSpec, Op, TarReader};

use crate::context::Context;
use crate::cs_json;
use crate::flags::FilterFlags;
use crate::output;
use crate::progress::ProgressReader;

/// Opens `file` (or standard input for `-`) as a tar stream with progress.
pub async fn input(file: &str, what: &str) -> Result<(TarReader, Option<indicatif::ProgressBar>)> {
    if file == "-" {
        let reader = ProgressReader::new(tokio::io::stdin(), None, what);
        let bar = reader.bar();
        return Ok((Box::new(reader), bar));
    }
    let mut f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("open {file}"))?;
    f.set_max_buf_size(1 << 20);
    let len = f.metadata().await.ok().map(|m| m.len());
    let reader = ProgressReader::new(f, len, what);
    let bar = reader.bar();
    Ok((Box::new(reader), bar))
}

/// Clears the progress bar, if one is shown.
pub fn done(bar: Option<indicatif::ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// `import-layer`.
pub async fn import(
    ctx: &Context,
    op: &Op,
    new: LayerSpec<'_>,
    sum: Option<String>,
    file: &str,
) -> Result<()> {
    if let Some(s) = &sum
        && (!s.starts_with("sha256:") || s.len() != 71)
    {
        bail!("--sum must be sha256:<64 hex digits>, got {s:?}");
    }
    ctx.check_depth(new.parent).await?;
    let (tar, bar) = input(file, "importing").await?;
    let result = ctx.store.import_layer_as(op, new, tar, sum).await;
    done(bar);
    let (layer, report) = result.with_context(|| match new.names.first() {
        Some(name) => format!("import layer {name} from {file}"),
        None => format!("import layer from {file}"),
    })?;
    warn_lost(&format!("layer {}", layer.id), &report);
    println!("{}", layer.id);
    Ok(())
}

/// Says on standard error what an import could not keep of its entries (an unprivileged
/// import: a symlink's owner, an xattr outside `user.`), so that nothing is lost silently.
pub fn warn_lost(what: &str, report: &ApplyReport) {
    if report.lost > 0 {
        let more = report.lost as usize > report.lost_paths.len();
        eprintln!(
            "strata: warning: {what}: {} entr{} kept without what this user cannot apply or record: {}{}",
            report.lost,
            if report.lost == 1 { "y" } else { "ies" },
            report.lost_paths.join("; "),
            if more { "; …" } else { "" }
        );
    }
}

/// The tar file and the parent of an `import-layer`, from strata's shape
/// (`[--parent P] [FILE|-]`) or containers-storage's (`[-f FILE] [PARENT]`, the tar on
/// standard input without `-f`). Without `-f`, an argument that is `-` or names a file
/// is the tar; anything else is the parent, which must then be a layer.
pub async fn import_shape(
    ctx: &Context,
    from_file: Option<&str>,
    arg: Option<&str>,
    parent: Option<&str>,
) -> Result<(String, Option<String>)> {
    let owned = |p: Option<&str>| p.map(str::to_owned);
    match (from_file, arg, parent) {
        (Some(_), Some(a), Some(p)) => {
            bail!("import-layer: the parent given twice, as {a} and as --parent {p}")
        }
        (Some(f), a, p) => Ok((f.to_owned(), owned(a.or(p)))),
        (None, Some(a), Some(p)) => Ok((a.to_owned(), Some(p.to_owned()))),
        (None, Some(a), None) if a == "-" || Path::new(a).exists() => Ok((a.to_owned(), None)),
        (None, Some(a), None) => match ctx.store.layer(a).await {
            Ok(layer) => Ok(("-".to_owned(), Some(layer.id))),
            Err(storage_core::Error::NotFound { .. }) => {
                bail!("import-layer {a}: no file and no layer has this name")
            }
            Err(e) => Err(e.into()),
        },
        (None, None, p) => Ok(("-".to_owned(), owned(p))),
    }
}

/// `create-layer`.
pub async fn create(
    ctx: &Context,
    op: &Op,
    parent: Option<&str>,
    rw: bool,
    names: &[String],
) -> Result<()> {
    ctx.check_depth(parent).await?;
    let layer = ctx.store.create_layer(op, parent, names, rw).await?;
    println!("{}", layer.id);
    Ok(())
}

/// `layer-disks`: the disk files a VM needs for a layer or a container, topmost first.
pub async fn disks(ctx: &Context, op: &Op, id: &str, json: bool) -> Result<()> {
    ctx.require_vm_disks()?;
    let layer = layer_of(ctx, id).await?;
    let disks = ctx
        .store
        .layer_disks(op, &layer)
        .await
        .with_context(|| format!("the disks of {id}"))?;
    if json {
        return output::json(&disks);
    }
    for d in disks {
        let mode = if d.writable { "rw" } else { "ro" };
        println!("{}\t{}\t{mode}", d.path.display(), d.format);
    }
    Ok(())
}

/// `applydiff`.
pub async fn apply(ctx: &Context, op: &Op, id: &str, file: &str) -> Result<()> {
    let (tar, bar) = input(file, "applying").await?;
    let result = ctx.store.apply_diff(op, id, tar, None).await;
    done(bar);
    let report = result.with_context(|| format!("apply {file} to layer {id}"))?;
    warn_lost(&format!("layer {id}"), &report);
    Ok(())
}

/// `mount`.
pub async fn mount(
    ctx: &Context,
    op: &Op,
    ids: &[String],
    read_only: bool,
    json: bool,
) -> Result<()> {
    #[derive(Serialize)]
    struct Mounted {
        id: String,
        mountpoint: String,
        error: String,
    }
    let mut out = Vec::new();
    for id in ids {
        let mounted = match layer_of(ctx, id).await {
            Ok(layer) => ctx
                .store
                .mount(op, &layer, read_only)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match (mounted, json) {
            (Ok(path), _) => out.push(Mounted {
                id: id.clone(),
                mountpoint: path.display().to_string(),
                error: String::new(),
            }),
            // Without JSON the first failure is the command's.
            (Err(e), false) => return Err(e.context(format!("mount {id}"))),
            (Err(e), true) => out.push(Mounted {
                id: id.clone(),
                mountpoint: String::new(),
                error: format!("{e:#}"),
            }),
        }
    }
    if json {
        output::json(&out)?;
        if let Some(failed) = out.iter().find(|m| !m.error.is_empty()) {
            bail!("mount {}: {}", failed.id, failed.error);
        }
        return Ok(());
    }
    for m in &out {
        println!("{}", m.mountpoint);
    }
    Ok(())
}

/// `unmount`.
pub async fn unmount(ctx: &Context, op: &Op, id: &str) -> Result<()> {
    let layer = layer_of(ctx, id).await?;
    ctx.store.unmount(op, &layer).await?;
    Ok(())
}

/// The layer `id` names: a container's read-write layer, or a layer.
async fn layer_of(ctx: &Context, id: &str) -> Result<String> {
    match ctx.store.container(id).await {
        Ok(c) => Ok(c.layer),
        Err(storage_core::Error::NotFound { .. }) => Ok(ctx.store.layer(id).await?.id),
        Err(e) => Err(e.into()),
    }
}

/// The FilterSpec the flags describe.
pub fn filter_spec(f: &FilterFlags) -> FilterSpec {
    FilterSpec {
        inclusions: f.include.iter().cloned().collect(),
        exclusions: f.exclude.iter().cloned().collect(),
        rebase: f.rebase.clone().unwrap_or_default(),
        strip: f.strip.clone().unwrap_or_default(),
    }
}

/// `diff`: the tar goes to standard output.
pub async fn diff(
    ctx: &Context,
    op: &Op,
    id: &str,
    from: Option<&str>,
    filter: &FilterFlags,
    no_data: bool,
    to: DiffOutput<'_>,
) -> Result<()> {
    let opts = ExportOptions {
        filter: filter_spec(filter),
        data: !no_data,
        ..ExportOptions::default()
    };
    let stream: ArchiveStream = ctx
        .store
        .diff(op, id, from, &opts)
        .await
        .with_context(|| format!("diff layer {id}"))?;
    let written = match (to.file, to.gzip) {
        (None, false) => write_stream(stream).await,
        (file, gzip) => write_stream_to(stream, file.map(Path::new), gzip).await,
    };
    written.with_context(|| format!("diff layer {id}"))
}

/// Where `diff` writes: standard output or a file, plain or gzip-compressed.
pub struct DiffOutput<'a> {
    /// The file (written whole under another name, then renamed), or standard output.
    pub file: Option<&'a str>,
    /// Compress with gzip.
    pub gzip: bool,
}

/// Copies a tar stream to `file` (through a temporary file beside it, renamed once
/// complete and synced, so a failure leaves no file) or to standard output, gzip
/// compressed when asked.
async fn write_stream_to(stream: ArchiveStream, file: Option<&Path>, gzip: bool) -> Result<()> {
    let file = file.map(Path::to_owned);
    tokio::task::spawn_blocking(move || -> Result<()> {
        let copy = |out: &mut dyn Write| -> Result<()> {
            if gzip {
                let mut z = flate2::write::GzEncoder::new(out, flate2::Compression::default());
                stream.copy_to_blocking(&mut z)?;
                z.finish()?.flush()?;
            } else {
                let mut out = out;
                stream.copy_to_blocking(&mut out)?;
                out.flush()?;
            }
            Ok(())
        };
        match file {
            None => {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
                copy(&mut out).map_err(|e| match e.downcast_ref::<std::io::Error>() {
                    Some(io) if io.kind() == std::io::ErrorKind::BrokenPipe => {
                        output::Closed.into()
                    }
                    _ => e,
                })
            }
            Some(path) => {
                let name = path
                    .file_name()
                    .with_context(|| format!("{} names no file", path.display()))?;
                let part = path.with_file_name(format!(".{}.part", name.to_string_lossy()));
                let written = (|| -> Result<()> {
                    let mut f = std::fs::File::create(&part)
                        .with_context(|| format!("create {}", part.display()))?;
                    copy(&mut std::io::BufWriter::with_capacity(1 << 20, &mut f))?;
                    f.sync_all()
                        .with_context(|| format!("sync {}", part.display()))?;
                    std::fs::rename(&part, &path)
                        .with_context(|| format!("rename {} to {}", part.display(), path.display()))
                })();
                if written.is_err() {
                    let _ = std::fs::remove_file(&part);
                }
                written
            }
        }
    })
    .await
    .context("tar writer")?
}

/// Copies a tar stream to standard output.
pub async fn write_stream(stream: ArchiveStream) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        // When standard output is a pipe, a larger one lets the reader keep up with
        // fewer wake-ups; anything else refuses the call, which is fine.
        let _ = nix::fcntl::fcntl(&stdout, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        // Standard output itself, unwrapped: `io::copy` then moves the data with
        // `splice`, in the kernel.
        let mut out = stdout.lock();
        match stream.copy_to_blocking(&mut out) {
            // Reading a pipe never fails with EPIPE: this is standard output gone.
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EPIPE as i32) => {
                Err(output::Closed.into())
            }
            Err(e) => Err(e.into()),
            Ok(_) => out.flush().map_err(output::write_error),
        }
    })
    .await
    .context("tar writer")?
}

#[derive(Serialize)]
struct ChangeOut {
    #[serde(rename = "Path")]
    path: String,
    /// containers-storage's (Docker's) change types: 0 modified, 1 added, 2 deleted.
    #[serde(rename = "Kind")]
    kind: u8,
}

/// `changes`.
pub async fn changes(
    ctx: &Context,
    op: &Op,
    id: &str,
    from: Option<&str>,
    json: bool,
) -> Result<()> {
    let changes = ctx.store.changes(op, id, from).await?;
    if json {
        let out: Vec<ChangeOut> = changes
            .iter()
            .map(|c| ChangeOut {
                path: c.display_path(),
                kind: match c.kind {
                    ChangeKind::Modify => 0,
                    ChangeKind::Add => 1,
                    ChangeKind::Delete => 2,
                },
            })
            .collect();
        output::json(&out)?;
    } else {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for c in &changes {
            writeln!(out, "{} {:?}", c.kind, c.display_path())?;
        }
    }
    Ok(())
}

/// `diffsize`.
pub async fn diff_size(ctx: &Context, op: &Op, id: &str, from: Option<&str>) -> Result<()> {
    println!("{}", ctx.store.diff_size(op, id, from).await?);
    Ok(())
}

/// `delete-layer`.
pub async fn delete(ctx: &Context, op: &Op, ids: &[String]) -> Result<()> {
    for id in ids {
        ctx.store
            .delete_layer(op, id)
            .await
            .with_context(|| format!("delete layer {id}"))?;
    }
    Ok(())
}

/// `LAYER:PATH` split at its first colon; `None` for a host path.
fn layer_path(spec: &str) -> Option<(&str, &str)> {
    spec.split_once(':').filter(|(layer, _)| !layer.is_empty())
}

/// `copy [LAYER:]PATH... LAYER:PATH`: each source copied into the target layer, mounted
/// read-write for the copy; a source layer is mounted read-only while it is read.
pub async fn copy(ctx: &Context, op: &Op, paths: &[String]) -> Result<()> {
    let Some((target, sources)) = paths.split_last() else {
        bail!("copy needs a source and a target");
    };
    let Some((target_key, target_path)) = layer_path(target) else {
        bail!("copy: the target {target:?} must be LAYER:PATH");
    };
    let target_layer = layer_of(ctx, target_key).await?;
    let into = ctx.store.mount(op, &target_layer, false).await?;
    let mut copied = Ok(());
    for source in sources {
        copied = copy_one(ctx, op, source, &into, target_path)
            .await
            .with_context(|| format!("copy {source} to {target}"));
        if copied.is_err() {
            break;
        }
    }
    let released = ctx.store.unmount(op, &target_layer).await;
    copied?;
    released.with_context(|| format!("unmount {target_layer}"))?;
    Ok(())
}

/// One source of `copy` into the mounted target tree `into`, at `to` inside it.
async fn copy_one(ctx: &Context, op: &Op, source: &str, into: &Path, to: &str) -> Result<()> {
    let (from_root, from_rel, from_layer) = match layer_path(source) {
        Some((key, path)) => {
            let layer = layer_of(ctx, key).await?;
            let root = ctx.store.mount(op, &layer, true).await?;
            (root, path.trim_start_matches('/').to_owned(), Some(layer))
        }
        None => {
            // The host's own path, resolved as the host resolves it.
            let at = std::fs::canonicalize(source).with_context(|| format!("find {source}"))?;
            let rel = at.strip_prefix("/").unwrap_or(&at).display().to_string();
            (PathBuf::from("/"), rel, None)
        }
    };
    let (op2, into, to) = (op.clone(), into.to_owned(), to.to_owned());
    let root = from_root.clone();
    let copied = tokio::task::spawn_blocking(move || -> Result<ApplyReport> {
        let kind = storage_core::ObjectKind::Layer;
        let is_dir = |root: &Path, rel: &str| {
            FileStat::in_root(root, rel, kind).map(|st| st.mode & 0o170000 == 0o040000)
        };
        let source_is_dir = is_dir(&root, &from_rel)?;
        let into_dir = to.ends_with('/') || is_dir(&into, &to).unwrap_or(false);
        let name_goes = !source_is_dir && into_dir;
        let strip = match (name_goes, from_rel.rsplit_once('/')) {
            (true, Some((parent, _))) => parent.to_owned(),
            (true, None) => String::new(),
            (false, _) => from_rel.clone(),
        };
        let spec = FilterSpec {
            inclusions: [from_rel.clone()].into(),
            exclusions: [String::new()].into(),
            strip,
            rebase: to.trim_start_matches('/').to_owned(),
        };
        let report = tar_engine::copy_tree(&op2, &root, &spec, &into)?;
        if report.entries == 0 {
            bail!(
                "nothing to copy at {from_rel} in {} (a symlink on the way is not followed)",
                root.display()
            );
        }
        Ok(report)
    })
    .await
    .context("copy task");
    if let Some(layer) = &from_layer {
        ctx.store.unmount(op, layer).await?;
    }
    copied??;
    Ok(())
}

#[derive(Serialize)]
struct MountedOut {
    id: String,
    mounted: bool,
    error: String,
}

/// `mounted ID...`: `ID mounted` for each layer or container mounted now.
pub async fn mounted(ctx: &Context, op: &Op, ids: &[String], json: bool) -> Result<()> {
    let mut out = Vec::new();
    for id in ids {
        let counted = match layer_of(ctx, id).await {
            Ok(layer) => ctx
                .store
                .driver()
                .mount_count(op, &layer)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        out.push(match counted {
            Ok(n) => MountedOut {
                id: id.clone(),
                mounted: n > 0,
                error: String::new(),
            },
            Err(e) => MountedOut {
                id: id.clone(),
                mounted: false,
                error: format!("{e:#}"),
            },
        });
    }
    if json {
        output::json(&out)?;
    } else {
        for m in out.iter().filter(|m| m.mounted) {
            println!("{} mounted", m.id);
        }
    }
    match out.iter().find(|m| !m.error.is_empty()) {
        Some(m) => bail!("{}: {}", m.id, m.error),
        None => Ok(()),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct ParentOwnersOut {
    id: String,
    #[serde(rename = "UIDs")]
    uids: Option<Vec<u32>>,
    #[serde(rename = "GIDs")]
    gids: Option<Vec<u32>>,
}

/// `layer-parent-owners` and `container-parent-owners`: the owners in a layer's parents
/// that its ID mappings leave unmapped. A layer without ID mappings (every strata layer)
/// maps each owner to itself, so nothing is unmapped: containers-storage answers the
/// same (null sets) for such a layer. The ids must name layers (or containers).
pub async fn parent_owners(
    ctx: &Context,
    ids: &[String],
    kind: storage_core::ObjectKind,
    json: bool,
) -> Result<()> {
    let mut out = Vec::new();
    for id in ids {
        let full = match kind {
            storage_core::ObjectKind::Container => ctx.store.container(id).await?.id,
            _ => ctx.store.layer(id).await?.id,
        };
        out.push(ParentOwnersOut {
            id: full,
            uids: None,
            gids: None,
        });
    }
    if json {
        return output::json(&out);
    }
    for o in &out {
        println!("ID: {}\nUIDs: []\nGIDs: []", o.id);
    }
    Ok(())
}

/// Puts `kids` on the tree printer's stack with their line's `indent`, the first on top.
fn push_children<'a>(
    stack: &mut Vec<(&'a LayerRecord, String)>,
    kids: Option<&Vec<&'a LayerRecord>>,
    indent: &str,
) {
    for l in kids.into_iter().flatten().rev() {
        stack.push((l, indent.to_owned()));
    }
}

/// `layers -t`: each layer under its parent, children in the order they were made.
pub fn print_tree(all: &[LayerRecord]) -> Result<()> {
    use std::collections::HashMap;
    let mut children: HashMap<Option<&str>, Vec<&LayerRecord>> = HashMap::new();
    let known: std::collections::HashSet<&str> = all.iter().map(|l| l.id.as_str()).collect();
    for l in all {
        // A parent not listed (an additional store's, say) shows the layer at the top.
        let parent = l.parent.as_deref().filter(|p| known.contains(p));
        children.entry(parent).or_default().push(l);
    }
    let mut out = output::buffered();
    writeln!(out, "(base)").map_err(output::write_error)?;
    // Layers still to print, each with the indent of its line; siblings lie together,
    // the first on top.
    let mut stack: Vec<(&LayerRecord, String)> = Vec::new();
    push_children(&mut stack, children.get(&None), "");
    while let Some((l, indent)) = stack.pop() {
        let siblings_left = stack.last().is_some_and(|(_, i)| *i == indent);
        let (branch, next) = if siblings_left {
            ("├─", format!("{indent}│ "))
        } else {
            ("└─", format!("{indent}  "))
        };
        writeln!(out, "{indent}{branch}{}", l.id).map_err(output::write_error)?;
        for name in &l.names {
            writeln!(out, "{next}name: {name}").map_err(output::write_error)?;
        }
        push_children(&mut stack, children.get(&Some(l.id.as_str())), &next);
    }
    out.flush().map_err(output::write_error)
}

/// `layers` from the catalogs alone: each layer is printed as its row is read, and
/// nothing of the listing is collected.
pub fn print_listing(listing: &Listing, json: bool) -> Result<()> {
    let mut out = output::buffered();
    let mut failed = None;
    let mut go_on = |written: std::io::Result<()>| match written {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            failed = Some(e);
            ControlFlow::Break(())
        }
    };
    if json {
        let mut first = true;
        if go_on(out.write_all(b"[")).is_continue() {
            listing.each_layer(|l| go_on(json_item(&mut out, l, std::mem::take(&mut first))))?;
        }
        if failed.is_none() {
            failed = out.write_all(b"]\n").err();
        }
    } else {
        listing.each_layer_summary(|l| go_on(line(&mut out, l)))?;
    }
    match failed {
        Some(e) => Err(output::write_error(e)),
        None => output::finish(out),
    }
}

/// A layer in the JSON array of `layers --json`.
fn json_item(out: &mut impl Write, l: &LayerView<'_>, first: bool) -> std::io::Result<()> {
    if !first {
        out.write_all(b",")?;
    }
    serde_json::to_writer(&mut *out, &cs_json::Layer::from(l)).map_err(std::io::Error::from)
}

/// `layers` from an opened store.
pub fn print(layers: &[LayerRecord], json: bool) -> Result<()> {
    if json {
        let views: Vec<LayerView<'_>> = layers.iter().map(LayerView::from).collect();
        let shaped: Vec<cs_json::Layer<'_>> = views.iter().map(cs_json::Layer::from).collect();
        return output::json(&shaped);
    }
    let mut out = output::buffered();
    for l in layers {
        line(&mut out, &l.into()).map_err(output::write_error)?;
    }
    output::finish(out)
}

/// A layer's lines in the plain listing: its id, the start of its parent's, and a line a
/// name, as containers-storage prints them.
fn line(out: &mut impl Write, l: &LayerSummary<'_>) -> std::io::Result<()> {
    out.write_all(l.id.as_bytes())?;
    if let Some(p) = l.parent {
        out.write_all(b" (parent ")?;
        out.write_all(&p.as_bytes()[..12.min(p.len())])?;
        out.write_all(b")")?;
    }
    for n in l.names {
        out.write_all(b"\n\tname: ")?;
        out.write_all(n.as_bytes())?;
    }
    out.write_all(b"\n")
}

/// `layer --json`: containers-storage prints the layers it was asked for as a list.
pub fn print_json(record: &LayerRecord) -> Result<()> {
    output::json(&[cs_json::Layer::from(&LayerView::from(record))])
}

/// `layer ID`.
pub async fn show(ctx: &Context, op: &Op, id: &str, json: bool) -> Result<()> {
    let record = ctx.store.layer(id).await?;
    if json {
        return print_json(&record);
    }
    let driver = ctx.store.driver().metadata(op, &record.id).await?;
    let mounts = ctx.store.driver().mount_count(op, &record.id).await?;
    {
        println!("ID: {}", record.id);
        if let Some(p) = &record.parent {
            println!("Parent: {p}");
        }
        for n in &record.names {
            println!("Name: {n}");
        }
        if let Some(d) = &record.compressed_digest {
            println!("Compressed digest: {d}");
        }
        if let Some(d) = &record.uncompressed_digest {
            println!("Uncompressed digest: {d}");
        }
        if let Some(s) = record.uncompressed_size {
            println!("Uncompressed size: {s}");
        }
        println!("Mounts: {mounts}");
        for (k, v) in &driver {
            println!("{k}: {v}");
        }
    }
    Ok(())
}
