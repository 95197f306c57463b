//! The classic `mount(2)` path, used on kernels without `lowerdir+`, mounts a real stack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use backend_overlay::mount::{MountApi, Stack, is_mounted, mount, unmount};
use testkit::{Requirement, require};

#[test]
fn legacy_mount_stacks_lowers_in_order_needs_root() {
    if !require(
        "legacy_mount_stacks_lowers_in_order_needs_root",
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for (layer, content) in [("low", "low"), ("mid", "mid"), ("top", "top")] {
        std::fs::create_dir_all(p.join(layer)).unwrap();
        std::fs::write(p.join(layer).join("shared"), content).unwrap();
        std::fs::write(p.join(layer).join(layer), content).unwrap();
    }
    for d in ["upper", "work", "merged"] {
        std::fs::create_dir_all(p.join(d)).unwrap();
    }
    let stack = Stack {
        lowers: vec![p.join("top"), p.join("mid"), p.join("low")],
        upper: Some((p.join("upper"), p.join("work"))),
    };
    mount(MountApi::Legacy, &stack, &p.join("merged")).unwrap();
    let merged = p.join("merged");
    let seen = std::fs::read_to_string(merged.join("shared"));
    let all = ["low", "mid", "top"].map(|l| merged.join(l).exists());
    std::fs::write(merged.join("new"), b"n").unwrap();
    assert!(is_mounted(&merged));
    unmount(&merged).unwrap();
    assert_eq!(seen.unwrap(), "top");
    assert_eq!(all, [true; 3]);
    assert!(p.join("upper/new").exists());
    assert!(!is_mounted(&merged));
}

#[test]
fn legacy_mounts_take_as_many_lowers_as_fit_in_a_page() {
    let n = MountApi::Legacy.max_lowers(60);
    assert!(
        n * 61 + 2 * 60 < 4096,
        "{n} lowers of 60 bytes overflow a page"
    );
    assert!(n > 50);
    assert_eq!(MountApi::LowerdirPlus.max_lowers(60), 500);
}
