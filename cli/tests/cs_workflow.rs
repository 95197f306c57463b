//! A script of containers-storage's workflow (`scripts/cs_workflow.sh`: layers imported
//! and diffed onto, an image with names, metadata and big data, a container mounted,
//! written and diffed, then deletes), written against `containers-storage`'s command line,
//! runs unchanged against `strata`. Every JSON file it collects has the same structure
//! from both, and what the two must agree on (names, metadata, big data, digests, the
//! container's changes and its diff's entries) is equal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::json_shape as shape;
use serde_json::Value;
use testkit::{Requirement, require};

/// Writes the script's inputs into `dir`: two layer tars and a big-data item.
fn inputs(dir: &Path) {
    for (tree, files) in [
        (
            "base",
            vec![("etc/from-base", "base\n"), ("etc/kept", "kept\n")],
        ),
        ("top", vec![("usr/from-top", "top\n")]),
    ] {
        let root = dir.join(tree);
        for (path, body) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, body).unwrap();
        }
        if tree == "base" {
            std::os::unix::fs::chown(root.join("etc/kept"), Some(1000), Some(100)).unwrap();
        }
        let status = Command::new("tar")
            .arg("-cf")
            .arg(dir.join(format!("{tree}.tar")))
            .arg("-C")
            .arg(&root)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
    }
    std::fs::write(dir.join("item"), b"item-data\n").unwrap();
}

/// Runs the script with `binary` in `dir`; returns the directory of what it collected.
fn run_script(binary: &str, dir: &Path, tars: &Path) -> std::path::PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/cs_workflow.sh");
    let out = dir.join("out");
    let run = Command::new("sh")
        .arg(&script)
        .arg(binary)
        .arg(dir.join("graph"))
        .arg(dir.join("run"))
        .arg(&out)
        .arg(tars)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the workflow failed against {binary}: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

fn json(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"))
}

#[test]
fn the_containers_storage_workflow_script_runs_unchanged_with_the_same_json_needs_root() {
    if !require(
        "the_containers_storage_workflow_script_runs_unchanged_with_the_same_json_needs_root",
        &[
            Requirement::Root,
            Requirement::Filesystem("overlay"),
            Requirement::Command("containers-storage"),
        ],
    ) {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let tars = scratch.path().join("inputs");
    inputs(&tars);
    let (theirs_dir, ours_dir) = (scratch.path().join("cs"), scratch.path().join("strata"));
    let theirs = run_script("containers-storage", &theirs_dir, &tars);
    let strata = env!("CARGO_BIN_EXE_strata");
    let ours = run_script(strata, &ours_dir, &tars);
    for (binary, dir) in [("containers-storage", &theirs_dir), (strata, &ours_dir)] {
        let _ = Command::new(binary)
            .arg("--graph")
            .arg(dir.join("graph"))
            .arg("--run")
            .arg(dir.join("run"))
            .arg("shutdown")
            .output();
    }

    let mut files: Vec<String> = std::fs::read_dir(&theirs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "the script collected {files:?}");
    for name in &files {
        let (t, o) = (json(&theirs, name), json(&ours, name));
        assert_eq!(
            shape(&o),
            shape(&t),
            "{name}: strata printed {o}, containers-storage {t}"
        );
    }
    // What both must agree on, value for value.
    for name in [
        "get-names.json",
        "metadata.json",
        "list-image-data.json",
        "exists.json",
        "changes.json",
    ] {
        assert_eq!(json(&ours, name), json(&theirs, name), "{name}");
    }
    for name in ["get-image-data", "ctr.list"] {
        let (o, t) = (
            std::fs::read(ours.join(name)).unwrap(),
            std::fs::read(theirs.join(name)).unwrap(),
        );
        assert_eq!(o, t, "{name}");
    }
    let (o, t) = (json(&ours, "image.json"), json(&theirs, "image.json"));
    for key in ["names", "names-history", "metadata", "big-data-digests"] {
        assert_eq!(o[0][key], t[0][key], "image {key}");
    }
    // The same tars give the same digests and owner sets, applydiff's layer included.
    let digests = |layers: &Value| -> Vec<(Value, Value, Value)> {
        layers
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["diff-digest"].clone(),
                    l["uidset"].clone(),
                    l["gidset"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(
        digests(&json(&ours, "layers.json")),
        digests(&json(&theirs, "layers.json"))
    );
}
