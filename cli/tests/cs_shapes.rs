//! containers-storage's argument shapes and verbs, beside strata's own, through the
//! binary: `import-layer -f FILE [PARENT]` and `import-layer PARENT < tar`,
//! `create-layer PARENT`, `applydiff -f`, `diff -f/-c/-u` and a reference layer, several
//! layers to `delete-layer`, `layers -t/-j`, `mounted`, `copy`, `layer-parent-owners`
//! and `version`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::PathBuf;

use common::CliStore;
use testkit::{Requirement, require};

fn one_file_tar(name: &str, body: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(body.len() as u64);
    b.append_data(&mut h, name, body).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn containers_storage_argument_shapes_and_verbs_work_needs_root() {
    if !require(
        "containers_storage_argument_shapes_and_verbs_work_needs_root",
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    ) {
        return;
    }
    let store = CliStore::new("cs-shapes");
    let dir = store.scratch().to_owned();
    let base_tar = dir.join("base.tar");
    std::fs::write(&base_tar, one_file_tar("base", b"base\n")).unwrap();
    let mid_tar = dir.join("mid.tar");
    std::fs::write(&mid_tar, one_file_tar("mid", b"mid\n")).unwrap();
    let (base_f, mid_f) = (base_tar.to_str().unwrap(), mid_tar.to_str().unwrap());

    // import-layer: -f FILE, -f FILE PARENT, and PARENT with the tar on standard input.
    let base = store.ok(&["import-layer", "-f", base_f]);
    let mid = store.ok(&["import-layer", "-n", "mid", "-f", mid_f, &base]);
    let piped = store.run_with_input(&["import-layer", &base], &std::fs::read(&mid_tar).unwrap());
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let sibling = String::from_utf8(piped.stdout).unwrap().trim().to_owned();
    for (id, parent) in [(&mid, &base), (&sibling, &base)] {
        let layer = store.json(&["layer", "--json", id]);
        assert_eq!(layer[0]["parent"], parent.as_str(), "{layer}");
    }
    let neither = store.run(&["import-layer", "no-such-thing"]);
    assert!(!neither.status.success());
    assert!(
        String::from_utf8_lossy(&neither.stderr).contains("no file and no layer"),
        "{neither:?}"
    );

    // create-layer PARENT, then applydiff -f FILE LAYER.
    let top = store.ok(&["create-layer", &mid]);
    assert_eq!(
        store.json(&["layer", "-j", &top])[0]["parent"],
        mid.as_str()
    );
    store.ok(&["applydiff", "-f", base_f, &top]);

    // diff: -f writes the file whole; -u is the default; -c is gzip of the same; a
    // second argument is the layer to compare with.
    let plain = store.cmd(&["diff", &mid]).output().unwrap().stdout;
    let out = dir.join("mid.tar.out");
    store.ok(&["diff", "-u", "-f", out.to_str().unwrap(), &mid]);
    assert_eq!(std::fs::read(&out).unwrap(), plain);
    let gz = dir.join("mid.tgz");
    store.ok(&["diff", "-c", "-f", gz.to_str().unwrap(), &mid]);
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap())
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain);
    let against = store.cmd(&["diff", &top, &base]).output().unwrap().stdout;
    let from = store
        .cmd(&["diff", "--from", &base, &top])
        .output()
        .unwrap()
        .stdout;
    assert!(!against.is_empty());
    assert_eq!(against, from);
    let failed = dir.join("never.tar");
    assert!(
        !store
            .run(&["diff", "-f", failed.to_str().unwrap(), "nothing"])
            .status
            .success()
    );
    assert!(!failed.exists(), "a failed diff left its file");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.to_string_lossy().ends_with(".part")),
        "{names:?}"
    );

    // layers -t shows the tree; -j is --json.
    let tree = store.ok(&["layers", "-t"]);
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines[0], "(base)");
    assert_eq!(lines[1], format!("└─{base}"));
    assert!(lines.contains(&format!("  ├─{mid}").as_str()), "{tree}");
    assert!(lines.contains(&"  │ name: mid"), "{tree}");
    assert!(lines.contains(&format!("  │ └─{top}").as_str()), "{tree}");
    assert!(lines.contains(&format!("  └─{sibling}").as_str()), "{tree}");
    assert_eq!(store.ok(&["layers", "-j"]), store.ok(&["layers", "--json"]));

    // mounted: `ID mounted` only while it is; an unknown id is an error.
    store.ok(&["mount", &top]);
    assert_eq!(
        store.ok(&["mounted", &top, &base]),
        format!("{top} mounted")
    );
    let listed = store.run(&["mounted", "-j", &top, "nothing"]);
    assert!(!listed.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["mounted"], true);
    assert_eq!(listed[1]["mounted"], false);
    assert!(listed[1]["error"].as_str().unwrap().contains("not found"));
    store.ok(&["unmount", &top]);
    assert_eq!(store.ok(&["mounted", &top]), "");

    // copy: a host file into a directory, a host directory's contents, a file out of
    // another layer; a target path that climbs out still lands inside the layer.
    let host = dir.join("host");
    std::fs::create_dir_all(host.join("tree/sub")).unwrap();
    std::fs::write(host.join("note"), b"a note\n").unwrap();
    std::fs::write(host.join("tree/sub/deep"), b"deep\n").unwrap();
    let note = host.join("note");
    let tree = host.join("tree");
    store.ok(&["copy", note.to_str().unwrap(), &format!("{top}:/docs/")]);
    store.ok(&["copy", tree.to_str().unwrap(), &format!("{top}:/data")]);
    store.ok(&["copy", &format!("{mid}:/mid"), &format!("{top}:/from-mid")]);
    store.ok(&[
        "copy",
        note.to_str().unwrap(),
        &format!("{top}:../../../escaped"),
    ]);
    let missing = store.run(&["copy", "/no/such/path", &format!("{top}:/x")]);
    assert!(!missing.status.success());
    let into_host = store.run(&["copy", note.to_str().unwrap(), "/tmp/x"]);
    assert!(!into_host.status.success(), "a host target was accepted");
    let merged = PathBuf::from(store.ok(&["mount", "--read-only", &top]));
    assert_eq!(
        std::fs::read(merged.join("docs/note")).unwrap(),
        b"a note\n"
    );
    assert_eq!(
        std::fs::read(merged.join("data/sub/deep")).unwrap(),
        b"deep\n"
    );
    assert_eq!(std::fs::read(merged.join("from-mid")).unwrap(), b"mid\n");
    assert_eq!(std::fs::read(merged.join("escaped")).unwrap(), b"a note\n");
    assert!(!std::path::Path::new("/escaped").exists());
    store.ok(&["unmount", &top]);

    // No strata layer has ID mappings, so no parent owner is unmapped: null sets, as
    // containers-storage prints for a layer without mappings.
    let owners = store.json(&["layer-parent-owners", "-j", &top]);
    assert_eq!(
        owners,
        serde_json::json!([{ "ID": top, "UIDs": null, "GIDs": null }])
    );
    assert!(
        !store
            .run(&["layer-parent-owners", "nothing"])
            .status
            .success()
    );

    // delete-layer takes several, children first.
    store.ok(&["delete-layer", &top, &sibling, &mid, &base]);
    assert_eq!(store.ok(&["layers"]), "");

    let version = store.json(&["version", "-j"]);
    assert_eq!(version["Version"], env!("CARGO_PKG_VERSION"));
}
