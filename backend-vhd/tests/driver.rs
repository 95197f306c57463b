//! The vhd driver's own promises: its disks are what qemu-img and e2fsck accept, a failed
//! import leaves nothing, a hostile archive plants no overlay marker, and a VM gets the
//! disk chain LCOW gave one. The conformance suite (`cli/tests/conformance.rs`) runs the
//! shared scenarios over this backend too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use backend_vhd::{LayerFormat, VhdDriver, VhdOptions};
use storage_core::run_root::RunRoot;
use storage_core::{CreateOpts, DiffOpts, Error, LayerDriver, MountOpts, Op};
use testkit::tarball::{Kind, Tarball};
use testkit::{Requirement, require};

struct Fixture {
    dir: tempfile::TempDir,
    driver: VhdDriver,
    op: Op,
}

impl Fixture {
    fn new() -> Self {
        Self::with_layers(LayerFormat::Fixed)
    }

    /// A store whose new layers are `format` VHDs.
    fn with_layers(format: LayerFormat) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vhd-driver-")
            .tempdir()
            .unwrap();
        let driver = Self::open_with(dir.path(), format);
        Fixture {
            dir,
            driver,
            op: Op::new("test"),
        }
    }

    /// The driver of the store in `dir`, opened again, with no block view server and
    /// small sandboxes.
    fn open(dir: &Path) -> VhdDriver {
        Self::open_with(dir, LayerFormat::Fixed)
    }

    fn open_with(dir: &Path, layer_format: LayerFormat) -> VhdDriver {
        let run = RunRoot::open(&dir.join("run")).unwrap();
        VhdDriver::open(
            &dir.join("store"),
            run,
            VhdOptions {
                sandbox_size: Some(256 << 20),
                layer_format,
                block_view_server: None,
            },
        )
        .unwrap()
    }

    async fn import(&self, n: usize, parent: Option<&str>, tar: Vec<u8>) -> String {
        let id = id(n);
        self.driver
            .create(&self.op, &id, parent, &CreateOpts::default())
            .await
            .unwrap();
        self.driver
            .apply_diff(
                &self.op,
                &id,
                parent,
                Box::new(std::io::Cursor::new(tar)),
                &DiffOpts::default(),
            )
            .await
            .unwrap();
        id
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let driver = self.driver.clone();
        let op = self.op.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(driver.cleanup(&op))
        })
        .join();
    }
}

fn id(n: usize) -> String {
    format!("{n:064x}")
}

fn files(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut t = Tarball::new();
    for (name, data) in entries {
        match data {
            Some(d) => t.entry(Kind::File(d.to_vec()), name.as_bytes(), &[]),
            None => t.entry(Kind::Dir, name.as_bytes(), &[]),
        };
    }
    t.finish()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

#[tokio::test]
async fn every_layer_vhd_reads_as_vpc_and_holds_a_clean_ext4_with_no_mount() {
    if !require(
        "every_layer_vhd_reads_as_vpc_and_holds_a_clean_ext4_with_no_mount",
        &[
            Requirement::Command("qemu-img"),
            Requirement::Command("e2fsck"),
        ],
    ) {
        return;
    }
    let f = Fixture::new();
    let l1 = f
        .import(
            1,
            None,
            files(&[("etc", None), ("etc/hosts", Some(b"h\n"))]),
        )
        .await;
    let l2 = f
        .import(
            2,
            Some(&l1),
            files(&[(".wh.etc", Some(b"")), ("new", Some(b"n"))]),
        )
        .await;
    let empty = id(3);
    f.driver
        .create(&f.op, &empty, Some(&l2), &CreateOpts::default())
        .await
        .unwrap();
    for l in [&l1, &l2, &empty] {
        let vhd = f.driver.layout().layer_vhd(l);
        let info = run(Command::new("qemu-img")
            .args(["info", "-f", "vpc"])
            .arg(&vhd));
        assert!(info.contains("file format: vpc"), "{info}");
        run(Command::new("e2fsck").arg("-fn").arg(&vhd));
        let label = run(Command::new("e2label").arg(&vhd));
        assert_eq!(label.trim(), "strata-layer");
    }
    // Nothing was mounted or attached to build them.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(f.dir.path().to_str().unwrap()));
}

#[tokio::test]
async fn dynamic_layer_vhds_read_whole_in_qemu_hold_a_clean_ext4_and_allocate_what_they_use() {
    if !require(
        "dynamic_layer_vhds_read_whole_in_qemu_hold_a_clean_ext4_and_allocate_what_they_use",
        &[
            Requirement::Command("qemu-img"),
            Requirement::Command("e2fsck"),
        ],
    ) {
        return;
    }
    let f = Fixture::with_layers(LayerFormat::Dynamic);
    let body = vec![7u8; 3 << 20];
    let l1 = f
        .import(
            1,
            None,
            files(&[
                ("etc", None),
                ("etc/hosts", Some(b"h\n")),
                ("blob", Some(&body)),
            ]),
        )
        .await;
    // A second diff on the same layer reads the dynamic disk back first.
    f.driver
        .apply_diff(
            &f.op,
            &l1,
            None,
            Box::new(std::io::Cursor::new(files(&[("more", Some(b"m"))]))),
            &DiffOpts::default(),
        )
        .await
        .unwrap();
    let vhd = f.driver.layout().layer_vhd(&l1);
    let info = run(Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "vpc"])
        .arg(&vhd));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["format"], "vpc", "{info}");
    // qemu-img has no check for vpc; reading the whole disk out is the check.
    let raw = f.dir.path().join("layer.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "vpc", "-O", "raw"])
        .arg(&vhd)
        .arg(&raw));
    run(Command::new("e2fsck").arg("-fn").arg(&raw));
    let listed = run(Command::new("debugfs").args(["-R", "ls -p /"]).arg(&raw));
    for name in ["etc", "blob", "more"] {
        assert!(
            listed.contains(&format!("/{name}/")),
            "{name} missing: {listed}"
        );
    }
    // Only what the file system uses is allocated: far less than its 128 GiB bound.
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&vhd).unwrap().blocks() * 512;
    assert!(allocated < 64 << 20, "{allocated} bytes allocated");
    let disks = f.driver.disks(&f.op, &l1).await.unwrap();
    assert_eq!(disks[0].format, "vhd-dynamic");
}

#[tokio::test]
async fn a_digest_mismatch_or_a_bad_tar_leaves_the_layer_as_it_was() {
    let f = Fixture::new();
    let l1 = f.import(1, None, files(&[("kept", Some(b"k"))])).await;
    let vhd = f.driver.layout().layer_vhd(&l1);
    let before = std::fs::read(&vhd).unwrap();
    let wrong = DiffOpts {
        expected_digest: Some(format!("sha256:{}", "0".repeat(64))),
        ..DiffOpts::default()
    };
    let err = f
        .driver
        .apply_diff(
            &f.op,
            &l1,
            None,
            Box::new(std::io::Cursor::new(files(&[("x", Some(b"x"))]))),
            &wrong,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    let garbage = vec![0x5a; 3000];
    f.driver
        .apply_diff(
            &f.op,
            &l1,
            None,
            Box::new(std::io::Cursor::new(garbage)),
            &DiffOpts::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(std::fs::read(&vhd).unwrap(), before);
    let left: Vec<_> = std::fs::read_dir(f.driver.layout().layer(&l1))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part") || n.ends_with(".tar"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn a_sandbox_vhdx_passes_qemu_img_check_and_fills_its_size() {
    if !require(
        "a_sandbox_vhdx_passes_qemu_img_check_and_fills_its_size",
        &[
            Requirement::Command("qemu-img"),
            Requirement::Command("e2fsck"),
        ],
    ) {
        return;
    }
    let f = Fixture::new();
    let l1 = f.import(1, None, files(&[("a", Some(b"a"))])).await;
    let c = id(9);
    f.driver
        .create_read_write(&f.op, &c, Some(&l1), &CreateOpts::default())
        .await
        .unwrap();
    let sandbox = f.driver.layout().sandbox(&c);
    run(Command::new("qemu-img").arg("check").arg(&sandbox));
    let info = run(Command::new("qemu-img")
        .args(["info", "-f", "vhdx"])
        .arg(&sandbox));
    assert!(info.contains("256 MiB"), "{info}");
    // The sandbox allocates little: a dynamic disk holding only metadata.
    assert!(std::fs::metadata(&sandbox).unwrap().len() < 32 << 20);
    let raw = f.dir.path().join("sandbox.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&sandbox)
        .arg(&raw));
    let fsck = run(Command::new("e2fsck").arg("-fn").arg(&raw));
    // Every block of the disk belongs to the file system.
    assert!(fsck.contains("/65536 blocks"), "{fsck}");
    let mut reader = ext4_reader(&raw);
    let root = reader.inode(2).unwrap();
    let names: Vec<Vec<u8>> = reader.read_dir(&root).unwrap().into_keys().collect();
    for want in [&b"upper"[..], b"work"] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
    // A container's own size wins over the store's.
    let c2 = id(10);
    let opts = CreateOpts {
        storage_opts: [("size".to_owned(), "512M".to_owned())].into(),
    };
    f.driver
        .create_read_write(&f.op, &c2, Some(&l1), &opts)
        .await
        .unwrap();
    let info = run(Command::new("qemu-img")
        .args(["info", "-f", "vhdx"])
        .arg(f.driver.layout().sandbox(&c2)));
    assert!(info.contains("512 MiB"), "{info}");
}

fn ext4_reader(path: &Path) -> ext4_writer::Reader<std::fs::File> {
    ext4_writer::Reader::open(std::fs::File::open(path).unwrap()).unwrap()
}

#[tokio::test]
async fn a_containers_disks_are_its_sandbox_then_its_layers_topmost_first() {
    let f = Fixture::new();
    let l1 = f.import(1, None, files(&[("a", Some(b"a"))])).await;
    let l2 = f.import(2, Some(&l1), files(&[("b", Some(b"b"))])).await;
    let c = id(9);
    f.driver
        .create_read_write(&f.op, &c, Some(&l2), &CreateOpts::default())
        .await
        .unwrap();
    let disks = f.driver.disks(&f.op, &c).await.unwrap();
    let l = f.driver.layout();
    let got: Vec<_> = disks
        .iter()
        .map(|d| (d.path.clone(), d.format.as_str(), d.writable))
        .collect();
    assert_eq!(
        got,
        vec![
            (l.sandbox(&c), "vhdx", true),
            (l.layer_vhd(&l2), "vhd-fixed", false),
            (l.layer_vhd(&l1), "vhd-fixed", false),
        ]
    );
    let image = f.driver.disks(&f.op, &l2).await.unwrap();
    assert_eq!(image.len(), 2);
    assert!(image.iter().all(|d| !d.writable && d.format == "vhd-fixed"));
    // Each disk opens as the format it is said to be.
    for d in &disks {
        let format: disk_image::Format = d.format.parse().unwrap();
        disk_image::open_as(&d.path, format, true).unwrap();
    }
}

#[tokio::test]
async fn mounting_a_container_with_no_block_view_server_is_refused_clearly() {
    let f = Fixture::new();
    let c = id(9);
    f.driver
        .create_read_write(&f.op, &c, None, &CreateOpts::default())
        .await
        .unwrap();
    let err = f
        .driver
        .get(&f.op, &c, &MountOpts::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains(&c), "{err}");
    assert_eq!(f.driver.mount_count(&f.op, &c).await.unwrap(), 0);
}

#[tokio::test]
async fn layers_never_completed_and_half_built_disks_are_gone_after_open() {
    let f = Fixture::new();
    let whole = f.import(1, None, files(&[("a", Some(b"a"))])).await;
    let l = f.driver.layout().clone();
    // What a kill leaves: a layer directory with no marker, and a disk being built.
    let cut = id(2);
    std::fs::create_dir_all(l.layer(&cut)).unwrap();
    std::fs::write(l.layer(&cut).join("layer.vhd.part"), b"half").unwrap();
    std::fs::write(l.layer(&whole).join("layer.vhd.part"), b"half").unwrap();
    let again = Fixture::open(f.dir.path());
    assert!(!l.layer(&cut).exists());
    assert!(!l.layer(&whole).join("layer.vhd.part").exists());
    assert!(again.exists(&f.op, &whole).await.unwrap());
    assert_eq!(again.stored_layers(&f.op).await.unwrap(), vec![whole]);
}

#[tokio::test]
async fn a_hostile_overlay_marker_is_not_an_opaque_directory_in_the_union_needs_root() {
    if !require(
        "a_hostile_overlay_marker_is_not_an_opaque_directory_in_the_union_needs_root",
        &[
            Requirement::Root,
            Requirement::Filesystem("overlay"),
            Requirement::Path("/dev/loop-control"),
        ],
    ) {
        return;
    }
    let f = Fixture::new();
    let l1 = f
        .import(1, None, files(&[("d", None), ("d/below", Some(b"b"))]))
        .await;
    // `d` again, carrying `trusted.overlay.opaque=y` and other markers in the archive.
    let l2 = f
        .import(2, Some(&l1), testkit::tarball::overlay_marker_xattrs())
        .await;
    let root = f
        .driver
        .get(&f.op, &l2, &MountOpts { read_only: true })
        .await
        .unwrap();
    let below = root.join("d/below").exists();
    f.driver.put(&f.op, &l2).await.unwrap();
    assert!(below, "the archive's marker made d opaque");
    // Nor is it in the image itself.
    let mut reader = ext4_reader(&f.driver.layout().layer_vhd(&l2));
    let root_ino = reader.inode(2).unwrap();
    let d = reader.read_dir(&root_ino).unwrap()[&b"d"[..]];
    let d = reader.inode(d).unwrap();
    let xattrs = reader.xattrs(&d).unwrap();
    assert!(
        xattrs
            .keys()
            .all(|k| !k.windows(8).any(|w| w == b"overlay.")),
        "{xattrs:?}"
    );
    // Both images were mounted once each and are let go with the mount.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(f.dir.path().to_str().unwrap()), "{mounts}");
}

#[tokio::test]
async fn a_disk_attached_with_no_mount_recorded_is_let_go_at_open_needs_root() {
    if !require(
        "a_disk_attached_with_no_mount_recorded_is_let_go_at_open_needs_root",
        &[Requirement::Root, Requirement::Path("/dev/loop-control")],
    ) {
        return;
    }
    let f = Fixture::new();
    let l1 = f.import(1, None, files(&[("a", Some(b"a"))])).await;
    let vhd = f.driver.layout().layer_vhd(&l1);
    // What a kill between attaching a layer's image and mounting it leaves.
    let registry =
        disk_image::attach::Attachments::open(&f.dir.path().join("run").join("disks")).unwrap();
    let server = disk_image::attach::Server::new("/nonexistent", Vec::<String>::new());
    let att = registry
        .attach(
            &vhd,
            &disk_image::attach::AttachOptions {
                read_only: true,
                within: None,
            },
            &server,
        )
        .unwrap();
    assert_eq!(registry.list().unwrap().len(), 1);
    let problems = f.driver.check_mounts(&f.op, false).await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].detail.contains("no mount recorded"),
        "{problems:?}"
    );
    let _again = Fixture::open(f.dir.path());
    assert!(registry.list().unwrap().is_empty());
    let loops = Command::new("losetup").arg("-a").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&loops.stdout).contains(&format!("{}:", att.device.display())),
        "{} is still attached",
        att.device.display()
    );
}
