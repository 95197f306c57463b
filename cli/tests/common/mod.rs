//! A store in a temporary directory driven through the real `strata` binary, for the
//! crash and concurrency scenarios.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One store (root and run root) in a temporary directory.
pub struct CliStore {
    dir: tempfile::TempDir,
    /// Where the store's root is, when not in `dir` (a small disk, for the fault tests).
    root: Option<PathBuf>,
    /// The backend's scheme, when not the default overlay store at the root.
    scheme: Option<String>,
}

impl CliStore {
    pub fn new(prefix: &str) -> Self {
        CliStore {
            dir: tempfile::Builder::new().prefix(prefix).tempdir().unwrap(),
            root: None,
            scheme: None,
        }
    }

    /// A store of the backend `scheme` (`vmdk`, `vhd`) at the root: every command gets
    /// `--store SCHEME://ROOT`.
    pub fn on(prefix: &str, scheme: &str) -> Self {
        let mut store = CliStore::new(prefix);
        store.scheme = Some(scheme.to_owned());
        store
    }

    /// A store whose root is `root` (its run root and scratch space stay in a temporary
    /// directory elsewhere).
    pub fn rooted_at(prefix: &str, root: &Path) -> Self {
        CliStore {
            dir: tempfile::Builder::new().prefix(prefix).tempdir().unwrap(),
            root: Some(root.to_owned()),
            scheme: None,
        }
    }

    pub fn root(&self) -> PathBuf {
        match &self.root {
            Some(root) => root.clone(),
            None => self.dir.path().join("store"),
        }
    }

    pub fn run_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// A scratch directory beside the store.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.arg("--root")
            .arg(self.root())
            .arg("--run-root")
            .arg(self.run_root());
        if let Some(scheme) = &self.scheme {
            c.arg("--store")
                .arg(format!("{scheme}://{}", self.root().display()));
        }
        c.args(args);
        c
    }

    /// What of this store's is still attached on a loop device, mounted, or served by a
    /// block-view server: anything naming its directory.
    pub fn leftovers(&self) -> Vec<String> {
        let tag = self.dir.path().display().to_string();
        let mut left = Vec::new();
        let loops = Command::new("losetup").arg("-a").output().unwrap();
        left.extend(
            String::from_utf8_lossy(&loops.stdout)
                .lines()
                .filter(|l| l.contains(&tag))
                .map(|l| format!("loop device: {l}")),
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        left.extend(
            mounts
                .lines()
                .filter(|l| l.contains(&tag))
                .map(|l| format!("mount: {l}")),
        );
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("serve-block-view") && cmdline.contains(&tag) {
                left.push(format!("server: {cmdline}"));
            }
        }
        left
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs `strata args` with `input` on its standard input (written from another thread,
    /// so a process that fails early and stops reading cannot block the test).
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        let _ = feeder.join();
        out
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// The ids of the listed layers (the catalog lists only complete ones).
    pub fn complete_layer_ids(&self) -> BTreeSet<String> {
        let listed = self.json(&["layers", "--json"]);
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn container_ids(&self) -> BTreeSet<String> {
        ids_of(&self.json(&["containers", "--json"]))
    }

    pub fn image_ids(&self) -> BTreeSet<String> {
        ids_of(&self.json(&["images", "--json"]))
    }
}

impl Drop for CliStore {
    /// Unmounts what is left, then removes the store before `TempDir` does: its removal
    /// recurses, and a test may leave a tree deeper than a thread's stack.
    fn drop(&mut self) {
        let _ = self.run(&["cleanup"]);
        let _ = dirtree::remove_all(&self.root());
    }
}

fn ids_of(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The names of the entries of a directory (none when it does not exist).
pub fn entries(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("list {}: {e}", dir.display()),
    }
}

/// Layer directories under `overlay/` (the driver's own `l/` and `empty` aside).
pub fn layer_dirs(store: &CliStore) -> std::collections::BTreeSet<String> {
    let mut dirs = entries(&store.root().join("overlay"));
    dirs.remove("l");
    dirs.remove("empty");
    dirs
}

/// Reopens the store (every command recovers first) and checks it: every listed layer is
/// complete; `overlay/`, `containers/` (in the root and the run root) and `bigdata/` hold
/// exactly what listed objects own; every short link resolves.
pub fn check_consistent(store: &CliStore, after: &str) {
    // The store's own check agrees (opening the store has finished what a crash left).
    let checked = store.run(&["check"]);
    assert!(
        checked.status.success(),
        "after {after}: strata check: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let layers = store.complete_layer_ids();
    assert_eq!(
        layer_dirs(store),
        layers,
        "after {after}: overlay/ holds other directories than the listed layers"
    );
    let links = store.root().join("overlay/l");
    let link_names = entries(&links);
    assert_eq!(
        link_names.len(),
        layers.len(),
        "after {after}: overlay/l holds {} links for {} layers",
        link_names.len(),
        layers.len()
    );
    for l in &link_names {
        assert!(
            links.join(l).exists(),
            "after {after}: short link overlay/l/{l} dangles"
        );
    }
    let containers = store.container_ids();
    assert_eq!(
        entries(&store.root().join("containers")),
        containers,
        "after {after}: containers/ in the store root"
    );
    assert_eq!(
        entries(&store.run_root().join("containers")),
        containers,
        "after {after}: containers/ in the run root"
    );
    let images = store.image_ids();
    for (kind, owners) in [
        ("image", &images),
        ("container", &containers),
        ("layer", &layers),
    ] {
        let dir = store.root().join("bigdata").join(kind);
        for owner in entries(&dir) {
            assert!(
                owners.contains(&owner),
                "after {after}: bigdata/{kind}/{owner} belongs to no listed {kind}"
            );
            let keys = store.json(&[&format!("list-{kind}-data"), &owner, "--json"]);
            assert_eq!(
                entries(&dir.join(&owner)).len(),
                keys.as_array().unwrap().len(),
                "after {after}: bigdata/{kind}/{owner} holds other files than its items"
            );
        }
    }
}

/// A tiny deterministic generator (xorshift64*): the same seed gives the same sequence.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// An index into something `len` long (0 when it is empty).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// One of `items`, `None` when there are none.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.index(items.len())])
    }
}

/// A tar of `files` small files (`repeat` lines each) spread over `dirs` directories
/// (`d<k>/f<i>`), owned by root, with fixed times.
pub fn files_tar(files: usize, dirs: usize, repeat: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..files {
        let body = format!("file {i}\n").repeat(repeat);
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, format!("d{:02}/f{i:05}", i % dirs), body.as_bytes())
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// Runs `cmd` with `input` on its standard input, killing it after `delay` (`None`: lets
/// it finish, which it must do successfully). True when it had finished by itself.
pub fn run_or_kill(mut cmd: Command, input: &[u8], delay: Option<std::time::Duration>) -> bool {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let finished = match delay {
        None => {
            assert!(child.wait().unwrap().success(), "{cmd:?} failed");
            true
        }
        Some(d) => {
            std::thread::sleep(d);
            let done = child.try_wait().unwrap().is_some();
            let _ = child.kill();
            child.wait().unwrap();
            done
        }
    };
    let _ = feeder.join();
    finished
}

/// `volume stat` on any store with volumes, run through `run` (the store's `strata`
/// with the given arguments): a file's mode, owner, size and time as imported, a symlink
/// reported and not followed, `..` and symlinks on the way kept inside the volume, and
/// a missing path an error naming it and the volume. Makes and removes the volume
/// `probe`. `owner` is who the store makes the file's owner: the tar's 1234:5678 where
/// it applies owners, its own identity where it cannot (an NFS client without root).
pub fn volume_stat_script(run: &dyn Fn(&[&str]) -> Output, owner: (u32, u32)) {
    let ok = |args: &[&str]| -> serde_json::Value {
        let out = run(args);
        assert!(
            out.status.success(),
            "strata {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let header = |kind: tar::EntryType, mode: u32, owner: u64, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner);
        h.set_gid(owner + 4444);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h
    };
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = header(tar::EntryType::Directory, 0o755, 0, 0);
    b.append_data(&mut dir, "etc/", std::io::empty()).unwrap();
    let mut file = header(tar::EntryType::Regular, 0o640, 1234, 6);
    b.append_data(&mut file, "etc/motd", &b"hello\n"[..])
        .unwrap();
    for (name, target) in [("link", "/etc/motd"), ("up", "../..")] {
        let mut link = header(tar::EntryType::Symlink, 0o777, 0, 0);
        b.append_link(&mut link, name, target).unwrap();
    }
    let tar = b.into_inner().unwrap();
    // A file of this call's own: the tests of one binary run this script side by side.
    let file = tempfile::Builder::new()
        .prefix("strata-stat-")
        .suffix(".tar")
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), &tar).unwrap();
    ok(&["volume", "create", "probe"]);
    ok(&["volume", "import", "probe", file.path().to_str().unwrap()]);
    drop(file);

    let motd = ok(&["volume", "stat", "probe", "/etc/motd", "--json"]);
    assert_eq!(motd["path"], "/etc/motd");
    assert_eq!(motd["mode"], 0o100640);
    assert_eq!(
        (motd["uid"].clone(), motd["gid"].clone()),
        (owner.0.into(), owner.1.into())
    );
    assert_eq!(motd["size"], 6);
    assert_eq!(motd["mtime"], 1_600_000_000);
    assert_eq!(motd["link_target"], serde_json::Value::Null);
    let link = ok(&["volume", "stat", "probe", "link", "--json"]);
    assert_eq!(link["mode"].as_u64().unwrap() & 0o170000, 0o120000);
    assert_eq!(link["link_target"], "/etc/motd");
    // Out by `..` and through a symlink that climbs: both stay in the volume, so they
    // find its own file, not the machine's.
    for inside in ["../../etc/motd", "up/etc/motd", "etc/../../etc/motd"] {
        let st = ok(&["volume", "stat", "probe", inside, "--json"]);
        assert_eq!(
            (st["size"].clone(), st["uid"].clone()),
            (6.into(), owner.0.into()),
            "{inside}"
        );
    }
    let root = ok(&["volume", "stat", "probe", "/", "--json"]);
    assert_eq!(root["mode"].as_u64().unwrap() & 0o170000, 0o040000);
    let text = run(&["volume", "stat", "probe", "etc/motd"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("Mode: 100640"),
        "{text:?}"
    );
    for missing in ["etc/nothing", "etc/motd/below"] {
        let out = run(&["volume", "stat", "probe", missing]);
        assert!(!out.status.success(), "stat {missing} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not found") && err.contains(missing) && err.contains("volume probe"),
            "{err}"
        );
    }
    ok(&["volume", "rm", "probe"]);
}

/// Runs `containers-storage` (1.43, vfs driver: no mounts) on the store whose graph is
/// `dir/cs` and run root `dir/cs-run`, and returns its standard output; a failure fails
/// the test with its error.
pub fn containers_storage(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("containers-storage")
        .arg("--graph")
        .arg(dir.join("cs"))
        .arg("--run")
        .arg(dir.join("cs-run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "containers-storage {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A value's shape: objects keep their keys with the shapes of their values, arrays the
/// sorted set of their elements' shapes, and anything else its JSON type.
pub fn json_shape(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), json_shape(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            let mut shapes: Vec<serde_json::Value> = items.iter().map(json_shape).collect();
            shapes.sort_by_key(|s| s.to_string());
            shapes.dedup();
            serde_json::Value::Array(shapes)
        }
        serde_json::Value::String(_) => "string".into(),
        serde_json::Value::Number(_) => "number".into(),
        serde_json::Value::Bool(_) => "bool".into(),
        serde_json::Value::Null => "null".into(),
    }
}
