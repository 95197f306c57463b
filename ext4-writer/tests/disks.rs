//! Building straight into virtual disks: the Builder writes through `disk_image::DiskFile`
//! into a dynamic VHDX, a sparse VMDK, and differencing children of disks that already
//! hold an image, with no raw file and no conversion. Each disk holds the bytes the raw
//! build has (for qemu-img, our own reads and the kernel), and reads back, through the
//! same adapter, to the same tar.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsStr;
use std::io::{BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::e2fsck_clean;
use disk_image::{Disk, DiskFile, Format};
use ext4_writer::{Builder, Options, ReadOptions, Reader, Whiteouts, WhiteoutsOut};
use testkit::sparse::{self, Encoding};
use testkit::{Layercheck, Requirement, require};

/// The virtual size of every disk, and the builder's `max_size`.
const DISK: u64 = 256 << 20;

fn options() -> Options {
    Options {
        whiteouts: Whiteouts::Overlay,
        max_size: DISK,
        ..Options::default()
    }
}

/// Builds the tars, in order, into `out`; returns it, flushed by the builder.
fn build_into<W: Write + Seek>(out: W, tars: &[PathBuf]) -> W {
    let mut b = Builder::new(out, options()).unwrap();
    for tar in tars {
        b.append_tar(std::fs::File::open(tar).unwrap()).unwrap();
    }
    b.finish().unwrap().0
}

/// Builds the tars into a new disk of `format` (or a child of `parent`) at `path`.
fn build_disk(path: &Path, format: Format, parent: Option<&Path>, tars: &[PathBuf]) {
    let disk = match parent {
        Some(parent) => disk_image::create_child(path, parent).unwrap(),
        None => disk_image::create(path, format, DISK).unwrap(),
    };
    let disk = build_into(DiskFile::new(disk), tars).into_inner();
    assert_eq!(disk.format(), format);
}

/// The sorted tar the Reader makes of the image in `img`.
fn tar_of(img: impl Read + Seek) -> Vec<u8> {
    let mut r = Reader::open(BufReader::new(img)).unwrap();
    r.write_tar(
        Vec::new(),
        ReadOptions {
            whiteouts: WhiteoutsOut::Oci,
        },
    )
    .unwrap()
}

/// `len` bytes that do not repeat, with a zero run (a hole to be) every 8 MiB.
fn varied(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    for at in (0..len).step_by(8 << 20).skip(1) {
        let end = (at + (1 << 20) + 100).min(len);
        out[at + 100..end].fill(0);
    }
    out
}

/// A GNU tar of a large file of `big` bytes and a 1 GiB sparse file, written in `dir`.
fn extras_tar(dir: &Path, name: &str, big: usize, seed: u64) -> PathBuf {
    let src = dir.join(format!("{name}-src"));
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("large"), varied(big, seed)).unwrap();
    let head = varied(4096, seed + 1);
    sparse::make(
        &src.join("sparse"),
        1 << 30,
        &[
            (0, &head),
            ((300 << 20) + 123, b"middle"),
            ((1 << 30) - 7, b"tail!!!"),
        ],
    );
    let tar = dir.join(format!("{name}.tar"));
    sparse::gnu_tar(&src, &["large", "sparse"], Encoding::Pax10, &tar);
    tar
}

/// Every disk the tests look at, built in a temporary directory.
struct Built {
    dir: tempfile::TempDir,
}

impl Built {
    /// The layer built everywhere: layercheck's first chain layer (every entry kind,
    /// xattrs, hard links, long names), a large file across many VHDX blocks and VMDK
    /// grain tables, and a sparse file. The parents hold another image, larger, so that
    /// a child reads through to it wherever the builder wrote nothing.
    fn new() -> Built {
        let data = Layercheck::generate();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let layer = [
            data.chain_layer(1),
            extras_tar(d, "extras", (40 << 20) + 12345, 1),
        ];
        let older = [
            data.chain_layer(2),
            extras_tar(d, "older", (70 << 20) + 777, 2),
        ];

        build_into(std::fs::File::create(d.join("layer.img")).unwrap(), &layer);
        build_into(std::fs::File::create(d.join("older.img")).unwrap(), &older);
        // What a child holding `layer` over a parent holding `older` reads as: the older
        // image with exactly the builder's writes on top.
        std::fs::copy(d.join("older.img"), d.join("layer-over-older.img")).unwrap();
        let over = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("layer-over-older.img"))
            .unwrap();
        build_into(over, &layer);

        let len = |name: &str| std::fs::metadata(d.join(name)).unwrap().len();
        assert!(
            len("layer-over-older.img") > len("layer.img"),
            "the older image shows past the layer's end"
        );

        build_disk(&d.join("layer.vhdx"), Format::Vhdx, None, &layer);
        build_disk(&d.join("layer.vmdk"), Format::VmdkSparse, None, &layer);
        for (ext, format, child) in [
            ("vhdx", Format::Vhdx, Format::VhdxDifferencing),
            ("vmdk", Format::VmdkSparse, Format::VmdkSparse),
        ] {
            let base = d.join(format!("older.{ext}"));
            build_disk(&base, format, None, &older);
            let before = std::fs::read(&base).unwrap();
            build_disk(&d.join(format!("child.{ext}")), child, Some(&base), &layer);
            assert!(
                std::fs::read(&base).unwrap() == before,
                "building into the child leaves {} alone",
                base.display()
            );
        }
        Built { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Each disk with the raw image it must read as.
    fn disks(&self) -> [(PathBuf, PathBuf); 4] {
        [
            ("layer.vhdx", "layer.img"),
            ("layer.vmdk", "layer.img"),
            ("child.vhdx", "layer-over-older.img"),
            ("child.vmdk", "layer-over-older.img"),
        ]
        .map(|(disk, raw)| (self.path(disk), self.path(raw)))
    }
}

/// Runs `qemu-img` with `args`; its output, after asserting it succeeded.
fn qemu_img(args: &[&OsStr]) -> String {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "qemu-img {args:?}: {text}");
    text
}

#[test]
fn layers_built_through_disk_file_read_back_to_the_raw_images_tar_and_bytes() {
    let built = Built::new();
    let want = tar_of(std::fs::File::open(built.path("layer.img")).unwrap());
    assert!(want.len() > 40 << 20, "the large file is in the tar");
    for (disk, raw) in built.disks() {
        let mut file = DiskFile::new(disk_image::open_chain(&disk, true).unwrap());
        assert_eq!(file.get_ref().size(), DISK);
        let raw_then_zeros = std::fs::File::open(&raw)
            .unwrap()
            .chain(std::io::repeat(0))
            .take(DISK);
        assert!(
            sparse::same_bytes(raw_then_zeros, BufReader::new(&mut file)),
            "{} reads as {} (then zeros)",
            disk.display(),
            raw.display()
        );
        file.rewind().unwrap();
        assert!(
            tar_of(file) == want,
            "{} reads back to the same tar",
            disk.display()
        );
    }
}

#[test]
fn disks_built_through_disk_file_pass_qemu_img_check_and_compare_identical_needs_qemu_img() {
    if !require(
        "disks_built_through_disk_file_pass_qemu_img_check_and_compare_identical_needs_qemu_img",
        &[Requirement::Command("qemu-img")],
    ) {
        return;
    }
    let built = Built::new();
    // qemu cannot open a differencing VHDX: the child's parent is checked, and the child
    // itself is compared by our own reads (the test above) and by the kernel (below).
    for (disk, raw) in built.disks() {
        let format = disk.extension().unwrap();
        let differencing_vhdx = disk.ends_with("child.vhdx");
        let checked = match differencing_vhdx {
            true => built.path("older.vhdx"),
            false => disk.clone(),
        };
        let check = qemu_img(&["check".as_ref(), "-f".as_ref(), format, checked.as_ref()]);
        assert!(check.contains("No errors were found"), "{check}");
        if !differencing_vhdx {
            let compare = qemu_img(&[
                "compare".as_ref(),
                "-f".as_ref(),
                format,
                "-F".as_ref(),
                "raw".as_ref(),
                disk.as_ref(),
                raw.as_ref(),
            ]);
            assert!(compare.contains("Images are identical"), "{compare}");
        }
    }
}

#[test]
fn disks_built_through_disk_file_attach_and_pass_e2fsck_needs_root_loop_fuse_e2fsck() {
    if !require(
        "disks_built_through_disk_file_attach_and_pass_e2fsck_needs_root_loop_fuse_e2fsck",
        &[
            Requirement::Root,
            Requirement::Path("/dev/loop-control"),
            Requirement::Path("/dev/fuse"),
            Requirement::Command("e2fsck"),
        ],
    ) {
        return;
    }
    let built = Built::new();
    e2fsck_clean(&built.path("layer.img"));
    for (disk, _) in built.disks() {
        let attached =
            disk_image::attach(disk_image::open_chain(&disk, true).unwrap(), true).unwrap();
        // Dropping `attached`, even in a failed assertion's unwinding, detaches it.
        e2fsck_clean(attached.device());
    }
}

#[test]
fn a_layer_larger_than_its_disk_fails_as_storage_full_naming_the_disk_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let tar = extras_tar(dir.path(), "extras", 8 << 20, 3);
    let path = dir.path().join("small.vhdx");
    let disk = disk_image::create(&path, Format::Vhdx, 4 << 20).unwrap();
    // The builder is told it may go to 256 MiB; the disk holds 4.
    let mut b = Builder::new(DiskFile::new(disk), options()).unwrap();
    let err = b
        .append_tar(std::fs::File::open(&tar).unwrap())
        .map(drop)
        .and_then(|()| b.finish().map(drop))
        .unwrap_err();
    let printed = storage_core::Report(&err).to_string();
    assert!(printed.contains(&*path.to_string_lossy()), "{printed}");
    assert!(
        printed.contains("past the end of a disk of 4194304 bytes"),
        "{printed}"
    );
    // A full disk is a full disk for the store too.
    let contract = storage_core::Error::from(err);
    assert!(
        matches!(&contract, storage_core::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull),
        "{contract}"
    );
}
