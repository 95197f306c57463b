//! Without `?mountport=`, the mount protocol's port comes from rpcbind. Alone in its test
//! binary: every Ganesha registers there, so no other instance may start meanwhile.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use backend_nfs::{NfsUrl, NfsVolumes};
use storage_core::{Op, VolumeStorer};
use testkit::ganesha::{Ganesha, REQUIREMENTS};
use testkit::require;

#[tokio::test(flavor = "multi_thread")]
async fn the_mount_port_comes_from_rpcbind_when_not_given_with_ganesha() {
    if !require(
        "the_mount_port_comes_from_rpcbind_when_not_given_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(1000, 1000);
    let url = format!(
        "nfs://127.0.0.1:{}{}",
        g.nfs_port(),
        g.export_dir().display()
    );
    let parsed = NfsUrl::parse(&url::Url::parse(&url).unwrap()).unwrap();
    assert_eq!(
        (parsed.mount_port, parsed.uid, parsed.gid),
        (None, 1000, 1000)
    );
    let vols = NfsVolumes::new("shared", parsed);
    vols.volume_create(&Op::new("test"), "v", 0, BTreeMap::new())
        .await
        .unwrap();
    assert!(g.export_dir().join("volumes/v").is_dir());
}
