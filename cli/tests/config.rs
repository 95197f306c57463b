//! Stores named in a config file, through the `strata` binary: `status` reports the named
//! store (its name, URL and root), not the default root, and an option its backend does
//! not read is refused naming the store and the option.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn strata(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(dir.join("default-root"))
        .arg("--run-root")
        .arg(dir.join("run"))
        .arg("--config")
        .arg(dir.join("strata.toml"))
        .args(args)
        .output()
        .unwrap()
}

/// The value of `key` among `status --json`'s `[key, value]` pairs.
fn fact(status: &serde_json::Value, key: &str) -> String {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == key)
        .and_then(|pair| pair[1].as_str())
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .to_owned()
}

#[test]
fn status_of_a_named_store_reports_its_own_root_and_unknown_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("strata.toml"),
        format!(
            "[stores.local]\nurl = \"overlay://{d}/elsewhere\"\n\
             [stores.typo]\nurl = \"overlay://{d}/typo\"\noptions = {{ sandbox_size = \"1G\" }}\n"
        ),
    )
    .unwrap();
    let out = strata(dir.path(), &["--store", "local", "status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fact(&status, "Store"), "local");
    assert_eq!(fact(&status, "Root"), format!("{d}/elsewhere"));
    assert_eq!(fact(&status, "URL"), format!("overlay://{d}/elsewhere"));

    let out = strata(dir.path(), &["--store", "typo", "layers"]);
    assert!(!out.status.success(), "an unknown option was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"typo\"") && err.contains("sandbox_size") && err.contains("overlay"),
        "{err}"
    );
    assert!(
        !dir.path().join("typo").exists(),
        "the store was made anyway"
    );
}

#[test]
fn containers_storage_global_options_are_accepted_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .output()
            .unwrap()
    };
    let graph = dir.path().join("graph");
    let runroot = dir.path().join("run");
    let (g, r) = (graph.to_str().unwrap(), runroot.to_str().unwrap());
    // -g/--graph, -R/--run and -s/--storage-driver as containers-storage spells them.
    for args in [
        vec!["-g", g, "-R", r, "-s", "overlay", "status", "--json"],
        vec![
            "--graph",
            g,
            "--run",
            r,
            "--storage-driver",
            "overlay",
            "status",
            "--json",
        ],
    ] {
        let out = run(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(fact(&status, "Root"), g);
        assert_eq!(fact(&status, "URL"), format!("overlay://{g}"));
    }
    // A store option the backend reads, with containers-storage's driver prefix.
    let out = run(&[
        "-g",
        g,
        "-R",
        r,
        "-s",
        "vmdk",
        "--storage-opt",
        "vmdk.scratch_size=64M",
        "status",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (args, why) in [
        (
            vec!["-g", g, "-R", r, "-s", "vfs", "layers"],
            "no storage driver \"vfs\"",
        ),
        (
            vec![
                "-g",
                g,
                "-R",
                r,
                "--storage-opt",
                "overlay.mountopt=nodev",
                "layers",
            ],
            "no option \"mountopt\"",
        ),
        (
            vec!["-g", g, "-s", "overlay", "--store", "vmdk:///x", "layers"],
            "give one of the two",
        ),
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
}
