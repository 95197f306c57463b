//! `layer.vhd`: an image built by the Builder, given a fixed-VHD footer by `disk-image`,
//! is a valid VHD for qemu and still mounts as ext4 through a loop device.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Mount, build, e2fsck_clean, gnu_extract, run, same_manifest};
use disk_image::Format;
use disk_image::vhd::FixedVhd;
use ext4_writer::Whiteouts;
use testkit::{Layercheck, Requirement, require};

#[test]
fn layer_vhd_passes_qemu_img_and_mounts_like_the_tar_needs_root_loop_qemu_img() {
    if !require(
        "layer_vhd_passes_qemu_img_and_mounts_like_the_tar_needs_root_loop_qemu_img",
        &[
            Requirement::Root,
            Requirement::Command("qemu-img"),
            Requirement::Command("e2fsck"),
            Requirement::Path("/dev/loop-control"),
        ],
    ) {
        return;
    }
    let data = Layercheck::generate();
    let dir = tempfile::tempdir().unwrap();
    let vhd = dir.path().join("layer.vhd");
    let raw = dir.path().join("layer.img");
    build(&data.chain_layer(1), &vhd, Whiteouts::Keep);
    std::fs::copy(&vhd, &raw).unwrap();
    e2fsck_clean(&raw);
    let size = std::fs::metadata(&raw).unwrap().len();

    FixedVhd::from_raw(&vhd).unwrap();
    assert_eq!(std::fs::metadata(&vhd).unwrap().len(), size + 512);
    assert_eq!(
        disk_image::open(&vhd, true).unwrap().format(),
        Format::VhdFixed
    );
    // qemu-img has no consistency check for VHD; it must at least read the footer as
    // a fixed disk of the image's size.
    let info = Command::new("qemu-img")
        .args(["info", "-f", "vpc", "--output=json"])
        .arg(&vhd)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("\"format\": \"vpc\""), "{info}");
    assert!(
        info.contains(&format!("\"virtual-size\": {size}")),
        "{info}"
    );
    run(Command::new("qemu-img")
        .args(["compare", "-f", "vpc", "-F", "raw"])
        .arg(&vhd)
        .arg(&raw));

    // The footer sits after the filesystem: a loop device limited to the data mounts it.
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(Command::new("mount")
        .arg("-o")
        .arg(format!("loop,ro,sizelimit={size}"))
        .arg(&vhd)
        .arg(&mnt));
    let mounted = Mount { dir: mnt.clone() };
    let extracted = dir.path().join("extracted");
    gnu_extract(&data.chain_layer(1), &extracted);
    same_manifest(&extracted, &mounted.dir);
}
