//! `cargo xtask demo`: strata's main job on the default store, printed as it goes.
//!
//! Builds a three-layer image from files on this machine (plain, whiteout and gzip
//! layers), imports it into the default overlay store, mounts the top layer, prints a
//! summary of the merged tree, and unmounts. Then it imports the same layers into a vhd
//! store (each a `layer.vhd`) and a vmdk store (delta disks on a scratch disk), prints the
//! disks a VM would get, mounts the top there too and shows that every store mounts the
//! same tree. Every `strata` command it runs is
//! echoed, so the demo doubles as a tour of the CLI. It first installs what the build
//! needs (libclang for the loop-device bindings) where it can.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::{strata, workspace_root};

fn run(args: &[&str]) -> Result<String> {
    println!("$ strata {}", args.join(" "));
    run_quiet(args)
}

/// Runs `strata args`, printing its output but not the command.
fn run_quiet(args: &[&str]) -> Result<String> {
    let out = Command::new(strata())
        .args(args)
        .output()
        .with_context(|| format!("run strata {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(text)
}

fn sh(cmd: &str) -> Result<String> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .with_context(|| format!("run {cmd}"))?;
    if !out.status.success() {
        bail!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs the demo.
pub fn run_demo() -> Result<()> {
    if crate::setup::is_root() {
        // The disk backends' build runs bindgen, which needs libclang.
        crate::setup::ensure_packages(&["libclang-dev", "e2fsprogs", "fuse3"])?;
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "cli"])
        .current_dir(workspace_root())
        .status()
        .context("build strata")?;
    if !status.success() {
        bail!("building strata failed");
    }
    let work = std::env::temp_dir().join(format!("strata-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = demo(&work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn demo(work: &Path) -> Result<()> {
    let w = work.display();
    println!("# building three layers from this machine's files in {w}");
    // 1: a base of licences and docs, straight from the host.
    sh(&format!(
        "tar -C / -cf {w}/base.tar usr/share/common-licenses usr/share/doc etc/os-release 2>/dev/null || \
         tar -C / -cf {w}/base.tar usr/share/common-licenses etc/os-release"
    ))?;
    // 2: an application, and a whiteout deleting one licence of the base.
    sh(&format!(
        "mkdir -p {w}/l2/app {w}/l2/usr/share/common-licenses && \
         printf '#!/bin/sh\\necho hello from strata\\n' > {w}/l2/app/hello && chmod 755 {w}/l2/app/hello && \
         : > {w}/l2/usr/share/common-licenses/.wh.GPL-2 && \
         tar -C {w}/l2 -cf {w}/app.tar app usr"
    ))?;
    // 3: configuration, gzip-compressed.
    sh(&format!(
        "mkdir -p {w}/l3/app && echo '{{\"greeting\": \"hello\"}}' > {w}/l3/app/config.json && \
         tar -C {w}/l3 -czf {w}/config.tar.gz app"
    ))?;
    let base = run(&["import-layer", &format!("{w}/base.tar")])?;
    let app = run(&["import-layer", "--parent", &base, &format!("{w}/app.tar")])?;
    let top = run(&[
        "import-layer",
        "--parent",
        &app,
        &format!("{w}/config.tar.gz"),
    ])?;
    run(&["changes", &app])?;
    let mount = run(&["mount", &top])?;
    println!("# the merged tree at {mount}");
    println!(
        "{}",
        sh(&format!(
            "echo \"$(find {mount} | wc -l) entries, $(du -sh {mount} | cut -f1) in all\"; \
             ls {mount} {mount}/app; {mount}/app/hello; \
             test -e {mount}/usr/share/common-licenses/GPL-2 && echo 'GPL-2 still there' || echo 'GPL-2 whited out'"
        ))?
    );
    let overlay_tree = tree_summary(&mount)?;
    run(&["unmount", &top])?;
    run(&["layers"])?;
    println!(
        "# clean up with: strata delete-layer {top} && strata delete-layer {app} && strata delete-layer {base}"
    );
    same_tree_on(
        work,
        "vhd",
        "each layer an ext4 in a layer.vhd, written without a mount",
        &overlay_tree,
    )?;
    same_tree_on(
        work,
        "vmdk",
        "each layer a VMDK delta disk on its parent's, down to a scratch disk",
        &overlay_tree,
    )
}

/// A digest of a tree's names, kinds, modes, owners, link targets and file contents.
fn tree_summary(root: &str) -> Result<String> {
    sh(&format!(
        "cd {root} && find . -printf '%p %y %m %u %g %l\\n' | LC_ALL=C sort | sha256sum | cut -c1-16; \
         find . -type f -print0 | LC_ALL=C sort -z | xargs -0r cat | sha256sum | cut -c1-16"
    ))
}

/// The same three layers in a store of the backend `scheme` (held as `how`) in the work
/// directory: imported, their disks listed, the top mounted and its tree compared with
/// the overlay store's.
fn same_tree_on(work: &Path, scheme: &str, how: &str, overlay_tree: &str) -> Result<()> {
    let w = work.display();
    let url = format!("{scheme}://{w}/{scheme}-store");
    let store = [
        "--root".to_owned(),
        format!("{w}/{scheme}-store"),
        "--run-root".to_owned(),
        format!("{w}/{scheme}-run"),
        "--store".to_owned(),
        url.clone(),
    ];
    let on_store = |args: &[&str]| -> Result<String> {
        let mut all: Vec<&str> = store.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        println!("$ strata --store {url} {}", args.join(" "));
        run_quiet(&all)
    };
    println!("# the same layers in a {scheme} store: {how}");
    let compared = (|| -> Result<String> {
        let base = on_store(&["import-layer", &format!("{w}/base.tar")])?;
        let app = on_store(&["import-layer", "--parent", &base, &format!("{w}/app.tar")])?;
        let top = on_store(&[
            "import-layer",
            "--parent",
            &app,
            &format!("{w}/config.tar.gz"),
        ])?;
        on_store(&["layer-disks", &top])?;
        let mount = on_store(&["mount", &top])?;
        let tree = tree_summary(&mount);
        let unmounted = on_store(&["unmount", &top]);
        let tree = tree?;
        unmounted?;
        Ok(tree)
    })();
    // Whatever happened, nothing of this store stays attached or mounted.
    let cleaned = on_store(&["cleanup"]);
    let tree = compared?;
    cleaned?;
    if tree == overlay_tree {
        println!(
            "# overlay and {scheme} mount the same tree ({})",
            tree.replace('\n', " ")
        );
        Ok(())
    } else {
        bail!(
            "the {scheme} store's tree differs from the overlay store's: {tree} vs {overlay_tree}"
        )
    }
}
