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

/// `strata` with `CONTAINERS_STORAGE_CONF` set to `conf`, and no root flags.
fn with_conf(conf: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .env("CONTAINERS_STORAGE_CONF", conf)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn storage_conf_sets_the_roots_under_strata_the_driver_and_the_additional_stores() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // A strata store to lend its layers, made with flags.
    let lender = dir.path().join("lender");
    let tar = dir.path().join("one.tar");
    let status = Command::new("tar")
        .args(["-cf", tar.to_str().unwrap(), "-C", "/etc", "hostname"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(&lender)
        .arg("--run-root")
        .arg(dir.path().join("lender-run"))
        .args(["import-layer", "-n", "lent", tar.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let conf = dir.path().join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/graph\"\nrunroot = \"{d}/run\"\n\
             [storage.options]\nadditionalimagestores = [\"{}\"]\n\
             pull_options = {{enable_partial_images = \"false\"}}\n\
             [storage.options.overlay]\nmountopt = \"nodev\"\n",
            lender.display()
        ),
    )
    .unwrap();
    let out = with_conf(&conf, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // containers-storage's own directories under the graph root are never strata's.
    assert_eq!(fact(&status, "Root"), format!("{d}/graph/strata"));
    assert_eq!(fact(&status, "Run Root"), format!("{d}/run/strata"));
    assert_eq!(fact(&status, "Storage Conf"), conf.display().to_string());
    let unread = fact(&status, "Storage Conf Unread");
    assert!(
        unread.contains("storage.options.overlay.mountopt")
            && unread.contains("storage.options.pull_options"),
        "{unread}"
    );
    // additionalimagestores lends the layer, read-only.
    let out = with_conf(&conf, &["layer", "lent"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_conf(&conf, &["delete-layer", "lent"]);
    assert!(!out.status.success(), "a lent layer was deleted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The command line still wins.
    let flagged = dir.path().join("flagged");
    let out = with_conf(
        &conf,
        &["--root", flagged.to_str().unwrap(), "status", "--json"],
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fact(&status, "Root"), flagged.display().to_string());

    // A driver strata does not have, in the file named outright, is refused naming it.
    std::fs::write(
        &conf,
        format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/graph\"\n"),
    )
    .unwrap();
    let out = with_conf(&conf, &["layers"]);
    assert!(!out.status.success(), "driver vfs was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("storage.conf") && err.contains("vfs"), "{err}");
    // A broken file is an error naming it, not a silent default.
    std::fs::write(&conf, "[storage\n").unwrap();
    let out = with_conf(&conf, &["layers"]);
    assert!(
        !out.status.success(),
        "a broken storage.conf was passed over"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("storage.conf"));
}
