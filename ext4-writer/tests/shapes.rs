//! Size and shape: huge and sparse files, huge directories, every entry kind, replaced
//! entries. Every image written here passes `e2fsck -fn`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::time::Instant;

use common::{Mount, debugfs_stat, e2fsck_clean};
use ext4_writer::{Builder, Error, Options, ReadOptions, Reader, Whiteouts, WhiteoutsOut};
use testkit::{Requirement, require};

/// A GNU header with every numeric field set.
fn header(ty: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h
}

/// Writes `name` into the header as is (the tar crate refuses `..` in `set_path`).
fn raw_name(h: &mut tar::Header, name: &str) {
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
}

/// A tar holding one regular file of `size` bytes of `byte`, generated as it is read.
fn one_file_tar(name: &str, size: u64, byte: u8) -> impl Read {
    let mut h = header(tar::EntryType::Regular, 0o644, size);
    h.set_path(name).unwrap();
    h.set_cksum();
    let pad = (512 - size % 512) % 512;
    Cursor::new(h.as_bytes().to_vec())
        .chain(std::io::repeat(byte).take(size))
        .chain(std::io::repeat(0).take(pad + 1024))
}

fn build_from<R: Read + Send>(
    tar: R,
    img: &std::path::Path,
    options: Options,
) -> ext4_writer::Summary {
    let out = std::fs::File::create(img).unwrap();
    let mut b = Builder::new(out, options).unwrap();
    b.append_tar(tar).unwrap();
    b.finish().unwrap().1
}

#[test]
fn five_gib_of_zeros_becomes_a_hole_needs_e2fsck_debugfs() {
    if !require(
        "five_gib_of_zeros_becomes_a_hole_needs_e2fsck_debugfs",
        &[
            Requirement::Command("e2fsck"),
            Requirement::Command("debugfs"),
        ],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("zeros.img");
    let size = 5u64 << 30;
    let summary = build_from(one_file_tar("big", size, 0), &img, Options::default());
    assert!(
        summary.size < 1 << 20,
        "a file of zeros should take no data blocks: {summary:?}"
    );
    e2fsck_clean(&img);
    let st = debugfs_stat(&img, "/big");
    assert!(st.contains(&format!("Size: {size}")), "{st}");
    assert!(st.contains("Blockcount: 0"), "{st}");
}

#[test]
fn file_of_exactly_4gib_builds_needs_e2fsck_debugfs() {
    if !require(
        "file_of_exactly_4gib_builds_needs_e2fsck_debugfs",
        &[
            Requirement::Command("e2fsck"),
            Requirement::Command("debugfs"),
        ],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("four.img");
    let size = 4u64 << 30;
    let summary = build_from(one_file_tar("four", size, 0xAB), &img, Options::default());
    assert!(
        summary.size > size && summary.size < size + (8 << 20),
        "{summary:?}"
    );
    e2fsck_clean(&img);
    let st = debugfs_stat(&img, "/four");
    assert!(st.contains(&format!("Size: {size}")), "{st}");
    // 32 extents of 128 MiB do not fit in the inode: one leaf block under an index.
    assert!(
        st.contains(&format!("Blockcount: {}", (size / 512) + 8)),
        "{st}"
    );
    // The last block holds the file's last bytes.
    let f = std::fs::File::open(&img).unwrap();
    let mut r = Reader::open(std::io::BufReader::new(f)).unwrap();
    let mut counter = TarTail::default();
    r.write_tar(&mut counter, ReadOptions::default()).unwrap();
    assert!(counter.total > size);
    assert_eq!(
        counter.ab_run_max, size,
        "the file's bytes come back as one run of 0xAB"
    );
    // 4 GiB went in and out without being held: the whole test process (other tests of
    // this binary included) stayed under the crate's 256 MiB budget.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(hwm_kib < 256 * 1024, "peak RSS {hwm_kib} KiB");
}

/// Counts bytes and the longest run of 0xAB, without keeping them.
#[derive(Default)]
struct TarTail {
    total: u64,
    run: u64,
    ab_run_max: u64,
}

impl std::io::Write for TarTail {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.total += buf.len() as u64;
        // Fast path: a whole buffer of 0xAB extends the run.
        if buf.first() == Some(&0xAB)
            && buf.last() == Some(&0xAB)
            && buf == vec![0xABu8; buf.len()].as_slice()
        {
            self.run += buf.len() as u64;
        } else {
            for &b in buf {
                if b == 0xAB {
                    self.run += 1;
                } else {
                    self.run = 0;
                }
                self.ab_run_max = self.ab_run_max.max(self.run);
            }
        }
        self.ab_run_max = self.ab_run_max.max(self.run);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn hundred_thousand_files_in_one_directory_needs_root_loop() {
    if !require(
        "hundred_thousand_files_in_one_directory_needs_root_loop",
        &[
            Requirement::Root,
            Requirement::Command("e2fsck"),
            Requirement::Command("mount"),
            Requirement::Path("/dev/loop-control"),
        ],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tar_path = tmp.path().join("wide.tar");
    let n = 100_000;
    {
        let mut t = tar::Builder::new(std::io::BufWriter::new(
            std::fs::File::create(&tar_path).unwrap(),
        ));
        for i in 0..n {
            let data = if i % 1000 == 0 {
                format!("file {i}\n")
            } else {
                String::new()
            };
            let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
            t.append_data(&mut h, format!("wide/f{i:06}"), data.as_bytes())
                .unwrap();
        }
        t.into_inner().unwrap();
    }
    let img = tmp.path().join("wide.img");
    let start = Instant::now();
    build_from(
        std::fs::File::open(&tar_path).unwrap(),
        &img,
        Options::default(),
    );
    eprintln!("built 100k-entry directory in {:?}", start.elapsed());
    e2fsck_clean(&img);
    let m = Mount::loop_ro(&img, &tmp.path().join("m"));
    let names: Vec<_> = std::fs::read_dir(m.dir.join("wide")).unwrap().collect();
    assert_eq!(names.len(), n);
    // Lookups by name in the linear directory (cold dentry cache for each name).
    let start = Instant::now();
    for i in (0..n).step_by(97) {
        let p = m.dir.join(format!("wide/f{i:06}"));
        assert!(std::fs::symlink_metadata(&p).unwrap().is_file());
    }
    eprintln!(
        "{} lookups in the 100k linear directory: {:?}",
        n / 97 + 1,
        start.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(m.dir.join("wide/f042000")).unwrap(),
        "file 42000\n"
    );
}

#[test]
fn hashed_directories_of_one_and_two_levels_pass_e2fsck_needs_e2fsck_debugfs() {
    if !require(
        "hashed_directories_of_one_and_two_levels_pass_e2fsck_needs_e2fsck_debugfs",
        &[
            Requirement::Command("e2fsck"),
            Requirement::Command("debugfs"),
        ],
    ) {
        return;
    }
    let mut t = tar::Builder::new(Vec::new());
    let long = "n".repeat(200);
    for i in 0..20_000 {
        let mut h = header(tar::EntryType::Regular, 0o644, 0);
        t.append_data(&mut h, format!("short/{i}"), std::io::empty())
            .unwrap();
        let mut h = header(tar::EntryType::Regular, 0o644, 0);
        t.append_data(&mut h, format!("long/{long}{i}"), std::io::empty())
            .unwrap();
    }
    // Names with bytes >= 0x80 hash differently under the signed and unsigned variants.
    for i in 0..2_000 {
        let mut h = header(tar::EntryType::Regular, 0o644, 0);
        t.append_data(
            &mut h,
            format!("utf8/\u{e9}t\u{e9}-\u{6587}{i}"),
            std::io::empty(),
        )
        .unwrap();
    }
    let tar = t.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("hashed.img");
    build_from(Cursor::new(tar), &img, Options::default());
    e2fsck_clean(&img);
    for (dir, levels) in [("short", 0), ("long", 1), ("utf8", 0)] {
        let st = debugfs_stat(&img, &format!("/{dir}"));
        assert!(st.contains("Flags: 0x81000"), "{dir} is hashed: {st}");
        let out = std::process::Command::new("debugfs")
            .arg("-R")
            .arg(format!("htree /{dir}"))
            .arg(&img)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("Indirect levels: {levels}")),
            "{dir}: {}",
            &text[..text.len().min(400)]
        );
    }
    // The Reader reads hashed directories as well.
    let f = std::fs::File::open(&img).unwrap();
    let mut r = Reader::open(std::io::BufReader::new(f)).unwrap();
    let seen = read_entries(&r.write_tar(Vec::new(), ReadOptions::default()).unwrap());
    assert_eq!(seen.len(), 1 + 3 + 42_000);
}

/// A tar with every kind of entry, PAX times and xattrs, and replacements.
fn every_kind_tar() -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let mut add = |path: &str,
                   ty: tar::EntryType,
                   mode: u32,
                   data: &[u8],
                   pax: &[(&str, &[u8])],
                   link: Option<&str>| {
        if !pax.is_empty() {
            t.append_pax_extensions(pax.iter().copied()).unwrap();
        }
        let mut h = header(ty, mode, data.len() as u64);
        h.set_uid(100_000);
        h.set_gid(70_000);
        if ty == tar::EntryType::Block {
            h.set_device_major(259).unwrap();
            h.set_device_minor(70_000).unwrap();
        }
        match link {
            Some(l) => t.append_link(&mut h, path, l).unwrap(),
            None if path.contains("..") || path.starts_with('/') => {
                raw_name(&mut h, path);
                h.set_cksum();
                t.append(&h, data).unwrap();
            }
            None => t.append_data(&mut h, path, data).unwrap(),
        }
    };
    use tar::EntryType as E;
    let big_value = vec![b'v'; 2000];
    add(
        "dir",
        E::Directory,
        0o2755,
        b"",
        &[("mtime", b"1600000000.123456789")],
        None,
    );
    add("dir/sticky", E::Directory, 0o1777, b"", &[], None);
    add(
        "dir/file",
        E::Regular,
        0o4711,
        b"hello",
        &[
            ("mtime", b"1600000001.5"),
            ("SCHILY.xattr.user.small", b"s"),
        ],
        None,
    );
    add(
        "dir/bigx",
        E::Regular,
        0o644,
        b"x",
        &[
            ("SCHILY.xattr.user.big", &big_value),
            ("SCHILY.xattr.trusted.t", b"1"),
        ],
        None,
    );
    add("dir/link", E::Link, 0o644, b"", &[], Some("dir/file"));
    add("dir/link2", E::Link, 0o644, b"", &[], Some("dir/file"));
    add("fast", E::Symlink, 0o777, b"", &[], Some("dir/file"));
    let long = "t/".repeat(100);
    add("slow", E::Symlink, 0o777, b"", &[], Some(&long));
    add("blk", E::Block, 0o600, b"", &[], None);
    add("fifo", E::Fifo, 0o644, b"", &[], None);
    // Replacements: a file by a directory, a directory by a file, a file by a file.
    add("swap", E::Regular, 0o644, b"old", &[], None);
    add("swap", E::Directory, 0o755, b"", &[], None);
    add("swap/in", E::Regular, 0o644, b"in", &[], None);
    add("gone", E::Directory, 0o755, b"", &[], None);
    add("gone/deep", E::Regular, 0o644, b"deep", &[], None);
    add("gone", E::Regular, 0o600, b"now a file", &[], None);
    add("dir/file", E::Regular, 0o640, b"replaced", &[], None);
    // `..` and absolute names stay inside.
    add("../../escape", E::Regular, 0o644, b"e", &[], None);
    add("/abs", E::Regular, 0o644, b"a", &[], None);
    t.into_inner().unwrap()
}

/// Everything about an entry the Reader writes back.
#[derive(Debug, PartialEq)]
struct Seen {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    data: Vec<u8>,
    link: Option<String>,
    pax: BTreeMap<String, Vec<u8>>,
    dev: (u32, u32),
}

fn read_entries(tar: &[u8]) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut pax = BTreeMap::new();
        if let Some(p) = e.pax_extensions().unwrap() {
            for x in p {
                let x = x.unwrap();
                pax.insert(x.key().unwrap().to_string(), x.value_bytes().to_vec());
            }
        }
        let h = e.header().clone();
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(
            path,
            Seen {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                data,
                link,
                pax,
                dev: (
                    h.device_major().unwrap().unwrap(),
                    h.device_minor().unwrap().unwrap(),
                ),
            },
        );
    }
    out
}

#[test]
fn every_entry_kind_survives_build_and_read_needs_e2fsck_debugfs() {
    if !require(
        "every_entry_kind_survives_build_and_read_needs_e2fsck_debugfs",
        &[
            Requirement::Command("e2fsck"),
            Requirement::Command("debugfs"),
        ],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("kinds.img");
    build_from(Cursor::new(every_kind_tar()), &img, Options::default());
    e2fsck_clean(&img);
    let st = debugfs_stat(&img, "/dir");
    assert!(
        st.contains("mtime: 0x5f5e1000:1d6f3454"),
        "nanoseconds in the extra field: {st}"
    );
    let st = debugfs_stat(&img, "/dir/bigx");
    assert!(
        st.contains("File ACL: ") && !st.contains("File ACL: 0\n"),
        "big xattr in a block: {st}"
    );

    let f = std::fs::File::open(&img).unwrap();
    let mut r = Reader::open(std::io::BufReader::new(f)).unwrap();
    let tar = r.write_tar(Vec::new(), ReadOptions::default()).unwrap();
    let seen = read_entries(&tar);
    let names: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "./",
            "abs",
            "blk",
            "dir/",
            "dir/bigx",
            "dir/file",
            "dir/link",
            "dir/link2",
            "dir/sticky/",
            "escape",
            "fast",
            "fifo",
            "gone",
            "slow",
            "swap/",
            "swap/in"
        ]
    );
    let d = &seen["dir/"];
    assert_eq!(
        (d.kind, d.mode, d.uid, d.gid),
        (tar::EntryType::Directory, 0o2755, 100_000, 70_000)
    );
    assert_eq!(d.pax["mtime"], b"1600000000.123456789");
    assert_eq!(seen["dir/sticky/"].mode, 0o1777);
    let f = &seen["dir/bigx"];
    assert_eq!(f.pax["SCHILY.xattr.user.big"], vec![b'v'; 2000]);
    assert_eq!(f.pax["SCHILY.xattr.trusted.t"], b"1");
    // The replaced dir/file keeps no link to the old inode, which dir/link* still hold.
    let file = &seen["dir/file"];
    assert_eq!(
        (file.data.as_slice(), file.mode),
        (b"replaced".as_slice(), 0o640)
    );
    assert_eq!(seen["dir/link"].data, b"hello");
    assert_eq!(seen["dir/link"].mode, 0o4711);
    assert_eq!(seen["dir/link"].pax["SCHILY.xattr.user.small"], b"s");
    assert_eq!(seen["dir/link"].pax["mtime"], b"1600000001.500000000");
    assert_eq!(seen["dir/link2"].kind, tar::EntryType::Link);
    assert_eq!(seen["dir/link2"].link.as_deref(), Some("dir/link"));
    assert!(debugfs_stat(&img, "/dir/link").contains("Links: 2"));
    assert_eq!(seen["fast"].link.as_deref(), Some("dir/file"));
    assert_eq!(
        seen["slow"].link.as_deref(),
        Some("t/".repeat(100).as_str())
    );
    assert_eq!(
        (seen["blk"].kind, seen["blk"].dev),
        (tar::EntryType::Block, (259, 70_000))
    );
    assert_eq!(seen["fifo"].kind, tar::EntryType::Fifo);
    assert_eq!(seen["gone"].data, b"now a file");
    assert_eq!(seen["swap/in"].data, b"in");
    assert_eq!(seen["escape"].data, b"e");
    assert_eq!(seen["abs"].data, b"a");
}

#[test]
fn whiteouts_convert_both_ways_needs_e2fsck() {
    if !require(
        "whiteouts_convert_both_ways_needs_e2fsck",
        &[Requirement::Command("e2fsck")],
    ) {
        return;
    }
    let mut t = tar::Builder::new(Vec::new());
    for (path, ty) in [
        ("d", tar::EntryType::Directory),
        ("d/.wh..wh..opq", tar::EntryType::Regular),
        ("d/.wh.x", tar::EntryType::Regular),
        ("d/kept", tar::EntryType::Regular),
        ("e/.wh..wh.plnk", tar::EntryType::Regular),
    ] {
        let mut h = header(ty, 0o644, 0);
        t.append_data(&mut h, path, std::io::empty()).unwrap();
    }
    let tar = t.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("wh.img");
    build_from(
        Cursor::new(tar),
        &img,
        Options {
            whiteouts: Whiteouts::Overlay,
            ..Options::default()
        },
    );
    e2fsck_clean(&img);
    let f = std::fs::File::open(&img).unwrap();
    let mut r = Reader::open(std::io::BufReader::new(f)).unwrap();
    let kept = read_entries(&r.write_tar(Vec::new(), ReadOptions::default()).unwrap());
    assert_eq!(kept["d/x"].kind, tar::EntryType::Char);
    assert_eq!(kept["d/"].pax["SCHILY.xattr.trusted.overlay.opaque"], b"y");
    assert!(!kept.contains_key("e/.wh..wh.plnk"));
    let oci = read_entries(
        &r.write_tar(
            Vec::new(),
            ReadOptions {
                whiteouts: WhiteoutsOut::Oci,
            },
        )
        .unwrap(),
    );
    // Whiteout metadata of other formats (`.wh..wh.plnk`) is left out by the tar engine
    // with no side effect, so its directory `e` is not made either.
    let names: Vec<&str> = oci.keys().map(String::as_str).collect();
    assert_eq!(names, ["./", "d/", "d/.wh..wh..opq", "d/.wh.x", "d/kept"]);
    assert!(
        !oci["d/"]
            .pax
            .contains_key("SCHILY.xattr.trusted.overlay.opaque")
    );
}

#[test]
fn limits_and_bad_links_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    // Over the maximum size.
    let out = std::fs::File::create(tmp.path().join("small.img")).unwrap();
    let mut b = Builder::new(
        out,
        Options {
            max_size: 1 << 20,
            ..Options::default()
        },
    )
    .unwrap();
    let err = b.append_tar(one_file_tar("f", 2 << 20, 1)).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { entry: Some(ref e), .. } if e == "f"),
        "{err}"
    );
    // A hard link to nothing, and to a directory.
    for (target, reason) in [("missing", "does not exist"), ("d", "is a directory")] {
        let mut t = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        t.append_data(&mut h, "d", std::io::empty()).unwrap();
        let mut h = header(tar::EntryType::Link, 0o644, 0);
        t.append_link(&mut h, "l", target).unwrap();
        let tar = t.into_inner().unwrap();
        let out = Cursor::new(Vec::new());
        let mut b = Builder::new(out, Options::default()).unwrap();
        let err = b.append_tar(Cursor::new(tar)).unwrap_err();
        assert!(
            matches!(err, Error::HardLinkTarget { reason: r, .. } if r == reason),
            "{err}"
        );
    }
}

#[test]
fn non_utf8_names_and_targets_survive_byte_for_byte_needs_e2fsck() {
    if !require(
        "non_utf8_names_and_targets_survive_byte_for_byte_needs_e2fsck",
        &[Requirement::Command("e2fsck")],
    ) {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let target = std::ffi::OsStr::from_bytes(b"l\xffnk");
    let mut t = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 0o644, 2);
    t.append_data(&mut h, name, &b"hi"[..]).unwrap();
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    t.append_link(&mut h, "sym", target).unwrap();
    let mut h = header(tar::EntryType::Link, 0o644, 0);
    t.append_link(&mut h, "hard", name).unwrap();
    let tar = t.into_inner().unwrap();
    let mut b = Builder::new(Cursor::new(Vec::new()), Options::default()).unwrap();
    b.append_tar(Cursor::new(tar)).unwrap();
    let img = b.finish().unwrap().0.into_inner();
    common::e2fsck_clean_bytes(&img);
    let mut r = Reader::open(Cursor::new(img)).unwrap();
    let out = r.write_tar(Vec::new(), ReadOptions::default()).unwrap();
    let mut a = tar::Archive::new(out.as_slice());
    let mut seen = Vec::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        seen.push((
            e.path_bytes().into_owned(),
            e.link_name_bytes().map(|l| l.into_owned()),
        ));
    }
    assert_eq!(
        seen,
        [
            (b"./".to_vec(), None),
            (b"caf\xe9".to_vec(), None),
            (b"hard".to_vec(), Some(b"caf\xe9".to_vec())),
            (b"sym".to_vec(), Some(b"l\xffnk".to_vec())),
        ]
    );
}
