//! Counted mounts on real overlays and tmpfs: nesting past 500 lowers, shared groups and
//! bases, the order mounts are taken down in, and what a killed mount or unmount leaves
//! set right at the next open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mounts::{CountedMounts, Lower, Make, MountKey, MountSites, Plan, is_mounted, mountinfo};
use storage_core::run_root::RunRoot;
use storage_core::{Error, Result};
use testkit::{Requirement, require};

/// Tops mounted at `<dir>/tops/<key>`; every take-down is logged by its record.
#[derive(Clone)]
struct Tops {
    dir: PathBuf,
    taken_down: Arc<Mutex<Vec<String>>>,
}

impl MountSites for Tops {
    fn target(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn keys(&self) -> Result<Vec<String>> {
        Ok(std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect())
    }

    fn take_down(&self, key: MountKey<'_>, target: &Path) -> Result<()> {
        self.taken_down.lock().unwrap().push(key.record());
        mounts::unmount(target)
    }
}

/// A run root, a store of lower directories and the tops, all in one temporary
/// directory; whatever is still mounted below it is unmounted when the test ends.
struct Fixture {
    dir: tempfile::TempDir,
    tops: Tops,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("strata-counted-")
            .tempdir()
            .unwrap();
        for sub in ["tops", "lowers", "upper", "work"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let tops = Tops {
            dir: dir.path().join("tops"),
            taken_down: Arc::default(),
        };
        Fixture { dir, tops }
    }

    fn open(&self) -> CountedMounts<Tops> {
        let run = RunRoot::open(&self.dir.path().join("run")).unwrap();
        CountedMounts::open(run, "test-mounts", self.tops.clone()).unwrap()
    }

    /// A top mount point.
    fn top(&self, key: &str) -> PathBuf {
        let target = self.tops.dir.join(key);
        std::fs::create_dir_all(&target).unwrap();
        target
    }

    /// `n` lower directories, topmost first, lower `i` holding the file `f<i>`.
    fn chain(&self, n: usize) -> Vec<Lower> {
        (0..n)
            .rev()
            .map(|i| {
                let name = format!("{i:064x}");
                let path = self.dir.path().join("lowers").join(&name);
                std::fs::create_dir(&path).unwrap();
                std::fs::write(path.join(format!("f{i}")), name.as_bytes()).unwrap();
                Lower { name, path }
            })
            .collect()
    }

    fn empty(&self) -> PathBuf {
        let empty = self.dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        empty
    }

    fn upper(&self) -> Option<(PathBuf, PathBuf)> {
        Some((self.dir.path().join("upper"), self.dir.path().join("work")))
    }

    fn run(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn count(&self, record: &str) -> u64 {
        RunRoot::open(&self.run()).unwrap().count(record).unwrap()
    }

    fn taken_down(&self) -> Vec<String> {
        std::mem::take(&mut *self.tops.taken_down.lock().unwrap())
    }

    /// Asserts that nothing is mounted below the fixture's directory and nothing counted.
    fn assert_nothing_held(&self) {
        assert_eq!(self.mounted(), Vec::<PathBuf>::new());
        let counted = RunRoot::open(&self.run()).unwrap().counted().unwrap();
        assert!(counted.is_empty(), "{counted:?}");
    }

    /// Every mount below the fixture's directory.
    fn mounted(&self) -> Vec<PathBuf> {
        mountinfo::read()
            .unwrap()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(self.dir.path()))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for target in self.mounted().iter().rev() {
            let _ = mounts::unmount(target);
        }
    }
}

fn needs(test: &str) -> bool {
    require(
        test,
        &[Requirement::Root, Requirement::Filesystem("overlay")],
    )
}

/// The records of the nests a plan of this chain makes, bottom first: groups of as many
/// lowers as one mount takes, cut from the bottom until what is left fits in one mount.
fn nest_records(mounts: &CountedMounts<Tops>, lowers: &[Lower]) -> Vec<String> {
    let longest = lowers.iter().map(|l| l.path.as_os_str().len()).max();
    let size = mounts.api().max_lowers(longest.unwrap_or(0));
    let (mut left, mut out) = (lowers.len(), Vec::new());
    while left + out.len() > size {
        left -= size;
        out.push(format!("nest-{}", lowers[left].name));
    }
    out
}

/// A plan for `key`: an overlay of `lowers` with the fixture's upper, or read-only.
fn overlay<'a>(
    mounts: &CountedMounts<Tops>,
    f: &Fixture,
    lowers: &[Lower],
    read_write: bool,
) -> Result<Plan<'a>> {
    let upper = if read_write { f.upper() } else { None };
    mounts.plan_overlay(lowers.to_vec(), upper, &f.empty())
}

#[test]
fn a_1200_lower_chain_mounts_by_nesting_and_the_layer_below_shares_its_groups_needs_root() {
    if !needs(
        "a_1200_lower_chain_mounts_by_nesting_and_the_layer_below_shares_its_groups_needs_root",
    ) {
        return;
    }
    let f = Fixture::new();
    let mounts = f.open();
    let chain = f.chain(1201);
    let nests = nest_records(&mounts, &chain[1..]);
    assert_eq!(nests.len(), 2);
    assert_eq!(nest_records(&mounts, &chain), nests);

    // A container on the 1200 layers below the top one, and that top layer read-only.
    let (container, layer) = (f.top("container"), f.top("layer"));
    let at = mounts
        .mount("container", || overlay(&mounts, &f, &chain[1..], true))
        .unwrap();
    assert_eq!(at, container);
    mounts
        .mount("layer", || overlay(&mounts, &f, &chain, false))
        .unwrap();
    for i in [0, 1, 499, 500, 700, 1199] {
        let name = format!("f{i}");
        assert!(container.join(&name).exists(), "{name} in the container");
        assert!(layer.join(&name).exists(), "{name} in the layer");
    }
    assert!(layer.join("f1200").exists());
    assert!(!container.join("f1200").exists());
    std::fs::write(container.join("written"), b"w").unwrap();
    assert!(f.dir.path().join("upper/written").exists());
    for nest in &nests {
        assert_eq!(f.count(nest), 2, "{nest} is shared");
        let target = f.run().join("nest").join(&nest["nest-".len()..]);
        assert!(is_mounted(&target), "{nest}");
    }
    let uses = std::fs::read_to_string(f.run().join("uses/container")).unwrap();
    assert_eq!(uses.lines().collect::<Vec<_>>(), nests);

    // A second hold of a mount is only counted.
    mounts.mount("layer", || panic!("planned again")).unwrap();
    assert_eq!(mounts.count("layer").unwrap(), 2);
    mounts.unmount("layer").unwrap();
    assert!(is_mounted(&layer));

    mounts.unmount("container").unwrap();
    assert!(!is_mounted(&container));
    for nest in &nests {
        assert_eq!(f.count(nest), 1, "{nest} is still held by the layer");
    }
    mounts.unmount("layer").unwrap();
    f.assert_nothing_held();
    assert!(!f.run().join("uses/layer").exists());
}

/// A base: a tmpfs holding one file named for it, made by the caller's closure.
fn tmpfs_base(name: &str) -> Make<'static> {
    let name = name.to_owned();
    Make::with(move |target: &Path| {
        nix::mount::mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .map_err(|e| Error::io_path("mount tmpfs at", target, e))?;
        std::fs::write(target.join(&name), name.as_bytes())
            .map_err(|e| Error::io_path("write in", target, e))
    })
}

#[test]
fn bases_made_by_the_caller_are_shared_by_count_and_cleanup_takes_down_tops_then_nests_then_bases_needs_root()
 {
    if !needs(
        "bases_made_by_the_caller_are_shared_by_count_and_cleanup_takes_down_tops_then_nests_then_bases_needs_root",
    ) {
        return;
    }
    let f = Fixture::new();
    let mounts = f.open();
    // What a disk backend does: each layer is a base (its disk's filesystem), and the
    // overlay stacks the bases' mount points, nesting them past 500.
    let layers: Vec<String> = (0..502).rev().map(|i| format!("layer{i}")).collect();
    let plan = |upper: bool, from: usize| {
        let lowers = layers[from..]
            .iter()
            .map(|l| Lower {
                name: l.clone(),
                path: mounts.base_target(l),
            })
            .collect();
        let upper = if upper { f.upper() } else { None };
        let plan = mounts.plan_overlay(lowers, upper, &f.empty())?;
        Ok(layers[from..]
            .iter()
            .rev()
            .fold(plan, |plan, l| plan.on_base(l, tmpfs_base(l))))
    };
    let a = f.top("a");
    let b = f.top("b");
    mounts.mount("a", || plan(true, 0)).unwrap();
    mounts.mount("b", || plan(false, 1)).unwrap();
    assert!(a.join("layer0").exists() && a.join("layer501").exists());
    assert!(!b.join("layer501").exists() && b.join("layer500").exists());
    assert_eq!(f.count("base-layer0"), 2);
    assert_eq!(f.count("base-layer501"), 1);
    assert_eq!(f.count(&format!("nest-layer{}", 499)), 2);
    let uses = std::fs::read_to_string(f.run().join("uses/a")).unwrap();
    let uses: Vec<&str> = uses.lines().collect();
    assert_eq!(
        uses.first(),
        Some(&"base-layer0"),
        "bases are recorded bottom first"
    );
    assert_eq!(uses.last(), Some(&"nest-layer499"), "then the nests");

    mounts.unmount("b").unwrap();
    assert_eq!(
        f.taken_down(),
        vec!["b".to_owned()],
        "what b stood on, a holds"
    );
    assert!(is_mounted(&mounts.base_target("layer500")));
    assert_eq!(f.count("base-layer0"), 1);
    assert_eq!(f.count("nest-layer499"), 1);

    mounts.cleanup().unwrap();
    let order = f.taken_down();
    assert_eq!(order.first().map(String::as_str), Some("a"));
    assert_eq!(order.len(), 1 + 502, "the top and every base");
    assert!(order[1..].iter().all(|r| r.starts_with("base-")));
    f.assert_nothing_held();
}

#[test]
fn a_failed_top_mount_lets_go_of_the_shared_mounts_it_took_needs_root() {
    if !needs("a_failed_top_mount_lets_go_of_the_shared_mounts_it_took_needs_root") {
        return;
    }
    let f = Fixture::new();
    let mounts = f.open();
    f.top("a");
    let err = mounts
        .mount("a", || {
            Ok(Plan::new(Make::with(|target: &Path| {
                Err(Error::io_path(
                    "attach the disk for",
                    target,
                    std::io::Error::from_raw_os_error(5),
                ))
            }))
            .on_base("one", tmpfs_base("one"))
            .on_base("two", tmpfs_base("two")))
        })
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "{err}");
    assert_eq!(
        f.taken_down(),
        vec!["base-two".to_owned(), "base-one".to_owned()],
        "let go last made first"
    );
    f.assert_nothing_held();
    assert!(!f.run().join("mounting/a").exists());

    // A base that fails to mount leaves nothing counted either.
    let err = mounts
        .mount("a", || {
            Ok(Plan::new(Make::with(|_: &Path| Ok(())))
                .on_base("one", tmpfs_base("one"))
                .on_base(
                    "broken",
                    Make::with(|_: &Path| {
                        Err(Error::Unsupported {
                            what: "this disk".into(),
                            reason: "it is broken".into(),
                        })
                    }),
                ))
        })
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }));
    f.assert_nothing_held();
}

/// A base that mounts nothing: it leaves a file in its target and logs its name, or
/// fails when `fail` is set.
fn logged_base(name: &str, made: &Arc<Mutex<Vec<String>>>, fail: bool) -> Make<'static> {
    let (name, made) = (name.to_owned(), made.clone());
    Make::with(move |target: &Path| {
        if fail {
            return Err(Error::Unsupported {
                what: format!("base {name}"),
                reason: "it is broken".into(),
            });
        }
        std::fs::write(target.join("made"), name.as_bytes())
            .map_err(|e| Error::io_path("write in", target, e))?;
        made.lock().unwrap().push(format!("base-{name}"));
        Ok(())
    })
}

/// Mounts the top `a` of a new fixture on `n` bases `l0`, `l1`… made by
/// [`logged_base`], the one numbered `broken` failing, with a top that mounts nothing.
/// Returns the fixture, its mounts, the outcome and the records of the bases made,
/// sorted.
fn mount_on_logged_bases(
    n: usize,
    broken: Option<usize>,
) -> (Fixture, CountedMounts<Tops>, Result<PathBuf>, Vec<String>) {
    let f = Fixture::new();
    let mounts = f.open();
    f.top("a");
    let made = Arc::new(Mutex::new(Vec::new()));
    let outcome = mounts.mount("a", || {
        Ok(
            (0..n).fold(Plan::new(Make::with(|_: &Path| Ok(()))), |plan, i| {
                let name = format!("l{i}");
                plan.on_base(&name, logged_base(&name, &made, Some(i) == broken))
            }),
        )
    });
    let mut made = made.lock().unwrap().clone();
    made.sort();
    (f, mounts, outcome, made)
}

#[test]
fn bases_made_several_at_a_time_are_recorded_in_plan_order() {
    let n = 3 * mounts::BASE_WORKERS;
    let (f, mounts, outcome, made) = mount_on_logged_bases(n, None);
    outcome.unwrap();
    let want: Vec<String> = (0..n).map(|i| format!("base-l{i}")).collect();
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(made, sorted, "each base made once");
    let uses = std::fs::read_to_string(f.run().join("uses/a")).unwrap();
    assert_eq!(uses.lines().collect::<Vec<_>>(), want, "in the order added");
    for record in &want {
        assert_eq!(f.count(record), 1, "{record}");
    }
    mounts.unmount("a").unwrap();
    let mut taken_down = f.taken_down();
    assert_eq!(taken_down.first().map(String::as_str), Some("a"));
    taken_down.remove(0);
    let mut last_first = want;
    last_first.reverse();
    assert_eq!(taken_down, last_first, "let go last added first");
    f.assert_nothing_held();
}

#[test]
fn a_base_failing_among_bases_made_at_once_lets_go_of_every_one_taken() {
    let n = 4 * mounts::BASE_WORKERS;
    let (f, _mounts, outcome, made) = mount_on_logged_bases(n, Some(n / 2));
    let err = outcome.unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported { what, .. } if *what == format!("base l{}", n / 2)),
        "{err}"
    );
    // Whatever was made before or beside the broken one was let go again, and nothing
    // that was not made was taken down.
    let mut taken_down = f.taken_down();
    taken_down.sort();
    assert_eq!(taken_down, made);
    assert!(made.len() < n);
    f.assert_nothing_held();
    assert!(!f.run().join("uses/a").exists());
    assert!(!f.run().join("mounting/a").exists());
}

#[test]
fn check_finds_stale_records_and_unrecorded_mounts_and_repair_mends_them_needs_root() {
    if !needs("check_finds_stale_records_and_unrecorded_mounts_and_repair_mends_them_needs_root") {
        return;
    }
    let f = Fixture::new();
    let mounts = f.open();
    let chain = f.chain(600);
    let (stale, unrecorded) = (f.top("stale"), f.top("unrecorded"));
    mounts
        .mount("stale", || overlay(&mounts, &f, &chain, false))
        .unwrap();
    mounts
        .mount("unrecorded", || overlay(&mounts, &f, &chain[..2], false))
        .unwrap();
    let nest = format!("nest-{}", chain[100].name);
    assert_eq!(f.count(&nest), 1);
    // Recorded, not mounted: a reboot with the run root kept. Mounted, not recorded: a
    // kill between a mount and its record.
    mounts::unmount(&stale).unwrap();
    std::fs::remove_file(f.run().join("counts/unrecorded")).unwrap();

    let found = mounts.check(false).unwrap();
    let ids: Vec<(&str, bool)> = found.iter().map(|p| (p.id.as_str(), p.repaired)).collect();
    assert_eq!(
        ids,
        vec![("stale", false), ("unrecorded", false)],
        "{found:?}"
    );
    assert!(found[0].detail.contains(&stale.display().to_string()));
    assert!(found[1].detail.contains("no record"));
    assert!(is_mounted(&unrecorded));

    let found = mounts.check(true).unwrap();
    assert!(found.iter().all(|p| p.repaired), "{found:?}");
    assert!(!is_mounted(&unrecorded));
    assert_eq!(f.count(&nest), 0, "the stale top's nest is let go");
    f.assert_nothing_held();
    assert!(mounts.check(false).unwrap().is_empty());
    // Both mount again as before.
    mounts
        .mount("stale", || overlay(&mounts, &f, &chain, false))
        .unwrap();
    mounts.unmount("stale").unwrap();
    f.assert_nothing_held();
}

#[test]
fn a_mount_killed_before_its_record_is_taken_down_at_the_next_open_needs_root() {
    if !needs("a_mount_killed_before_its_record_is_taken_down_at_the_next_open_needs_root") {
        return;
    }
    let f = Fixture::new();
    let chain = f.chain(3);
    let top = f.top("a");
    {
        let mounts = f.open();
        mounts
            .mount("a", || overlay(&mounts, &f, &chain, true))
            .unwrap();
    }
    // What a kill between the mount and its count leaves: the marker, the mount, no count.
    std::fs::write(f.run().join("mounting/a"), b"").unwrap();
    std::fs::remove_file(f.run().join("counts/a")).unwrap();

    let mounts = f.open();
    assert!(!is_mounted(&top));
    assert!(!f.run().join("mounting/a").exists());
    assert!(mounts.check(false).unwrap().is_empty());
}

#[test]
fn an_unmount_killed_after_the_top_went_is_finished_at_the_next_open_needs_root() {
    if !needs("an_unmount_killed_after_the_top_went_is_finished_at_the_next_open_needs_root") {
        return;
    }
    let f = Fixture::new();
    let chain = f.chain(1000);
    let top = f.top("a");
    let nest = format!("nest-{}", chain[500].name);
    {
        let mounts = f.open();
        mounts
            .mount("a", || overlay(&mounts, &f, &chain, true))
            .unwrap();
        assert_eq!(f.count(&nest), 1);
    }
    // What a kill right after the top's unmount leaves: the marker and every count.
    std::fs::write(f.run().join("mounting/a"), b"").unwrap();
    mounts::unmount(&top).unwrap();

    let mounts = f.open();
    assert_eq!(mounts.count("a").unwrap(), 0);
    assert_eq!(f.count(&nest), 0);
    f.assert_nothing_held();
    assert!(!f.run().join("mounting/a").exists());
    assert!(!f.run().join("uses/a").exists());
    assert!(mounts.check(false).unwrap().is_empty());
}

#[test]
fn a_top_key_that_could_be_a_shared_record_is_refused() {
    let f = Fixture::new();
    let mounts = f.open();
    for key in ["nest-1", "base-1", "../a"] {
        let err = mounts.mount(key, || panic!("planned")).unwrap_err();
        assert!(matches!(err, Error::InvalidId { .. }), "{key}: {err}");
        assert!(mounts.unmount(key).is_err());
    }
}

/// Mounts `a` read-write on a chain of 1000 (two nests); returns the chain and the nests'
/// records.
fn mount_deep(f: &Fixture, mounts: &CountedMounts<Tops>) -> (Vec<Lower>, Vec<String>) {
    let chain = f.chain(1000);
    f.top("a");
    mounts
        .mount("a", || overlay(mounts, f, &chain, true))
        .unwrap();
    let nests = nest_records(mounts, &chain);
    assert_eq!(nests.len(), 2);
    for nest in &nests {
        assert_eq!(f.count(nest), 1);
    }
    (chain, nests)
}

#[test]
fn an_unmount_killed_before_it_let_go_of_its_groups_is_finished_at_the_next_open_needs_root() {
    if !needs(
        "an_unmount_killed_before_it_let_go_of_its_groups_is_finished_at_the_next_open_needs_root",
    ) {
        return;
    }
    let f = Fixture::new();
    let (_, nests) = mount_deep(&f, &f.open());
    // What a kill after the top's unmount and count, before its groups, leaves.
    std::fs::write(f.run().join("mounting/a"), b"").unwrap();
    mounts::unmount(&f.top("a")).unwrap();
    std::fs::remove_file(f.run().join("counts/a")).unwrap();

    let mounts = f.open();
    for nest in &nests {
        assert_eq!(f.count(nest), 0, "{nest}");
    }
    f.assert_nothing_held();
    assert!(!f.run().join("uses/a").exists());
    assert!(mounts.check(false).unwrap().is_empty());
}

#[test]
fn groups_made_for_a_mount_that_was_never_recorded_are_reported_and_let_go_needs_root() {
    if !needs("groups_made_for_a_mount_that_was_never_recorded_are_reported_and_let_go_needs_root")
    {
        return;
    }
    let f = Fixture::new();
    let mounts = f.open();
    let (_, nests) = mount_deep(&f, &mounts);
    // What a kill after the groups were made, before the top was, leaves.
    mounts::unmount(&f.top("a")).unwrap();
    std::fs::remove_file(f.run().join("counts/a")).unwrap();
    std::fs::remove_file(f.run().join("uses/a")).unwrap();

    let found = mounts.check(false).unwrap();
    let mut ids: Vec<String> = found.iter().map(|p| p.id.clone()).collect();
    ids.sort();
    let mut nests = nests;
    nests.sort();
    assert_eq!(ids, nests);
    assert!(
        found[0].detail.contains("held 1 time(s), but 0"),
        "{found:?}"
    );
    assert_eq!(f.mounted().len(), 2);

    let found = mounts.check(true).unwrap();
    assert!(
        found.len() == 2 && found.iter().all(|p| p.repaired),
        "{found:?}"
    );
    f.assert_nothing_held();
    assert!(mounts.check(false).unwrap().is_empty());
}

#[test]
fn a_top_found_unmounted_is_mounted_again_without_holding_its_groups_twice_needs_root() {
    if !needs("a_top_found_unmounted_is_mounted_again_without_holding_its_groups_twice_needs_root")
    {
        return;
    }
    let f = Fixture::new();
    let mounts = f.open();
    let (chain, nests) = mount_deep(&f, &mounts);
    mounts::unmount(&f.top("a")).unwrap();
    mounts
        .mount("a", || overlay(&mounts, &f, &chain, true))
        .unwrap();
    assert!(f.top("a").join("f999").exists());
    assert_eq!(mounts.count("a").unwrap(), 1);
    for nest in &nests {
        assert_eq!(f.count(nest), 1, "{nest}");
    }
    assert!(mounts.check(false).unwrap().is_empty());
    mounts.unmount("a").unwrap();
    f.assert_nothing_held();
}

#[test]
fn a_base_found_unmounted_is_made_again_for_the_next_mount_and_keeps_its_holders_needs_root() {
    if !needs(
        "a_base_found_unmounted_is_made_again_for_the_next_mount_and_keeps_its_holders_needs_root",
    ) {
        return;
    }
    let f = Fixture::new();
    let mounts = f.open();
    let on_disk = || {
        let disk = mounts.base_target("disk");
        let top = Make::Overlay(mounts::Stack {
            lowers: vec![disk, f.empty()],
            upper: None,
        });
        Ok(Plan::new(top).on_base("disk", tmpfs_base("disk")))
    };
    let (a, b) = (f.top("a"), f.top("b"));
    mounts.mount("a", on_disk).unwrap();
    assert!(a.join("disk").exists());
    // The disk's filesystem goes behind the records' back; `a` keeps what it stacked.
    mounts::unmount(&mounts.base_target("disk")).unwrap();
    f.taken_down();

    mounts.mount("b", on_disk).unwrap();
    assert_eq!(
        f.taken_down(),
        vec!["base-disk".to_owned()],
        "its device let go"
    );
    assert!(b.join("disk").exists());
    assert_eq!(f.count("base-disk"), 2, "held for a and b");
    assert!(mounts.check(false).unwrap().is_empty());
    mounts.unmount("a").unwrap();
    assert!(is_mounted(&mounts.base_target("disk")));
    mounts.unmount("b").unwrap();
    f.assert_nothing_held();
}
