//! The concurrency (load) test: sixteen workers, each a thread driving its own sequence of
//! `strata` processes against one store, import and create layers, create images and
//! containers, name them (with names every worker fights over), mount and unmount, set big
//! data and delete, all at once for a bounded while. Every failure must be one of the
//! documented errors, SQLite's "database is locked" must never appear, and at the end the
//! catalog holds exactly what each worker says it did, every imported layer that is still
//! listed reads back with the files it was given, and `strata check` passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{CliStore, Rng, check_consistent};
use testkit::{Requirement, require};

const WORKERS: usize = 16;
/// How long the workers run together.
const RUN_FOR: Duration = Duration::from_secs(25);
/// Names every worker tries to take, per kind.
const CONTESTED: usize = 3;

/// The `Display` texts of the documented errors (storage-core's `Error`), and their kinds.
const DOCUMENTED: &[(&str, &str)] = &[
    (" is already used by ", "DuplicateName"),
    (" has child layers: ", "LayerHasChildren"),
    (" is used by image(s) ", "LayerUsedByImage"),
    (
        " is the read-write layer of container ",
        "LayerUsedByContainer",
    ),
    (" is used by container(s) ", "ImageUsedByContainer"),
    (" is in use: mounted ", "LayerInUse"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Layer,
    Image,
    Container,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Layer => "layer",
            Kind::Image => "image",
            Kind::Container => "container",
        }
    }
}

fn contested(kind: Kind, n: usize) -> String {
    format!("shared-{}-{n}", kind.word())
}

/// What one worker believes it owns.
#[derive(Default)]
struct Owned {
    /// Layers it made (not containers' layers), by id, with their private names.
    layers: BTreeMap<String, BTreeSet<String>>,
    /// Images it made, with their top layers and private names.
    images: BTreeMap<String, (String, BTreeSet<String>)>,
    /// Containers it made, with their images, mount counts, private names and big data.
    containers: BTreeMap<String, ContainerState>,
    /// Layers it imported, with the seed of their files ([`files_of`]).
    imported: BTreeMap<String, u64>,
}

/// The files an imported layer holds, by the seed it was made from.
fn files_of(seed: u64) -> BTreeMap<String, Vec<u8>> {
    (0..5)
        .map(|k| {
            (
                format!("f{k}"),
                format!("{seed}-{k}\n").repeat(50).into_bytes(),
            )
        })
        .collect()
}

/// A tar of [`files_of`]`(seed)`.
fn tar_of(seed: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in files_of(seed) {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, &body[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// The regular files of a tar stream.
fn files_in(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() == tar::EntryType::Regular {
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut body).unwrap();
            out.insert(name, body);
        }
    }
    out
}

#[derive(Default, Clone)]
struct ContainerState {
    mounts: u32,
    names: BTreeSet<String>,
    data: Option<Vec<u8>>,
}

/// A worker's account of what it did.
#[derive(Default)]
struct Account {
    owned: Owned,
    /// Every successful claim of a contested name: (kind, name) -> the ids that took it.
    claims: BTreeMap<(Kind, String), BTreeSet<String>>,
    /// Documented errors seen, by kind.
    errors: BTreeMap<&'static str, usize>,
    /// Successful operations, by verb.
    done: BTreeMap<&'static str, usize>,
    /// Processes run.
    processes: usize,
}

struct Worker {
    n: usize,
    store: Arc<CliStore>,
    rng: Rng,
    account: Account,
    next_name: usize,
}

enum Outcome {
    Ok(String),
    Documented(&'static str),
}

impl Worker {
    /// Runs one `strata` process; a failure must be a documented error, and no output may
    /// ever mention a locked database.
    fn run(&mut self, args: &[&str], stdin: Option<&[u8]>) -> Outcome {
        self.account.processes += 1;
        let mut cmd = self.store.cmd(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().unwrap();
        if let Some(data) = stdin {
            child.stdin.take().unwrap().write_all(data).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stderr.contains("database is locked") && !stderr.contains("database is busy"),
            "worker {}: strata {args:?}: {stderr}",
            self.n
        );
        if out.status.success() {
            return Outcome::Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned());
        }
        let kind = documented(&stderr).unwrap_or_else(|| {
            panic!(
                "worker {}: strata {args:?} failed with an undocumented error: {stderr}",
                self.n
            )
        });
        *self.account.errors.entry(kind).or_default() += 1;
        Outcome::Documented(kind)
    }

    fn done(&mut self, verb: &'static str) {
        *self.account.done.entry(verb).or_default() += 1;
    }

    fn private_name(&mut self) -> String {
        self.next_name += 1;
        format!("w{}-{}", self.n, self.next_name)
    }

    fn claimed(&mut self, kind: Kind, name: &str, id: &str) {
        if name.starts_with("shared-") {
            self.account
                .claims
                .entry((kind, name.to_owned()))
                .or_default()
                .insert(id.to_owned());
        }
    }

    fn layer_ids(&self) -> Vec<String> {
        self.account.owned.layers.keys().cloned().collect()
    }

    fn image_ids(&self) -> Vec<String> {
        self.account.owned.images.keys().cloned().collect()
    }

    fn container_ids(&self) -> Vec<String> {
        self.account.owned.containers.keys().cloned().collect()
    }

    /// A new name for a new object: usually private, sometimes contested.
    fn new_name(&mut self, kind: Kind) -> String {
        if self.rng.index(4) == 0 {
            contested(kind, self.rng.index(CONTESTED))
        } else {
            self.private_name()
        }
    }

    fn create_layer(&mut self) {
        let parent = self
            .rng
            .pick(&self.layer_ids())
            .cloned()
            .filter(|_| self.rng.index(3) != 0)
            .unwrap_or_else(|| "base".to_owned());
        let name = self.new_name(Kind::Layer);
        // Half of the new layers come from an archive, to be read back at the end.
        let seed = (self.rng.index(2) == 0).then(|| self.rng.next());
        let outcome = match seed {
            Some(seed) => self.run(
                &["import-layer", "--parent", &parent, "-n", &name, "-"],
                Some(&tar_of(seed)),
            ),
            None => self.run(&["create-layer", "--parent", &parent, "-n", &name], None),
        };
        if let Outcome::Ok(id) = outcome {
            self.claimed(Kind::Layer, &name, &id);
            let private = BTreeSet::from_iter([name].into_iter().filter(|n| !is_contested(n)));
            self.account.owned.layers.insert(id.clone(), private);
            match seed {
                Some(seed) => {
                    self.account.owned.imported.insert(id, seed);
                    self.done("import-layer");
                }
                None => self.done("create-layer"),
            }
        }
    }

    fn create_image(&mut self) {
        let Some(top) = self.rng.pick(&self.layer_ids()).cloned() else {
            return;
        };
        let name = self.new_name(Kind::Image);
        if let Outcome::Ok(id) = self.run(&["create-image", "-n", &name, &top], None) {
            self.claimed(Kind::Image, &name, &id);
            let private = BTreeSet::from_iter([name].into_iter().filter(|n| !is_contested(n)));
            self.account.owned.images.insert(id, (top, private));
            self.done("create-image");
        }
    }

    fn create_container(&mut self) {
        let Some(image) = self.rng.pick(&self.image_ids()).cloned() else {
            return;
        };
        let name = self.new_name(Kind::Container);
        if let Outcome::Ok(id) = self.run(&["create-container", "-n", &name, &image], None) {
            self.claimed(Kind::Container, &name, &id);
            let names = BTreeSet::from_iter([name].into_iter().filter(|n| !is_contested(n)));
            self.account.owned.containers.insert(
                id,
                ContainerState {
                    names,
                    ..Default::default()
                },
            );
            self.done("create-container");
        }
    }

    /// `add-names` or `set-names` on one of its objects, with private and contested names.
    fn rename(&mut self) {
        let kind = [Kind::Layer, Kind::Image, Kind::Container][self.rng.index(3)];
        let ids = match kind {
            Kind::Layer => self.layer_ids(),
            Kind::Image => self.image_ids(),
            Kind::Container => self.container_ids(),
        };
        let Some(id) = self.rng.pick(&ids).cloned() else {
            return;
        };
        let mut names = vec![self.private_name()];
        if self.rng.index(2) == 0 {
            names.push(contested(kind, self.rng.index(CONTESTED)));
        }
        let set = self.rng.index(3) == 0;
        let verb = if set { "set-names" } else { "add-names" };
        let mut args = vec![verb, id.as_str(), "--json"];
        for n in &names {
            args.extend(["-n", n.as_str()]);
        }
        let Outcome::Ok(out) = self.run(&args, None) else {
            return;
        };
        for n in &names {
            self.claimed(kind, n, &id);
        }
        let private = match kind {
            Kind::Layer => self.account.owned.layers.get_mut(&id).unwrap(),
            Kind::Image => &mut self.account.owned.images.get_mut(&id).unwrap().1,
            Kind::Container => &mut self.account.owned.containers.get_mut(&id).unwrap().names,
        };
        if set {
            private.clear();
        }
        private.extend(names.into_iter().filter(|n| !is_contested(n)));
        // Nobody else touches private names: what the command reports must agree now.
        let now: Vec<String> = serde_json::from_str(&out).unwrap();
        let now_private: BTreeSet<String> = now.into_iter().filter(|n| !is_contested(n)).collect();
        assert_eq!(&now_private, private, "worker {}: {verb} on {id}", self.n);
        self.done(verb);
    }

    fn mount(&mut self) {
        let Some(id) = self.rng.pick(&self.container_ids()).cloned() else {
            return;
        };
        if let Outcome::Ok(path) = self.run(&["mount", &id], None) {
            assert!(
                std::path::Path::new(&path).is_dir(),
                "mount {id} gave {path}"
            );
            self.account.owned.containers.get_mut(&id).unwrap().mounts += 1;
            self.done("mount");
        }
    }

    fn unmount(&mut self) {
        let mounted: Vec<String> = self
            .account
            .owned
            .containers
            .iter()
            .filter(|(_, c)| c.mounts > 0)
            .map(|(id, _)| id.clone())
            .collect();
        let Some(id) = self.rng.pick(&mounted).cloned() else {
            return;
        };
        if let Outcome::Ok(_) = self.run(&["unmount", &id], None) {
            self.account.owned.containers.get_mut(&id).unwrap().mounts -= 1;
            self.done("unmount");
        }
    }

    fn set_data(&mut self) {
        let Some(id) = self.rng.pick(&self.container_ids()).cloned() else {
            return;
        };
        let data = format!("worker {} state {}\n", self.n, self.rng.next()).into_bytes();
        if let Outcome::Ok(_) = self.run(&["set-container-data", &id, "state"], Some(&data)) {
            self.account.owned.containers.get_mut(&id).unwrap().data = Some(data);
            self.done("set-container-data");
        }
    }

    fn delete_container(&mut self) {
        let Some(id) = self.rng.pick(&self.container_ids()).cloned() else {
            return;
        };
        let mounts = self.account.owned.containers[&id].mounts;
        match self.run(&["delete-container", &id], None) {
            Outcome::Ok(_) => {
                assert_eq!(
                    mounts, 0,
                    "worker {}: deleted mounted container {id}",
                    self.n
                );
                self.account.owned.containers.remove(&id);
                self.done("delete-container");
            }
            Outcome::Documented(kind) => assert!(
                kind == "LayerInUse" && mounts > 0,
                "worker {}: delete-container {id} ({mounts} mounts) failed with {kind}",
                self.n
            ),
        }
    }

    fn delete_image(&mut self) {
        let Some(id) = self.rng.pick(&self.image_ids()).cloned() else {
            return;
        };
        if let Outcome::Ok(out) = self.run(&["delete-image", "--json", &id], None) {
            let done: serde_json::Value = serde_json::from_str(&out).unwrap();
            self.account.owned.images.remove(&id);
            for l in done[id.as_str()]["deleted-layers"].as_array().unwrap() {
                let l = l.as_str().unwrap();
                assert!(
                    self.account.owned.layers.remove(l).is_some(),
                    "worker {}: delete-image {id} removed layer {l}, not one of its own",
                    self.n
                );
            }
            self.done("delete-image");
        }
    }

    fn delete_layer(&mut self) {
        // Sometimes the shared base, which always has children: LayerHasChildren.
        let id = match self.rng.pick(&self.layer_ids()).cloned() {
            Some(id) if self.rng.index(8) != 0 => id,
            _ => "base".to_owned(),
        };
        if let Outcome::Ok(_) = self.run(&["delete-layer", &id], None) {
            assert!(
                self.account.owned.layers.remove(&id).is_some(),
                "worker {}: deleted layer {id}, not one of its own",
                self.n
            );
            self.done("delete-layer");
        }
    }

    fn step(&mut self) {
        match self.rng.index(20) {
            0..=3 => self.create_layer(),
            4..=5 => self.create_image(),
            6..=7 => self.create_container(),
            8..=10 => self.rename(),
            11..=12 => self.mount(),
            13 => self.unmount(),
            14 => self.set_data(),
            15..=16 => self.delete_container(),
            17 => self.delete_image(),
            _ => self.delete_layer(),
        }
    }

    /// Unmounts whatever it still has mounted.
    fn finish(&mut self) {
        for id in self.container_ids() {
            while self.account.owned.containers[&id].mounts > 0 {
                match self.run(&["unmount", &id], None) {
                    Outcome::Ok(_) => {
                        self.account.owned.containers.get_mut(&id).unwrap().mounts -= 1
                    }
                    Outcome::Documented(kind) => panic!("unmount {id}: {kind}"),
                }
            }
        }
    }
}

/// The documented error whose `Display` text `stderr` carries, if any.
fn documented(stderr: &str) -> Option<&'static str> {
    if let Some((_, kind)) = DOCUMENTED.iter().find(|(text, _)| stderr.contains(text)) {
        return Some(kind);
    }
    // NotFound: "{kind} {id} not found", with the kind named.
    stderr
        .lines()
        .any(|l| {
            ["layer ", "image ", "container "].iter().any(|k| {
                l.split(k).nth(1).is_some_and(|rest| {
                    rest.split_whitespace().nth(1) == Some("not") && rest.contains(" not found")
                })
            })
        })
        .then_some("NotFound")
}

fn is_contested(name: &str) -> bool {
    name.starts_with("shared-")
}

/// Names as listed, without the contested ones; and the holders of the contested ones.
fn listed(
    v: &serde_json::Value,
    kind: Kind,
    holders: &mut BTreeMap<(Kind, String), String>,
) -> BTreeMap<String, (serde_json::Value, BTreeSet<String>)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let id = o["id"].as_str().unwrap().to_owned();
            let mut private = BTreeSet::new();
            // Names are left out where there are none, as containers-storage does.
            for n in o["names"].as_array().into_iter().flatten() {
                let n = n.as_str().unwrap().to_owned();
                if is_contested(&n) {
                    assert!(
                        holders.insert((kind, n.clone()), id.clone()).is_none(),
                        "two {kind:?}s hold {n}"
                    );
                } else {
                    private.insert(n);
                }
            }
            (id, (o.clone(), private))
        })
        .collect()
}

#[test]
fn sixteen_processes_import_name_mount_and_delete_at_once_needs_root() {
    if !require(
        "sixteen_processes_import_name_mount_and_delete_at_once_needs_root",
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    ) {
        return;
    }
    let store = Arc::new(CliStore::new("strata-concurrency-"));
    let base = store.ok(&["create-layer", "-n", "base"]);
    let base_image = store.ok(&["create-image", "-n", "base-image", "base"]);
    let deadline = Instant::now() + RUN_FOR;
    let workers: Vec<_> = (0..WORKERS)
        .map(|n| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut w = Worker {
                    n,
                    store,
                    rng: Rng(
                        0x9e37_79b9_7f4a_7c15 ^ (n as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1)
                    ),
                    account: Account::default(),
                    next_name: 0,
                };
                while Instant::now() < deadline {
                    w.step();
                }
                w.finish();
                w.account
            })
        })
        .collect();
    let accounts: Vec<Account> = workers.into_iter().map(|t| t.join().unwrap()).collect();

    let mut processes = 0;
    let mut done: BTreeMap<&str, usize> = BTreeMap::new();
    let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &accounts {
        processes += a.processes;
        for (k, v) in &a.done {
            *done.entry(k).or_default() += v;
        }
        for (k, v) in &a.errors {
            *errors.entry(k).or_default() += v;
        }
    }
    eprintln!("{WORKERS} workers ran {processes} strata processes in {RUN_FOR:?}");
    eprintln!("succeeded: {done:?}");
    eprintln!("documented errors: {errors:?}");
    for verb in [
        "create-layer",
        "import-layer",
        "create-image",
        "create-container",
        "add-names",
        "set-names",
        "mount",
        "unmount",
        "delete-container",
        "delete-layer",
    ] {
        assert!(
            done.get(verb).copied().unwrap_or(0) > 0,
            "no {verb} succeeded"
        );
    }

    // The catalog holds exactly what the workers say they made and kept.
    let mut holders = BTreeMap::new();
    let layers = listed(
        &store.json(&["layers", "--json"]),
        Kind::Layer,
        &mut holders,
    );
    let images = listed(
        &store.json(&["images", "--json"]),
        Kind::Image,
        &mut holders,
    );
    let containers = listed(
        &store.json(&["containers", "--json"]),
        Kind::Container,
        &mut holders,
    );
    let mut want_layers: BTreeMap<String, BTreeSet<String>> =
        BTreeMap::from([(base.clone(), BTreeSet::from(["base".to_owned()]))]);
    let mut want_images: BTreeMap<String, BTreeSet<String>> = BTreeMap::from([(
        base_image.clone(),
        BTreeSet::from(["base-image".to_owned()]),
    )]);
    let mut want_containers = BTreeMap::new();
    for a in &accounts {
        want_layers.extend(a.owned.layers.clone());
        for (id, (top, names)) in &a.owned.images {
            want_images.insert(id.clone(), names.clone());
            assert_eq!(
                images[id].0["layer"],
                top.as_str(),
                "image {id}'s top layer"
            );
        }
        want_containers.extend(a.owned.containers.clone());
    }
    for (id, c) in &want_containers {
        let layer = containers[id].0["layer"].as_str().unwrap().to_owned();
        want_layers.insert(layer, BTreeSet::new());
        let data = store.run(&["get-container-data", id, "state"]);
        match &c.data {
            Some(d) => assert_eq!(&data.stdout, d, "container {id}'s last big-data item"),
            None => assert!(
                !data.status.success(),
                "container {id} has data it never set"
            ),
        }
        assert_eq!(c.mounts, 0);
    }
    let private = |m: &BTreeMap<String, (serde_json::Value, BTreeSet<String>)>| {
        m.iter()
            .map(|(id, (_, names))| (id.clone(), names.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(private(&layers), want_layers, "layers and their names");
    assert_eq!(private(&images), want_images, "images and their names");
    let want_c: BTreeMap<String, BTreeSet<String>> = want_containers
        .iter()
        .map(|(id, c)| (id.clone(), c.names.clone()))
        .collect();
    assert_eq!(private(&containers), want_c, "containers and their names");
    // Each contested name is held by one object at most, one that took it.
    for ((kind, name), holder) in &holders {
        let took = accounts.iter().any(|a| {
            a.claims
                .get(&(*kind, name.clone()))
                .is_some_and(|ids| ids.contains(holder))
        });
        assert!(took, "{kind:?} {holder} holds {name} but never took it");
    }
    eprintln!(
        "final: {} layers, {} images, {} containers, {} contested names held",
        layers.len(),
        images.len(),
        containers.len(),
        holders.len()
    );
    // Every imported layer still listed reads back with the files it was given.
    let mut read_back = 0;
    for a in &accounts {
        for (id, seed) in &a.owned.imported {
            if !a.owned.layers.contains_key(id) {
                continue;
            }
            let out = store.run(&["diff", id]);
            assert!(out.status.success(), "diff {id}");
            assert_eq!(
                files_in(&out.stdout),
                files_of(*seed),
                "layer {id} read back"
            );
            read_back += 1;
        }
    }
    testkit::tell(&format!(
        "concurrency: {WORKERS} workers ran {processes} strata processes in {RUN_FOR:?}; \
         {read_back} imported layers read back intact"
    ));
    // Nothing on disk that no listed object owns, and nothing left mounted.
    check_consistent(&store, "the concurrent run");
    let mounted = store.ok(&["shutdown"]);
    assert!(mounted.is_empty(), "still mounted: {mounted}");
}
