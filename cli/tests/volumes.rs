//! `strata volume …` end to end, the same script on an nfs store (a private nfs-ganesha)
//! and on an overlay store: volume commands need no layer driver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use testkit::ganesha::{Ganesha, REQUIREMENTS};
use testkit::{Layercheck, Requirement, require};

struct Cli {
    dir: tempfile::TempDir,
    store: String,
}

impl Cli {
    fn new(store: String) -> Self {
        Cli {
            dir: tempfile::tempdir().unwrap(),
            store,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--run-root")
            .arg(self.dir.path().join("run"))
            .arg("--store")
            .arg(&self.store)
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// The script: create with info, list as JSON, import from a file and from standard
/// input, export to standard output, re-import the export, remove. `volumes` is where
/// the store keeps volume data, as the machine sees it.
fn volume_commands(cli: &Cli, volumes: &Path, owner: (u32, u32)) {
    let data = Layercheck::generate();
    assert_eq!(
        cli.ok(&[
            "volume",
            "create",
            "web",
            "--opt",
            "driver=local",
            "--opt",
            "size=1G"
        ])
        .trim(),
        "web"
    );
    cli.ok(&["volume", "create", "copy"]);
    let again = cli.run(&["volume", "create", "web"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let listed: serde_json::Value =
        serde_json::from_str(&cli.ok(&["volume", "ls", "--json"])).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([
            {"id": "copy", "info": {}},
            {"id": "web", "info": {"driver": "local", "size": "1G"}},
        ])
    );
    assert!(
        cli.ok(&["volume", "ls"])
            .contains("web\tdriver=local,size=1G")
    );

    let layer1 = data.chain_layer(1);
    cli.ok(&["volume", "import", "web", layer1.to_str().unwrap()]);
    let exported = cli.ok_bytes(&["volume", "export", "web"]);
    let mut import = cli
        .cmd(&["volume", "import", "copy", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    import.stdin.take().unwrap().write_all(&exported).unwrap();
    let out = import.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        Layercheck::manifest(&volumes.join("web")),
        Layercheck::manifest(&volumes.join("copy"))
    );
    // The export is the engine's deterministic tar: exporting twice gives the same bytes.
    assert_eq!(exported, cli.ok_bytes(&["volume", "export", "web"]));

    cli.ok(&["volume", "rm", "web"]);
    let missing = cli.run(&["volume", "rm", "web"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let listed: serde_json::Value =
        serde_json::from_str(&cli.ok(&["volume", "ls", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    common::volume_stat_script(&|args| cli.run(args), owner);
}

impl Cli {
    fn ok_bytes(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

#[test]
fn volume_commands_work_on_an_nfs_store_with_ganesha() {
    if !require(
        "volume_commands_work_on_an_nfs_store_with_ganesha",
        &REQUIREMENTS,
    ) {
        return;
    }
    let g = Ganesha::start(1000, 1000);
    let cli = Cli::new(g.url(1000, 1000));
    volume_commands(&cli, &g.export_dir().join("volumes"), (1000, 1000));
}

#[test]
fn volume_commands_work_on_an_overlay_store_as_root() {
    if !require(
        "volume_commands_work_on_an_overlay_store_as_root",
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().join("store");
    let cli = Cli::new(format!("overlay://{}", root.display()));
    volume_commands(&cli, &root.join("volumes"), (1234, 5678));
}

#[test]
fn a_dead_nfs_server_is_a_clear_error_not_a_hang() {
    // Nothing listens on loopback port 9; the mount port is given so rpcbind is not asked.
    let cli = Cli::new("nfs://127.0.0.1:9/export?mountport=9&timeout=3".into());
    let out = cli.run(&["volume", "ls"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach NFS server 127.0.0.1:9/export"),
        "{err}"
    );
}

#[test]
fn a_volume_a_container_uses_is_not_removed_until_the_container_goes() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().join("store");
    let cli = Cli::new(format!("overlay://{}", root.display()));
    cli.ok(&["volume", "create", "data"]);
    let image = cli.ok(&["create-image"]).trim().to_owned();
    let out = cli.run(&["create-container", "--volume", "missing", &image]);
    assert!(!out.status.success(), "a container used a missing volume");
    assert!(cli.ok(&["containers", "--json"]).trim() == "[]");
    let c = cli.ok(&["create-container", "--volume", "data", &image]);
    let out = cli.run(&["volume", "rm", "data"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("volume data is in use") && err.contains(c.trim()),
        "{err}"
    );
    cli.ok(&["delete-container", c.trim()]);
    cli.ok(&["volume", "rm", "data"]);
    assert!(cli.ok(&["volume", "ls", "--json"]).contains("[]"));
}
