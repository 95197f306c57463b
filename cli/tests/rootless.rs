//! An unprivileged user's store: the `strata` binary run as uid 1000 with no
//! capabilities (through `setpriv`), on a store directory that user owns. Imports keep
//! the archive's owners, modes and devices in `user.containers.override_stat` and `diff`
//! gives them back; what cannot be kept is reported on standard error; a layer mounts
//! through fuse-overlayfs, which presents the recorded owners, and the layercheck chain
//! holds there with owners compared. The tests start as root to make that user's store
//! and then drop every privilege for the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};
use testkit::{Layercheck, Requirement, require};

/// The unprivileged user the tests run the binary as (`cloudsdk` on the test machine).
const UID: u32 = 1000;
const GID: u32 = 1000;

/// Checks what running as [`UID`] needs; `false` (after a `SKIPPED` line) when something
/// is missing outside CI, a failure under `CI=true`.
fn rootless_requirements(test: &str, mounts: bool) -> bool {
    let mut needs = vec![
        Requirement::Root,
        Requirement::Command("setpriv"),
        Requirement::Command("python3"),
    ];
    if mounts {
        needs.extend([
            Requirement::Command("fuse-overlayfs"),
            Requirement::Command("fusermount3"),
            Requirement::Path("/dev/fuse"),
            Requirement::Filesystem("fuse"),
        ]);
    }
    if !require(test, &needs) {
        return false;
    }
    let mut missing = Vec::new();
    let user_exists = std::fs::read_to_string("/etc/passwd")
        .is_ok_and(|p| p.lines().any(|l| l.split(':').nth(2) == Some("1000")));
    if !user_exists {
        missing.push("a user with uid 1000".to_owned());
    }
    if mounts
        && std::fs::metadata("/dev/fuse").is_ok_and(|m| m.permissions().mode() & 0o006 != 0o006)
    {
        missing.push("/dev/fuse usable by every user (mode 0666; `cargo xtask ci` sets it)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let line = format!("{} {test}: needs {}", testkit::SKIPPED, missing.join(", "));
    if testkit::in_ci() {
        panic!("{line} (a missing requirement fails under CI=true)");
    }
    testkit::tell(&line);
    false
}

/// `program args…` as [`UID`]:[`GID`], with no supplementary groups and no capabilities.
fn as_user(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={UID}"),
        &format!("--regid={GID}"),
        "--clear-groups",
        "--inh-caps=-all",
        "--",
        program,
    ]);
    c.env("HOME", "/nonexistent");
    c
}

/// `program args…` as [`as_user`], but able to read and search whatever the permission
/// bits say (ambient `CAP_DAC_READ_SEARCH` and `CAP_DAC_OVERRIDE`, nothing else).
fn as_user_reading_all(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={UID}"),
        &format!("--regid={GID}"),
        "--clear-groups",
        "--inh-caps=-all,+dac_read_search,+dac_override",
        "--ambient-caps=+dac_read_search,+dac_override",
        "--",
        program,
    ]);
    c.env("HOME", "/nonexistent");
    c
}

/// A store owned by [`UID`] in a temporary directory, driven by the binary as that user.
struct UserStore {
    dir: tempfile::TempDir,
}

impl UserStore {
    fn new(prefix: &str) -> Self {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        chown_tree(dir.path());
        UserStore { dir }
    }

    /// A path in the store's directory that the user can read and write.
    fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = as_user(env!("CARGO_BIN_EXE_strata"));
        c.arg("--root")
            .arg(self.dir.path().join("store"))
            .arg("--run-root")
            .arg(self.dir.path().join("run"))
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs and asserts success; returns (stdout, stderr).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?} as uid {UID} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// What is still mounted below this store's directory.
    fn mounted_here(&self) -> Vec<String> {
        let tag = self.dir.path().display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&tag))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for UserStore {
    fn drop(&mut self) {
        let _ = self.run(&["cleanup"]);
        let _ = dirtree::remove_all(self.dir.path());
    }
}

/// Gives `dir` and everything below it to [`UID`]:[`GID`].
fn chown_tree(dir: &Path) {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{UID}:{GID}"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "chown -R {}", dir.display());
}

/// One entry as a tar header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    kind: char,
    uid: u64,
    gid: u64,
    mode: u32,
    dev: Option<(u32, u32)>,
    xattrs: Vec<String>,
}

/// Every entry of `tar` by name (directories without their trailing `/`).
fn entries_of(tar: &[u8]) -> BTreeMap<String, Seen> {
    let mut archive = tar::Archive::new(tar);
    let mut seen = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        let name = String::from_utf8_lossy(&entry.path_bytes())
            .trim_end_matches('/')
            .trim_start_matches("./")
            .to_owned();
        let mut xattrs = Vec::new();
        if let Some(ext) = entry.pax_extensions().unwrap() {
            for e in ext {
                let e = e.unwrap();
                if let Some(x) = e.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push(x.to_owned());
                }
            }
        }
        let kind = match h.entry_type() {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            tar::EntryType::Block => 'b',
            tar::EntryType::Fifo => 'p',
            other => panic!("unexpected entry type {other:?} for {name}"),
        };
        let dev = matches!(kind, 'c' | 'b').then(|| {
            (
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            )
        });
        let mut sink = Vec::new();
        entry.read_to_end(&mut sink).unwrap();
        seen.insert(
            name,
            Seen {
                kind,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mode: h.mode().unwrap() & 0o7777,
                dev,
                xattrs,
            },
        );
    }
    seen
}

/// A layer with entries owned by root and by others, of every kind a tar carries: the
/// input of the import tests.
fn owned_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str,
                   kind: tar::EntryType,
                   (uid, gid): (u64, u64),
                   mode: u32,
                   data: &[u8],
                   link: Option<&str>,
                   dev: Option<(u32, u32)>| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if let Some((major, minor)) = dev {
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
        }
        if let Some(target) = link {
            b.append_link(&mut h, name, target).unwrap();
        } else {
            b.append_data(&mut h, name, data).unwrap();
        }
    };
    use tar::EntryType::*;
    add("etc/", Directory, (0, 0), 0o755, b"", None, None);
    add(
        "etc/shadow",
        Regular,
        (0, 42),
        0o640,
        b"root:*:1::::::\n",
        None,
        None,
    );
    add(
        "etc/locked",
        Regular,
        (0, 0),
        0o000,
        b"nobody reads this\n",
        None,
        None,
    );
    add("usr/", Directory, (0, 0), 0o755, b"", None, None);
    add("usr/bin/", Directory, (0, 0), 0o755, b"", None, None);
    add(
        "usr/bin/su",
        Regular,
        (0, 0),
        0o4755,
        b"#!/bin/sh\n",
        None,
        None,
    );
    add(
        "usr/bin/su-hard",
        Link,
        (0, 0),
        0o4755,
        b"",
        Some("usr/bin/su"),
        None,
    );
    add("usr/bin/sh", Symlink, (0, 0), 0o777, b"", Some("su"), None);
    add("home/", Directory, (0, 0), 0o755, b"", None, None);
    add("home/app/", Directory, (1234, 5678), 0o700, b"", None, None);
    add(
        "home/app/data",
        Regular,
        (1234, 5678),
        0o600,
        b"app data\n",
        None,
        None,
    );
    add(
        "home/mine",
        Symlink,
        (UID.into(), GID.into()),
        0o777,
        b"",
        Some("app"),
        None,
    );
    add("tmp/", Directory, (0, 0), 0o1777, b"", None, None);
    add("ro/", Directory, (0, 0), 0o555, b"", None, None);
    add(
        "ro/inside",
        Regular,
        (0, 0),
        0o444,
        b"read only\n",
        None,
        None,
    );
    add("dev/", Directory, (0, 0), 0o755, b"", None, None);
    add("dev/null", Char, (0, 0), 0o666, b"", None, Some((1, 3)));
    add("dev/loop7", Block, (0, 6), 0o660, b"", None, Some((7, 7)));
    add("dev/fifo", Fifo, (0, 0), 0o644, b"", None, None);
    b.into_inner().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn an_unprivileged_import_keeps_root_owners_and_diff_gives_them_back() {
    if !rootless_requirements(
        "an_unprivileged_import_keeps_root_owners_and_diff_gives_them_back",
        false,
    ) {
        return;
    }
    let store = UserStore::new("strata-rootless-");
    let input = owned_layer();
    let tar_path = store.scratch("owned.tar");
    std::fs::write(&tar_path, &input).unwrap();
    chown_tree(&tar_path);

    let (id, warned) = store.ok(&["import-layer", tar_path.to_str().unwrap()]);
    // The one thing this user cannot keep: a symlink's foreign owner. Said, not dropped.
    assert!(
        warned.contains("usr/bin/sh: owner 0:0 (a symlink cannot record it)"),
        "the lost owner is not reported: {warned}"
    );
    assert!(!warned.contains("home/mine"), "{warned}");

    // On disk: everything belongs to the user; the archive's owners are recorded.
    let diff_dir = store
        .scratch("store")
        .join("overlay")
        .join(&id)
        .join("diff");
    let record = |rel: &str| {
        let v = tar_engine::tree::get_xattr(&diff_dir.join(rel), "user.containers.override_stat")
            .unwrap();
        String::from_utf8(v.unwrap_or_else(|| panic!("{rel} has no record"))).unwrap()
    };
    assert_eq!(record("etc/shadow"), "0:42:0640:file");
    assert_eq!(record("usr/bin/su"), "0:0:4755:file");
    assert_eq!(record("home/app"), "1234:5678:0700:dir");
    assert_eq!(record("dev/null"), "0:0:0666:char-1-3");
    assert_eq!(record("dev/loop7"), "0:6:0660:block-7-7");
    assert_eq!(record("dev/fifo"), "0:0:0644:pipe");
    assert_eq!(record(""), "0:0:0755:dir");
    let md = std::fs::symlink_metadata(diff_dir.join("etc/shadow")).unwrap();
    assert_eq!((md.uid(), md.gid()), (UID, GID));

    // The first diff replays the imported tar byte for byte: its digest is the recorded one.
    let listed: serde_json::Value =
        serde_json::from_str(&store.ok(&["layers", "--json"]).0).unwrap();
    let recorded = listed[0]["diff-digest"].as_str().unwrap().to_owned();
    let exact = store.cmd(&["diff", &id]).output().unwrap();
    assert!(
        exact.status.success(),
        "{}",
        String::from_utf8_lossy(&exact.stderr)
    );
    assert_eq!(sha256_hex(&exact.stdout), sha256_hex(&input));
    assert_eq!(recorded, format!("sha256:{}", sha256_hex(&input)));

    // A filtered diff is written from the tree: owners, modes and devices from the
    // records (the filter leaves nothing out).
    let written = store
        .cmd(&["diff", "--exclude", "no/such/path", &id])
        .output()
        .unwrap();
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    assert_ne!(
        sha256_hex(&written.stdout),
        sha256_hex(&input),
        "the second diff should be the deterministic export, not the replay"
    );
    let want = entries_of(&input);
    let got = entries_of(&written.stdout);
    for (name, w) in &want {
        let g = got
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing from the diff"));
        assert!(
            !g.xattrs
                .iter()
                .any(|x| x == "user.containers.override_stat"),
            "{name} leaves with its record as an xattr"
        );
        if name == "usr/bin/sh" {
            // Reported at import: the symlink is the user's now.
            assert_eq!((g.uid, g.gid), (u64::from(UID), u64::from(GID)), "{name}");
            continue;
        }
        let mut w = w.clone();
        if w.kind == 'l' {
            // A symlink's mode is whatever the tree says (0777 on Linux).
            w.mode = g.mode;
        }
        assert_eq!(g, &w, "{name} differs from the imported entry");
    }
}

#[test]
fn an_unprivileged_user_mounts_the_layercheck_chain_through_fuse_overlayfs() {
    if !rootless_requirements(
        "an_unprivileged_user_mounts_the_layercheck_chain_through_fuse_overlayfs",
        true,
    ) || !require(
        "an_unprivileged_user_mounts_the_layercheck_chain_through_fuse_overlayfs",
        &[Requirement::Command("getfattr")],
    ) {
        return;
    }
    let store = UserStore::new("strata-rootless-mount-");
    let data = Layercheck::generate();
    chown_tree(data.dir());
    let mut parent: Option<String> = None;
    for k in 1..=3 {
        let tar = data.chain_layer(k);
        let mut args = vec!["import-layer"];
        if let Some(p) = parent.as_deref() {
            args.extend(["--parent", p]);
        }
        args.push(tar.to_str().unwrap());
        let (id, _) = store.ok(&args);
        let (mount, _) = store.ok(&["mount", &id]);
        assert!(
            store.mounted_here().iter().any(|l| l.contains("fuse")),
            "layer {k} is not a FUSE mount: {:?}",
            store.mounted_here()
        );
        // Only the user who mounted can look into a FUSE mount, and the mount presents the
        // image's owners and modes (root's 0600 files, root's 0700 directories), which
        // that user may not read: the checker runs as it with the capabilities to read
        // anything, as a container's root in its own user namespace reads the image.
        // strata itself runs with none.
        let out = as_user_reading_all(user_python())
            .arg(Layercheck::script())
            .arg("compare")
            .arg(data.expected())
            .arg(&mount)
            .arg("--layer")
            .arg(k.to_string())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // An imported layer mounted read-write takes new entries and changes too.
        let wrote = (k == 3).then(|| {
            as_user_reading_all("sh")
                .arg("-c")
                .arg("mkdir \"$1/new-dir\" && printf x > \"$1/new-dir/f\" && printf y >> \"$1/etc/passwd\"")
                .arg("sh")
                .arg(&mount)
                .output()
                .unwrap()
        });
        store.ok(&["unmount", &id]);
        if let Some(wrote) = wrote {
            assert!(
                wrote.status.success(),
                "writing into layer {k}'s mount: {}",
                String::from_utf8_lossy(&wrote.stderr)
            );
        }
        let unexplained: Vec<String> = text
            .lines()
            .filter(|l| !l.ends_with(" differ"))
            .filter_map(without_visible_record)
            .filter(|l| !known_loss(l))
            .collect();
        assert!(
            unexplained.is_empty(),
            "layer {k} differs from the expected tree beyond what an unprivileged store \
             cannot hold:\n{}\n(whole output:\n{text})",
            unexplained.join("\n")
        );
        assert!(
            text.lines().last().is_some_and(|l| l.contains(" matched")),
            "{text}"
        );
        parent = Some(id);
    }
    let top = parent.unwrap();
    let (mounted, _) = store.ok(&["mounted", &top]);
    assert!(
        !mounted.contains("true"),
        "still counted as mounted: {mounted}"
    );
    assert!(
        store.mounted_here().is_empty(),
        "{:?}",
        store.mounted_here()
    );

    // A container on the image: what is written through its mount, a new file and a
    // root-owned file copied up, comes out of its layer's diff with the owners the
    // mount showed.
    store.ok(&["create-image", "--name", "chain", &top]);
    let (container, _) = store.ok(&["create-container", "--name", "web", "chain"]);
    let (mount, _) = store.ok(&["mount", &container]);
    let wrote = as_user_reading_all("sh")
        .arg("-c")
        .arg("printf new > \"$1/made-here\" && printf changed > \"$1/etc/passwd\"")
        .arg("sh")
        .arg(&mount)
        .output()
        .unwrap();
    store.ok(&["unmount", &container]);
    assert!(
        wrote.status.success(),
        "writing through the container's mount: {}",
        String::from_utf8_lossy(&wrote.stderr)
    );
    let listed: serde_json::Value =
        serde_json::from_str(&store.ok(&["containers", "--json"]).0).unwrap();
    let layer = listed[0]["layer"].as_str().unwrap().to_owned();
    let diff = store.cmd(&["diff", &layer]).output().unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    let got = entries_of(&diff.stdout);
    let owner = |name: &str| {
        let e = got
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in the container's diff: {got:?}"));
        (e.kind, e.uid, e.gid)
    };
    assert_eq!(owner("etc"), ('d', 0, 0));
    // Its owner; not its mode, which fuse-overlayfs 1.10 records wrong at copy-up
    // (`0755` for this `0644` file, as the mount itself shows once remounted).
    assert_eq!(owner("etc/passwd"), ('f', 0, 0));
    assert_eq!(owner("made-here"), ('f', u64::from(UID), u64::from(GID)));
    assert!(
        store.mounted_here().is_empty(),
        "{:?}",
        store.mounted_here()
    );
}

#[test]
fn an_unprivileged_diff_from_the_parent_or_another_ancestor_gives_the_layer_with_its_owners() {
    if !rootless_requirements(
        "an_unprivileged_diff_from_the_parent_or_another_ancestor_gives_the_layer_with_its_owners",
        false,
    ) {
        return;
    }
    let store = UserStore::new("strata-rootless-ancestor-");
    let data = Layercheck::generate();
    chown_tree(data.dir());
    let mut ids: Vec<String> = Vec::new();
    for k in 1..=3 {
        let tar = data.chain_layer(k);
        let mut args = vec!["import-layer"];
        if let Some(p) = ids.last() {
            args.extend(["--parent", p.as_str()]);
        }
        args.push(tar.to_str().unwrap());
        let (id, _) = store.ok(&args);
        ids.push(id);
    }
    // Read from the diff directories: nothing is mounted, and nothing needs to be.
    for (from, args) in [
        (1, vec!["diff", "--from", &ids[0], &ids[2]]),
        (2, vec!["diff", &ids[2]]),
    ] {
        let out = store.cmd(&args).output().unwrap();
        assert!(
            out.status.success(),
            "strata {args:?} as uid {UID}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Applied as root over the ancestor's tree, with the owners the tar says.
        let tree = tempfile::tempdir().unwrap();
        let opts = tar_engine::ApplyOptions {
            sync: false,
            ..tar_engine::ApplyOptions::new(tar_engine::WhiteoutMode::Delete)
        };
        let op = storage_core::Op::new("rootless-ancestor");
        for k in 1..=from {
            let below = std::fs::File::open(data.chain_layer(k)).unwrap();
            tar_engine::apply_tar(&op, tree.path(), below, &opts).unwrap();
        }
        tar_engine::apply_tar(&op, tree.path(), out.stdout.as_slice(), &opts).unwrap();
        let text = match Layercheck::compare(&data.expected(), tree.path(), 3, &[]) {
            Ok(text) | Err(text) => text,
        };
        let unexplained: Vec<&str> = text
            .lines()
            .filter(|l| !l.ends_with(" differ") && !l.contains(" matched"))
            .filter(|l| !known_loss(l))
            .collect();
        assert!(
            unexplained.is_empty(),
            "strata {args:?}, applied, differs from layer 3:\n{}",
            unexplained.join("\n")
        );
        assert!(text.contains(" matched"), "{text}");
    }
    assert!(
        store.mounted_here().is_empty(),
        "{:?}",
        store.mounted_here()
    );
}

/// A python3 the test user can run: the system's (root's `PATH` may lead to one in a
/// directory only root can enter).
fn user_python() -> &'static str {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("python3")
}

/// A line of layercheck's output without the xattrs fuse-overlayfs 1.10 shows beside the
/// image's own: the records it presents every entry's owner and mode from
/// (`user.containers.override_stat`, `user.fuseoverlayfs.override_stat`); `None` when
/// nothing else differs. `xattrs` is
/// the last field layercheck lists, as `xattrs want W got G`.
fn without_visible_record(line: &str) -> Option<String> {
    let Some(at) = line.find("xattrs want ") else {
        return Some(line.to_owned());
    };
    let (head, clause) = line.split_at(at);
    let (want, got) = clause["xattrs want ".len()..]
        .split_once(" got ")
        .expect("layercheck's xattrs field");
    let mut got = got.to_owned();
    for record in [
        "'user.containers.override_stat': '",
        "'user.fuseoverlayfs.override_stat': '",
    ] {
        let Some(start) = got.find(record) else {
            continue;
        };
        let value_end = got[start..]
            .match_indices('\'')
            .nth(3)
            .map(|(i, _)| start + i + 1)
            .expect("a quoted value");
        let (mut from, mut to) = (start, value_end);
        if got[to..].starts_with(", ") {
            to += 2;
        } else if got[..from].ends_with(", ") {
            from -= 2;
        }
        got.replace_range(from..to, "");
    }
    if got == "{}" {
        got = "None".into();
    }
    if want != got {
        return Some(line.to_owned());
    }
    let head = head.trim_end_matches(", ").trim_end();
    if head.ends_with(':') {
        None
    } else {
        Some(head.to_owned())
    }
}

/// A difference layercheck finds in an unprivileged store's mount that is a known loss:
/// a symlink's owner (no `user.*` xattr can be set on a symlink), and a device or FIFO
/// shown as the empty file it is stored as (fuse-overlayfs before 1.15 presents the
/// recorded owner and mode of such a file, not its type). Owners and modes of everything
/// else are compared.
fn known_loss(line: &str) -> bool {
    let symlink_owner = ["usr/bin/sh", "abs-link", "dangling"]
        .iter()
        .any(|p| line == format!("differs: {p}: gid want 0 got {GID}, uid want 0 got {UID}"));
    let node_as_file = ["dev-null", "dev-loopx", "fifo"].iter().any(|p| {
        line.starts_with(&format!("differs: {p}: "))
            && line.contains("type want ")
            && line.contains(" got 'file'")
            && !line.contains("uid ")
            && !line.contains("gid ")
            && !line.contains("mode ")
    });
    symlink_owner || node_as_file
}
