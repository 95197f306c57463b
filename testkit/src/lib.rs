//! Test support shared by every crate's tests and fuzz targets, and nothing else.
//!
//! It owns these things:
//! - **requirements**: a test that needs root, a command, a kernel feature or a server asks
//!   [`require`] first. Outside CI a missing requirement skips the test with a
//!   `SKIPPED <test>: needs …` line on stderr that the harness does not capture (and
//!   `cargo xtask ci` counts); under `CI=true` it panics, so CI can never pass by skipping;
//! - **conformance data**: [`Layercheck`] drives `../shared/testdata/layercheck.py` (it is
//!   called, never copied) to generate the chain and hostile layers and compare real trees;
//! - **servers**: [`ganesha::Ganesha`] runs a private nfs-ganesha for one test;
//! - **archives**: [`tarball`] writes hostile tars byte by byte, [`sparse`] makes sparse
//!   files and GNU tar's `--sparse` archives of them.
//! - **file sets** ([`fileset`]): several sparse files in one byte string, the input format
//!   of the multi-file disk image fuzz target and of the regression tests its crashes give.
//! - **loop disks** ([`loop_disk`]): small ext4 images, mounted or only attached to a loop
//!   device.
//!
//! It does not own fixtures of any one crate; those live beside the tests that use them.
#![forbid(unsafe_code)]
// Test support: a panic is how a fixture reports that it cannot be built.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod fileset;
pub mod ganesha;
pub mod loop_disk;
pub mod sparse;
pub mod tarball;

use std::path::{Path, PathBuf};
use std::process::Command;

/// True when running under CI (`CI=true`), where a missing requirement is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy)]
pub enum Requirement<'a> {
    /// The effective user is root.
    Root,
    /// A command is on `PATH`.
    Command(&'a str),
    /// A filesystem type is listed in `/proc/filesystems` (e.g. `overlay`, `fuse`).
    Filesystem(&'a str),
    /// A path exists (e.g. `/dev/fuse`, `/dev/loop-control`).
    Path(&'a str),
    /// Something accepts TCP connections at this address (e.g. rpcbind at `127.0.0.1:111`).
    Listening(&'a str),
}

impl Requirement<'_> {
    fn met(&self) -> bool {
        match *self {
            Requirement::Root => is_root(),
            Requirement::Command(cmd) => command_exists(cmd),
            Requirement::Filesystem(fs) => std::fs::read_to_string("/proc/filesystems")
                .map(|list| {
                    list.lines()
                        .any(|l| l.split_whitespace().last() == Some(fs))
                })
                .unwrap_or(false),
            Requirement::Path(p) => Path::new(p).exists(),
            Requirement::Listening(addr) => addr.parse().is_ok_and(|a| {
                std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
            }),
        }
    }
}

impl std::fmt::Display for Requirement<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Requirement::Root => write!(f, "root"),
            Requirement::Command(c) => write!(f, "the command `{c}`"),
            Requirement::Filesystem(fs) => write!(f, "the `{fs}` filesystem"),
            Requirement::Path(p) => write!(f, "{p}"),
            Requirement::Listening(a) => write!(f, "a server listening at {a}"),
        }
    }
}

/// The word that starts the line a skipped test prints on standard error
/// (`SKIPPED test_name: needs root, the command `qemu-img``), which `cargo xtask ci`
/// counts.
pub const SKIPPED: &str = "SKIPPED";

/// Checks that every requirement is met. Returns `false` when one is missing outside CI,
/// after printing `SKIPPED <test>: needs <what is missing>` straight to the process's
/// standard error (the test harness captures `eprintln!`, so a skip would otherwise go
/// unseen), so the test can return early; panics when one is missing under `CI=true`.
///
/// ```no_run
/// use testkit::{require, Requirement::*};
/// if !require("mounts_a_layer", &[Root, Filesystem("overlay")]) {
///     return;
/// }
/// ```
pub fn require(test: &str, needs: &[Requirement<'_>]) -> bool {
    require_in(in_ci(), &mut std::io::stderr().lock(), test, needs)
}

/// [`require`], under CI or not, reporting a skip to `out`.
fn require_in(
    ci: bool,
    out: &mut dyn std::io::Write,
    test: &str,
    needs: &[Requirement<'_>],
) -> bool {
    let missing: Vec<String> = needs
        .iter()
        .filter(|r| !r.met())
        .map(|r| r.to_string())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let line = skip_line(test, &missing);
    if ci {
        panic!("{line} (a missing requirement fails under CI=true)");
    }
    // Nothing to do if standard error itself is gone.
    let _ = writeln!(out, "{line}");
    false
}

/// Writes `line` to standard error where the test harness does not capture it (it
/// captures only the `print!` family): for the figures a bounded test must show in every
/// run, such as how many iterations it ran.
pub fn tell(line: &str) {
    use std::io::Write;
    // Nothing to do if standard error itself is gone.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `SKIPPED <test>: needs <missing, comma-separated>`.
fn skip_line(test: &str, missing: &[String]) -> String {
    format!("{SKIPPED} {test}: needs {}", missing.join(", "))
}

fn is_root() -> bool {
    // `id -u` keeps this crate free of libc; it runs once per test at most.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn command_exists(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(cmd);
            p.is_file()
        })
    })
}

/// The workspace root (the directory whose `Cargo.toml` has `[workspace]`), found up
/// from the running test's package: cargo names it in the environment at run time. The
/// path compiled in is only the fallback, since a testkit built in another worktree that
/// shares the target directory carries that worktree's path.
pub fn workspace_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|toml| toml.contains("[workspace]"))
        })
        .map(Path::to_path_buf)
        .unwrap_or(start)
}

/// The project's `shared/` directory, beside the repository (or `$STRATA_SHARED`).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("STRATA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("..").join("shared"))
}

/// The conformance data of `shared/testdata/layercheck.py`, generated into a temporary
/// directory that lives as long as this value.
pub struct Layercheck {
    dir: tempfile::TempDir,
}

impl Layercheck {
    /// Path of the script.
    pub fn script() -> PathBuf {
        shared_dir().join("testdata").join("layercheck.py")
    }

    /// Runs `layercheck.py gen` into a fresh temporary directory.
    ///
    /// Panics when python3 or the script is missing: conformance tests cannot run without it.
    pub fn generate() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("layercheck-")
            .tempdir()
            .expect("create a temporary directory for layercheck data");
        let out = Command::new("python3")
            .arg(Self::script())
            .arg("gen")
            .arg(dir.path())
            .output()
            .expect("run python3 layercheck.py gen");
        assert!(
            out.status.success(),
            "layercheck.py gen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Layercheck { dir }
    }

    /// The generated directory (`chain/` and `hostile/` below it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `chain/layerK.tar` for K = 1, 2, 3.
    pub fn chain_layer(&self, k: usize) -> PathBuf {
        self.dir.path().join("chain").join(format!("layer{k}.tar"))
    }

    /// `chain/expected.json`.
    pub fn expected(&self) -> PathBuf {
        self.dir.path().join("chain").join("expected.json")
    }

    /// Every `hostile/*.tar`, sorted by name; never empty, so a test looping over them
    /// cannot pass by checking nothing.
    pub fn hostile_layers(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("hostile"))
            .expect("read hostile/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        assert!(
            !v.is_empty(),
            "layercheck.py gen wrote no hostile layers into {}",
            self.dir.path().display()
        );
        v
    }

    /// Runs `layercheck.py compare EXPECTED ROOT --layer K` plus `extra` arguments and
    /// returns its output (stdout and stderr) on success.
    pub fn compare(
        expected: &Path,
        root: &Path,
        layer: usize,
        extra: &[&str],
    ) -> Result<String, String> {
        let out = Command::new("python3")
            .arg(Self::script())
            .arg("compare")
            .arg(expected)
            .arg(root)
            .arg("--layer")
            .arg(layer.to_string())
            .args(extra)
            .output()
            .map_err(|e| format!("run layercheck.py compare: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// Runs `layercheck.py manifest ROOT` and returns the JSON text.
    pub fn manifest(root: &Path) -> String {
        let out = Command::new("python3")
            .arg(Self::script())
            .arg("manifest")
            .arg(root)
            .output()
            .expect("run layercheck.py manifest");
        assert!(out.status.success(), "layercheck.py manifest failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Makes `levels` nested directories `d/d/d/…` below `root`, with a file `bottom` at the
/// end, one `mkdirat` at a time as a process in a container can: the tree may be far
/// deeper than `PATH_MAX` lets any path name.
pub fn deep_dirs(root: &Path, levels: usize) {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::{Mode, mkdirat};
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = open(root, dir_flags, Mode::empty())
        .unwrap_or_else(|e| panic!("open {}: {e}", root.display()));
    for level in 0..levels {
        mkdirat(&fd, "d", Mode::from_bits_truncate(0o755))
            .unwrap_or_else(|e| panic!("mkdir at level {level}: {e}"));
        fd = openat(&fd, "d", dir_flags, Mode::empty())
            .unwrap_or_else(|e| panic!("open level {level}: {e}"));
    }
    openat(
        &fd,
        "bottom",
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .unwrap_or_else(|e| panic!("create the bottom file: {e}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_line_names_the_test_and_everything_missing() {
        let missing = [Requirement::Root, Requirement::Command("qemu-img")].map(|r| r.to_string());
        assert_eq!(
            skip_line("attaches_a_vhd", &missing),
            "SKIPPED attaches_a_vhd: needs root, the command `qemu-img`"
        );
    }

    #[test]
    fn a_met_requirement_runs_the_test_and_prints_nothing() {
        for ci in [false, true] {
            let mut out = Vec::new();
            assert!(require_in(ci, &mut out, "t", &[Requirement::Path("/")]));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn a_missing_requirement_skips_loudly_outside_ci() {
        let mut out = Vec::new();
        let needs = [
            Requirement::Path("/"),
            Requirement::Path("/nonexistent/strata"),
        ];
        assert!(!require_in(false, &mut out, "t", &needs));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "SKIPPED t: needs /nonexistent/strata\n"
        );
    }

    #[test]
    fn a_missing_requirement_fails_under_ci() {
        let needs = [Requirement::Path("/nonexistent/strata")];
        let failed = std::panic::catch_unwind(|| {
            require_in(true, &mut Vec::new(), "t", &needs);
        });
        assert!(
            failed.is_err(),
            "a missing requirement passed under CI=true"
        );
    }
}
