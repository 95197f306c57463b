//! `cargo xtask demo`: strata's main job on the default store, printed as it goes.
//!
//! Builds a three-layer image from files on this machine (plain, whiteout and gzip
//! layers), imports it into the default overlay store, mounts the top layer, prints a
//! summary of the merged tree, and unmounts. Then it puts the same image on a vmdk store in
//! a temporary directory (delta disks on a scratch disk) and shows that both stores mount
//! the same tree. Every `strata` command it runs is echoed, so the demo doubles as a tour
//! of the CLI.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::{strata, workspace_root};

fn run(args: &[&str]) -> Result<String> {
    run_on(&[], args)
}

/// Runs `strata` with the store options `store` before `args`, echoing only `args` and
/// the store's URL.
fn run_on(store: &[&str], args: &[&str]) -> Result<String> {
    match store.iter().position(|a| *a == "--store") {
        Some(i) if i + 1 < store.len() => {
            println!("$ strata --store {} {}", store[i + 1], args.join(" "))
        }
        _ => println!("$ strata {}", args.join(" ")),
    }
    let out = Command::new(strata())
        .args(store)
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

/// Imports the same three layers into a vmdk store in `work` (delta disks on a scratch
/// disk), mounts its top and the overlay store's `top`, and shows that the trees are the
/// same: names, kinds, modes, owners, file sizes, link targets and file contents.
fn same_tree_on_vmdk(work: &Path, top: &str) -> Result<()> {
    let w = work.display();
    println!("# the same image on a vmdk store");
    let (root, run_root, url) = (
        format!("{w}/vmdk-store"),
        format!("{w}/vmdk-run"),
        format!("vmdk://{w}/vmdk-store"),
    );
    let store = ["--root", &root, "--run-root", &run_root, "--store", &url];
    let compared = (|| {
        let base = run_on(&store, &["import-layer", &format!("{w}/base.tar")])?;
        let app = run_on(
            &store,
            &["import-layer", "--parent", &base, &format!("{w}/app.tar")],
        )?;
        let vmdk_top = run_on(
            &store,
            &[
                "import-layer",
                "--parent",
                &app,
                &format!("{w}/config.tar.gz"),
            ],
        )?;
        run_on(&store, &["layer-disks", &vmdk_top])?;
        let on_vmdk = run_on(&store, &["mount", &vmdk_top])?;
        let on_overlay = match run(&["mount", top]) {
            Ok(m) => m,
            Err(e) => {
                let _ = run_on(&store, &["unmount", &vmdk_top]);
                return Err(e);
            }
        };
        let listing = |at: &str| {
            format!(
                "cd {at} && find . -type d -printf '%p %m %u %g\\n' | sort && \
                 find . ! -type d -printf '%p %y %m %u %g %s %l\\n' | sort && \
                 find . -type f -print0 | sort -z | xargs -0 -r sha256sum"
            )
        };
        let same = sh(&listing(&on_vmdk)).and_then(|a| sh(&listing(&on_overlay)).map(|b| a == b));
        let _ = run(&["unmount", top]);
        let _ = run_on(&store, &["unmount", &vmdk_top]);
        match same? {
            true => println!("# the vmdk and overlay stores mount the same tree"),
            false => bail!("the vmdk store's tree differs from the overlay store's"),
        }
        Ok(())
    })();
    let _ = run_on(&store, &["cleanup"]);
    compared
}

/// Runs the demo.
pub fn run_demo() -> Result<()> {
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
    run(&["unmount", &top])?;
    run(&["layers"])?;
    same_tree_on_vmdk(work, &top)?;
    println!(
        "# clean up with: strata delete-layer {top} && strata delete-layer {app} && strata delete-layer {base}"
    );
    Ok(())
}
