//! The conformance suite of layer backends: end-to-end scenarios through the `strata`
//! binary, with the shared layers of `layercheck.py`, run over every backend the binary
//! links that stores layers in a local root (`strata backends --json`), each with
//! `--store SCHEME:///…`. A new layer backend is covered by linking it in; nothing here
//! names one. Every store call goes through the catalog to the backend's
//! `&dyn LayerDriver`. They need root and the mounts the backends make.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use testkit::{Layercheck, Requirement, require};

/// A layer backend the binary links.
#[derive(Debug, Clone)]
struct Backend {
    name: String,
    scheme: String,
}

/// Every backend of `strata backends --json` that stores layers in a local root.
fn layer_backends() -> Vec<Backend> {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["backends", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<Backend> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["layers"] == true && b["local_root"] == true)
        .map(|b| Backend {
            name: b["id"].as_str().unwrap().to_owned(),
            scheme: b["scheme"].as_str().unwrap().to_owned(),
        })
        .collect();
    assert!(!found.is_empty(), "no layer backend is linked");
    found
}

/// Runs `scenario` over every layer backend, saying which one failed.
fn each_backend(scenario: impl Fn(&Backend)) {
    for backend in layer_backends() {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&backend)));
        if let Err(cause) = run {
            eprintln!("conformance: the {} backend failed", backend.name);
            std::panic::resume_unwind(cause);
        }
    }
}

/// One store of a backend in a temporary directory, driven through the CLI.
struct Store {
    dir: tempfile::TempDir,
    backend: Backend,
}

impl Store {
    fn new(backend: &Backend) -> Self {
        Store {
            dir: tempfile::Builder::new()
                .prefix(&format!("strata-cli-{}-", backend.name))
                .tempdir()
                .unwrap(),
            backend: backend.clone(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.arg("--root")
            .arg(self.root())
            .arg("--run-root")
            .arg(self.dir.path().join("run"))
            .arg("--store")
            .arg(format!(
                "{}://{}",
                self.backend.scheme,
                self.root().display()
            ))
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn import(&self, parent: Option<&str>, tar: &Path) -> String {
        let mut args = vec!["import-layer"];
        if let Some(p) = parent {
            args.extend(["--parent", p]);
        }
        let tar = tar.to_str().unwrap();
        args.push(tar);
        self.ok(&args)
    }

    fn manifest_of(&self, layer: &str) -> String {
        let mount = self.ok(&["mount", layer]);
        let m = Layercheck::manifest(Path::new(&mount));
        self.ok(&["unmount", layer]);
        m
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.run(&["cleanup"]);
    }
}

fn needs_mounts(test: &str) -> bool {
    require(
        test,
        &[
            Requirement::Root,
            Requirement::Filesystem("overlay"),
            Requirement::Command("python3"),
            // Disk backends attach layers on loop devices, and dynamic disks through a
            // FUSE block view.
            Requirement::Path("/dev/loop-control"),
            Requirement::Path("/dev/fuse"),
        ],
    )
}

#[test]
fn chain_layers_mount_with_zero_differences_needs_root() {
    if !needs_mounts("chain_layers_mount_with_zero_differences_needs_root") {
        return;
    }
    each_backend(|backend| {
        let data = Layercheck::generate();
        let store = Store::new(backend);
        let mut parent: Option<String> = None;
        for k in 1..=3 {
            let id = store.import(parent.as_deref(), &data.chain_layer(k));
            let mount = store.ok(&["mount", &id]);
            let result = Layercheck::compare(&data.expected(), Path::new(&mount), k, &[]);
            store.ok(&["unmount", &id]);
            match result {
                Ok(text) => assert!(text.contains(" 0 differ"), "layer {k}: {text}"),
                Err(text) => panic!("layer {k} differs from the expected tree:\n{text}"),
            }
            parent = Some(id);
        }
        let listed: serde_json::Value =
            serde_json::from_str(&store.ok(&["layers", "--json"])).unwrap();
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), 3);
        // containers-storage's shape: a parent on all but the base, no empty names.
        for (i, l) in listed.iter().enumerate() {
            assert!(l["id"].is_string(), "{l}");
            assert_eq!(l.get("parent").is_some(), i > 0, "{l}");
            assert!(l.get("names").is_none_or(|n| n.is_array()), "{l}");
        }
    });
}

#[test]
fn exact_changes_of_the_second_chain_layer_needs_root() {
    if !needs_mounts("exact_changes_of_the_second_chain_layer_needs_root") {
        return;
    }
    each_backend(|backend| {
        let data = Layercheck::generate();
        let store = Store::new(backend);
        let l1 = store.import(None, &data.chain_layer(1));
        let l2 = store.import(Some(&l1), &data.chain_layer(2));
        let changes = store.ok(&["changes", &l2]);
        let want = [
            "Add \"/added\"",
            "Add \"/added-hard\"",
            "Delete \"/del-me\"",
            "Modify \"/etc\"",
            "Modify \"/etc/passwd\"",
            "Delete \"/gone\"",
            "Modify \"/opaque\"",
            "Add \"/opaque/new\"",
            "Modify \"/secret\"",
            "Modify \"/swap\"",
            "Modify \"/swap/was-dir\"",
            "Modify \"/swap/was-file\"",
            "Add \"/swap/was-file/now-dir\"",
            "Modify \"/usr\"",
            "Modify \"/usr/lib\"",
            "Modify \"/usr/lib/blob3\"",
        ];
        assert_eq!(changes.lines().collect::<Vec<_>>(), want);
        // blob3 (2048) + added (10, and its hard link once) + passwd + opaque/new + now-dir + was-dir
        let size: u64 = store.ok(&["diffsize", &l2]).parse().unwrap();
        assert_eq!(size, 2048 + 10 + 69 + 3 + 1 + 10);
    });
}

#[test]
fn exported_diffs_reimport_to_identical_trees_needs_root() {
    if !needs_mounts("exported_diffs_reimport_to_identical_trees_needs_root") {
        return;
    }
    each_backend(|backend| {
        let data = Layercheck::generate();
        let (a, b) = (Store::new(backend), Store::new(backend));
        let (mut pa, mut pb): (Option<String>, Option<String>) = (None, None);
        for k in 1..=3 {
            let la = a.import(pa.as_deref(), &data.chain_layer(k));
            let exported = a.dir.path().join(format!("export{k}.tar"));
            let mut args = vec!["diff".to_string()];
            if let Some(p) = &pa {
                args.extend(["--from".to_string(), p.clone()]);
            }
            args.push(la.clone());
            let out = a
                .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
                .stdout(Stdio::piped())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(&exported, &out.stdout).unwrap();
            // Exports are deterministic: the same layer gives the same bytes.
            let again = a
                .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
                .output()
                .unwrap();
            assert_eq!(
                again.stdout, out.stdout,
                "export of layer {k} is not deterministic"
            );
            let lb = b.import(pb.as_deref(), &exported);
            assert_eq!(a.manifest_of(&la), b.manifest_of(&lb), "layer {k}");
            pa = Some(la);
            pb = Some(lb);
        }
    });
}

#[test]
fn hostile_layers_change_nothing_outside_the_root_needs_root() {
    if !needs_mounts("hostile_layers_change_nothing_outside_the_root_needs_root") {
        return;
    }
    each_backend(|backend| {
        let data = Layercheck::generate();
        for tar in data.hostile_layers() {
            let name = tar.file_stem().unwrap().to_string_lossy().into_owned();
            let store = Store::new(backend);
            let outside = store.dir.path();
            let canary = outside.join("outside-canary");
            std::fs::write(&canary, b"canary").unwrap();
            let before: Vec<_> = std::fs::read_dir(outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            let tmp_escapes =
                ["escaped-absolute", "escaped-abs-symlink"].map(|n| std::env::temp_dir().join(n));
            let tmp_before: Vec<bool> = tmp_escapes.iter().map(|p| p.exists()).collect();

            let out = store.run(&["import-layer", tar.to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&out.stderr);

            assert_eq!(
                std::fs::read(&canary).unwrap(),
                b"canary",
                "{name} changed the canary"
            );
            let mut after: Vec<_> = std::fs::read_dir(outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            after.retain(|n| !before.contains(n) && n != "store" && n != "run");
            assert!(
                after.is_empty(),
                "{name} created {after:?} outside the store"
            );
            let tmp_after: Vec<bool> = tmp_escapes.iter().map(|p| p.exists()).collect();
            assert_eq!(tmp_before, tmp_after, "{name} wrote into /tmp");
            assert!(!Path::new("/escaped-dotdot").exists() && !Path::new("/escaped-deep").exists());

            if name == "garbage" || name == "truncated" {
                assert!(!out.status.success(), "{name} was accepted");
                assert_eq!(stderr.trim().lines().count(), 1, "{name}: {stderr}");
                assert!(stderr.contains("invalid archive"), "{name}: {stderr}");
                assert_eq!(
                    store.ok(&["layers", "--json"]),
                    "[]",
                    "{name} left a layer listed"
                );
                // No layer data without a record: what `check` compares, on any backend.
                let out = store.run(&["check"]);
                assert!(
                    out.status.success(),
                    "{name} left something behind: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        }
    });
}

#[test]
fn a_wrong_sum_leaves_nothing_behind_needs_root() {
    if !needs_mounts("a_wrong_sum_leaves_nothing_behind_needs_root") {
        return;
    }
    each_backend(|backend| {
        let data = Layercheck::generate();
        let store = Store::new(backend);
        let wrong = format!("sha256:{}", "0".repeat(64));
        let out = store.run(&[
            "import-layer",
            "--sum",
            &wrong,
            data.chain_layer(1).to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("digest mismatch"));
        assert_eq!(store.ok(&["layers", "--json"]), "[]");
        // The right sum is accepted.
        let bytes = std::fs::read(data.chain_layer(1)).unwrap();
        let right = {
            let out = Command::new("sha256sum")
                .arg(data.chain_layer(1))
                .output()
                .unwrap();
            format!(
                "sha256:{}",
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .next()
                    .unwrap()
            )
        };
        assert!(!bytes.is_empty());
        store.ok(&[
            "import-layer",
            "--sum",
            &right,
            data.chain_layer(1).to_str().unwrap(),
        ]);
    });
}

#[test]
fn a_mounted_layer_cannot_be_deleted_needs_root() {
    if !needs_mounts("a_mounted_layer_cannot_be_deleted_needs_root") {
        return;
    }
    each_backend(|backend| {
        let data = Layercheck::generate();
        let store = Store::new(backend);
        let l1 = store.import(None, &data.chain_layer(1));
        let l2 = store.import(Some(&l1), &data.chain_layer(2));
        let out = store.run(&["delete-layer", &l1]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("has child layers"));
        store.ok(&["mount", &l2]);
        store.ok(&["mount", &l2]);
        let out = store.run(&["delete-layer", &l2]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("mounted 2 time"));
        store.ok(&["unmount", &l2]);
        store.ok(&["unmount", &l2]);
        store.ok(&["delete-layer", &l2]);
        store.ok(&["delete-layer", &l1]);
        assert_eq!(store.ok(&["layers", "--json"]), "[]");
    });
}

#[test]
fn header_only_and_filtered_diffs_need_root() {
    if !needs_mounts("header_only_and_filtered_diffs_need_root") {
        return;
    }
    each_backend(|backend| {
        let data = Layercheck::generate();
        let store = Store::new(backend);
        let l1 = store.import(None, &data.chain_layer(1));
        let l2 = store.import(Some(&l1), &data.chain_layer(2));

        let out = store.run(&["diff", "--no-data", &l2]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for kind in ["A", "C", "D"] {
            assert!(
                text.contains(&format!("STRATA.changetype={kind}\n")),
                "no {kind} entry in the header-only diff"
            );
        }
        // blob3's 2048 bytes are not in a header-only export, only its recorded size.
        assert!(text.contains("STRATA.size=2048\n"));

        let listing = |args: &[&str]| {
            let mut cmd = store.cmd(args);
            let tar = cmd.output().unwrap().stdout;
            let mut child = Command::new("tar")
                .arg("-tf")
                .arg("-")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar).unwrap();
            drop(child.stdin.take());
            let out = child.wait_with_output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let names = listing(&[
            "diff",
            "--exclude",
            "usr",
            "--exclude",
            "swap",
            "--rebase",
            "r",
            &l2,
        ]);
        assert!(names.lines().all(|n| n.starts_with("r/")), "{names}");
        assert!(
            names.contains("r/etc/passwd") && names.contains("r/.wh.gone"),
            "{names}"
        );
        assert!(!names.contains("usr") && !names.contains("swap"), "{names}");
        let names = listing(&[
            "diff",
            "--include",
            "etc",
            "--exclude",
            "",
            "--strip",
            "etc",
            &l2,
        ]);
        assert_eq!(names.lines().collect::<Vec<_>>(), ["passwd"], "{names}");
    });
}

#[test]
fn deletion_rules_hold_for_children_images_and_containers_needs_root() {
    if !needs_mounts("deletion_rules_hold_for_children_images_and_containers_needs_root") {
        return;
    }
    each_backend(|backend| {
        let data = Layercheck::generate();
        let store = Store::new(backend);
        let l1 = store.import(None, &data.chain_layer(1));
        let l2 = store.import(Some(&l1), &data.chain_layer(2));
        let refused = |args: &[&str], says: &str| {
            let out = store.run(args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && err.contains(says),
                "{args:?}: {err}"
            );
        };
        refused(&["delete-layer", &l1], "has child layers");
        let image = store.ok(&["create-image", "-n", "img", &l2]);
        refused(&["delete-layer", &l2], "is used by image(s)");
        let container = store.ok(&["create-container", "-n", "c", "img"]);
        let rw: serde_json::Value =
            serde_json::from_str(&store.ok(&["container", "c", "--json"])).unwrap();
        let rw = rw[0]["layer"].as_str().unwrap().to_owned();
        refused(
            &["delete-layer", &rw],
            "is the read-write layer of container",
        );
        refused(&["delete-image", "img"], "is used by container(s)");
        // Nothing was lost to the refusals.
        let layers = || {
            let listed: serde_json::Value =
                serde_json::from_str(&store.ok(&["layers", "--json"])).unwrap();
            listed.as_array().unwrap().len()
        };
        assert_eq!(layers(), 3);
        store.ok(&["check"]);
        // Deleting the container removes its layer; deleting the image, the layers
        // nobody else needs.
        store.ok(&["delete-container", &container]);
        assert_eq!(layers(), 2);
        store.ok(&["delete-image", &image]);
        assert_eq!(store.ok(&["layers", "--json"]), "[]");
        store.ok(&["check"]);
    });
}

#[test]
fn a_containers_changes_are_what_it_wrote_and_its_diff_rebuilds_its_tree_needs_root() {
    if !needs_mounts(
        "a_containers_changes_are_what_it_wrote_and_its_diff_rebuilds_its_tree_needs_root",
    ) {
        return;
    }
    each_backend(|backend| {
        let data = Layercheck::generate();
        let store = Store::new(backend);
        let l1 = store.import(None, &data.chain_layer(1));
        store.ok(&["create-image", "-n", "img", &l1]);
        store.ok(&["create-container", "-n", "c", "img"]);
        let root = PathBuf::from(store.ok(&["mount", "c"]));
        std::fs::write(root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::create_dir(root.join("new-dir")).unwrap();
        std::fs::write(root.join("new-dir/file"), b"new").unwrap();
        std::fs::remove_file(root.join("del-me")).unwrap();
        let tree = Layercheck::manifest(&root);
        store.ok(&["unmount", "c"]);

        let c: serde_json::Value =
            serde_json::from_str(&store.ok(&["container", "c", "--json"])).unwrap();
        let rw = c[0]["layer"].as_str().unwrap().to_owned();
        let changes = store.ok(&["changes", &rw]);
        assert_eq!(
            changes.lines().collect::<Vec<_>>(),
            [
                "Delete \"/del-me\"",
                "Modify \"/etc\"",
                "Modify \"/etc/passwd\"",
                "Add \"/new-dir\"",
                "Add \"/new-dir/file\"",
            ],
            "{changes}"
        );
        // The container's diff, imported as a layer on the same parent, mounts to the
        // container's tree.
        let out = store.cmd(&["diff", &rw]).output().unwrap();
        assert!(out.status.success());
        let tar = store.dir.path().join("container.tar");
        std::fs::write(&tar, &out.stdout).unwrap();
        let rebuilt = store.import(Some(&l1), &tar);
        assert_eq!(store.manifest_of(&rebuilt), tree);
    });
}

#[test]
fn unchanged_layers_diff_to_the_bytes_imported_until_written_again_needs_root() {
    if !needs_mounts("unchanged_layers_diff_to_the_bytes_imported_until_written_again_needs_root") {
        return;
    }
    each_backend(|backend| {
        let data = Layercheck::generate();
        let store = Store::new(backend);
        let mut parent: Option<String> = None;
        let mut last = (String::new(), Vec::new());
        for k in 1..=3 {
            let layer = store.import(parent.as_deref(), &data.chain_layer(k));
            let out = store.cmd(&["diff", &layer]).output().unwrap();
            assert!(out.status.success());
            let input = std::fs::read(data.chain_layer(k)).unwrap();
            assert!(
                out.stdout == input,
                "layer {k} did not come back byte for byte"
            );
            parent = Some(layer.clone());
            last = (layer, input);
        }
        // A second diff applied to the layer (where the backend takes one): the imported
        // bytes are no longer its diff.
        let (layer, input) = last;
        let mut extra = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(6);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        extra
            .append_data(&mut h, "added-later", &b"later\n"[..])
            .unwrap();
        let extra_path = store.dir.path().join("extra.tar");
        std::fs::write(&extra_path, extra.into_inner().unwrap()).unwrap();
        let applied = store.run(&["applydiff", &layer, extra_path.to_str().unwrap()]);
        if !applied.status.success() {
            // A backend whose complete layers are never written again (vmdk) says so;
            // its layers cannot change, so their imported bytes stay their diff.
            let stderr = String::from_utf8_lossy(&applied.stderr);
            assert!(stderr.contains("not supported"), "{stderr}");
            return;
        }
        let out = store.cmd(&["diff", &layer]).output().unwrap();
        assert!(out.status.success());
        assert!(out.stdout != input);
        let mut names = Vec::new();
        for entry in tar::Archive::new(&out.stdout[..]).entries().unwrap() {
            names.push(entry.unwrap().path().unwrap().display().to_string());
        }
        assert!(names.iter().any(|n| n == "added-later"), "{names:?}");
    });
}
