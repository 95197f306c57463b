//! The run root's disk attachments through `strata`: `status` lists them, `check` finds
//! one whose server died, `check --repair` tears it down; `strata` itself serves block
//! views when re-executed as the registry's server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::CliStore;
use disk_image::attach::{AttachOptions, Attachments, Server};
use testkit::Requirement::{Command as Program, Path as DevPath, Root};

#[test]
fn status_lists_attachments_and_check_repairs_one_whose_server_died_needs_root_fuse_loop() {
    if !testkit::require(
        "status_lists_attachments_and_check_repairs_one_whose_server_died_needs_root_fuse_loop",
        &[
            Root,
            Program("qemu-img"),
            DevPath("/dev/fuse"),
            DevPath("/dev/loop-control"),
        ],
    ) {
        return;
    }
    let store = CliStore::new("attachments");
    store.ok(&["status"]);
    let disk = store.scratch().join("disk.vhdx");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "vhdx"])
        .arg(&disk)
        .arg("64M")
        .status()
        .unwrap();
    assert!(made.success());
    // Attached as a disk backend will: in the store's run root, served by `strata`.
    let registry = Attachments::open(&store.run_root().join("disks")).unwrap();
    let server = Server::new(env!("CARGO_BIN_EXE_strata"), ["serve-block-view"]);
    let attached = registry
        .attach(&disk, &AttachOptions::default(), &server)
        .unwrap();
    let pid = attached.server.unwrap().pid;
    // Whatever a failed assertion leaves is released and torn down.
    struct Release<'a>(&'a Attachments, &'a std::path::Path);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            let _ = self.0.release(self.1);
            let _ = self.0.check(true);
        }
    }
    let _release = Release(&registry, &disk);

    let status = store.json(&["status", "--json"]);
    assert!(
        status
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["Attachments", "1"])),
        "{status}"
    );
    let listed = store.json(&["attachments", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed[0]["device"], attached.device.to_str().unwrap());
    assert_eq!(listed[0]["format"], "vhdx");
    assert!(store.ok(&["status"]).contains(&format!("server pid {pid}")));
    store.ok(&["check"]);

    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    while attached.server.unwrap().alive() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = store.run(&["check"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "broken-attachment: {}",
            disk.canonicalize().unwrap().display()
        )),
        "{said}"
    );
    let repaired = store.ok(&["check", "--repair"]);
    assert!(repaired.contains("(repaired: tore it down)"), "{repaired}");
    store.ok(&["check"]);
    assert_eq!(
        store.json(&["attachments", "--json"]),
        serde_json::json!([])
    );
    let loops =
        String::from_utf8(Command::new("losetup").arg("-a").output().unwrap().stdout).unwrap();
    assert!(
        !loops.contains(store.run_root().to_str().unwrap()),
        "{loops}"
    );
}

#[test]
fn layer_disks_on_an_overlay_store_says_its_layers_are_not_disks() {
    let store = CliStore::new("layer-disks");
    let layer = store.ok(&["create-layer"]);
    let out = store.run(&["layer-disks", layer.trim()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("(overlay) keeps no layer on a disk to hand a VM"),
        "{err}"
    );
    let backends = store.json(&["backends", "--json"]);
    let overlay = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == "overlay")
        .unwrap();
    assert_eq!(overlay["vm_disks"], false);
    assert_eq!(overlay["max_depth"], 250_000);
}
