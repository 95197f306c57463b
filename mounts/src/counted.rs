//! Mount points shared by reference count, recorded in the run root.
//!
//! A backend asks for a **top** mount (a layer's or a container's root) by a key of its
//! own; [`CountedMounts::mount`] counts every ask and makes the mount on the first,
//! [`CountedMounts::unmount`] takes it down on the last. A top mount may stand on
//! **shared** mounts, each made once and counted once per top mount that uses it:
//! **nests** (read-only overlays of a chain's bottom layers, planned by
//! [`CountedMounts::plan_overlay`]) and **bases** (what a backend mounts its own way, such
//! as a layer's disk). Stacks stand on nests and nests on bases, never the other way, so
//! everything is taken down in that order: tops, nests, bases.
//!
//! What the run root holds:
//!
//! ```text
//! counts/<record>      how many times the mount is held (the run root's counts); the
//!                      record of a top is its key, of a nest `nest-<name>`, of a base
//!                      `base-<name>`
//! uses/<top>           the shared mounts a top mount holds, one record a line, in the
//!                      order they were made
//! mounting/<top>       a mount or unmount of <top> in progress: left by a killed
//!                      process, it makes the next open set the records right
//! nest/<name>          where a nest is mounted
//! base/<name>          where a base is mounted
//! ```
//!
//! Every change happens under one lock of the run root, named by the backend. Between
//! changes the records say what is mounted: a top is counted when its mount is up, and a
//! shared mount is held once for every counted top whose `uses/` names it. A change a
//! kill cuts short leaves its marker, and the next open makes the records true again
//! ([`CountedMounts::check`] with repair).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use storage_core::run_root::{RunLock, RunRoot, write_atomic};
use storage_core::{Error, IoContext, MountProblem, ObjectKind, Result};

use crate::mount_point::{is_mounted, unmount};
use crate::nesting::{self, Lower};
use crate::overlay::{self, MountApi, Stack};

const NEST: &str = "nest";
/// How many of a plan's bases are made at once.
pub const BASE_WORKERS: usize = 4;
const BASE: &str = "base";

/// A counted mount, by what it is. Its record in the run root is the top's key itself,
/// `nest-<name>` or `base-<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKey<'a> {
    /// A mount a backend asked for by its own key, counted by its mounts and unmounts.
    Top(&'a str),
    /// A read-only overlay of the bottom of a chain, shared by every stack above it.
    Nest(&'a str),
    /// A mount a backend made its own way (a layer's disk), shared by the stacks on it.
    Base(&'a str),
}

impl<'a> MountKey<'a> {
    /// The key a run-root record stands for.
    pub fn from_record(record: &'a str) -> MountKey<'a> {
        if let Some(name) = record.strip_prefix("nest-") {
            MountKey::Nest(name)
        } else if let Some(name) = record.strip_prefix("base-") {
            MountKey::Base(name)
        } else {
            MountKey::Top(record)
        }
    }

    /// The name of its count in the run root.
    pub fn record(&self) -> String {
        match self {
            MountKey::Top(key) => (*key).to_owned(),
            MountKey::Nest(name) => format!("nest-{name}"),
            MountKey::Base(name) => format!("base-{name}"),
        }
    }

    /// The order mounts are taken down in: what stands on others first.
    fn tier(&self) -> u8 {
        match self {
            MountKey::Top(_) => 0,
            MountKey::Nest(_) => 1,
            MountKey::Base(_) => 2,
        }
    }
}

/// What a backend tells [`CountedMounts`] about the mounts it asks for. Shared by the
/// threads that make a plan's bases side by side, so `Sync`.
pub trait MountSites: Sync {
    /// Where the top mount `key` goes: a directory the backend made.
    fn target(&self, key: &str) -> PathBuf;

    /// The key of every top mount point that may hold a mount, recorded or not:
    /// [`CountedMounts::check`] looks there for mounts left without a record.
    fn keys(&self) -> Result<Vec<String>>;

    /// Takes down what is mounted at `target` for `key` (a top or a base). By default a
    /// lazy unmount; a backend whose mount holds a device (a loop device, a block view)
    /// lets it go here too. Not being mounted is not an error.
    fn take_down(&self, key: MountKey<'_>, target: &Path) -> Result<()> {
        let _ = key;
        unmount(target)
    }
}

/// A caller's own way to mount something at the target it is given. `Send`: a plan's
/// bases are made on several threads at once.
pub type MakeFn<'a> = Box<dyn FnOnce(&Path) -> Result<()> + Send + 'a>;

/// How a mount point gets its mount.
pub enum Make<'a> {
    /// An overlay of this stack.
    Overlay(Stack),
    /// The caller's own way, given the target: attach a disk and mount the filesystem on
    /// it, say. When it fails it leaves nothing attached or mounted.
    With(MakeFn<'a>),
}

impl<'a> Make<'a> {
    /// [`Make::With`] the closure `make`.
    pub fn with(make: impl FnOnce(&Path) -> Result<()> + Send + 'a) -> Make<'a> {
        Make::With(Box::new(make))
    }
}

impl std::fmt::Debug for Make<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Make::Overlay(stack) => f.debug_tuple("Overlay").field(stack).finish(),
            Make::With(_) => f.write_str("With(..)"),
        }
    }
}

/// Everything one top mount needs: the shared mounts it stands on and how it is made.
#[derive(Debug)]
pub struct Plan<'a> {
    bases: Vec<(String, Make<'a>)>,
    nests: Vec<(String, Stack)>,
    top: Make<'a>,
}

impl<'a> Plan<'a> {
    /// A top mount made by `top`, standing on nothing shared.
    pub fn new(top: Make<'a>) -> Plan<'a> {
        Plan {
            bases: Vec::new(),
            nests: Vec::new(),
            top,
        }
    }

    /// Also stands on the base `name`, made by `make` where nothing mounts it yet (at
    /// [`CountedMounts::base_target`]). Bases are made before the nests and the top,
    /// up to [`BASE_WORKERS`] at a time (a base stands on no other: attaching a disk
    /// and mounting its filesystem waits mostly on the kernel, so a deep image's bases
    /// overlap); they are recorded, and let go again, in the order they are added.
    pub fn on_base(mut self, name: &str, make: Make<'a>) -> Plan<'a> {
        self.bases.push((name.to_owned(), make));
        self
    }
}

/// Holds the mount of `id` and, when `from` is given, of `from` (taken with `get`, let go
/// with `put`), runs `use_trees` with the two trees (`from`'s first; `empty` stands for
/// no `from`) while both are held, then lets both go whatever it returned. What
/// `use_trees` makes may point into the trees (an export reads file data there), so it is
/// used up inside. Its error comes before a failure to let go.
pub fn with_held_pair<T>(
    get: impl Fn(&str) -> Result<PathBuf>,
    put: impl Fn(&str) -> Result<()>,
    id: &str,
    from: Option<&str>,
    empty: &Path,
    use_trees: impl FnOnce(&Path, &Path) -> Result<T>,
) -> Result<T> {
    let new = get(id)?;
    let old = match from {
        Some(f) => match get(f) {
            Ok(p) => p,
            Err(e) => {
                let _ = put(id);
                return Err(e);
            }
        },
        None => empty.to_owned(),
    };
    let result = use_trees(&old, &new);
    let released = put(id).and(from.map_or(Ok(()), &put));
    let out = result?;
    released?;
    Ok(out)
}

/// The counted mounts of one store, in its run root.
#[derive(Debug)]
pub struct CountedMounts<S> {
    run: RunRoot,
    lock: String,
    api: MountApi,
    sites: S,
}

impl<S: MountSites> CountedMounts<S> {
    /// Opens the records in `run`, changed only under the run root's lock `lock`, and
    /// sets right what a mount or unmount killed midway left.
    pub fn open(run: RunRoot, lock: &str, sites: S) -> Result<Self> {
        for sub in [NEST, "uses", "mounting"] {
            std::fs::create_dir_all(run.path().join(sub))
                .ctx(|| format!("create {}", run.path().join(sub).display()))?;
        }
        let mounts = CountedMounts {
            run,
            lock: lock.to_owned(),
            api: MountApi::detect(),
            sites,
        };
        mounts.finish_interrupted()?;
        Ok(mounts)
    }

    /// The run root the records are in.
    pub fn run_root(&self) -> &RunRoot {
        &self.run
    }

    /// What the backend told about its mounts.
    pub fn sites(&self) -> &S {
        &self.sites
    }

    /// How overlays are mounted here.
    pub fn api(&self) -> MountApi {
        self.api
    }

    /// Takes the lock every change of the records is made under, to read a count that
    /// must not change until the caller is done. [`mount`](Self::mount),
    /// [`unmount`](Self::unmount), [`check`](Self::check) and [`cleanup`](Self::cleanup)
    /// take it themselves: calling them while holding it waits forever.
    pub fn lock(&self) -> Result<RunLock> {
        self.run.lock(&self.lock)
    }

    /// How many times the top mount `key` is held (0 when it is not mounted).
    pub fn count(&self, key: &str) -> Result<u64> {
        self.run.count(key)
    }

    /// Where the base `name` is mounted.
    pub fn base_target(&self, name: &str) -> PathBuf {
        self.target(MountKey::Base(name))
    }

    /// Plans an overlay of `lowers` (topmost first) with `upper` (upper and work
    /// directories; `None` mounts read-only), nesting the bottom of a chain deeper than
    /// one mount takes into read-only groups of the same size, shared by every stack that
    /// reaches them. `empty` is an empty directory, the lower of a stack with too few.
    /// The lowers may be bases' targets ([`base_target`](Self::base_target)); add those
    /// bases with [`Plan::on_base`].
    pub fn plan_overlay<'a>(
        &self,
        lowers: Vec<Lower>,
        upper: Option<(PathBuf, PathBuf)>,
        empty: &Path,
    ) -> Result<Plan<'a>> {
        let nested = nesting::nest(self.api, lowers, upper, empty, &self.run.path().join(NEST))?;
        Ok(Plan {
            bases: Vec::new(),
            nests: nested.groups,
            top: Make::Overlay(nested.stack),
        })
    }

    /// Holds the top mount `key` once more and returns where it is. The first hold (or
    /// one whose mount is gone) calls `plan` and makes the mount: its bases, then its
    /// nests, then the top itself; when a step fails, what was made is let go again.
    pub fn mount<'a>(&self, key: &str, plan: impl FnOnce() -> Result<Plan<'a>>) -> Result<PathBuf> {
        validate(MountKey::Top(key))?;
        let target = self.sites.target(key);
        let _lock = self.lock()?;
        let n = self.run.count(key)?;
        if n > 0 && is_mounted(&target) {
            self.run.set_count(key, n + 1)?;
            return Ok(target);
        }
        let marker = self.marker(key);
        write_atomic(&marker, b"")?;
        // A count with nothing mounted (unmounted behind the records' back): what it held
        // (a device, shared mounts) is let go before the mount is made again, or it would
        // be held twice.
        let released = if n > 0 {
            self.take_down(MountKey::Top(key), &target)
                .and_then(|()| self.release_uses(key))
        } else {
            Ok(())
        };
        let mounted = released
            .and_then(|()| plan())
            .and_then(|plan| self.mount_first(key, &target, plan));
        let _ = std::fs::remove_file(&marker);
        mounted.map(|()| target)
    }

    /// Makes the mount of `key` at `target` (nothing is mounted there) and records it.
    fn mount_first(&self, key: &str, target: &Path, plan: Plan<'_>) -> Result<()> {
        let bases: Vec<(String, Make<'_>)> = plan
            .bases
            .into_iter()
            .map(|(name, make)| (MountKey::Base(name.as_str()).record(), make))
            .collect();
        let mut taken = self.acquire_bases(bases)?;
        let nests = plan
            .nests
            .into_iter()
            .map(|(name, stack)| (MountKey::Nest(&name).record(), Make::Overlay(stack)));
        for (record, make) in nests {
            if let Err(e) = self.acquire(&record, make) {
                self.release_all(&taken);
                return Err(e);
            }
            taken.push(record);
        }
        if let Err(e) = self.make(plan.top, target) {
            self.release_all(&taken);
            return Err(e);
        }
        write_atomic(&self.uses_file(key), taken.join("\n").as_bytes())?;
        self.run.set_count(key, 1)
    }

    /// Holds each of `bases` once more (making those nothing mounts), up to
    /// [`BASE_WORKERS`] at a time, and returns their records in the order given. When one
    /// fails, those not started yet are skipped, every one taken is let go again (last
    /// first) and the first failure in that order is returned.
    fn acquire_bases(&self, bases: Vec<(String, Make<'_>)>) -> Result<Vec<String>> {
        let records: Vec<String> = bases.iter().map(|(r, _)| r.clone()).collect();
        let distinct = records.iter().collect::<HashSet<_>>().len() == records.len();
        // The same base twice in one plan would race on its own count: one at a time.
        let workers = if distinct { BASE_WORKERS } else { 1 };
        let outcomes =
            for_each_bounded(bases, workers, |(record, make)| self.acquire(&record, make));
        let mut taken = Vec::new();
        let mut failure = None;
        for (record, outcome) in records.into_iter().zip(outcomes) {
            match outcome {
                Some(Ok(())) => taken.push(record),
                Some(Err(e)) => {
                    failure.get_or_insert(e);
                }
                None => {}
            }
        }
        match failure {
            Some(e) => {
                self.release_all(&taken);
                Err(e)
            }
            None => Ok(taken),
        }
    }

    fn make(&self, make: Make<'_>, target: &Path) -> Result<()> {
        match make {
            Make::Overlay(stack) => overlay::mount(self.api, &stack, target),
            Make::With(make) => make(target),
        }
    }

    /// Holds the shared mount `record` once more, making it with `make` if nothing is
    /// mounted there.
    fn acquire(&self, record: &str, make: Make<'_>) -> Result<()> {
        let key = MountKey::from_record(record);
        validate(key)?;
        let target = self.target(key);
        let n = self.run.count(record)?;
        if n > 0 && is_mounted(&target) {
            return self.run.set_count(record, n + 1);
        }
        if n > 0 {
            // Gone behind the records' back: whatever still holds a device for it goes,
            // and the new mount serves the holders it had as well.
            self.take_down(key, &target)?;
        }
        std::fs::create_dir_all(&target).ctx(|| format!("create {}", target.display()))?;
        self.make(make, &target)?;
        self.run.set_count(record, n + 1)
    }

    /// Lets go of the shared mount `record` once, taking it down on the last hold.
    fn release(&self, record: &str) -> Result<()> {
        let n = self.run.count(record)?;
        if n <= 1 {
            let key = MountKey::from_record(record);
            self.take_down(key, &self.target(key))?;
            self.run.set_count(record, 0)
        } else {
            self.run.set_count(record, n - 1)
        }
    }

    /// Lets go of `taken` after a failed mount, last made first; the mount's error is
    /// the one reported.
    fn release_all(&self, taken: &[String]) {
        for record in taken.iter().rev() {
            let _ = self.release(record);
        }
    }

    /// Lets go of the shared mounts the top mount `key` holds, last made first, and
    /// forgets which they were.
    fn release_uses(&self, key: &str) -> Result<()> {
        for record in self.uses(key).iter().rev() {
            self.release(record)?;
        }
        let _ = std::fs::remove_file(self.uses_file(key));
        Ok(())
    }

    /// The records of the shared mounts the top mount `key` holds, in the order they were
    /// made (none when nothing is recorded).
    fn uses(&self, key: &str) -> Vec<String> {
        let uses = std::fs::read_to_string(self.uses_file(key)).unwrap_or_default();
        uses.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Lets go of the top mount `key` once; the last hold takes it down and lets go of
    /// the shared mounts it stands on.
    pub fn unmount(&self, key: &str) -> Result<()> {
        validate(MountKey::Top(key))?;
        let _lock = self.lock()?;
        let n = self.run.count(key)?;
        if n > 1 {
            return self.run.set_count(key, n - 1);
        }
        let marker = self.marker(key);
        write_atomic(&marker, b"")?;
        let unmounted = self
            .take_down(MountKey::Top(key), &self.sites.target(key))
            .and_then(|()| self.run.set_count(key, 0))
            .and_then(|()| self.release_uses(key));
        let _ = std::fs::remove_file(&marker);
        unmounted
    }

    /// Records that disagree with what is mounted: a count with nothing mounted (a reboot
    /// with the run root kept, a kill during an unmount), a mount with no count (a kill
    /// between the mount and its record), or a shared mount held more or fewer times than
    /// the counted mounts standing on it say (a kill between making it and recording the
    /// top, or between taking the top down and letting it go). With `repair` each is made
    /// true: counts are dropped (a top's shared mounts let go, and what the backend still
    /// holds for it taken down) or set to their users, unrecorded mounts and shared mounts
    /// nothing stands on are taken down.
    pub fn check(&self, repair: bool) -> Result<Vec<MountProblem>> {
        let _lock = self.lock()?;
        self.check_locked(repair)
    }

    /// [`check`](Self::check), with the lock held.
    fn check_locked(&self, repair: bool) -> Result<Vec<MountProblem>> {
        let mut out = Vec::new();
        let counted = self.run.counted()?;
        let mut stale: Vec<(MountKey<'_>, u64)> = counted
            .iter()
            .map(|(record, n)| (MountKey::from_record(record), *n))
            .filter(|(key, _)| !is_mounted(&self.target(*key)))
            .collect();
        stale.sort_by_key(|(key, _)| key.tier());
        for (key, n) in stale {
            let target = self.target(key);
            if repair {
                // Nothing is mounted, but a device may still be held for it.
                self.take_down(key, &target)?;
                self.run.set_count(&key.record(), 0)?;
                if let MountKey::Top(top) = key {
                    self.release_uses(top)?;
                }
            }
            out.push(MountProblem {
                id: key.record(),
                detail: format!(
                    "recorded as mounted {n} time(s), but nothing is mounted at {}",
                    target.display()
                ),
                repaired: repair,
            });
        }
        let counted: HashSet<&str> = counted.iter().map(|(k, _)| k.as_str()).collect();
        let tops = self.sites.keys()?;
        let nests = self.names_in(NEST);
        let bases = self.names_in(BASE);
        let candidates = (tops.iter().map(|k| MountKey::Top(k)))
            .chain(nests.iter().map(|n| MountKey::Nest(n)))
            .chain(bases.iter().map(|n| MountKey::Base(n)));
        for key in candidates {
            let target = self.target(key);
            if counted.contains(key.record().as_str()) || !is_mounted(&target) {
                continue;
            }
            if repair {
                self.take_down(key, &target)?;
            }
            out.push(MountProblem {
                id: key.record(),
                detail: format!("{} is mounted with no record of it", target.display()),
                repaired: repair,
            });
        }
        self.check_holds(repair, &mut out)?;
        Ok(out)
    }

    /// The part of [`check`](Self::check) about shared mounts: each is held once per
    /// counted top mount whose record says it stands on it.
    fn check_holds(&self, repair: bool, out: &mut Vec<MountProblem>) -> Result<()> {
        let counted = self.run.counted()?;
        let mut users: HashMap<String, u64> = HashMap::new();
        for (record, _) in &counted {
            if let MountKey::Top(top) = MountKey::from_record(record) {
                for used in self.uses(top) {
                    *users.entry(used).or_default() += 1;
                }
            }
        }
        let mut shared: Vec<(MountKey<'_>, u64)> = counted
            .iter()
            .map(|(record, n)| (MountKey::from_record(record), *n))
            .filter(|(key, _)| !matches!(key, MountKey::Top(_)))
            .collect();
        // What stands on others first, as everywhere.
        shared.sort_by_key(|(key, _)| key.tier());
        for (key, n) in shared {
            let (record, target) = (key.record(), self.target(key));
            let held = users.get(&record).copied().unwrap_or(0);
            // A count with nothing mounted is a stale record, reported as one.
            if n == held || !is_mounted(&target) {
                continue;
            }
            if repair {
                if held == 0 {
                    self.take_down(key, &target)?;
                }
                self.run.set_count(&record, held)?;
            }
            out.push(MountProblem {
                id: record,
                detail: format!(
                    "held {n} time(s), but {held} recorded mount(s) stand on {}",
                    target.display()
                ),
                repaired: repair,
            });
        }
        if repair {
            // The records of what tops uncounted stood on: they hold nothing any more.
            for top in self.names_in("uses") {
                if !counted.iter().any(|(record, _)| *record == top) {
                    let _ = std::fs::remove_file(self.uses_file(&top));
                }
            }
        }
        Ok(())
    }

    /// Takes down every counted mount, whatever its count: tops, then nests, then bases.
    pub fn cleanup(&self) -> Result<()> {
        let _lock = self.lock()?;
        let counted = self.run.counted()?;
        let mut keys: Vec<MountKey<'_>> = counted
            .iter()
            .map(|(record, _)| MountKey::from_record(record))
            .collect();
        keys.sort_by_key(MountKey::tier);
        for key in keys {
            self.take_down(key, &self.target(key))?;
            self.run.set_count(&key.record(), 0)?;
            if let MountKey::Top(top) = key {
                let _ = std::fs::remove_file(self.uses_file(top));
            }
        }
        Ok(())
    }

    /// Makes the records true where a mount or an unmount was cut short (a killed process
    /// leaves its marker), so a kill anywhere in [`mount`](Self::mount) or
    /// [`unmount`](Self::unmount) leaves nothing the next open does not set right.
    fn finish_interrupted(&self) -> Result<()> {
        let dir = self.run.path().join("mounting");
        let pending = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).count())
            .unwrap_or(0);
        if pending == 0 {
            return Ok(());
        }
        // Under the lock nobody is mounting: every marker left is stale.
        let _lock = self.lock()?;
        for p in &self.check_locked(true)? {
            tracing::info!(mount = %p.id, "set right after an interrupted mount: {}", p.detail);
        }
        for entry in std::fs::read_dir(&dir).ctx(|| format!("list {}", dir.display()))? {
            let entry = entry.ctx(|| format!("list {}", dir.display()))?;
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(())
    }

    /// Where the mount `key` is.
    fn target(&self, key: MountKey<'_>) -> PathBuf {
        match key {
            MountKey::Top(top) => self.sites.target(top),
            MountKey::Nest(name) => self.run.path().join(NEST).join(name),
            MountKey::Base(name) => self.run.path().join(BASE).join(name),
        }
    }

    fn take_down(&self, key: MountKey<'_>, target: &Path) -> Result<()> {
        match key {
            MountKey::Nest(_) => unmount(target),
            MountKey::Top(_) | MountKey::Base(_) => self.sites.take_down(key, target),
        }
    }

    /// The names of the mount points in the run root's directory `dir` (none when it is
    /// missing).
    fn names_in(&self, dir: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.run.path().join(dir)) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn marker(&self, key: &str) -> PathBuf {
        self.run.path().join("mounting").join(key)
    }

    fn uses_file(&self, key: &str) -> PathBuf {
        self.run.path().join("uses").join(key)
    }
}

/// Runs `work` on each of `items` on up to `workers` threads (the caller's among them),
/// and returns each outcome in the order of `items`: `None` for those skipped because
/// one before them, in the order they were started, had failed.
fn for_each_bounded<T: Send, R: Send>(
    items: Vec<T>,
    workers: usize,
    work: impl Fn(T) -> Result<R> + Sync,
) -> Vec<Option<Result<R>>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    let n = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let outcomes: Mutex<Vec<Option<Result<R>>>> = Mutex::new((0..n).map(|_| None).collect());
    let failed = AtomicBool::new(false);
    let run = || {
        loop {
            if failed.load(Ordering::SeqCst) {
                return;
            }
            let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
            let Some((i, item)) = next else { return };
            let outcome = work(item);
            if outcome.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            outcomes.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..workers.clamp(1, n.max(1)) {
            // A thread the system will not give is one worker fewer, not a failure.
            if std::thread::Builder::new()
                .name("mount-base".into())
                .spawn_scoped(s, run)
                .is_err()
            {
                break;
            }
        }
        run();
    });
    outcomes.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// A top's key or a shared mount's name becomes a file name in the run root: one plain
/// component, and a top's key never looks like a shared mount's record.
fn validate(key: MountKey<'_>) -> Result<()> {
    let name = match key {
        MountKey::Top(k) | MountKey::Nest(k) | MountKey::Base(k) => k,
    };
    storage_core::id::validate_file_name(ObjectKind::Layer, name)?;
    if matches!(key, MountKey::Top(_)) && MountKey::from_record(name) != key {
        return Err(Error::InvalidId {
            kind: ObjectKind::Layer,
            id: name.to_owned(),
            reason: "`nest-` and `base-` start the records of shared mounts".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_their_tier_and_read_back() {
        for key in [
            MountKey::Top("abc"),
            MountKey::Nest("abc"),
            MountKey::Base("sandbox-abc"),
        ] {
            assert_eq!(MountKey::from_record(&key.record()), key);
        }
        assert_eq!(MountKey::Nest("x").record(), "nest-x");
        assert!(MountKey::Top("a").tier() < MountKey::Nest("a").tier());
        assert!(MountKey::Nest("a").tier() < MountKey::Base("a").tier());
    }

    #[test]
    fn a_top_key_that_reads_as_a_shared_record_or_a_path_is_refused() {
        assert!(validate(MountKey::Top(&"ab".repeat(32))).is_ok());
        assert!(validate(MountKey::Base("sandbox-1")).is_ok());
        for bad in ["nest-1", "base-1", "a/b", "..", ""] {
            assert!(validate(MountKey::Top(bad)).is_err(), "{bad}");
        }
        assert!(validate(MountKey::Nest("../x")).is_err());
    }
}
