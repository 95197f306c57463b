//! Kills at any moment, not only at chosen phases: a loop picks one of import, delete,
//! create-container, delete-container, mount, unmount and wipe, starts it, kills it with
//! SIGKILL after a random delay within how long it takes whole, and then requires
//! `strata check` to pass (the next command's recovery sets right whatever the kill left).
//! Bounded by a time budget and an iteration count; it prints how many kills each
//! operation took.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{CliStore, Rng, files_tar, run_or_kill};
use testkit::{Requirement, require};

/// How long the loop may run, and at most how many kills.
const BUDGET: Duration = Duration::from_secs(75);
const MAX_KILLS: usize = 400;

/// The operations, each with what it needs in place first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    Import,
    DeleteLayer,
    CreateContainer,
    DeleteContainer,
    Mount,
    Unmount,
    Wipe,
}

const OPERATIONS: [Operation; 7] = [
    Operation::Import,
    Operation::DeleteLayer,
    Operation::CreateContainer,
    Operation::DeleteContainer,
    Operation::Mount,
    Operation::Unmount,
    Operation::Wipe,
];

fn exists(store: &CliStore, args: &[&str]) -> bool {
    store.run(args).status.success()
}

/// Puts in place what `op` needs, and returns its arguments.
fn prepare(store: &CliStore, op: Operation) -> Vec<&'static str> {
    store.ok(&["cleanup"]);
    if !exists(store, &["layer", "base"]) {
        store.ok(&["create-layer", "-n", "base"]);
    }
    if !exists(store, &["image", "img"]) {
        store.ok(&["create-image", "-n", "img", "base"]);
    }
    match op {
        Operation::Import => {
            if exists(store, &["layer", "imported"]) {
                store.ok(&["delete-layer", "imported"]);
            }
            vec!["import-layer", "--parent", "base", "-n", "imported", "-"]
        }
        Operation::DeleteLayer => {
            if !exists(store, &["layer", "victim"]) {
                store.ok(&["create-layer", "--parent", "base", "-n", "victim"]);
            }
            vec!["delete-layer", "victim"]
        }
        Operation::CreateContainer => {
            if exists(store, &["container", "c"]) {
                store.ok(&["delete-container", "c"]);
            }
            vec!["create-container", "-n", "c", "img"]
        }
        Operation::DeleteContainer => {
            if !exists(store, &["container", "c"]) {
                store.ok(&["create-container", "-n", "c", "img"]);
            }
            vec!["delete-container", "c"]
        }
        Operation::Mount => vec!["mount", "base"],
        Operation::Unmount => {
            store.ok(&["mount", "base"]);
            vec!["unmount", "base"]
        }
        Operation::Wipe => vec!["wipe"],
    }
}

#[test]
fn every_operation_killed_at_a_random_moment_leaves_a_store_check_accepts() {
    if !require(
        "kills at random moments",
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    ) {
        return;
    }
    let store = CliStore::new("strata-kill-");
    let tar = files_tar(400, 8, 20);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    // How long each operation takes whole: the least of three runs, so that a cold first
    // run does not send most kills after the end.
    let mut spans: BTreeMap<Operation, Duration> = BTreeMap::new();
    for op in OPERATIONS {
        for _ in 0..3 {
            let args = prepare(&store, op);
            let start = Instant::now();
            run_or_kill(store.cmd(&args), &tar, None);
            let took = start.elapsed();
            let span = spans.entry(op).or_insert(took);
            *span = (*span).min(took);
        }
    }
    eprintln!("whole runs: {spans:?}");
    let mut kills: BTreeMap<Operation, (usize, usize)> = BTreeMap::new();
    let start = Instant::now();
    let mut n = 0;
    while n < MAX_KILLS && start.elapsed() < BUDGET {
        let op = OPERATIONS[rng.index(OPERATIONS.len())];
        let args = prepare(&store, op);
        let span = spans[&op].as_micros() as u64;
        let delay = Duration::from_micros(rng.below(span + 1));
        let finished = run_or_kill(store.cmd(&args), &tar, Some(delay));
        let out = store.run(&["check"]);
        assert!(
            out.status.success(),
            "kill {n}: {op:?} killed after {delay:?} (seed {seed}): strata check: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let entry = kills.entry(op).or_default();
        entry.0 += 1;
        entry.1 += usize::from(finished);
        n += 1;
    }
    let per_op: Vec<String> = kills
        .iter()
        .map(|(op, (count, finished))| format!("{op:?} {count} ({finished} had finished)"))
        .collect();
    testkit::tell(&format!(
        "kill_anywhere: {n} kills in {:.1?} (seed {seed}), strata check passed after each: {}",
        start.elapsed(),
        per_op.join(", ")
    ));
    store.ok(&["cleanup"]);
    assert!(n >= 50, "only {n} kills ran within the budget");
    for op in OPERATIONS {
        let (count, finished) = kills.get(&op).copied().unwrap_or_default();
        assert!(count > finished, "{op:?} was never killed while running");
    }
}
