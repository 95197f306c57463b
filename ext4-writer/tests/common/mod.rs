//! Helpers shared by the integration tests: building images, running e2fsck and debugfs,
//! loop mounts that are always undone, GNU tar extraction.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ext4_writer::{Builder, Options, ReadOptions, Reader, Whiteouts, WhiteoutsOut};

/// Builds `img` from the tar at `tar` with the given whiteout handling.
pub fn build(tar: &Path, img: &Path, whiteouts: Whiteouts) -> ext4_writer::Summary {
    let input = std::fs::File::open(tar).unwrap();
    let out = std::fs::File::create(img).unwrap();
    let mut b = Builder::new(
        out,
        Options {
            whiteouts,
            ..Options::default()
        },
    )
    .unwrap();
    b.append_tar(input).unwrap();
    b.finish().unwrap().1
}

/// Reads `img` back into a tar file at `tar`.
pub fn read_back(img: &Path, tar: &Path, whiteouts: WhiteoutsOut) {
    let f = std::io::BufReader::new(std::fs::File::open(img).unwrap());
    let mut r = Reader::open(f).unwrap();
    let out = std::io::BufWriter::new(std::fs::File::create(tar).unwrap());
    let mut out = r.write_tar(out, ReadOptions { whiteouts }).unwrap();
    std::io::Write::flush(&mut out).unwrap();
}

pub use testkit::loop_disk::e2fsck_clean;

/// Asserts that an image held in memory passes `e2fsck -fn`.
pub fn e2fsck_clean_bytes(img: &[u8]) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), img).unwrap();
    e2fsck_clean(f.path());
}

/// `debugfs -R 'stat PATH'` output.
pub fn debugfs_stat(img: &Path, path: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat \"{path}\""))
        .arg(img)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and panics with its output when it fails.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A mount undone on drop, even when the test fails.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    /// `mount -o loop,ro IMG DIR`.
    pub fn loop_ro(img: &Path, dir: &Path) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .arg("-o")
            .arg("loop,ro")
            .arg(img)
            .arg(dir));
        Mount {
            dir: dir.to_path_buf(),
        }
    }

    /// An overlay of read-only lower directories, topmost first.
    pub fn overlay(lowers: &[&Path], dir: &Path) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        run(Command::new("mount")
            .arg("-t")
            .arg("overlay")
            .arg("overlay")
            .arg("-o")
            .arg(format!("ro,lowerdir={}", lower.join(":")))
            .arg(dir));
        Mount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Extracts a tar with GNU tar as root, keeping owners, modes and all xattrs.
pub fn gnu_extract(tar: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    run(Command::new("tar")
        .arg("-xpf")
        .arg(tar)
        .arg("--xattrs")
        .arg("--xattrs-include=*")
        .arg("-C")
        .arg(dir));
}

/// Asserts two trees have the same layercheck manifest.
pub fn same_manifest(a: &Path, b: &Path) {
    let ma = testkit::Layercheck::manifest(a);
    let mb = testkit::Layercheck::manifest(b);
    if ma != mb {
        let da: serde_like::Lines = ma.lines().collect();
        let db: serde_like::Lines = mb.lines().collect();
        let only_a: Vec<_> = da.iter().filter(|l| !db.contains(l)).take(20).collect();
        let only_b: Vec<_> = db.iter().filter(|l| !da.contains(l)).take(20).collect();
        panic!(
            "manifests differ between {} and {}\nonly in first: {only_a:#?}\nonly in second: {only_b:#?}",
            a.display(),
            b.display()
        );
    }
}

mod serde_like {
    pub type Lines<'a> = Vec<&'a str>;
}
