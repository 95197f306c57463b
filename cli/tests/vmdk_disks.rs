//! The vmdk store's disks as other tools see them: every disk strata writes passes
//! `qemu-img check`, a container's chain reaches scratch, the chain converted to a raw
//! image and loop-mounted shows the tree `strata mount` shows, a 100-layer image mounts
//! its top tree, and SIGKILL during layer writes leaves a store that
//! opens consistent with nothing attached. They need root, FUSE, loop devices and qemu-img.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::CliStore;
use testkit::loop_disk::LoopDevice;
use testkit::{Layercheck, Requirement, require};

/// A vmdk store in a temporary directory, driven through the CLI.
struct VmdkStore(CliStore);

impl std::ops::Deref for VmdkStore {
    type Target = CliStore;

    fn deref(&self) -> &CliStore {
        &self.0
    }
}

impl VmdkStore {
    fn new() -> Self {
        VmdkStore(CliStore::on("strata-vmdk-", "vmdk"))
    }

    fn import(&self, parent: Option<&str>, tar: &Path) -> String {
        let mut args = vec!["import-layer"];
        if let Some(p) = parent {
            args.extend(["--parent", p]);
        }
        args.push(tar.to_str().unwrap());
        self.ok(&args)
    }

    /// The disk files of a layer or container, topmost first.
    fn disks(&self, id: &str) -> Vec<(PathBuf, bool)> {
        let listed = self.json(&["layer-disks", "--json", id]);
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    PathBuf::from(d["path"].as_str().unwrap()),
                    d["writable"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    /// Nothing of this store is mounted, attached or served.
    fn assert_nothing_left(&self) {
        let left = self.leftovers();
        assert!(left.is_empty(), "left: {left:#?}");
    }
}

fn needs(test: &str) -> bool {
    require(
        test,
        &[
            Requirement::Root,
            Requirement::Path("/dev/fuse"),
            Requirement::Path("/dev/loop-control"),
            Requirement::Command("qemu-img"),
            Requirement::Command("python3"),
        ],
    )
}

fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An image of the three layercheck chain layers with a container on it that wrote a
/// file; returns the store, the container's layer and its parent.
fn container_on_chain(data: &Layercheck) -> (VmdkStore, String) {
    let store = VmdkStore::new();
    let mut parent: Option<String> = None;
    for k in 1..=3 {
        parent = Some(store.import(parent.as_deref(), &data.chain_layer(k)));
    }
    store.ok(&["create-image", "-n", "img", parent.as_deref().unwrap()]);
    store.ok(&["create-container", "-n", "c", "img"]);
    let listed: serde_json::Value =
        serde_json::from_str(&store.ok(&["container", "c", "--json"])).unwrap();
    let rw = listed[0]["layer"].as_str().unwrap().to_owned();
    let mount = store.ok(&["mount", &rw]);
    std::fs::write(Path::new(&mount).join("written-by-the-container"), b"hi\n").unwrap();
    store.ok(&["unmount", &rw]);
    (store, rw)
}

#[test]
fn every_disk_passes_qemu_img_check_and_a_containers_chain_reaches_scratch_needs_root_fuse_loop_qemu()
 {
    if !needs(
        "every_disk_passes_qemu_img_check_and_a_containers_chain_reaches_scratch_needs_root_fuse_loop_qemu",
    ) {
        return;
    }
    let data = Layercheck::generate();
    let (store, rw) = container_on_chain(&data);
    let disks = store.disks(&rw);
    // The container's delta, three layers, scratch; only the container's is writable.
    assert_eq!(disks.len(), 5, "{disks:?}");
    assert!(disks[0].1 && disks[1..].iter().all(|d| !d.1), "{disks:?}");
    assert!(disks[4].0.ends_with("scratch/scratch.vmdk"), "{disks:?}");
    for (disk, _) in &disks {
        let text = qemu_img(&["check", disk.to_str().unwrap()]);
        assert!(text.contains("No errors"), "{}: {text}", disk.display());
    }
    let info: serde_json::Value = serde_json::from_str(&qemu_img(&[
        "info",
        "--backing-chain",
        "--output=json",
        disks[0].0.to_str().unwrap(),
    ]))
    .unwrap();
    let chain: Vec<PathBuf> = info
        .as_array()
        .unwrap()
        .iter()
        .map(|d| PathBuf::from(d["filename"].as_str().unwrap()))
        .map(|p| std::fs::canonicalize(p).unwrap())
        .collect();
    let want: Vec<PathBuf> = disks
        .iter()
        .map(|d| std::fs::canonicalize(&d.0).unwrap())
        .collect();
    assert_eq!(chain, want);
    assert!(
        info.as_array()
            .unwrap()
            .iter()
            .all(|d| d["format"] == "vmdk")
    );
    drop(store);
}

#[test]
fn a_containers_chain_converted_to_raw_shows_the_tree_strata_mounts_needs_root_fuse_loop_qemu() {
    if !needs(
        "a_containers_chain_converted_to_raw_shows_the_tree_strata_mounts_needs_root_fuse_loop_qemu",
    ) {
        return;
    }
    let data = Layercheck::generate();
    let (store, rw) = container_on_chain(&data);
    let mount = store.ok(&["mount", &rw]);
    let mounted = Layercheck::manifest(Path::new(&mount));
    store.ok(&["unmount", &rw]);
    let top = &store.disks(&rw)[0].0;
    let raw = store.scratch().join("container.raw");
    qemu_img(&[
        "convert",
        "-O",
        "raw",
        top.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    let device = LoopDevice::attach(&raw);
    let at = store.scratch().join("raw-mount");
    std::fs::create_dir(&at).unwrap();
    let status = Command::new("mount")
        .args(["-o", "ro"])
        .arg(device.path())
        .arg(&at)
        .status()
        .unwrap();
    assert!(status.success());
    let converted = Layercheck::manifest(&at.join("rootfs"));
    let _ = Command::new("umount").arg(&at).status();
    drop(device);
    assert!(mounted.contains("written-by-the-container"));
    assert_eq!(converted, mounted);
    store.assert_nothing_left();
}

/// How many layers the deep image has: the hundred.
const DEEP: usize = 100;

#[test]
fn a_hundred_layer_image_mounts_with_its_top_tree_needs_root_fuse_loop() {
    if !needs("a_hundred_layer_image_mounts_with_its_top_tree_needs_root_fuse_loop") {
        return;
    }
    let store = VmdkStore::new();
    let backends: serde_json::Value =
        serde_json::from_str(&store.ok(&["backends", "--json"])).unwrap();
    let deepest = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["scheme"] == "vmdk")
        .unwrap()["max_depth"]
        .as_u64()
        .unwrap() as usize;
    assert!(
        deepest >= DEEP,
        "the vmdk store mounts only {deepest} layers"
    );
    let tars = store.scratch().join("tars");
    std::fs::create_dir(&tars).unwrap();
    let mut parent: Option<String> = None;
    for k in 0..DEEP {
        // Layer k writes file-k and deletes file-(k-1).
        let work = tars.join(format!("w{k}"));
        std::fs::create_dir(&work).unwrap();
        std::fs::write(work.join(format!("file-{k}")), format!("{k}\n")).unwrap();
        let mut names = vec![format!("file-{k}")];
        if k > 0 {
            std::fs::write(work.join(format!(".wh.file-{}", k - 1)), b"").unwrap();
            names.push(format!(".wh.file-{}", k - 1));
        }
        let tar = tars.join(format!("{k}.tar"));
        gnu_tar(&tar, &work, &names);
        parent = Some(store.import(parent.as_deref(), &tar));
    }
    let top = parent.unwrap();
    assert_eq!(store.disks(&top).len(), DEEP + 1);
    let mount = store.ok(&["mount", &top]);
    let names: Vec<String> = std::fs::read_dir(&mount)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let content = std::fs::read_to_string(Path::new(&mount).join(format!("file-{}", DEEP - 1)));
    store.ok(&["unmount", &top]);
    assert_eq!(names, vec![format!("file-{}", DEEP - 1)]);
    assert_eq!(content.unwrap(), format!("{}\n", DEEP - 1));
    store.assert_nothing_left();
}

/// Writes the tar `out` of `names` in `dir` with GNU tar.
fn gnu_tar(out: &Path, dir: &Path, names: &[impl AsRef<std::ffi::OsStr>]) {
    let status = Command::new("tar")
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(dir)
        .args(names)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A tar of `files` small files in a few directories.
fn many_files_tar(dir: &Path, files: usize) -> PathBuf {
    let work = dir.join("many");
    for i in 0..files {
        let sub = work.join(format!("d{}", i % 16));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}")), vec![b'x'; 1024 + i % 4096]).unwrap();
    }
    let tar = dir.join("many.tar");
    gnu_tar(&tar, &work, &["."]);
    tar
}

#[test]
fn sigkill_during_layer_writes_leaves_a_store_that_opens_consistent_with_nothing_attached_needs_root_fuse_loop()
 {
    if !needs(
        "sigkill_during_layer_writes_leaves_a_store_that_opens_consistent_with_nothing_attached_needs_root_fuse_loop",
    ) {
        return;
    }
    let store = VmdkStore::new();
    let tar = many_files_tar(store.scratch(), 3000);
    // How long a whole import takes here (the first also makes scratch).
    let start = Instant::now();
    let base = store.import(None, &tar);
    let whole = start.elapsed();
    store.ok(&["delete-layer", &base]);
    let mut kills = 0;
    for step in 1..=8u32 {
        let delay = whole * step / 8;
        let mut child = store
            .cmd(&["import-layer", tar.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let _ = child.wait();
        // The next command's open finishes what the kill left; check then finds nothing.
        let checked = store.ok(&["check"]);
        assert!(
            checked.contains(" 0 problem(s)"),
            "after {delay:?}: {checked}"
        );
        let status = store.ok(&["status"]);
        assert!(
            status.contains("Attachments: 0"),
            "after {delay:?}: {status}"
        );
        let layers: serde_json::Value =
            serde_json::from_str(&store.ok(&["layers", "--json"])).unwrap();
        for layer in layers.as_array().unwrap() {
            let id = layer["id"].as_str().unwrap();
            store.ok(&["delete-layer", id]);
        }
        store.assert_nothing_left();
    }
    eprintln!("killed {kills} of 8 imports midway");
    assert!(kills > 0, "no import was killed midway");
}

#[test]
fn vmdk_volumes_import_export_and_a_full_one_is_an_error_naming_it_needs_root_fuse_loop_qemu() {
    if !needs(
        "vmdk_volumes_import_export_and_a_full_one_is_an_error_naming_it_needs_root_fuse_loop_qemu",
    ) {
        return;
    }
    let data = Layercheck::generate();
    let store = VmdkStore::new();
    store.ok(&["volume", "create", "web", "--opt", "size=256M"]);
    store.ok(&["volume", "create", "copy"]);
    let again = store.run(&["volume", "create", "web"]);
    assert!(!again.status.success());
    store.ok(&[
        "volume",
        "import",
        "web",
        data.chain_layer(1).to_str().unwrap(),
    ]);
    let exported = store.cmd(&["volume", "export", "web"]).output().unwrap();
    assert!(exported.status.success());
    let tar = store.scratch().join("web.tar");
    std::fs::write(&tar, &exported.stdout).unwrap();
    store.ok(&["volume", "import", "copy", tar.to_str().unwrap()]);
    let copied = store.cmd(&["volume", "export", "copy"]).output().unwrap();
    assert!(copied.status.success());
    assert!(!exported.stdout.is_empty());
    assert_eq!(
        exported.stdout, copied.stdout,
        "a re-imported export differs"
    );
    let disk = store.root().join("vmdk/volumes/web/web.vmdk");
    let text = qemu_img(&["check", disk.to_str().unwrap()]);
    assert!(text.contains("No errors"), "{text}");
    let info: serde_json::Value = serde_json::from_str(&qemu_img(&[
        "info",
        "--output=json",
        disk.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(info["virtual-size"], 256u64 << 20);
    common::volume_stat_script(&|args| store.run(args), (1234, 5678));

    // A volume too small for what is imported: the error names it.
    store.ok(&["volume", "create", "small", "--opt", "size=16M"]);
    let big = store.scratch().join("big");
    std::fs::create_dir(&big).unwrap();
    std::fs::write(big.join("blob"), vec![7u8; 24 << 20]).unwrap();
    let big_tar = store.scratch().join("big.tar");
    gnu_tar(&big_tar, &big, &["blob"]);
    let full = store.run(&["volume", "import", "small", big_tar.to_str().unwrap()]);
    assert!(!full.status.success(), "a full volume's import succeeded");
    let err = String::from_utf8_lossy(&full.stderr);
    assert!(err.contains("volume small is full"), "{err}");

    store.ok(&["volume", "rm", "web"]);
    store.ok(&["volume", "rm", "small"]);
    let listed: serde_json::Value =
        serde_json::from_str(&store.ok(&["volume", "ls", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    store.assert_nothing_left();
}

#[test]
fn sigkill_during_mounts_and_unmounts_leaves_check_passing_and_nothing_attached_after_cleanup_needs_root_fuse_loop()
 {
    if !needs(
        "sigkill_during_mounts_and_unmounts_leaves_check_passing_and_nothing_attached_after_cleanup_needs_root_fuse_loop",
    ) {
        return;
    }
    let data = Layercheck::generate();
    let (store, rw) = container_on_chain(&data);
    let image: serde_json::Value =
        serde_json::from_str(&store.ok(&["image", "img", "--json"])).unwrap();
    let top = image[0]["layer"].as_str().unwrap().to_owned();
    let start = Instant::now();
    store.ok(&["mount", &top]);
    let whole = start.elapsed();
    store.ok(&["unmount", &top]);
    let mut kills = 0;
    for step in 1..=6u32 {
        for args in [
            ["mount", &top],
            ["mount", &rw],
            ["unmount", &top],
            ["unmount", &rw],
        ] {
            let mut child = store
                .cmd(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(whole * step / 6);
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            let _ = child.wait();
            let checked = store.ok(&["check"]);
            assert!(
                checked.contains(" 0 problem(s)"),
                "after {args:?}: {checked}"
            );
        }
    }
    store.ok(&["cleanup"]);
    assert!(store.ok(&["status"]).contains("Attachments: 0"));
    store.assert_nothing_left();
    eprintln!("killed {kills} of 24 mounts and unmounts midway");
}
