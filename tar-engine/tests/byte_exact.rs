//! Byte-exact layers: a tar applied with a tar-split record comes back from the tree
//! byte for byte, from archives real archivers wrote (GNU tar in its gnu and posix
//! formats, with long names, PAX records, hard links, sparse files in every encoding and
//! sub-second times; python's tarfile; the layercheck chain), and a tree changed since
//! comes back through the deterministic writer instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use storage_core::Op;
use storage_core::archive::ExportOptions;
use tar_engine::split::{FILE_NAME, write_layer_exact};
use tar_engine::{ApplyOptions, WhiteoutMode, apply_tar, write_layer};
use testkit::sparse::{self, Encoding};
use testkit::{Layercheck, Requirement, require};

/// A tree with what archivers encode in their own ways: a long name past 100 and 255
/// bytes, hard links, a symlink, sub-second times, an xattr, and empty files.
fn awkward_tree(dir: &Path) {
    let long_dir = dir.join("d".repeat(120)).join("e".repeat(150));
    std::fs::create_dir_all(&long_dir).unwrap();
    std::fs::write(long_dir.join("f".repeat(200)), b"deep and long\n").unwrap();
    std::fs::write(dir.join("data"), vec![7u8; 70_000]).unwrap();
    std::fs::hard_link(dir.join("data"), dir.join("data-link")).unwrap();
    std::os::unix::fs::symlink("data", dir.join("sym")).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    std::fs::write(dir.join("ünïcode näme"), b"utf-8\n").unwrap();
    let status = Command::new("setfattr")
        .args(["-n", "user.note", "-v", "kept"])
        .arg(dir.join("data"))
        .status();
    assert!(status.is_ok());
    let status = Command::new("touch")
        .args(["-h", "-d", "2021-03-04 05:06:07.123456789"])
        .arg(dir.join("empty"))
        .arg(dir.join("sym"))
        .status()
        .unwrap();
    assert!(status.success());
}

fn gnu_tar(src: &Path, args: &[&str], out: &Path) {
    let status = Command::new("tar")
        .args(args)
        .arg("-C")
        .arg(src)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar {args:?}");
}

/// A temporary directory with an empty `src/` in it.
fn source_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    (dir, src)
}

/// Applies `archive` to a fresh directory with a tar-split record, as a layer store
/// does, and returns the directory and the record's path.
fn import(archive: &Path) -> (tempfile::TempDir, PathBuf) {
    let store = tempfile::tempdir().unwrap();
    let tree = store.path().join("diff");
    std::fs::create_dir(&tree).unwrap();
    let split = store.path().join(FILE_NAME);
    let mut opts = ApplyOptions::new(WhiteoutMode::Overlay);
    opts.tar_split = Some(split.clone());
    let input = std::fs::File::open(archive).unwrap();
    apply_tar(&Op::new("test"), &tree, input, &opts).unwrap();
    assert!(split.exists(), "{}", archive.display());
    (store, split)
}

/// The layer's diff as a layer store writes it.
fn diff(store: &Path, split: &Path) -> Vec<u8> {
    let tree = store.join("diff");
    write_layer_exact(
        &Op::new("test"),
        &tree,
        &[],
        split,
        &ExportOptions::default(),
        Vec::new(),
    )
    .unwrap()
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn assert_same_bytes(archive: &Path) {
    let want = std::fs::read(archive).unwrap();
    let (store, split) = import(archive);
    let got = diff(store.path(), &split);
    assert_eq!(
        sha256(&got),
        sha256(&want),
        "{}: {} bytes back for {}",
        archive.display(),
        got.len(),
        want.len()
    );
}

#[test]
fn gnu_tar_archives_come_back_byte_for_byte() {
    if !require(
        "gnu_tar_archives_come_back_byte_for_byte",
        &[
            Requirement::Command("tar"),
            Requirement::Command("setfattr"),
        ],
    ) {
        return;
    }
    let (dir, src) = source_dir();
    awkward_tree(&src);
    for (name, args) in [
        ("gnu", &["--format=gnu"][..]),
        ("posix", &["--format=posix", "--xattrs"]),
        (
            "ustar-pax-times",
            &[
                "--format=posix",
                "--pax-option=exthdr.name=%d/PaxHeaders/%f,atime:=0",
            ],
        ),
        ("oldgnu", &["--format=oldgnu"]),
    ] {
        let out = dir.path().join(format!("{name}.tar"));
        gnu_tar(&src, args, &out);
        assert_same_bytes(&out);
    }
    // ustar keeps a path past 100 bytes split between its prefix and name fields.
    let (dir, src) = source_dir();
    let split_path = src.join("p".repeat(90)).join("q".repeat(40));
    std::fs::create_dir_all(&split_path).unwrap();
    std::fs::write(split_path.join("r".repeat(90)), b"prefixed\n").unwrap();
    let out = dir.path().join("ustar.tar");
    gnu_tar(&src, &["--format=ustar"], &out);
    assert_same_bytes(&out);
}

#[test]
fn sparse_files_in_every_gnu_encoding_come_back_byte_for_byte() {
    if !require(
        "sparse_files_in_every_gnu_encoding_come_back_byte_for_byte",
        &[Requirement::Command("tar")],
    ) {
        return;
    }
    let (dir, src) = source_dir();
    sparse::sample_tree(&src);
    for encoding in Encoding::ALL {
        let out = dir.path().join(format!("{encoding:?}.tar"));
        sparse::gnu_tar(&src, &sparse::SAMPLE, encoding, &out);
        assert_same_bytes(&out);
    }
}

#[test]
fn python_tarfile_archives_with_sub_second_times_come_back_byte_for_byte() {
    if !require(
        "python_tarfile_archives_with_sub_second_times_come_back_byte_for_byte",
        &[Requirement::Command("python3")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import io, sys, tarfile
for fmt, name in ((tarfile.PAX_FORMAT, "pax"), (tarfile.GNU_FORMAT, "gnu")):
    with tarfile.open(sys.argv[1] + "/" + name + ".tar", "w", format=fmt) as t:
        for i, (path, data) in enumerate((("a/" + "x" * 200 + "/" + "y" * 150, b"long"), ("b", b"bee" * 1000))):
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            ti.mtime = 1600000000.25 + i
            ti.uname, ti.gname = "builder", "staff"
            ti.pax_headers = {"SCHILY.xattr.user.k": "v"} if fmt == tarfile.PAX_FORMAT else {}
            t.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("b-again")
        link.type = tarfile.LNKTYPE
        link.linkname = "b"
        t.addfile(link)
"#;
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    for name in ["pax", "gnu"] {
        assert_same_bytes(&dir.path().join(format!("{name}.tar")));
    }
}

#[test]
fn the_layercheck_chain_comes_back_byte_for_byte() {
    if !require(
        "the_layercheck_chain_comes_back_byte_for_byte",
        &[Requirement::Command("python3")],
    ) {
        return;
    }
    let data = Layercheck::generate();
    for k in 1..=3 {
        assert_same_bytes(&data.chain_layer(k));
    }
}

#[test]
fn a_compressed_import_gives_back_the_uncompressed_tar() {
    let (dir, src) = source_dir();
    std::fs::write(src.join("f"), b"hello\n").unwrap();
    let plain = dir.path().join("l.tar");
    gnu_tar(&src, &["--format=posix"], &plain);
    let status = Command::new("gzip").arg("-k").arg(&plain).status().unwrap();
    assert!(status.success());
    let (store, split) = import(&dir.path().join("l.tar.gz"));
    assert_eq!(diff(store.path(), &split), std::fs::read(&plain).unwrap());
}

#[test]
fn a_changed_tree_falls_back_to_the_deterministic_writer() {
    let (dir, src) = source_dir();
    std::fs::write(src.join("f"), b"hello\n").unwrap();
    std::fs::write(src.join("g"), b"world\n").unwrap();
    let archive = dir.path().join("l.tar");
    gnu_tar(&src, &["--format=posix"], &archive);
    let want = std::fs::read(&archive).unwrap();
    for change in ["same size", "longer content", "removed"] {
        let (store, split) = import(&archive);
        let f = store.path().join("diff").join("f");
        match change {
            "same size" => std::fs::write(&f, b"HELLO\n").unwrap(),
            "longer content" => std::fs::write(&f, b"hello again\n").unwrap(),
            _ => std::fs::remove_file(&f).unwrap(),
        }
        let got = diff(store.path(), &split);
        let deterministic = write_layer(
            &Op::new("test"),
            &store.path().join("diff"),
            &[],
            &ExportOptions::default(),
            Vec::new(),
        )
        .unwrap();
        assert_ne!(got, want, "{change}");
        assert_eq!(got, deterministic, "{change}");
    }
}

#[test]
fn a_failed_import_leaves_no_tar_split() {
    let (dir, src) = source_dir();
    std::fs::write(src.join("f"), vec![1u8; 10_000]).unwrap();
    let archive = dir.path().join("l.tar");
    gnu_tar(&src, &["--format=posix"], &archive);
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes.truncate(3000);
    let store = tempfile::tempdir().unwrap();
    let tree = store.path().join("diff");
    std::fs::create_dir(&tree).unwrap();
    let split = store.path().join(FILE_NAME);
    let mut opts = ApplyOptions::new(WhiteoutMode::Overlay);
    opts.tar_split = Some(split.clone());
    assert!(apply_tar(&Op::new("test"), &tree, &bytes[..], &opts).is_err());
    let left: Vec<_> = std::fs::read_dir(store.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("diff")]);
    // A wrong expected digest fails after the whole stream was read: still nothing.
    opts.expected_digest = Some(format!("sha256:{}", "0".repeat(64)));
    let whole = std::fs::read(&archive).unwrap();
    assert!(apply_tar(&Op::new("test"), &tree, &whole[..], &opts).is_err());
    assert!(!split.exists());
}

/// One header block and its data, padded to whole blocks.
fn entry(mut header: tar::Header, kind: tar::EntryType, path: &str, data: &[u8]) -> Vec<u8> {
    header.set_entry_type(kind);
    header.set_path(path).unwrap();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

#[test]
fn a_gnu_long_name_wins_over_a_pax_path_as_the_import_reads_them() {
    // A PAX path and a GNU long name both before one file: `tar` (the import's reader)
    // takes the long name, and so must the record that finds the file again.
    let pax = b"19 path=pax-name.t\n";
    let mut archive = entry(
        tar::Header::new_ustar(),
        tar::EntryType::XHeader,
        "PaxHeaders/f",
        pax,
    );
    archive.extend(entry(
        tar::Header::new_gnu(),
        tar::EntryType::GNULongName,
        "././@LongLink",
        b"long-name.t\0",
    ));
    archive.extend(entry(
        tar::Header::new_gnu(),
        tar::EntryType::Regular,
        "short",
        b"hello",
    ));
    archive.extend([0u8; 1024]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("both.tar");
    std::fs::write(&path, &archive).unwrap();
    let (store, _) = import(&path);
    assert_eq!(
        std::fs::read(store.path().join("diff/long-name.t")).unwrap(),
        b"hello"
    );
    assert_same_bytes(&path);
}

#[test]
fn a_sparse_extension_block_ends_the_map_unless_its_flag_is_exactly_one() {
    // An old GNU sparse file whose header says one extension block follows, and whose
    // extension block's `isextended` byte is 2: `tar` (the import's reader) stops
    // there, so the block after it is data. The record must agree, or it loses step and
    // keeps the next file's contents instead of finding them in the tree.
    let data = b"sparse data, one segment";
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::GNUSparse);
    header.set_path("holes").unwrap();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    {
        let gnu = header.as_gnu_mut().unwrap();
        gnu.sparse[0].offset.copy_from_slice(b"00000010000\0");
        gnu.sparse[0].numbytes.copy_from_slice(b"00000000030\0");
        gnu.realsize.copy_from_slice(b"00000010030\0");
        gnu.isextended[0] = 1;
    }
    header.set_cksum();
    let mut archive = header.as_bytes().to_vec();
    let mut extension = [0u8; 512];
    extension[504] = 2;
    archive.extend_from_slice(&extension);
    archive.extend_from_slice(data);
    archive.resize(archive.len().next_multiple_of(512), 0);
    // Contents zstd cannot squeeze, so that keeping them would show in the record's size.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let after: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    archive.extend(entry(
        tar::Header::new_gnu(),
        tar::EntryType::Regular,
        "after",
        &after,
    ));
    archive.extend([0u8; 1024]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse-ext.tar");
    std::fs::write(&path, &archive).unwrap();
    let (store, split) = import(&path);
    assert_eq!(
        std::fs::read(store.path().join("diff/after")).unwrap(),
        after
    );
    let record = std::fs::metadata(&split).unwrap().len();
    assert!(record < 16 * 1024, "the record kept {record} bytes");
    assert_same_bytes(&path);
}
