//! The listing commands through the real binary: what the plain listing prints, and a
//! reader that goes away early (from a listing or a tar stream).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::CliStore;

/// A base layer with two names and a child with none, with an image on the child.
fn two_layers(store: &CliStore) -> (String, String) {
    let base = store.ok(&["create-layer", "-n", "zeta", "-n", "alpha"]);
    let child = store.ok(&["create-layer", "--parent", "alpha"]);
    store.ok(&["create-image", "-n", "img", &child]);
    (base, child)
}

#[test]
fn the_plain_listing_prints_each_layer_its_parent_and_its_sorted_names() {
    let store = CliStore::new("strata-listing-");
    let (base, child) = two_layers(&store);
    assert_eq!(
        store.ok(&["layers"]),
        format!(
            "{base}\n\tname: alpha\n\tname: zeta\n{child} (parent {})",
            &base[..12]
        )
    );
    let json = store.json(&["layers", "--json"]);
    assert_eq!(json[0]["names"], serde_json::json!(["alpha", "zeta"]));
    assert_eq!(json[1]["parent"], serde_json::json!(base));
}

#[test]
fn output_whose_reader_has_gone_ends_quietly_as_a_success() {
    let store = CliStore::new("strata-listing-");
    let (base, _) = two_layers(&store);
    let diff = ["diff", base.as_str()];
    for args in [
        &["layers"][..],
        &["layers", "--json"],
        &["images"],
        &["images", "--json"],
        &diff,
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = store
            .cmd(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "strata {args:?}: {}", out.status);
        assert_eq!(stderr, "", "strata {args:?}");
    }
}

#[cfg(feature = "nfs")]
#[test]
fn listing_layers_of_a_store_that_keeps_none_names_the_store() {
    let store = CliStore::new("strata-listing-");
    // No server is needed: the listing refuses before it would open the backend.
    let url = "nfs://127.0.0.1/nowhere?uid=1000&gid=1000";
    let out = store.run(&["--store", url, "layers"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("holds no layers") && stderr.contains(url),
        "{stderr}"
    );
}
