//! Files a disk names stay where its owner keeps disks: a flat VMDK's extents beside its
//! descriptor, and, through `open_chain_within`, every parent inside the given directory.
//! A hostile descriptor or parent locator cannot make strata read, or write, a file
//! elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use disk_image::{ErrorKind, Format, create, create_child, open, open_chain, open_chain_within};

#[test]
fn a_flat_vmdk_extent_outside_its_descriptors_directory_is_refused() {
    let outer = tempfile::tempdir().unwrap();
    let store = outer.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let victim = outer.path().join("victim");
    std::fs::write(&victim, vec![0x42; 1 << 20]).unwrap();
    let desc = store.join("d.vmdk");
    drop(create(&desc, Format::VmdkFlat, 1 << 20).unwrap());
    let text = std::fs::read_to_string(&desc).unwrap();
    let extent = text
        .lines()
        .find(|l| l.starts_with("RW "))
        .and_then(|l| l.split('"').nth(1))
        .unwrap()
        .to_owned();
    for hostile in [
        "../victim".to_owned(),
        victim.display().to_string(),
        "sub/../../victim".to_owned(),
    ] {
        std::fs::write(&desc, text.replace(&extent, &hostile)).unwrap();
        for read_only in [true, false] {
            let Err(err) = open(&desc, read_only) else {
                panic!("{hostile}: opened");
            };
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{hostile}: {err}");
        }
    }
    assert_eq!(std::fs::read(&victim).unwrap(), vec![0x42; 1 << 20]);
    // The extent as made, beside the descriptor, opens.
    std::fs::write(&desc, &text).unwrap();
    open(&desc, false).unwrap();
}

#[test]
fn a_parent_outside_the_allowed_directory_is_refused_and_one_inside_opens() {
    let outer = tempfile::tempdir().unwrap();
    let store = outer.path().join("store");
    std::fs::create_dir_all(store.join("child")).unwrap();
    std::fs::create_dir_all(store.join("base")).unwrap();
    for format in [Format::VmdkSparse, Format::VhdDynamic, Format::Vhdx] {
        let ext = match format {
            Format::VmdkSparse => "vmdk",
            Format::VhdDynamic => "vhd",
            _ => "vhdx",
        };
        // Inside: a parent in a sibling directory of the store.
        let base = store.join("base").join(format!("base.{ext}"));
        drop(create(&base, format, 4 << 20).unwrap());
        let child = store.join("child").join(format!("child.{ext}"));
        drop(create_child(&child, &base).unwrap());
        open_chain_within(&child, true, &store).unwrap();
        // Outside: the same chain, with its parent kept out of the store.
        let outside = outer.path().join(format!("outside.{ext}"));
        drop(create(&outside, format, 4 << 20).unwrap());
        let leaky = store.join("child").join(format!("leaky.{ext}"));
        drop(create_child(&leaky, &outside).unwrap());
        open_chain(&leaky, true).unwrap();
        let Err(err) = open_chain_within(&leaky, true, &store) else {
            panic!("{format:?}: a parent outside the store opened");
        };
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{format:?}: {err}");
    }
}
