//! Conformance of built images against the real tools: e2fsck, debugfs, the kernel's ext4
//! and overlayfs, GNU tar, mkfs.ext4.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Mount, build, debugfs_stat, e2fsck_clean, gnu_extract, read_back, same_manifest};
use ext4_writer::{Whiteouts, WhiteoutsOut};
use testkit::{Layercheck, Requirement, require};

const MOUNT_NEEDS: &[Requirement<'static>] = &[
    Requirement::Root,
    Requirement::Command("e2fsck"),
    Requirement::Command("mount"),
    Requirement::Command("tar"),
    Requirement::Path("/dev/loop-control"),
];

#[test]
fn chain_layers_pass_e2fsck_and_debugfs_needs_e2fsck_debugfs() {
    if !require(
        "chain_layers_pass_e2fsck_and_debugfs_needs_e2fsck_debugfs",
        &[
            Requirement::Command("e2fsck"),
            Requirement::Command("debugfs"),
        ],
    ) {
        return;
    }
    let lc = Layercheck::generate();
    let tmp = tempfile::tempdir().unwrap();
    for k in 1..=3 {
        for wh in [Whiteouts::Keep, Whiteouts::Overlay] {
            let img = tmp.path().join(format!("layer{k}-{wh:?}.img"));
            build(&lc.chain_layer(k), &img, wh);
            e2fsck_clean(&img);
        }
    }
    let img = tmp.path().join("layer1-Keep.img");
    let tool = debugfs_stat(&img, "/usr/bin/tool");
    assert!(tool.contains("Mode:  04755"), "{tool}");
    assert!(tool.contains("Links: 2"), "{tool}");
    assert!(tool.contains("Size: 20"), "{tool}");
    let dev = debugfs_stat(&img, "/dev-loopx");
    assert!(dev.contains("Type: block"), "{dev}");
    assert!(dev.contains("Device major/minor number: 07:200"), "{dev}");
    let x = debugfs_stat(&img, "/etc/xattr");
    assert!(x.contains("user.color"), "{x}");
    assert!(x.contains("user.note"), "{x}");
    let owned = debugfs_stat(&img, "/owned/mine");
    assert!(
        owned.contains("User:  1000") && owned.contains("Group:  1000"),
        "{owned}"
    );
    let tmpdir = debugfs_stat(&img, "/tmp");
    assert!(tmpdir.contains("Mode:  01777"), "{tmpdir}");
    let big = debugfs_stat(&img, "/usr/lib/blob9");
    assert!(big.contains("Size: 3145735"), "{big}");
    // Overlay conversion: the whiteout is a char 0:0 device, the opaque dir has its xattr.
    let img2 = tmp.path().join("layer2-Overlay.img");
    let wh = debugfs_stat(&img2, "/del-me");
    assert!(wh.contains("Type: character special"), "{wh}");
    let opq = debugfs_stat(&img2, "/opaque");
    assert!(opq.contains("trusted.overlay.opaque"), "{opq}");
}

#[test]
fn chain_layers_mount_like_gnu_tar_extracts_them_needs_root_loop() {
    if !require(
        "chain_layers_mount_like_gnu_tar_extracts_them_needs_root_loop",
        MOUNT_NEEDS,
    ) {
        return;
    }
    let lc = Layercheck::generate();
    let tmp = tempfile::tempdir().unwrap();
    for k in 1..=3 {
        let img = tmp.path().join(format!("layer{k}.img"));
        build(&lc.chain_layer(k), &img, Whiteouts::Keep);
        e2fsck_clean(&img);
        let extracted = tmp.path().join(format!("x{k}"));
        gnu_extract(&lc.chain_layer(k), &extracted);
        let m = Mount::loop_ro(&img, &tmp.path().join(format!("m{k}")));
        same_manifest(&m.dir, &extracted);
    }
}

#[test]
fn overlay_stack_of_three_layers_matches_expected_needs_root_loop_overlay() {
    let mut needs = MOUNT_NEEDS.to_vec();
    needs.push(Requirement::Filesystem("overlay"));
    if !require(
        "overlay_stack_of_three_layers_matches_expected_needs_root_loop_overlay",
        &needs,
    ) {
        return;
    }
    let lc = Layercheck::generate();
    let tmp = tempfile::tempdir().unwrap();
    let mut mounts = Vec::new();
    for k in 1..=3 {
        let img = tmp.path().join(format!("layer{k}.img"));
        build(&lc.chain_layer(k), &img, Whiteouts::Overlay);
        e2fsck_clean(&img);
        mounts.push(Mount::loop_ro(&img, &tmp.path().join(format!("l{k}"))));
    }
    let lowers = [&mounts[2].dir, &mounts[1].dir, &mounts[0].dir].map(|p| p.as_path());
    let merged = Mount::overlay(&lowers, &tmp.path().join("merged"));
    let res = Layercheck::compare(&lc.expected(), &merged.dir, 3, &[]);
    drop(merged);
    drop(mounts);
    if let Err(diff) = res {
        panic!("overlay stack differs from expected.json:\n{diff}");
    }
}

#[test]
fn round_trip_tar_ext4_tar_ext4_keeps_the_tree_needs_root_loop() {
    if !require(
        "round_trip_tar_ext4_tar_ext4_keeps_the_tree_needs_root_loop",
        MOUNT_NEEDS,
    ) {
        return;
    }
    let lc = Layercheck::generate();
    let tmp = tempfile::tempdir().unwrap();
    for k in 1..=3 {
        for (wh_in, wh_out) in [
            (Whiteouts::Keep, WhiteoutsOut::Keep),
            (Whiteouts::Overlay, WhiteoutsOut::Oci),
        ] {
            let a = tmp.path().join(format!("a{k}.img"));
            let t = tmp.path().join(format!("a{k}.tar"));
            let b = tmp.path().join(format!("b{k}.img"));
            build(&lc.chain_layer(k), &a, wh_in);
            read_back(&a, &t, wh_out);
            build(&t, &b, wh_in);
            e2fsck_clean(&a);
            e2fsck_clean(&b);
            let ma = Mount::loop_ro(&a, &tmp.path().join(format!("ma{k}")));
            let mb = Mount::loop_ro(&b, &tmp.path().join(format!("mb{k}")));
            same_manifest(&ma.dir, &mb.dir);
            // Overlay markers survive the trip too (the manifest ignores them).
            let list = |d: &std::path::Path| {
                let out = Command::new("find")
                    .arg(d)
                    .arg("-type")
                    .arg("c")
                    .arg("-printf")
                    .arg("%P %M\n")
                    .output()
                    .unwrap();
                let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect();
                v.sort();
                v
            };
            assert_eq!(list(&ma.dir), list(&mb.dir));
        }
    }
}

#[test]
fn reader_gives_back_the_tree_of_mkfs_images_needs_root_mkfs() {
    let mut needs = MOUNT_NEEDS.to_vec();
    needs.push(Requirement::Command("mke2fs"));
    if !require(
        "reader_gives_back_the_tree_of_mkfs_images_needs_root_mkfs",
        &needs,
    ) {
        return;
    }
    let lc = Layercheck::generate();
    let tmp = tempfile::tempdir().unwrap();
    // mkfs defaults (64bit, metadata_csum, journal), inline data, ext2 block maps (with a
    // 1 KiB block size), 128-byte inodes, and meta_bg with descriptors spread over five
    // meta groups.
    let variants: [(&[&str], &str); 5] = [
        (&["-t", "ext4"], "32M"),
        (&["-t", "ext4", "-O", "inline_data"], "32M"),
        (&["-t", "ext2", "-b", "1024"], "32M"),
        (&["-t", "ext3", "-I", "128"], "32M"),
        (
            &["-t", "ext4", "-b", "1024", "-O", "meta_bg,^resize_inode"],
            "600M",
        ),
    ];
    for k in 1..=3 {
        let tree = tmp.path().join(format!("x{k}"));
        gnu_extract(&lc.chain_layer(k), &tree);
        for (v, (args, size)) in variants.iter().enumerate() {
            let img = tmp.path().join(format!("mkfs{k}-{v}.img"));
            common::run(
                Command::new("mke2fs")
                    .args(*args)
                    .arg("-q")
                    .arg("-d")
                    .arg(&tree)
                    .arg(&img)
                    .arg(size),
            );
            let t = tmp.path().join(format!("mkfs{k}-{v}.tar"));
            read_back(&img, &t, WhiteoutsOut::Keep);
            let back = tmp.path().join(format!("back{k}-{v}"));
            gnu_extract(&t, &back);
            same_manifest(&tree, &back);
        }
    }
}

#[test]
fn posix_acls_read_back_through_the_kernel_needs_root_loop() {
    let mut needs = MOUNT_NEEDS.to_vec();
    needs.push(Requirement::Command("python3"));
    if !require(
        "posix_acls_read_back_through_the_kernel_needs_root_loop",
        &needs,
    ) {
        return;
    }
    // user::rw- user:1000:r-- group::r-- mask::r-- other::---
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    let mut t = tar::Builder::new(Vec::new());
    t.append_pax_extensions([("SCHILY.xattr.system.posix_acl_access", acl.as_slice())])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o640);
    h.set_size(1);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    t.append_data(&mut h, "f", &b"x"[..]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tar_path = tmp.path().join("acl.tar");
    std::fs::write(&tar_path, t.into_inner().unwrap()).unwrap();
    let img = tmp.path().join("acl.img");
    build(&tar_path, &img, Whiteouts::Keep);
    e2fsck_clean(&img);
    let m = Mount::loop_ro(&img, &tmp.path().join("m"));
    let out = Command::new("python3")
        .arg("-c")
        .arg("import os,sys; sys.stdout.write(os.getxattr(sys.argv[1], 'system.posix_acl_access').hex())")
        .arg(m.dir.join("f"))
        .output()
        .unwrap();
    let hex: String = acl.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        hex,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
