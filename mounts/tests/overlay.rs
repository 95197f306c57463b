//! Overlay stacks on real mounts: the classic `mount(2)` path (kernels without
//! `lowerdir+`) and the errors of the new mount API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mounts::overlay::{MountApi, Stack, mount};
use mounts::{is_mounted, unmount};
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

#[test]
fn a_refused_lowerdir_plus_names_the_target_the_lower_and_the_cause_needs_root() {
    if !require(
        "a_refused_lowerdir_plus_names_the_target_the_lower_and_the_cause_needs_root",
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    ) {
        return;
    }
    if MountApi::detect() != MountApi::LowerdirPlus {
        testkit::tell("this kernel has no lowerdir+: only the mount(2) path is tested");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let missing = dir.path().join("no-such-lower");
    let stack = Stack {
        lowers: vec![missing.clone(), dir.path().to_owned()],
        upper: None,
    };
    let err = mount(MountApi::LowerdirPlus, &stack, &merged).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&merged.display().to_string()), "{text}");
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert_eq!(err.raw_os_error(), Some(2), "{text}");
    assert!(!is_mounted(&merged));
}
