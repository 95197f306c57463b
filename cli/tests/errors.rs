//! How a failed command reads on standard error, through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::CliStore;
use testkit::{Requirement, require};

#[test]
fn a_diff_into_a_full_device_names_enospc_once() {
    if !require(
        "a_diff_into_a_full_device_names_enospc_once",
        &[Requirement::Path("/dev/full")],
    ) {
        return;
    }
    let store = CliStore::new("strata-errors-");
    let layer = store.ok(&["create-layer"]);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = store
        .cmd(&["diff", &layer])
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let cause = std::io::Error::from_raw_os_error(28).to_string();
    assert_eq!(stderr.matches(&cause).count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("strata: diff layer {layer}: ")),
        "{stderr}"
    );
}
