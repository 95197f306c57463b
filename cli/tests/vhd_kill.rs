//! SIGKILL on a vhd store: an import (a `layer.vhd` being built) and a container's mount
//! (layers on loop devices, a sandbox behind a block view server, ext4 and overlay
//! mounts) killed at a sweep of moments. After every kill `strata check` passes, and once
//! the store is cleaned up no loop device, mount or block view server of the store is
//! left: whatever the kill cut short was set right by the next command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{CliStore, files_tar};
use testkit::{Requirement, require};

/// How many moments each operation is killed at, spread over how long it takes whole.
const KILLS: u32 = 40;

fn needs(test: &str) -> bool {
    require(
        test,
        &[
            Requirement::Root,
            Requirement::Filesystem("overlay"),
            Requirement::Filesystem("fuse"),
            Requirement::Path("/dev/loop-control"),
            Requirement::Path("/dev/fuse"),
        ],
    )
}

/// A CLI store whose commands go to `vhd://` at its root.
struct VhdStore(CliStore);

impl std::ops::Deref for VhdStore {
    type Target = CliStore;

    fn deref(&self) -> &CliStore {
        &self.0
    }
}

impl VhdStore {
    fn new(prefix: &str) -> Self {
        VhdStore(CliStore::on(prefix, "vhd"))
    }

    fn check(&self, after: &str) {
        let out = self.run(&["check"]);
        assert!(
            out.status.success(),
            "after {after}: strata check: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `args` with `input` on standard input, killing it after `delay` (`None`: lets
    /// it finish, which it must do successfully).
    fn run_or_kill(&self, args: &[&str], input: &[u8], delay: Option<Duration>) {
        common::run_or_kill(self.cmd(args), input, delay);
    }

    /// Unmounts everything and deletes the layer `name` if an earlier run left it.
    fn clean_without(&self, name: &str) {
        self.ok(&["cleanup"]);
        if self.run(&["layer", name]).status.success() {
            self.ok(&["delete-layer", name]);
        }
    }

    /// Checks the store after a kill, cleans it up and requires nothing of it be left.
    fn check_and_clean(&self, after: &str) {
        self.check(after);
        self.ok(&["cleanup"]);
        let left = self.leftovers();
        assert!(left.is_empty(), "after {after}, cleaned up: {left:#?}");
    }
}

/// Delays spread over `span`, from before anything happens to about its end.
fn sweep(span: Duration) -> impl Iterator<Item = Duration> {
    (0..KILLS).map(move |k| span.mul_f64(f64::from(k) / f64::from(KILLS - 1) * 1.1))
}

#[test]
fn an_import_killed_anywhere_leaves_a_store_check_accepts_and_no_half_built_disk() {
    if !needs("an_import_killed_anywhere_leaves_a_store_check_accepts_and_no_half_built_disk") {
        return;
    }
    let store = VhdStore::new("strata-vhd-kill-import-");
    store.ok(&["create-layer", "-n", "base"]);
    let tar = files_tar(2000, 20, 20);
    let import = ["import-layer", "--parent", "base", "-n", "imported", "-"];
    let start = Instant::now();
    store.run_or_kill(&import, &tar, None);
    let span = start.elapsed();
    eprintln!("a whole import took {span:?}");
    for delay in sweep(span) {
        store.clean_without("imported");
        store.run_or_kill(&import, &tar, Some(delay));
        let after = format!("an import killed after {delay:?} of {span:?}");
        store.check_and_clean(&after);
        // The next open removed every disk a kill left half built.
        let vhd = store.root().join("vhd");
        for layer in std::fs::read_dir(&vhd).unwrap().flatten() {
            for file in std::fs::read_dir(layer.path()).unwrap().flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                assert!(!name.ends_with(".part"), "after {after}: {name} is left");
            }
        }
    }
    // And the import runs whole afterwards.
    store.clean_without("imported");
    store.run_or_kill(&import, &tar, None);
    store.check_and_clean("a whole import");
}

#[test]
fn a_container_mount_killed_anywhere_leaks_no_loop_device_mount_or_server() {
    if !needs("a_container_mount_killed_anywhere_leaks_no_loop_device_mount_or_server") {
        return;
    }
    let store = VhdStore::new("strata-vhd-kill-mount-");
    let tar = files_tar(50, 5, 2);
    let l1 = store.run_with_input(&["import-layer", "-n", "l1", "-"], &tar);
    assert!(l1.status.success());
    let l2 = store.run_with_input(&["import-layer", "--parent", "l1", "-n", "l2", "-"], &tar);
    assert!(l2.status.success());
    store.ok(&["create-image", "-n", "img", "l2"]);
    store.ok(&["create-container", "-n", "c", "img"]);
    let layer = store.json(&["container", "c", "--json"]);
    let layer = layer
        .as_array()
        .map_or(&layer, |a| &a[0])
        .get("layer")
        .and_then(|l| l.as_str())
        .unwrap()
        .to_owned();
    let mount = ["mount", layer.as_str()];
    let start = Instant::now();
    store.run_or_kill(&mount, b"", None);
    let span = start.elapsed();
    eprintln!("a whole cold mount took {span:?}");
    store.ok(&["cleanup"]);
    for delay in sweep(span) {
        store.run_or_kill(&mount, b"", Some(delay));
        store.check_and_clean(&format!("a mount killed after {delay:?} of {span:?}"));
    }
    // A whole mount and unmount still work, and leave nothing.
    store.ok(&mount);
    store.ok(&["unmount", layer.as_str()]);
    let left = store.leftovers();
    assert!(
        left.is_empty(),
        "after a whole mount and unmount: {left:#?}"
    );
}
