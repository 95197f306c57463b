//! The crash test: `strata` processes killed with SIGKILL at many points of an import, with
//! real timing and no fault hooks in the code under test. A layer import is killed before
//! its data is written, while its tar is half-way through the pipe, and at a sweep of delays
//! after its standard input closes (landing in the sync and commit, or after). The same
//! sweep kills `create-container` and `set-image-data`. After every kill the store reopens
//! consistent: no incomplete layer is listed, no directory is left that no listed object
//! owns, and the interrupted operation succeeds when repeated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{CliStore, check_consistent, entries, layer_dirs};

/// Regular files in the layer tar.
const FILES: usize = 3000;

/// A tar of `FILES` small files in 30 directories.
fn layer_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in 0..30 {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, format!("d{d:02}/"), std::io::empty())
            .unwrap();
    }
    for i in 0..FILES {
        let body = format!("file {i}\n").repeat(100);
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, format!("d{:02}/f{i:05}", i % 30), body.as_bytes())
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// Where the kills landed, by phase.
#[derive(Default)]
struct Phases(BTreeMap<&'static str, usize>);

impl Phases {
    fn hit(&mut self, phase: &'static str) {
        *self.0.entry(phase).or_default() += 1;
    }

    fn count(&self, phase: &str) -> usize {
        self.0.get(phase).copied().unwrap_or(0)
    }

    fn print(&self, what: &str) {
        let phases: Vec<String> = self.0.iter().map(|(p, n)| format!("{p}: {n}")).collect();
        let total: usize = self.0.values().sum();
        testkit::tell(&format!(
            "crash: {total} kills of {what}, by phase: {}",
            phases.join(", ")
        ));
    }
}

fn spawn(store: &CliStore, args: &[&str]) -> Child {
    store
        .cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILL (Child::kill sends SIGKILL on Unix), then reap.
fn kill(mut child: Child) {
    let _ = child.kill();
    child.wait().unwrap();
}

/// Regular files below `dir`.
fn files_below(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.map(|e| e.unwrap())
        .map(|e| {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                files_below(&e.path())
            } else {
                usize::from(t.is_file())
            }
        })
        .sum()
}

/// Runs `strata args` to the end with `input` on its standard input; returns how long it
/// took once its input was complete (to place the sweep of kills).
fn feed(store: &CliStore, args: &[&str], input: &[u8]) -> Duration {
    let mut child = store
        .cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A process that fails early closes its input: its message says why.
    let _ = child.stdin.take().unwrap().write_all(input);
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "strata {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

/// `steps` delays evenly from `from` to `to` times `span` (how long the operation took
/// once, on a machine whose load varies).
fn sweep(span: Duration, from: f64, to: f64, steps: u32) -> Vec<Duration> {
    (0..steps)
        .map(|k| span.mul_f64(from + (to - from) * f64::from(k) / f64::from(steps - 1)))
        .collect()
}

#[test]
fn a_layer_import_killed_anywhere_leaves_a_consistent_store() {
    let store = CliStore::new("strata-crash-");
    let tar = layer_tar();
    let base = store.ok(&["create-layer", "-n", "base"]);
    let import = ["import-layer", "--parent", "base", "-n", "crashing", "-"];
    let span = feed(&store, &import, &tar);
    store.ok(&["delete-layer", "crashing"]);
    check_consistent(&store, "the timing run");
    eprintln!("import-layer of {FILES} files: {span:?} after its input closed");

    let mut phases = Phases::default();
    // What is on disk for the killed import decides the phase: nothing yet, part of its
    // files, all of them but not committed, or committed.
    let classify = |store: &CliStore, phases: &mut Phases, fed_all: bool| {
        let new: Vec<String> = layer_dirs(store)
            .into_iter()
            .filter(|d| *d != base)
            .collect();
        assert!(
            new.len() <= 1,
            "one import, several new layer directories: {new:?}"
        );
        let written = new
            .first()
            .map(|id| files_below(&store.root().join("overlay").join(id).join("diff")));
        check_consistent(store, "a killed import");
        let committed = store.run(&["layer", "crashing"]).status.success();
        let phase = match (written, committed) {
            (_, true) => "after the commit",
            (None, _) => "before the data write",
            (Some(n), _) if n < FILES || !fed_all => "during the data write",
            (Some(_), _) => "after the data write, in the sync or commit",
        };
        phases.hit(phase);
        if committed {
            store.ok(&["delete-layer", "crashing"]);
        }
        // The name is free again and the same import succeeds.
        feed(store, &import, &tar);
        store.ok(&["delete-layer", "crashing"]);
    };

    // Before: killed within the first milliseconds, before it reads a byte.
    for micros in [0u64, 500, 1000, 2000, 4000, 8000] {
        let child = spawn(&store, &import);
        std::thread::sleep(Duration::from_micros(micros));
        kill(child);
        classify(&store, &mut phases, false);
    }
    // During: part of the tar is through the pipe, the rest never comes.
    for tenth in [1, 3, 5, 7, 9] {
        let mut child = spawn(&store, &import);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&tar[..tar.len() * tenth / 10]).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        kill(child);
        drop(stdin);
        classify(&store, &mut phases, false);
    }
    // After the input closes: a sweep of delays across the sync and commit, and past them.
    for delay in sweep(span, 0.3, 2.0, 20) {
        let mut child = spawn(&store, &import);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&tar).unwrap();
        drop(stdin);
        std::thread::sleep(delay);
        kill(child);
        classify(&store, &mut phases, true);
    }
    phases.print("import-layer");
    assert!(phases.count("before the data write") > 0);
    assert!(phases.count("during the data write") > 0);
    // Where the sweep lands after the input closes depends on the machine's load: the
    // counts above say what this run covered.
}

#[test]
fn a_container_creation_killed_anywhere_leaves_a_consistent_store() {
    let store = CliStore::new("strata-crash-");
    store.ok(&["create-layer", "-n", "base"]);
    store.ok(&["create-image", "-n", "img", "base"]);
    let create = ["create-container", "-n", "crashing", "img"];
    let start = Instant::now();
    store.ok(&create);
    let span = start.elapsed();
    store.ok(&["delete-container", "crashing"]);
    eprintln!("create-container: {span:?}");
    let mut phases = Phases::default();
    for delay in sweep(span, 0.0, 1.5, 30) {
        let child = spawn(&store, &create);
        std::thread::sleep(delay);
        kill(child);
        let started =
            layer_dirs(&store).len() > 1 || !entries(&store.root().join("containers")).is_empty();
        check_consistent(&store, "a killed create-container");
        let committed = store.run(&["container", "crashing"]).status.success();
        phases.hit(match (started, committed) {
            (_, true) => "after the commit",
            (false, _) => "before anything was written",
            (true, _) => "while its layer and directories were made",
        });
        if committed {
            store.ok(&["delete-container", "crashing"]);
        }
        store.ok(&create);
        check_consistent(&store, "re-creating the container");
        store.ok(&["delete-container", "crashing"]);
    }
    phases.print("create-container");
    assert!(phases.count("before anything was written") > 0);
}

#[test]
fn a_big_data_write_killed_anywhere_leaves_the_old_or_the_new_item_whole() {
    let store = CliStore::new("strata-crash-");
    let image = store.ok(&["create-image", "-n", "img"]);
    const LEN: usize = 4 << 20;
    let item = |fill: u8| vec![fill; LEN];
    let set = ["set-image-data", "img", "blob"];
    feed(&store, &set, &item(0));
    let span = feed(&store, &set, &item(0));
    eprintln!("set-image-data of {LEN} bytes: {span:?} after its input closed");
    let dir = store.root().join("bigdata/image").join(&image);

    let mut phases = Phases::default();
    let mut current = 0u8;
    let delays: Vec<Option<Duration>> = [None, None, None]
        .into_iter()
        .chain(sweep(span, 0.0, 1.5, 24).into_iter().map(Some))
        .collect();
    for (n, delay) in delays.into_iter().enumerate() {
        let fill = (n % 250) as u8 + 1;
        let mut child = spawn(&store, &set);
        let mut stdin = child.stdin.take().unwrap();
        match delay {
            // Half the item, then the kill: it never reads to the end.
            None => {
                stdin.write_all(&item(fill)[..LEN / 2]).unwrap();
                std::thread::sleep(Duration::from_millis(10));
                kill(child);
                drop(stdin);
            }
            Some(d) => {
                stdin.write_all(&item(fill)).unwrap();
                drop(stdin);
                std::thread::sleep(d);
                kill(child);
            }
        }
        let files = entries(&dir).len();
        check_consistent(&store, "a killed set-image-data");
        let out = store.run(&["get-image-data", "img", "blob"]);
        assert!(out.status.success());
        let got = out.stdout;
        assert_eq!(got.len(), LEN, "the item is not whole");
        let whole = |f: u8| got.iter().all(|b| *b == f);
        let phase = if whole(fill) {
            current = fill;
            if files > 1 {
                "after the commit, before the old file went"
            } else {
                "after the commit"
            }
        } else {
            assert!(
                whole(current),
                "the item is neither the old nor the new value"
            );
            if files > 1 {
                "after the new file was written, before the commit"
            } else {
                "before the new file was written"
            }
        };
        phases.hit(phase);
    }
    phases.print("set-image-data");
    assert!(phases.count("before the new file was written") > 0);
}
