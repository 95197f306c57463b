//! The same archive gives the same verdict and, where accepted, the same tree on all three
//! writers of the tar engine:
//! - the directory writer (`tar_engine::apply_tar`, whiteouts as deletions);
//! - the NFS volume writer (`backend-nfs`, against a private nfs-ganesha);
//! - the ext4 image writer (`ext4-writer`, whiteouts as overlay markers), one image per
//!   layer, checked with `e2fsck -fn`, loop-mounted read-only and stacked with overlayfs.
//!
//! The cases are `layercheck.py`'s chain (three layers applied in order) and every one of
//! its hostile layers, and cases of our own for each rule the engine decides.
//!
//! Every writer must agree with the directory writer. What a medium cannot hold is left
//! out of that one comparison only: NFSv3 has no xattrs, gives every file the store's
//! owner, refuses device nodes without root credentials and carries times in unsigned
//! 32 bits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use backend_nfs::{NfsUrl, NfsVolumes};
use conformance::{Ignore, Manifest};
use ext4_writer::{Builder, Options, Whiteouts};
use storage_core::{Error, FilterSpec, Importer, Op, VolumeStorer};
use tar_engine::{ApplyOptions, Ownership, WhiteoutMode, apply_tar};
use testkit::ganesha::{Ganesha, REQUIREMENTS};
use testkit::tarball::{Kind, Tarball};
use testkit::{Layercheck, Requirement, require};

/// One archive, or a chain of them applied in order.
struct Case {
    name: String,
    layers: Vec<Vec<u8>>,
}

/// What a writer made of a case: the kind of error that refused it, or the tree.
#[derive(Debug)]
enum Outcome {
    Refused(&'static str, String),
    Tree(Manifest),
}

impl Outcome {
    fn verdict(&self) -> &'static str {
        match self {
            Outcome::Refused(kind, _) => kind,
            Outcome::Tree(_) => "accepted",
        }
    }

    /// The verdict, with the error's message when refused.
    fn said(&self) -> String {
        match self {
            Outcome::Refused(kind, message) => format!("{kind} ({message})"),
            Outcome::Tree(_) => "accepted".into(),
        }
    }
}

fn refused(e: &Error) -> Outcome {
    let kind = match e {
        Error::InvalidArchive { .. } => "invalid archive",
        Error::UnsafeArchive { .. } => "unsafe archive",
        Error::Unsupported { .. } => "unsupported",
        Error::DigestMismatch { .. } => "digest mismatch",
        Error::Io { .. } => "I/O error",
        _ => "other error",
    };
    Outcome::Refused(kind, storage_core::Report(e).to_string())
}

fn file(data: &[u8]) -> Kind {
    Kind::File(data.to_vec())
}

fn one(name: &str, build: impl FnOnce(&mut Tarball)) -> Case {
    let mut t = Tarball::new();
    build(&mut t);
    Case {
        name: name.to_owned(),
        layers: vec![t.finish()],
    }
}

fn chain(name: &str, builds: &[&dyn Fn(&mut Tarball)]) -> Case {
    Case {
        name: name.to_owned(),
        layers: builds
            .iter()
            .map(|b| {
                let mut t = Tarball::new();
                b(&mut t);
                t.finish()
            })
            .collect(),
    }
}

/// The cases of our own: one or more for each rule the engine decides.
fn own_cases() -> Vec<Case> {
    vec![
        one("overlay-marker-xattrs", |t| {
            t.entry(
                Kind::Dir,
                b"d",
                &[
                    ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                    ("SCHILY.xattr.user.overlay.opaque", b"y"),
                    ("SCHILY.xattr.trusted.overlay", b"y"),
                    ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
                    ("SCHILY.xattr.user.kept", b"v"),
                    ("SCHILY.xattr.trusted.kept", b"t"),
                    // Not an overlay marker: overlayfs reads none in `security.`.
                    ("SCHILY.xattr.security.overlay.opaque", b"y"),
                ],
            )
            .entry(
                file(b"f"),
                b"d/f",
                &[
                    ("SCHILY.xattr.user.overlay.origin", b"x"),
                    ("SCHILY.xattr.com.apple.quarantine", b"q"),
                    ("SCHILY.xattr.user.note", b"n"),
                ],
            );
        }),
        one("whiteout-of-dotdot", |t| {
            t.entry(file(b""), b".wh...", &[]);
        }),
        one("whiteout-of-dot", |t| {
            t.entry(Kind::Dir, b"sub", &[])
                .entry(file(b""), b"sub/.wh..", &[]);
        }),
        one("whiteout-without-a-name", |t| {
            t.entry(file(b""), b".wh.", &[]);
        }),
        one("whiteout-of-dotdot-through-a-root-symlink", |t| {
            t.entry(Kind::Symlink(b"/".to_vec()), b"root", &[]).entry(
                file(b""),
                b"root/.wh...",
                &[],
            );
        }),
        one("whiteout-of-three-dots-and-metadata", |t| {
            t.entry(file(b"kept"), b"a", &[])
                .entry(file(b""), b".wh....", &[])
                .entry(Kind::Dir, b"e", &[])
                .entry(file(b""), b"e/.wh..wh.plnk", &[]);
        }),
        one("negative-and-huge-pax-times", |t| {
            t.entry(file(b"a"), b"a", &[("mtime", b"-1.5")])
                .entry(file(b"b"), b"b", &[("mtime", b"-0.5")])
                .entry(file(b"c"), b"c", &[("mtime", b"1.25")])
                .entry(file(b"d"), b"d", &[("mtime", b"99999999999999")])
                .entry(file(b"e"), b"e", &[("mtime", b"-99999999999.75")])
                .entry(file(b"f"), b"f", &[("mtime", b"4294967296.5")]);
        }),
        one("malformed-pax-time", |t| {
            t.entry(file(b"a"), b"a", &[("mtime", b"soon")]);
        }),
        one("ids-up-to-the-largest", |t| {
            t.entry(
                file(b"a"),
                b"a",
                &[("uid", b"4294967294"), ("gid", b"4294967294")],
            )
            .entry(file(b"b"), b"b", &[("uid", b"65536"), ("gid", b"100000")]);
        }),
        one("id-past-32-bits", |t| {
            t.entry(file(b"a"), b"a", &[("uid", b"4294967296")]);
        }),
        one("id-that-means-unchanged", |t| {
            t.entry(file(b"a"), b"a", &[("gid", b"4294967295")]);
        }),
        one("malformed-pax-id", |t| {
            t.entry(file(b"a"), b"a", &[("uid", b"12x")]);
        }),
        Case {
            name: "whiteouts-spare-what-the-same-layer-wrote".into(),
            layers: vec![
                {
                    let mut t = Tarball::new();
                    t.entry(file(b"lower"), b"x", &[])
                        .entry(Kind::Dir, b"d", &[])
                        .entry(file(b"lower"), b"d/lower", &[])
                        .entry(Kind::Dir, b"y", &[])
                        .entry(file(b"lower"), b"y/lower", &[])
                        .entry(file(b"lower"), b"gone", &[]);
                    t.finish()
                },
                testkit::tarball::same_layer_whiteouts(),
            ],
        },
        chain(
            "opaque-root",
            &[
                &|t: &mut Tarball| {
                    t.entry(file(b"a"), b"a", &[]);
                },
                &|t: &mut Tarball| {
                    t.entry(file(b""), b".wh..wh..opq", &[])
                        .entry(file(b"b"), b"b", &[]);
                },
            ],
        ),
        one("symlinks-on-the-way-resolve-inside", |t| {
            t.entry(Kind::Dir, b"sub", &[])
                .entry(Kind::Symlink(b"sub".to_vec()), b"rel", &[])
                .entry(Kind::Symlink(b"/sub".to_vec()), b"abs", &[])
                .entry(Kind::Symlink(b"../../..".to_vec()), b"sub/up", &[])
                .entry(file(b"f"), b"rel/f", &[])
                .entry(file(b"g"), b"abs/g", &[])
                .entry(file(b"h"), b"sub/up/sub/h", &[]);
        }),
        one("a-whiteout-through-a-symlink-already-walked", |t| {
            t.entry(Kind::Dir, b"sub", &[])
                .entry(Kind::Symlink(b"sub".to_vec()), b"link", &[])
                .entry(file(b"f"), b"link/f", &[])
                .entry(file(b""), b"link/.wh.f", &[]);
        }),
        chain(
            "a-whiteout-of-a-symlink-the-layer-wrote",
            &[
                &|t: &mut Tarball| {
                    t.entry(file(b"lower"), b"lower", &[]);
                },
                &|t: &mut Tarball| {
                    t.entry(file(b"keep"), b"keep", &[])
                        .entry(Kind::Symlink(b"/".to_vec()), b"s", &[])
                        .entry(file(b""), b".wh.s", &[])
                        .entry(Kind::Dir, b"d", &[])
                        .entry(Kind::Symlink(b"/".to_vec()), b"d/s", &[])
                        .entry(file(b""), b"d/.wh..wh..opq", &[]);
                },
            ],
        ),
        chain(
            "a-small-file-replaces-a-directory-then-an-entry-below-it",
            &[
                &|t: &mut Tarball| {
                    t.entry(Kind::Dir, b"x", &[])
                        .entry(file(b"old"), b"x/old", &[]);
                },
                &|t: &mut Tarball| {
                    t.entry(file(b"file"), b"x", &[])
                        .entry(file(b"y"), b"x/y", &[]);
                },
            ],
        ),
        one("a-big-file-then-a-small-file-of-the-same-name", |t| {
            t.entry(Kind::File(vec![7u8; 2 << 20]), b"f", &[])
                .entry(file(b"small"), b"f", &[]);
        }),
        one("a-symlink-replaces-a-directory-with-one-below", |t| {
            t.entry(Kind::Dir, b"x", &[])
                .entry(Kind::Dir, b"x/sub", &[])
                .entry(Kind::Symlink(b"y".to_vec()), b"x", &[]);
        }),
        one("a-symlink-that-leads-nowhere", |t| {
            t.entry(Kind::Symlink(b"missing".to_vec()), b"link", &[])
                .entry(file(b"x"), b"link/x/f", &[]);
        }),
        one("a-file-on-the-way", |t| {
            t.entry(file(b"f"), b"f", &[])
                .entry(file(b"x"), b"f/x", &[]);
        }),
        one("symlink-loop", |t| {
            t.entry(Kind::Symlink(b"b".to_vec()), b"a", &[])
                .entry(Kind::Symlink(b"a".to_vec()), b"b", &[])
                .entry(file(b"x"), b"a/x", &[]);
        }),
        one("nul-in-a-name", |t| {
            t.entry(file(b"x"), b"plain", &[("path", b"a\0b")]);
        }),
        one("nul-in-a-link-target", |t| {
            t.entry(
                Kind::Symlink(b"t".to_vec()),
                b"l",
                &[("linkpath", b"/etc\0x")],
            );
        }),
        one("hard-link-to-nothing", |t| {
            t.entry(Kind::HardLink(b"missing".to_vec()), b"h", &[]);
        }),
        one("hard-links-and-a-replaced-name", |t| {
            t.entry(file(b"one"), b"f", &[])
                .entry(Kind::HardLink(b"f".to_vec()), b"h", &[])
                .entry(Kind::HardLink(b"./f".to_vec()), b"sub/h2", &[])
                .entry(file(b"two"), b"f", &[]);
        }),
        Case {
            name: "a-tree-deeper-than-its-names-through-symlinks".into(),
            layers: vec![testkit::tarball::deep_through_symlinks(8, 400)],
        },
        Case {
            name: "a-deep-tree-through-symlinks-within-the-path-limit".into(),
            layers: vec![testkit::tarball::deep_through_symlinks(4, 400)],
        },
        one(
            "a-real-path-one-byte-past-the-limit-through-a-symlink",
            |t| {
                // `h0/d/…/d` is 4,002 bytes; through the symlink `s`, a 93-byte name lands at
                // 4,096 bytes, one past the limit, while its own name is 95 bytes long.
                let mut name = b"h0".to_vec();
                for _ in 0..2000 {
                    name.extend_from_slice(b"/d");
                    t.entry(Kind::Dir, b"long", &[("path", &name)]);
                }
                t.entry(Kind::Symlink(Vec::new()), b"s", &[("linkpath", &name)]);
                t.entry(file(b"x"), &[&b"s/"[..], &[b'y'; 93]].concat(), &[]);
            },
        ),
        one("a-directory-replaces-a-file", |t| {
            t.entry(file(b"f"), b"p", &[])
                .entry(Kind::Dir, b"p", &[])
                .entry(file(b"in"), b"p/in", &[]);
        }),
    ]
}

/// A sparse file (16 MiB: data at the start, in the middle at an odd offset, and at the
/// end) and a file after it, as GNU tar archives it in each of its sparse encodings.
fn sparse_cases() -> Vec<Case> {
    use testkit::sparse::{self, Encoding};
    let dir = tempfile::tempdir().unwrap();
    let size = 16u64 << 20;
    sparse::make(
        &dir.path().join("sparse"),
        size,
        &[
            (0, &[1u8; 4096]),
            (5 << 20 | 77, b"middle"),
            (size - 10, b"last bytes"),
        ],
    );
    std::fs::write(dir.path().join("after"), b"after").unwrap();
    Encoding::ALL
        .into_iter()
        .map(|encoding| {
            let tar = dir.path().join("sparse.tar");
            sparse::gnu_tar(dir.path(), &["sparse", "after"], encoding, &tar);
            Case {
                name: format!("sparse-file-{encoding:?}"),
                layers: vec![std::fs::read(&tar).unwrap()],
            }
        })
        .collect()
}

fn layercheck_cases(lc: &Layercheck) -> Vec<Case> {
    let mut cases = vec![Case {
        name: "layercheck-chain".into(),
        layers: (1..=3)
            .map(|k| std::fs::read(lc.chain_layer(k)).unwrap())
            .collect(),
    }];
    for path in lc.hostile_layers() {
        cases.push(Case {
            name: format!(
                "layercheck-hostile-{}",
                path.file_stem().unwrap().to_string_lossy()
            ),
            layers: vec![std::fs::read(&path).unwrap()],
        });
    }
    cases
}

/// A fresh, root-owned 0755 directory, so that the roots of every writer start alike.
fn fresh_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

fn directory_writer(case: &Case, work: &Path) -> Outcome {
    let target = fresh_dir(work, "dir");
    let op = Op::new("conformance");
    let mut opts = ApplyOptions::new(WhiteoutMode::Delete);
    opts.ownership = Ownership::Preserve;
    opts.sync = false;
    for layer in &case.layers {
        if let Err(e) = apply_tar(&op, &target, layer.as_slice(), &opts) {
            return refused(&e);
        }
    }
    Outcome::Tree(Manifest::of(&target).unwrap())
}

fn nfs_writer(case: &Case, index: usize, g: &Ganesha, rt: &tokio::runtime::Runtime) -> Outcome {
    let url = url::Url::parse(&g.url(0, 0)).unwrap();
    let vols = NfsVolumes::new("conformance", NfsUrl::parse(&url).unwrap());
    let op = Op::new("conformance");
    let id = format!("case{index}");
    rt.block_on(async {
        vols.volume_create(&op, &id, 0, BTreeMap::new())
            .await
            .unwrap();
        for layer in &case.layers {
            let tar = Box::new(Cursor::new(layer.clone()));
            if let Err(e) = vols.import(&op, &id, &FilterSpec::default(), tar).await {
                return refused(&e);
            }
        }
        let root = g.export_dir().join("volumes").join(&id);
        Outcome::Tree(Manifest::of(&root).unwrap())
    })
}

/// A mount undone when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn new(args: &[&str], dir: PathBuf) -> Mounted {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount").args(args).arg(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "mount {args:?} {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Mounted(dir)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn e2fsck_clean(img: &Path) {
    let out = Command::new("e2fsck").arg("-fn").arg(img).output().unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn {}:\n{}",
        img.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

fn ext4_writer(case: &Case, work: &Path) -> Outcome {
    let mut lowers = Vec::new();
    for (k, layer) in case.layers.iter().enumerate() {
        let img = work.join(format!("layer{k}.img"));
        let out = std::fs::File::create(&img).unwrap();
        let options = Options {
            whiteouts: Whiteouts::Overlay,
            ..Options::default()
        };
        let built = Builder::new(out, options).and_then(|mut b| {
            b.append_tar(layer.as_slice())?;
            b.finish()
        });
        if let Err(e) = built {
            return refused(&e.into());
        }
        e2fsck_clean(&img);
        let dir = work.join(format!("l{k}"));
        lowers.push(Mounted::new(
            &["-t", "ext4", "-o", "loop,ro", img.to_str().unwrap()],
            dir,
        ));
    }
    // An empty bottom layer, so that even one image is an overlay whose whiteouts hide
    // nothing and stay out of sight, as in a stack of layers.
    let empty = fresh_dir(work, "empty");
    let mut dirs: Vec<String> = lowers
        .iter()
        .rev()
        .map(|m| m.0.display().to_string())
        .collect();
    dirs.push(empty.display().to_string());
    let merged = Mounted::new(
        &[
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!("lowerdir={}", dirs.join(":")),
        ],
        work.join("merged"),
    );
    let manifest = Manifest::of(&merged.0).unwrap();
    drop(merged);
    drop(lowers);
    Outcome::Tree(manifest)
}

/// The tree without its root (each writer's root starts from its own medium).
fn below_root(m: &Manifest) -> Manifest {
    let mut m = m.clone();
    m.0.remove(".");
    m
}

fn agree(case: &str, writer: &str, dir: &Outcome, other: &Outcome, ignore: Ignore) -> Vec<String> {
    match (dir, other) {
        (Outcome::Tree(a), Outcome::Tree(b)) => below_root(&a.without(ignore))
            .diff(&below_root(&b.without(ignore)))
            .into_iter()
            .map(|d| format!("{case}: {writer} made another tree: {d}"))
            .collect(),
        (a, b) if a.verdict() == b.verdict() => Vec::new(),
        (a, b) => vec![format!(
            "{case}: the directory writer said {a:?}, the {writer} writer said {b:?}"
        )],
    }
}

#[test]
fn every_writer_gives_the_same_verdict_and_tree_needs_root_ganesha_loop_overlay() {
    let mut needs = REQUIREMENTS.to_vec();
    needs.extend([
        Requirement::Command("e2fsck"),
        Requirement::Command("mount"),
        Requirement::Path("/dev/loop-control"),
        Requirement::Filesystem("overlay"),
        Requirement::Command("tar"),
    ]);
    if !require(
        "every_writer_gives_the_same_verdict_and_tree_needs_root_ganesha_loop_overlay",
        &needs,
    ) {
        return;
    }
    let lc = Layercheck::generate();
    let mut cases = layercheck_cases(&lc);
    cases.extend(own_cases());
    cases.extend(sparse_cases());
    let g = Ganesha::start(0, 0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nfs_limits = Ignore {
        owners: true,
        xattrs: true,
        devices: true,
        times_in_u32: true,
        symlink_times: true,
    };
    let mut problems = Vec::new();
    let mut accepted = 0;
    for (i, case) in cases.iter().enumerate() {
        let work = tempfile::Builder::new()
            .prefix("writers-agree-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let dir = directory_writer(case, work.path());
        let nfs = nfs_writer(case, i, &g, &rt);
        let ext4 = ext4_writer(case, work.path());
        eprintln!(
            "{}:\n  directory: {}\n  nfs: {}\n  ext4: {}",
            case.name,
            dir.said(),
            nfs.said(),
            ext4.said()
        );
        if let Outcome::Tree(_) = dir {
            accepted += 1;
        }
        problems.extend(agree(&case.name, "NFS", &dir, &nfs, nfs_limits));
        problems.extend(agree(&case.name, "ext4", &dir, &ext4, Ignore::default()));
    }
    assert!(
        problems.is_empty(),
        "{} disagreement(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The table covers both sides: archives every writer takes and archives every writer
    // refuses.
    assert!(
        accepted >= 10 && accepted < cases.len(),
        "{accepted} of {}",
        cases.len()
    );
}
