//! Whole images in and out, against real producers and consumers: layouts written by
//! umoci, by skopeo and by hand from GNU tar layers (long names, PAX records, hard links,
//! sparse files, sub-second times; plain, gzip and zstd) pull into strata with what
//! `skopeo copy … containers-storage:` records; a pull, push and pull again keeps the
//! image's id and layers; every pulled layer's diff hashes to its diff_id; a broken source
//! fails naming the blob and leaves nothing; and runc runs a container on a pulled image.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{CliStore, check_consistent};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::{Requirement, require};

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An image built by umoci from files on this machine: busybox, then a layer of long
/// names, a hard link and sub-second times, then one that deletes a file.
fn umoci_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("umoci");
    let bundle = dir.join("bundle");
    let umoci = |args: &[&str]| run(Command::new("umoci").args(args));
    let l = layout.to_str().unwrap();
    let b = bundle.to_str().unwrap();
    let image = format!("{l}:v1");
    umoci(&["init", "--layout", l]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--image", &image, b]);
    let root = bundle.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("gone"), b"deleted in layer 3\n").unwrap();
    umoci(&["repack", "--refresh-bundle", "--image", &image, b]);
    let deep = root.join("d".repeat(90)).join("e".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f".repeat(120)), b"long name\n").unwrap();
    std::fs::hard_link(deep.join("f".repeat(120)), root.join("hardlink")).unwrap();
    run(Command::new("touch")
        .args(["-d", "2020-01-02 03:04:05.678901234"])
        .arg(root.join("hardlink")));
    umoci(&["repack", "--refresh-bundle", "--image", &image, b]);
    std::fs::remove_file(root.join("gone")).unwrap();
    std::fs::write(root.join("new"), b"layer 3\n").unwrap();
    umoci(&["repack", "--refresh-bundle", "--image", &image, b]);
    umoci(&["config", "--image", &image, "--config.cmd", "/bin/sh"]);
    layout
}

/// Writes `data` as a blob of the layout at `dir`; returns its descriptor.
fn blob(dir: &Path, media_type: &str, data: &[u8]) -> Value {
    let digest = sha256(data);
    let path = dir.join("blobs/sha256").join(&digest[7..]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    json!({ "mediaType": media_type, "digest": digest, "size": data.len() })
}

/// The blob `digest` (`sha256:…`) of the layout at `layout`, parsed as JSON.
fn json_blob(layout: &Path, digest: &str) -> Value {
    let path = layout.join("blobs/sha256").join(&digest[7..]);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The manifest the index of the layout at `layout` names first.
fn first_manifest(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    json_blob(layout, index["manifests"][0]["digest"].as_str().unwrap())
}

/// A layout written by hand from layers GNU tar made: a `--format=gnu` layer with long
/// names (gzip), a `--format=posix` layer with a sparse file, PAX times, a hard link and
/// a long name (zstd), and a third one; every layer plain with `plain`. (Old GNU sparse
/// entries, type `S`, are left to the tar engine's own tests: containers-storage cannot
/// read them.) The image is tagged `v1`; an index with it and an image for another
/// platform is tagged `multi`.
fn gnu_layout(dir: &Path, plain: bool) -> PathBuf {
    let layout = dir.join(if plain { "gnu-plain" } else { "gnu" });
    let src = dir.join("gnu-src");
    let _ = std::fs::remove_dir_all(&src);
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (k, format, compress) in [
        (1, "--format=gnu", "gzip"),
        (2, "--format=posix", "zstd"),
        (3, "--format=posix", ""),
    ] {
        let root = src.join(format!("l{k}"));
        std::fs::create_dir_all(&root).unwrap();
        match k {
            1 => {
                let long = root.join("n".repeat(150));
                std::fs::create_dir_all(&long).unwrap();
                std::fs::write(long.join("m".repeat(140)), b"gnu long name\n").unwrap();
            }
            2 => {
                let f = std::fs::File::create(root.join("sparse")).unwrap();
                f.set_len(64 << 20).unwrap();
                use std::os::unix::fs::FileExt;
                f.write_all_at(b"in the middle", 32 << 20).unwrap();
                std::fs::write(root.join("pax-times"), b"sub-second\n").unwrap();
                std::fs::hard_link(root.join("pax-times"), root.join("linked")).unwrap();
                run(Command::new("touch")
                    .args(["-d", "2019-05-06 07:08:09.123456789"])
                    .arg(root.join("pax-times")));
                let long = root.join("p".repeat(200));
                std::fs::create_dir_all(&long).unwrap();
                std::fs::write(long.join("q".repeat(200)), b"pax long name\n").unwrap();
            }
            _ => std::fs::write(root.join("plain"), b"plain layer\n").unwrap(),
        }
        let tar = src.join(format!("l{k}.tar"));
        run(Command::new("tar")
            .args([format, "--sparse", "-C"])
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        let tar_bytes = std::fs::read(&tar).unwrap();
        diff_ids.push(sha256(&tar_bytes));
        let (bytes, media) = match (plain, compress) {
            (false, "gzip") => {
                run(Command::new("gzip").arg("-kf").arg(&tar));
                (
                    std::fs::read(tar.with_extension("tar.gz")).unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
            (false, "zstd") => {
                run(Command::new("zstd").arg("-qf").arg(&tar));
                (
                    std::fs::read(tar.with_extension("tar.zst")).unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                )
            }
            _ => (tar_bytes, "application/vnd.oci.image.layer.v1.tar"),
        };
        layers.push(blob(&layout, media, &bytes));
    }
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config = blob(
        &layout,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": layers,
    });
    let mut manifest = blob(
        &layout,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    // Another platform's image: only its config differs.
    let other_config = json!({
        "architecture": "s390x", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let other_config = blob(
        &layout,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&other_config).unwrap(),
    );
    let other = blob(
        &layout,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": other_config, "layers": layers,
        }))
        .unwrap(),
    );
    let mut host = manifest.clone();
    host["platform"] = json!({ "os": "linux", "architecture": host_arch() });
    let mut s390x = other;
    s390x["platform"] = json!({ "os": "linux", "architecture": "s390x" });
    let mut index = blob(
        &layout,
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [s390x, host],
        }))
        .unwrap(),
    );
    manifest["annotations"] = json!({ "org.opencontainers.image.ref.name": "v1" });
    index["annotations"] = json!({ "org.opencontainers.image.ref.name": "multi" });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": [manifest, index] })).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layout
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The pulled image's record and its layers, bottom first.
fn pulled(store: &CliStore, image: &str) -> (Value, Vec<Value>) {
    let record = store.json(&["image", "--json", image])[0].clone();
    let layers = store.json(&["layers", "--json"]);
    let mut chain = Vec::new();
    let mut next = record["layer"].as_str().map(str::to_owned);
    while let Some(id) = next {
        let layer = layers
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == id.as_str())
            .unwrap()
            .clone();
        next = layer["parent"].as_str().map(str::to_owned);
        chain.push(layer);
    }
    chain.reverse();
    (record, chain)
}

/// The uncompressed digests of a chain's layers.
fn tar_digests(chain: &[Value]) -> Vec<Value> {
    chain.iter().map(|l| l["diff-digest"].clone()).collect()
}

/// Every layer's diff hashes to its recorded uncompressed digest.
fn diffs_are_byte_exact(store: &CliStore, chain: &[Value]) {
    for layer in chain {
        let id = layer["id"].as_str().unwrap();
        let out = store.cmd(&["diff", id]).output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            sha256(&out.stdout),
            layer["diff-digest"].as_str().unwrap(),
            "diff of layer {id}"
        );
    }
}

/// What containers-storage holds after `skopeo copy SOURCE containers-storage:NAME`.
struct Peer {
    dir: tempfile::TempDir,
}

impl Peer {
    fn copy(source: &str, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = Peer { dir };
        run(Command::new("skopeo").args([
            "copy",
            "-q",
            source,
            &format!(
                "containers-storage:[vfs@{}+{}]{name}",
                p.root().display(),
                p.dir.path().join("run").display()
            ),
        ]));
        p
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `containers-storage ARGS` on this store.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("containers-storage");
        c.arg("--graph")
            .arg(self.root())
            .arg("--run")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        c
    }

    fn cs(&self, args: &[&str]) -> String {
        run(&mut self.command(args))
    }

    /// Checks that strata's image `image` holds what containers-storage recorded.
    fn agrees_with(&self, store: &CliStore, image: &str) {
        let theirs: Value = serde_json::from_str(&self.cs(&["images", "--json"])).unwrap();
        let theirs = &theirs[0];
        let (ours, chain) = pulled(store, image);
        assert_eq!(ours["id"], theirs["id"]);
        assert_eq!(ours["digest"], theirs["digest"]);
        assert_eq!(ours["names"], theirs["names"]);
        let id = ours["id"].as_str().unwrap();
        let our_keys: Vec<String> = store
            .ok(&["list-image-data", id])
            .lines()
            .map(str::to_owned)
            .collect();
        // skopeo also records an empty signature list, which strata does not keep.
        let mut their_keys: Vec<String> = self
            .cs(&["list-image-data", id])
            .lines()
            .filter(|k| !k.starts_with("signature-"))
            .map(str::to_owned)
            .collect();
        their_keys.sort();
        let mut sorted = our_keys.clone();
        sorted.sort();
        assert_eq!(sorted, their_keys);
        for key in &our_keys {
            let out = store.cmd(&["get-image-data", id, key]).output().unwrap();
            let peer = self.command(&["get-image-data", id, key]).output().unwrap();
            assert_eq!(out.stdout, peer.stdout, "big data {key}");
        }
        let their_layers: Value = serde_json::from_str(&self.cs(&["layers", "--json"])).unwrap();
        // The same layers: ids (containers/image's chain of diff_ids), parents, digests.
        let facts = |l: &Value| {
            [
                l["diff-digest"].clone(),
                l["id"].clone(),
                l["parent"].clone(),
                l["compressed-diff-digest"].clone(),
                l["diff-size"].clone(),
            ]
        };
        let mut theirs: Vec<[Value; 5]> =
            their_layers.as_array().unwrap().iter().map(facts).collect();
        let mut ours: Vec<[Value; 5]> = chain.iter().map(facts).collect();
        theirs.sort_by_key(|t| t[0].to_string());
        ours.sort_by_key(|t| t[0].to_string());
        assert_eq!(ours, theirs);
    }
}

fn needs(test: &str, tools: &[&'static str]) -> bool {
    let mut reqs = vec![Requirement::Root, Requirement::Filesystem("overlay")];
    reqs.extend(tools.iter().map(|t| Requirement::Command(t)));
    require(test, &reqs)
}

#[test]
fn umoci_images_pull_as_skopeo_records_them_in_containers_storage() {
    if !needs(
        "umoci_images_pull_as_skopeo_records_them_in_containers_storage",
        &["umoci", "skopeo", "containers-storage"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = umoci_layout(dir.path());
    let source = format!("oci:{}:v1", layout.display());
    let peer = Peer::copy(&source, "example.com/umoci:v1");
    let store = CliStore::new("strata-pull-umoci-");
    let id = store.ok(&["pull", "--name", "example.com/umoci:v1", &source]);
    peer.agrees_with(&store, &id);
    let (_, chain) = pulled(&store, &id);
    assert_eq!(chain.len(), 3);
    diffs_are_byte_exact(&store, &chain);
    // Pulled again under another name: no layer is imported twice.
    let layers = store.complete_layer_ids();
    assert_eq!(store.ok(&["pull", "--name", "again", &source]), id);
    assert_eq!(store.complete_layer_ids(), layers);
    // Names are listed sorted.
    assert_eq!(
        store.json(&["image", "--json", &id])[0]["names"],
        json!(["again", "example.com/umoci:v1"])
    );
    check_consistent(&store, "pulls");
}

#[test]
fn gnu_tar_layers_in_every_compression_pull_as_skopeo_records_them() {
    if !needs(
        "gnu_tar_layers_in_every_compression_pull_as_skopeo_records_them",
        &["skopeo", "containers-storage", "tar", "gzip", "zstd"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = gnu_layout(dir.path(), false);
    let source = format!("oci:{}:v1", layout.display());
    let peer = Peer::copy(&source, "example.com/gnu:v1");
    let store = CliStore::new("strata-pull-gnu-");
    let id = store.ok(&["pull", "-n", "example.com/gnu:v1", &source]);
    peer.agrees_with(&store, &id);
    let (_, chain) = pulled(&store, &id);
    diffs_are_byte_exact(&store, &chain);
    // The sparse file keeps its holes in the store.
    let top = chain.last().unwrap()["id"].as_str().unwrap().to_owned();
    let mnt = PathBuf::from(store.ok(&["mount", &top]));
    let sparse = std::fs::metadata(mnt.join("sparse")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(sparse.len(), 64 << 20);
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "{} blocks",
        sparse.blocks()
    );
    store.ok(&["unmount", &top]);
}

#[test]
fn a_multi_platform_index_gives_the_hosts_image_unless_told_otherwise() {
    if !needs(
        "a_multi_platform_index_gives_the_hosts_image_unless_told_otherwise",
        &["tar", "gzip", "zstd"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = gnu_layout(dir.path(), false);
    let store = CliStore::new("strata-pull-platform-");
    let host = store.ok(&["pull", &format!("oci:{}:multi", layout.display())]);
    let plain = store.ok(&["pull", &format!("oci:{}:v1", layout.display())]);
    assert_eq!(host, plain);
    let layers = store.complete_layer_ids();
    let other = store.ok(&[
        "pull",
        "-n",
        "s390x",
        "--platform",
        "linux/s390x",
        &format!("oci:{}:multi", layout.display()),
    ]);
    assert_ne!(other, host);
    // Same layers, so nothing new was imported.
    assert_eq!(store.complete_layer_ids(), layers);
    let config = store.ok(&["get-image-data", &other, &format!("sha256:{other}")]);
    assert!(config.contains("s390x"), "{config}");
    let out = store.run(&[
        "pull",
        "--platform",
        "linux/mips",
        &format!("oci:{}:multi", layout.display()),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("platform linux/mips"));
}

#[test]
fn pull_push_pull_keeps_the_image_id_and_its_layers() {
    if !needs(
        "pull_push_pull_keeps_the_image_id_and_its_layers",
        &["umoci", "skopeo", "tar"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Plain layers come back as the same blobs, so even the manifest is kept.
    let plain = gnu_layout(dir.path(), true);
    let a = CliStore::new("strata-roundtrip-a-");
    let id = a.ok(&["pull", &format!("oci:{}:v1", plain.display())]);
    let (record, chain) = pulled(&a, &id);
    let b_dir = dir.path().join("b");
    let digest = a.ok(&[
        "push",
        "--compress",
        "none",
        &id,
        &format!("oci:{}:v1", b_dir.display()),
    ]);
    assert_eq!(digest, record["digest"].as_str().unwrap());
    let b = CliStore::new("strata-roundtrip-b-");
    let again = b.ok(&["pull", &format!("oci:{}:v1", b_dir.display())]);
    let (record_b, chain_b) = pulled(&b, &again);
    assert_eq!(again, id);
    assert_eq!(record_b["digest"], record["digest"]);
    assert_eq!(tar_digests(&chain_b), tar_digests(&chain));
    diffs_are_byte_exact(&b, &chain_b);

    // umoci's gzip layers are compressed again by strata: a new manifest, but the same
    // config (so the same image id) and tars; a second push gives the same blobs.
    let umoci = umoci_layout(dir.path());
    let c = CliStore::new("strata-roundtrip-c-");
    let id = c.ok(&["pull", &format!("oci:{}:v1", umoci.display())]);
    let (_, chain) = pulled(&c, &id);
    for (name, compress) in [("gz", "gzip"), ("zst", "zstd")] {
        let out = dir.path().join(format!("push-{name}.tar"));
        let digest = c.ok(&[
            "push",
            "--compress",
            compress,
            &id,
            &format!("oci-archive:{}:v2", out.display()),
        ]);
        // skopeo reads what strata wrote.
        let inspect = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}:v2", out.display())));
        assert!(inspect.contains(&digest), "{inspect}");
        let d = CliStore::new("strata-roundtrip-d-");
        let pulled_id = d.ok(&["pull", &format!("oci-archive:{}:v2", out.display())]);
        assert_eq!(pulled_id, id);
        let (record_d, chain_d) = pulled(&d, &pulled_id);
        assert_eq!(record_d["digest"].as_str().unwrap(), digest);
        assert_eq!(tar_digests(&chain_d), tar_digests(&chain));
        diffs_are_byte_exact(&d, &chain_d);
        let again = dir.path().join(format!("again-{name}"));
        let second = d.ok(&[
            "push",
            "--compress",
            compress,
            &pulled_id,
            &format!("oci:{}", again.display()),
        ]);
        assert_eq!(second, digest);
    }
}

#[test]
fn skopeo_archives_pull_with_their_names() {
    if !needs(
        "skopeo_archives_pull_with_their_names",
        &["umoci", "skopeo"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = umoci_layout(dir.path());
    let source = format!("oci:{}:v1", layout.display());
    let store = CliStore::new("strata-archives-");
    let id = store.ok(&["pull", &source]);
    let (_, chain) = pulled(&store, &id);
    let docker = dir.path().join("docker.tar");
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        &source,
        &format!("docker-archive:{}:example.com/docker:v1", docker.display()),
    ]));
    let docker_src = format!("docker-archive:{}", docker.display());
    let peer = Peer::copy(&docker_src, "example.com/docker:v1");
    let other = CliStore::new("strata-archives-docker-");
    let from_docker = other.ok(&["pull", &docker_src]);
    assert_eq!(from_docker, id, "the same config");
    peer.agrees_with(&other, &from_docker);
    let (_, docker_chain) = pulled(&other, &from_docker);
    assert_eq!(tar_digests(&docker_chain), tar_digests(&chain));
    diffs_are_byte_exact(&other, &docker_chain);

    let archive = dir.path().join("oci.tar");
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        &source,
        &format!("oci-archive:{}:tagged", archive.display()),
    ]));
    let third = CliStore::new("strata-archives-oci-");
    let from_archive = third.ok(&["pull", &format!("oci-archive:{}:tagged", archive.display())]);
    assert_eq!(from_archive, id);
    assert_eq!(
        third.json(&["image", "--json", &from_archive])[0]["names"],
        json!(["tagged"])
    );
}

/// Pulls `source` expecting a failure that names `blob`, and checks that the store holds
/// exactly what it held before.
fn fails_naming(store: &CliStore, source: &str, blob: &str) {
    let layers = store.complete_layer_ids();
    let images = store.image_ids();
    let out = store.run(&["pull", source]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{source}");
    assert!(stderr.contains(blob), "{stderr} does not name {blob}");
    assert_eq!(store.complete_layer_ids(), layers, "{stderr}");
    assert_eq!(store.image_ids(), images);
    check_consistent(store, source);
}

#[test]
fn a_broken_blob_fails_the_pull_naming_it_and_leaves_nothing() {
    if !needs(
        "a_broken_blob_fails_the_pull_naming_it_and_leaves_nothing",
        &["tar", "gzip", "zstd"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = CliStore::new("strata-broken-");
    // The second layer breaks, so the first was imported and must be undone.
    let fresh = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let layout = gnu_layout(&d, false);
        let manifest = first_manifest(&layout);
        let second = manifest["layers"][1]["digest"].as_str().unwrap().to_owned();
        let path = layout.join("blobs/sha256").join(&second[7..]);
        (format!("oci:{}:v1", layout.display()), second, path)
    };
    // Corrupt: one byte changed, same length.
    let (src, digest, path) = fresh("corrupt");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    fails_naming(&store, &src, &digest);
    // Truncated.
    let (src, digest, path) = fresh("truncated");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    fails_naming(&store, &src, &digest);
    // Missing.
    let (src, digest, path) = fresh("missing");
    std::fs::remove_file(&path).unwrap();
    fails_naming(&store, &src, &digest);
    // Wrong digest: the blob is whole, but the config names another tar for it.
    let (src, digest, path) = fresh("wrong-diff-id");
    let layout = path.parent().unwrap().parent().unwrap().parent().unwrap();
    let mut manifest = first_manifest(layout);
    let mut config = json_blob(layout, manifest["config"]["digest"].as_str().unwrap());
    config["rootfs"]["diff_ids"][1] = json!(format!("sha256:{}", "1".repeat(64)));
    manifest["config"] = blob(
        layout,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let mut top = blob(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    top["annotations"] = json!({ "org.opencontainers.image.ref.name": "v1" });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": [top] })).unwrap(),
    )
    .unwrap();
    fails_naming(&store, &src, &digest);
    assert!(store.complete_layer_ids().is_empty());
}

#[test]
fn runc_runs_a_container_on_a_pulled_busybox_image() {
    if !needs(
        "runc_runs_a_container_on_a_pulled_busybox_image",
        &["umoci", "runc"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = umoci_layout(dir.path());
    let store = CliStore::new("strata-runc-");
    let image = store.ok(&["pull", &format!("oci:{}:v1", layout.display())]);
    let container = store.ok(&["create-container", &image]);
    let rootfs = store.ok(&["mount", &container]);
    let bundle = dir.path().join("runc-bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    run(Command::new("runc").arg("spec").current_dir(&bundle));
    let mut spec: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    spec["root"] = json!({ "path": rootfs, "readonly": false });
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["/bin/busybox", "sh", "-c", "echo hi > /out; echo ok"]);
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();
    let name = format!("strata-test-{}", std::process::id());
    let out = Command::new("runc")
        .arg("--root")
        .arg(dir.path().join("runc-state"))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&name)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    store.ok(&["unmount", &container]);
    assert!(
        out.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let layer = store.json(&["container", "--json", &container])[0]["layer"]
        .as_str()
        .unwrap()
        .to_owned();
    let diff = store.cmd(&["diff", &layer]).output().unwrap();
    assert!(diff.status.success());
    let mut tar = tar::Archive::new(&diff.stdout[..]);
    let mut found = None;
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new("out") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
            found = Some(s);
        }
    }
    assert_eq!(found.as_deref(), Some("hi\n"));
}

#[test]
fn a_pull_refused_when_it_records_the_image_removes_the_layers_it_imported() {
    if !needs(
        "a_pull_refused_when_it_records_the_image_removes_the_layers_it_imported",
        &["tar", "gzip", "zstd"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = gnu_layout(dir.path(), false);
    let store = CliStore::new("strata-pull-refused-");
    // The image's id (its config's hex) already names an image on no layers: found once
    // the layers are in, it refuses the pull.
    let manifest = first_manifest(&layout);
    let id = &manifest["config"]["digest"].as_str().unwrap()[7..];
    store.ok(&["create-image", "--id", id]);
    let images = store.image_ids();
    let out = store.run(&["pull", &format!("oci:{}:v1", layout.display())]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(id),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(store.complete_layer_ids().is_empty());
    assert_eq!(store.image_ids(), images);
    check_consistent(&store, "a refused pull");
}

#[test]
fn a_pull_under_a_taken_name_moves_the_name_to_the_pulled_image() {
    if !needs(
        "a_pull_under_a_taken_name_moves_the_name_to_the_pulled_image",
        &["tar", "gzip", "zstd"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = gnu_layout(dir.path(), false);
    let store = CliStore::new("strata-pull-name-");
    let old = store.ok(&["create-image", "--name", "app:latest"]);
    let old = old.trim();
    let pulled = store.ok(&[
        "pull",
        "-n",
        "app:latest",
        &format!("oci:{}:v1", layout.display()),
    ]);
    let pulled = pulled.trim();
    assert_ne!(pulled, old);
    assert_eq!(
        store.json(&["image", "--json", "app:latest"])[0]["id"],
        pulled
    );
    // The image that held the name stays, without it.
    assert_eq!(
        store.json(&["image", "--json", old])[0]["names"],
        json!(null)
    );
    check_consistent(&store, "a pull that moved a name");
}
