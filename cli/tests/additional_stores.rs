//! A store with a read-only additional store, through the `strata` binary: every change
//! asked of the additional store's objects is refused as read-only (never "not found"),
//! reads of them work, and `wipe` removes everything of the store's own and nothing of
//! the additional store's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

struct Store<'a> {
    dir: &'a Path,
    name: &'a str,
    additional: Option<&'a str>,
}

impl Store<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.arg("--root")
            .arg(self.dir.join(self.name))
            .arg("--run-root")
            .arg(self.dir.join(format!("{}-run", self.name)));
        if let Some(a) = self.additional {
            c.arg("--additional-store").arg(self.dir.join(a));
        }
        c.args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn ids(&self, verb: &str) -> Vec<String> {
        let listed: serde_json::Value = serde_json::from_str(&self.ok(&[verb, "--json"])).unwrap();
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A store `a` with a layer and an image, and `b` using it as its additional store,
/// with its own layer on `a`'s, an image and a container.
fn two_stores(dir: &Path) -> (String, String) {
    let tar = dir.join("t.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .args(["-C", "/etc", "hostname"])
        .status()
        .unwrap();
    assert!(status.success());
    let a = Store {
        dir,
        name: "a",
        additional: None,
    };
    let layer = a.ok(&["import-layer", "--name", "base", tar.to_str().unwrap()]);
    let image = a.ok(&["create-image", "--name", "a:1", &layer]);
    a.ok(&["set-metadata", "-m", "from a", &image]);
    let b = Store {
        dir,
        name: "b",
        additional: Some("a"),
    };
    let own = b.ok(&["import-layer", "--parent", &layer, tar.to_str().unwrap()]);
    let own_image = b.ok(&["create-image", "--name", "b:1", &own]);
    b.ok(&["create-container", "--name", "box", &own_image]);
    (layer, image)
}

#[test]
fn changes_to_an_additional_stores_objects_are_refused_as_read_only_and_reads_work() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, image) = two_stores(dir.path());
    let b = Store {
        dir: dir.path(),
        name: "b",
        additional: Some("a"),
    };
    for args in [
        vec!["delete-layer", layer.as_str()],
        vec!["delete-image", image.as_str()],
        vec!["delete", layer.as_str()],
        vec!["delete", "a:1"],
        vec!["set-metadata", "-m", "x", layer.as_str()],
        vec!["set-metadata", "-m", "x", "a:1"],
        vec!["add-names", "-n", "more", layer.as_str()],
        vec!["set-names", "-n", "other", "a:1"],
        vec!["remove-names", "-n", "base", "base"],
    ] {
        let out = b.run(&args);
        assert!(!out.status.success(), "strata {args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("read-only additional store") && !err.contains("not found"),
            "strata {args:?}: {err}"
        );
    }
    assert_eq!(b.ok(&["metadata", "-q", "a:1"]), "from a");
    assert!(
        b.ok(&["get-names", "base"]).contains("base"),
        "names of a's layer"
    );
    b.ok(&["exists", "-l", &layer]);
    b.ok(&["exists", "-i", "a:1"]);
    b.ok(&["exists", "base"]);
}

#[test]
fn wipe_with_an_additional_store_removes_all_of_its_own_and_none_of_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, image) = two_stores(dir.path());
    let a = Store {
        dir: dir.path(),
        name: "a",
        additional: None,
    };
    let b = Store {
        dir: dir.path(),
        name: "b",
        additional: Some("a"),
    };
    let a_before = (a.ids("layers"), a.ids("images"));
    b.ok(&["wipe"]);
    // What b lists now is a's alone, and a is as it was.
    assert_eq!(b.ids("layers"), vec![layer.clone()]);
    assert_eq!(b.ids("images"), vec![image.clone()]);
    assert!(b.ids("containers").is_empty());
    assert_eq!((a.ids("layers"), a.ids("images")), a_before);
    let alone = Store {
        dir: dir.path(),
        name: "b",
        additional: None,
    };
    assert!(alone.ids("layers").is_empty());
    alone.ok(&["check"]);
    // Nothing of b's is left on disk: no layer data, no container directory.
    for sub in ["overlay", "containers"] {
        let left: Vec<_> = std::fs::read_dir(dir.path().join("b").join(sub))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.iter()
                .all(|n| n.to_string_lossy().starts_with('.') || n == "l" || n == "empty"),
            "b/{sub} still holds {left:?}"
        );
    }
}

#[test]
fn a_containers_storage_root_is_refused_as_root_and_as_additional_store_and_left_as_it_was() {
    if !testkit::require(
        "a_containers_storage_root_is_refused_as_root_and_as_additional_store_and_left_as_it_was",
        &[testkit::Requirement::Command("containers-storage")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("cs");
    let cs = |args: &[&str]| {
        common::containers_storage(dir.path(), args)
            .trim()
            .to_owned()
    };
    let layer = cs(&["create-layer"]);
    cs(&["create-image", &layer]);
    let before = listing(&graph);

    let as_root = Store {
        dir: dir.path(),
        name: "cs",
        additional: None,
    };
    let as_additional = Store {
        dir: dir.path(),
        name: "own",
        additional: Some("cs"),
    };
    for store in [&as_root, &as_additional] {
        let out = store.run(&["layers"]);
        assert!(!out.status.success(), "a containers-storage root opened");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("containers-storage store") && err.contains(&*graph.to_string_lossy()),
            "{err}"
        );
    }
    assert_eq!(
        listing(&graph),
        before,
        "strata changed the containers-storage store"
    );
}

/// Every path under `dir` with its size, sorted.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                todo.push(e.path());
            }
            out.push((e.path().display().to_string(), meta.len()));
        }
    }
    out.sort();
    out
}

#[test]
fn an_additional_stores_unchanged_layer_diffs_to_the_bytes_it_was_imported_from() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // GNU tar writes what the deterministic exporter would not (uname, gname, its own
    // field layout), so only a replay of the records gives these bytes back.
    let tar = d.join("gnu.tar");
    let status = Command::new("tar")
        .args(["--format=gnu", "-cf"])
        .arg(&tar)
        .args(["-C", "/etc", "hostname", "passwd"])
        .status()
        .unwrap();
    assert!(status.success());
    let a = Store {
        dir: d,
        name: "a",
        additional: None,
    };
    let layer = a.ok(&["import-layer", tar.to_str().unwrap()]);
    let b = Store {
        dir: d,
        name: "b",
        additional: Some("a"),
    };
    let out = b.run(&["diff", &layer]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == std::fs::read(&tar).unwrap(),
        "the lent layer's diff is not the tar it was imported from"
    );
}

#[test]
fn an_item_missing_from_this_stores_object_is_not_taken_from_a_lent_object_of_that_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let item = d.join("item");
    std::fs::write(&item, b"the lent image's item\n").unwrap();
    let a = Store {
        dir: d,
        name: "a",
        additional: None,
    };
    let lent = a.ok(&["create-image", "--name", "same"]);
    a.ok(&["set-image-data", "-f", item.to_str().unwrap(), &lent, "k"]);
    let b = Store {
        dir: d,
        name: "b",
        additional: Some("a"),
    };
    let own = b.ok(&["create-image", "--name", "same"]);
    let out = b.run(&["get-image-data", "same", "k"]);
    assert!(
        !out.status.success(),
        "image {own} answered with image {lent}'s item: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The lent image's own item still reads, by its id.
    assert_eq!(
        b.ok(&["get-image-data", &lent, "k"]),
        "the lent image's item"
    );
}
