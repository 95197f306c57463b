//! Seed corpora made from real inputs, regenerated on every run into
//! `target/fuzz-seeds/TARGET/` (nothing binary is checked in):
//!
//! - **disk images**: `qemu-img convert` to every subformat the crate reads (VMDK
//!   monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat,
//!   streamOptimized; VPC dynamic and fixed; VHDX dynamic and fixed), a qemu VMDK child,
//!   and the project's own writer (`diskimg`): every format, and VMDK, VHD and VHDX
//!   differencing chains; one VHDX with a log entry waiting to be replayed. Whole images go
//!   to `open_image` (the small ones) and `open_image_set` (as `testkit::fileset`s, parents
//!   and extents included); their headers, footers, tables, descriptors and logs, cut out,
//!   go to the targets of each structure;
//! - **ext4 images**: `mkfs.ext4 -d` of a sample tree with several feature sets (1 KiB and
//!   4 KiB blocks, `metadata_csum`, block maps, `inline_data`, `meta_bg`, 128-byte inodes,
//!   several groups with a journal) and the project's builder (`tar2ext4`, with and without
//!   `metadata_csum` and overlay whiteouts); the small ones as they are, all of them as
//!   one-file sets, which the target reads sparse;
//! - **tars**: `layercheck.py gen` (its chain layers, the big first one with its file data
//!   cut short, and its hostile layers; the script is called, never copied), GNU tar of the
//!   sample tree in every format it writes (gnu, oldgnu, pax with xattrs and sparse files,
//!   ustar, v7), gzip and zstd copies, and testkit's hand-made hostile archives.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use testkit::fileset::{FileSet, SparseFile};

use crate::bench::workspace_root;
use crate::fuzz::target_dir;

/// Targets that read disk images, one file or several.
const DISK_TARGETS: &[&str] = &[
    "open_image",
    "open_image_set",
    "vmdk_header",
    "vmdk_descriptor",
    "vhd_footer",
    "vhd_dynamic_header",
    "vhdx_header",
    "vhdx_region_table",
    "vhdx_metadata",
    "vhdx_log",
];
/// Targets that read tar streams.
const TAR_TARGETS: &[&str] = &["builder_tar", "ingest", "apply_dir"];
/// Targets that read ext4 images.
const EXT4_TARGETS: &[&str] = &["reader_image"];
/// Largest whole image given to `open_image` (bigger ones only go in as file sets).
const MAX_RAW_IMAGE: u64 = 1 << 20;
/// Largest ext4 image given to `reader_image` as it is (bigger ones only as file sets).
const MAX_RAW_EXT4: u64 = 1 << 20;
/// Virtual size of the disk images.
const DISK_SIZE: u64 = 4 << 20;

/// Writes the seeds of `targets` under `root/TARGET/`, replacing what was there.
pub fn generate(root: &Path, targets: &[&str]) -> Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root).with_context(|| format!("remove {}", root.display()))?;
    }
    let work = root.join(".work");
    mkdir(&work)?;
    let wants = |list: &[&str]| targets.iter().any(|t| list.contains(t));
    let seeds = Seeds {
        root: root.to_path_buf(),
    };
    if wants(DISK_TARGETS) {
        eprintln!("xtask fuzz: making disk image seeds");
        disk_seeds(&seeds, &work.join("disks"))?;
    }
    let tree = work.join("tree");
    if wants(TAR_TARGETS) || wants(EXT4_TARGETS) {
        sample_tree(&tree)?;
    }
    let mut tars = Vec::new();
    if wants(TAR_TARGETS) || wants(EXT4_TARGETS) {
        eprintln!("xtask fuzz: making tar seeds");
        tars = tar_seeds(&work.join("tars"), &tree)?;
        for t in TAR_TARGETS {
            for (name, path) in &tars {
                seeds.copy(t, name, path)?;
            }
        }
    }
    if wants(EXT4_TARGETS) {
        eprintln!("xtask fuzz: making ext4 image seeds");
        for (name, path) in ext4_seeds(&work.join("ext4"), &tree, &tars)? {
            // Small images as they are, every image as a one-file set (read sparse).
            let bytes = read(&path)?;
            if bytes.len() as u64 <= MAX_RAW_EXT4 {
                seeds.write("reader_image", &name, &bytes)?;
            }
            let set = FileSet {
                files: vec![SparseFile::from_bytes(b"image", &bytes)],
            };
            seeds.write("reader_image", &format!("{name}.fset"), &set.encode())?;
        }
    }
    std::fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    Ok(())
}

/// The seed directories.
struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn write(&self, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.root.join(target);
        mkdir(&dir)?;
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))
    }

    fn copy(&self, target: &str, name: &str, from: &Path) -> Result<()> {
        self.write(target, name, &read(from)?)
    }
}

fn mkdir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

/// Runs `cmd`, failing with its output when it fails.
fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Builds a workspace example and returns its path.
fn example(package: &str, name: &str) -> Result<PathBuf> {
    build(package, "--example", name)?;
    Ok(target_dir().join("debug").join("examples").join(name))
}

/// Builds the binary `name` of `package` (debug) and returns its path.
fn binary(package: &str, name: &str) -> Result<PathBuf> {
    build(package, "--bin", name)?;
    Ok(target_dir().join("debug").join(name))
}

fn build(package: &str, kind: &str, name: &str) -> Result<()> {
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--quiet", "-p", package, kind, name])
            .current_dir(workspace_root()),
    )
}

/// Bytes with a recognisable pattern (never all zero in a sector).
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) | 1)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Disk images

/// One image: the file to open first, and the directory holding it with every file it
/// needs (extents, parents).
struct Image {
    name: String,
    dir: PathBuf,
    main: PathBuf,
}

impl Image {
    fn new(work: &Path, name: &str, main: &str) -> Result<Image> {
        let dir = work.join(name);
        mkdir(&dir)?;
        Ok(Image {
            name: name.to_string(),
            main: dir.join(main),
            dir,
        })
    }

    /// Every file of the image, the main one first.
    fn files(&self) -> Result<Vec<PathBuf>> {
        let mut rest: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("list {}", self.dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && *p != self.main)
            .collect();
        rest.sort();
        Ok(std::iter::once(self.main.clone()).chain(rest).collect())
    }
}

fn disk_seeds(seeds: &Seeds, work: &Path) -> Result<()> {
    mkdir(work)?;
    // A disk with data at its start, past its first MiB, and in its last sector.
    let mut data = vec![0u8; DISK_SIZE as usize];
    data[..4096].copy_from_slice(&pattern(4096, 1));
    data[(1 << 20) + 4096..(1 << 20) + 8192].copy_from_slice(&pattern(4096, 2));
    let n = data.len();
    data[n - 512..].copy_from_slice(&pattern(512, 3));
    let raw_data = work.join("data.raw");
    let raw_empty = work.join("empty.raw");
    std::fs::write(&raw_data, &data).context("write data.raw")?;
    std::fs::write(&raw_empty, vec![0u8; DISK_SIZE as usize]).context("write empty.raw")?;

    let mut images = Vec::new();
    let qemu: &[(&str, &str, &str, &str)] = &[
        (
            "vmdk-sparse",
            "vmdk",
            "subformat=monolithicSparse",
            "disk.vmdk",
        ),
        ("vmdk-flat", "vmdk", "subformat=monolithicFlat", "disk.vmdk"),
        (
            "vmdk-2gb-sparse",
            "vmdk",
            "subformat=twoGbMaxExtentSparse",
            "disk.vmdk",
        ),
        (
            "vmdk-2gb-flat",
            "vmdk",
            "subformat=twoGbMaxExtentFlat",
            "disk.vmdk",
        ),
        (
            "vmdk-stream",
            "vmdk",
            "subformat=streamOptimized",
            "disk.vmdk",
        ),
        ("vpc-dynamic", "vpc", "subformat=dynamic", "disk.vhd"),
        (
            "vpc-fixed",
            "vpc",
            "subformat=fixed,force_size=on",
            "disk.vhd",
        ),
        ("vhdx-dynamic", "vhdx", "subformat=dynamic", "disk.vhdx"),
        ("vhdx-fixed", "vhdx", "subformat=fixed", "disk.vhdx"),
    ];
    for (src, raw) in [("data", &raw_data), ("empty", &raw_empty)] {
        for (name, format, opts, file) in qemu {
            let img = Image::new(work, &format!("qemu-{name}-{src}"), file)?;
            run(Command::new("qemu-img")
                .args(["convert", "-q", "-f", "raw", "-O", format, "-o", opts])
                .arg(raw)
                .arg(&img.main))?;
            images.push(img);
        }
    }
    // A qemu VMDK child, its parent beside it under the name it records.
    let child = Image::new(work, "qemu-vmdk-child", "child.vmdk")?;
    std::fs::copy(
        work.join("qemu-vmdk-sparse-data").join("disk.vmdk"),
        child.dir.join("base.vmdk"),
    )
    .context("copy the VMDK parent")?;
    run(Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "vmdk",
            "-b",
            "base.vmdk",
            "-F",
            "vmdk",
            "child.vmdk",
        ])
        .current_dir(&child.dir))?;
    images.push(child);

    // The project's own writer: every format from the same data, and chains.
    let diskimg = binary("disk-image", "diskimg")?;
    let ours: &[(&str, &str)] = &[
        ("vmdk", "disk.vmdk"),
        ("vmdk-flat", "disk.vmdk"),
        ("vmdk-stream", "disk.vmdk"),
        ("vhd-fixed", "disk.vhd"),
        ("vhd-dynamic", "disk.vhd"),
        ("vhdx", "disk.vhdx"),
    ];
    for (format, file) in ours {
        let img = Image::new(work, &format!("ours-{format}"), file)?;
        run(Command::new(&diskimg)
            .args(["convert", "--format", format])
            .arg(&raw_data)
            .arg(&img.main))?;
        images.push(img);
    }
    for (format, ext, depth) in [
        ("vmdk", "vmdk", 2),
        ("vhd-dynamic", "vhd", 2),
        ("vhdx", "vhdx", 3),
    ] {
        let names: Vec<String> = (0..depth).map(|i| format!("layer{i}.{ext}")).collect();
        let img = Image::new(work, &format!("ours-{format}-chain"), &names[depth - 1])?;
        for (i, name) in names.iter().enumerate() {
            let mut create = Command::new(&diskimg);
            create.args(["create", "--format", format]);
            if i == 0 {
                create.args(["--size", &DISK_SIZE.to_string()]);
            } else {
                create.args(["--parent", &names[i - 1]]);
            }
            run(create.arg(name).current_dir(&img.dir))?;
            let offset = (i as u64 * (1 << 20) + 4096).to_string();
            let write = format!(
                "head -c 4096 {} | {} write {name} --offset {offset}",
                raw_data.display(),
                diskimg.display()
            );
            run(Command::new("sh")
                .args(["-c", &write])
                .current_dir(&img.dir))?;
        }
        images.push(img);
    }
    // A VHDX closed with a log entry still to replay.
    let logged = Image::new(work, "vhdx-pending-log", "disk.vhdx")?;
    let mut bytes = read(&work.join("qemu-vhdx-dynamic-data").join("disk.vhdx"))?;
    add_vhdx_log_entry(&mut bytes)?;
    std::fs::write(&logged.main, &bytes).context("write the logged VHDX")?;
    images.push(logged);

    for img in &images {
        image_seeds(seeds, img)?;
    }
    Ok(())
}

/// Every seed one image gives.
fn image_seeds(seeds: &Seeds, img: &Image) -> Result<()> {
    let files = img.files()?;
    let mut set = FileSet::default();
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        set.files
            .push(SparseFile::from_bytes(name.as_bytes(), &read(f)?));
    }
    seeds.write(
        "open_image_set",
        &format!("{}.fset", img.name),
        &set.encode(),
    )?;
    for (i, f) in files.iter().enumerate() {
        let bytes = read(f)?;
        let tag = format!("{}-{i}", img.name);
        if files.len() == 1 && bytes.len() as u64 <= MAX_RAW_IMAGE {
            seeds.write("open_image", &tag, &bytes)?;
        }
        structure_seeds(seeds, &tag, &bytes)?;
    }
    Ok(())
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut x = [0u8; 8];
        x.copy_from_slice(s);
        u64::from_le_bytes(x)
    })
}

fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut x = [0u8; 8];
        x.copy_from_slice(s);
        u64::from_be_bytes(x)
    })
}

/// `len` bytes at `at`, zero-padded past the end of `b`.
fn slice(b: &[u8], at: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let at = at.min(b.len() as u64) as usize;
    let n = (b.len() - at).min(len);
    out[..n].copy_from_slice(&b[at..at + n]);
    out
}

/// `b` without its trailing zeros, rounded up to a multiple of `unit` (and at least one).
fn trimmed(mut b: Vec<u8>, unit: usize) -> Vec<u8> {
    let used = b.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
    b.truncate(used.next_multiple_of(unit).max(unit).min(b.len()));
    b
}

/// The GUID of the VHDX metadata region, as stored.
const VHDX_METADATA_REGION: [u8; 16] = [
    0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e,
];

/// The structures of one image file, cut out for the targets of each.
fn structure_seeds(seeds: &Seeds, tag: &str, b: &[u8]) -> Result<()> {
    if b.starts_with(b"KDMV") {
        seeds.write("vmdk_header", tag, &slice(b, 0, 512))?;
        // descriptorOffset and descriptorSize, in sectors.
        let (at, len) = (le64(b, 28), le64(b, 36));
        if at > 0 && len > 0 && len < 2048 {
            let text = slice(b, at * 512, (len * 512) as usize);
            let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
            seeds.write("vmdk_descriptor", tag, &text[..end])?;
        }
    }
    if b.starts_with(b"# Disk DescriptorFile") {
        seeds.write("vmdk_descriptor", tag, b)?;
    }
    if b.len() >= 512 && b[b.len() - 512..].starts_with(b"conectix") {
        let footer = &b[b.len() - 512..];
        seeds.write("vhd_footer", tag, footer)?;
        let data_offset = be64(footer, 16);
        if data_offset != u64::MAX && data_offset < b.len() as u64 {
            let mut input = be64(footer, 48).to_le_bytes().to_vec();
            input.extend_from_slice(&slice(b, data_offset, 1024));
            seeds.write("vhd_dynamic_header", tag, &input)?;
        }
    }
    if b.starts_with(b"vhdxfile") {
        let mut current = (0u64, Vec::new());
        for (i, at) in [64u64 << 10, 128 << 10].into_iter().enumerate() {
            let h = slice(b, at, 4096);
            seeds.write("vhdx_header", &format!("{tag}-{i}"), &h)?;
            if le64(&h, 8) >= current.0 {
                current = (le64(&h, 8), h);
            }
        }
        let table = slice(b, 192 << 10, 64 << 10);
        seeds.write("vhdx_region_table", tag, &trimmed(table.clone(), 512))?;
        for e in 0..(le32(&table, 8) as usize).min(16) {
            let entry = slice(&table, (16 + 32 * e) as u64, 32);
            if entry[..16] == VHDX_METADATA_REGION {
                let region = slice(b, le64(&entry, 16), le32(&entry, 24) as usize);
                seeds.write("vhdx_metadata", tag, &trimmed(region, 4096))?;
            }
        }
        let h = current.1;
        let log = slice(b, le64(&h, 72), (le32(&h, 68) as usize).min(1 << 20));
        let mut input = h[48..64].to_vec();
        input.extend_from_slice(&trimmed(log, 4096));
        seeds.write("vhdx_log", tag, &input)?;
    }
    Ok(())
}

/// CRC-32C (Castagnoli), as VHDX checksums use it.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Puts a one-sector log entry (MS-VHDX 2.3) in the log of the VHDX `b`, and its GUID in
/// both headers, as a writer that stopped before clearing its log leaves the file. The
/// entry writes a sector past the end of the file.
fn add_vhdx_log_entry(b: &mut [u8]) -> Result<()> {
    let guid: [u8; 16] = *b"strata-fuzz-log!";
    let header = slice(b, 64 << 10, 4096);
    let (log_offset, log_len) = (le64(&header, 72), le32(&header, 68) as usize);
    if log_len < 8192 || log_offset as usize + log_len > b.len() {
        bail!("the qemu VHDX has no room for a log entry (log {log_len} bytes at {log_offset})");
    }
    let file_len = b.len() as u64;
    let sector = pattern(4096, 7);
    let mut entry = vec![0u8; 8192];
    entry[..4].copy_from_slice(b"loge");
    entry[8..12].copy_from_slice(&8192u32.to_le_bytes());
    entry[16..24].copy_from_slice(&1u64.to_le_bytes()); // sequence
    entry[24..28].copy_from_slice(&1u32.to_le_bytes()); // descriptors
    entry[32..48].copy_from_slice(&guid);
    entry[48..56].copy_from_slice(&file_len.to_le_bytes());
    entry[56..64].copy_from_slice(&(file_len + 4096).to_le_bytes());
    let d = 64;
    entry[d..d + 4].copy_from_slice(b"desc");
    entry[d + 4..d + 8].copy_from_slice(&sector[4092..]);
    entry[d + 8..d + 16].copy_from_slice(&sector[..8]);
    entry[d + 16..d + 24].copy_from_slice(&file_len.to_le_bytes());
    entry[d + 24..d + 32].copy_from_slice(&1u64.to_le_bytes());
    let s = 4096;
    entry[s..s + 4].copy_from_slice(b"data");
    entry[s + 8..s + 4092].copy_from_slice(&sector[8..4092]);
    entry[s + 4092..s + 4096].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32c(&entry);
    entry[4..8].copy_from_slice(&crc.to_le_bytes());
    let at = log_offset as usize;
    b[at..at + entry.len()].copy_from_slice(&entry);
    for h in [64usize << 10, 128 << 10] {
        b[h + 48..h + 64].copy_from_slice(&guid);
        b[h + 4..h + 8].fill(0);
        let crc = crc32c(&b[h..h + 4096]);
        b[h + 4..h + 8].copy_from_slice(&crc.to_le_bytes());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tars

/// A small tree with one of everything a layer holds: nested directories, files of
/// several sizes (one sparse), short and long symlinks, a hard link, a FIFO, a user xattr,
/// names past the 100 bytes of a tar header, OCI whiteouts, and (as root) an overlay
/// whiteout device and a block device.
fn sample_tree(tree: &Path) -> Result<()> {
    let dirs = [
        "etc",
        "usr/bin",
        "usr/lib",
        "usr/share/many",
        "empty",
        "opaque",
    ];
    for d in dirs {
        mkdir(&tree.join(d))?;
    }
    let write = |rel: &str, bytes: &[u8]| -> Result<()> {
        let p = tree.join(rel);
        std::fs::write(&p, bytes).with_context(|| format!("write {}", p.display()))
    };
    write("etc/hostname", b"strata\n")?;
    write(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    )?;
    write("usr/bin/tool", &pattern(5000, 9))?;
    // Past 12 blocks of 1 KiB: a block map needs an indirect block.
    write("usr/lib/big", &pattern(20_000, 4))?;
    for i in 0..60 {
        write(
            &format!("usr/share/many/file-{i:03}"),
            format!("{i}\n").as_bytes(),
        )?;
    }
    write(&format!("usr/share/{}", "n".repeat(120)), b"long name\n")?;
    // Data, a 12 KiB hole, data.
    let sparse = tree.join("usr/lib/sparse");
    let f =
        std::fs::File::create(&sparse).with_context(|| format!("create {}", sparse.display()))?;
    f.write_all_at(&pattern(4096, 5), 0)
        .and_then(|()| f.write_all_at(&pattern(4096, 6), 16384))
        .with_context(|| format!("write {}", sparse.display()))?;
    write(".wh.removed", b"")?;
    write("opaque/.wh..wh..opq", b"")?;
    let script = format!(
        "set -e; cd '{}'; \
         chmod 755 usr/bin/tool; chmod 4755 usr/bin/tool; \
         ln -s etc/hostname link-short; ln -s {} link-long; ln etc/hostname hard; \
         mkfifo fifo; \
         python3 -c 'import os; os.setxattr(\"etc/hostname\", \"user.origin\", b\"fuzz-seed\")'; \
         if [ \"$(id -u)\" = 0 ]; then mknod whiteout c 0 0; mknod blockdev b 7 0; fi",
        tree.display(),
        "a/".repeat(40) + "target"
    );
    run(Command::new("sh").args(["-c", &script]))
}

/// Every tar seed, by name.
fn tar_seeds(work: &Path, tree: &Path) -> Result<Vec<(String, PathBuf)>> {
    mkdir(work)?;
    let mut out = Vec::new();
    // layercheck.py: the conformance chain and hostile layers.
    let lc = work.join("layercheck");
    run(Command::new("python3")
        .arg(testkit::Layercheck::script())
        .arg("gen")
        .arg(&lc))?;
    for k in 1..=3 {
        let layer = lc.join("chain").join(format!("layer{k}.tar"));
        let slim = work.join(format!("layercheck-layer{k}.tar"));
        std::fs::write(&slim, slim_tar(&read(&layer)?, 4096))
            .with_context(|| format!("write {}", slim.display()))?;
        out.push((format!("layercheck-layer{k}.tar"), slim));
    }
    let hostile = lc.join("hostile");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&hostile)
        .with_context(|| format!("list {}", hostile.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    for p in names {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((format!("layercheck-hostile-{name}"), p));
    }
    // GNU tar, in every format it writes.
    let formats: &[(&str, &[&str])] = &[
        ("gnu", &["--format=gnu"]),
        ("gnu-sparse", &["--format=gnu", "--sparse"]),
        ("oldgnu", &["--format=oldgnu"]),
        ("pax", &["--format=pax", "--xattrs", "--xattrs-include=*"]),
        ("pax-sparse", &["--format=pax", "--sparse"]),
        ("ustar", &["--format=ustar"]),
        ("v7", &["--format=v7"]),
    ];
    for (name, flags) in formats {
        let tar = work.join(format!("gnutar-{name}.tar"));
        // ustar and v7 cannot hold everything: GNU tar leaves those entries out and
        // says so, which is fine for a seed.
        let _ = Command::new("tar")
            .args(*flags)
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(tree)
            .arg(".")
            .output();
        if tar.metadata().is_ok_and(|m| m.len() > 0) {
            out.push((format!("gnutar-{name}.tar"), tar));
        }
    }
    let plain = work.join("gnutar-gnu.tar");
    for (tool, ext) in [("gzip -n -c", "gz"), ("zstd -q -c", "zst")] {
        let path = work.join(format!("gnutar-gnu.tar.{ext}"));
        let cmd = format!("{tool} '{}' > '{}'", plain.display(), path.display());
        run(Command::new("sh").args(["-c", &cmd]))?;
        out.push((format!("gnutar-gnu.tar.{ext}"), path));
    }
    // testkit's hand-made hostile archives.
    let mut handmade: Vec<(String, Vec<u8>)> = testkit::tarball::nul_names()
        .into_iter()
        .map(|(n, b)| (format!("testkit-nul-{n}.tar"), b))
        .collect();
    handmade.push((
        "testkit-overlay-marker-xattrs.tar".into(),
        testkit::tarball::overlay_marker_xattrs(),
    ));
    handmade.push((
        "testkit-same-layer-whiteouts.tar".into(),
        testkit::tarball::same_layer_whiteouts(),
    ));
    for (name, bytes) in handmade {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let path = work.join(&safe);
        std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        out.push((safe, path));
    }
    Ok(out)
}

/// `tar` with each regular file's data cut to at most `max` bytes (sizes and header
/// checksums rewritten), so a layer of big random files makes a small seed with the same
/// entries. Stops at the first block that is not a header it understands.
fn slim_tar(tar: &[u8], max: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let mut h = tar[at..at + 512].to_vec();
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let size_field = String::from_utf8_lossy(&h[124..136]).into_owned();
        let Ok(size) = u64::from_str_radix(size_field.trim_matches(|c| c == '\0' || c == ' '), 8)
        else {
            return tar.to_vec();
        };
        let data_at = at + 512;
        let data_len = size.next_multiple_of(512) as usize;
        if data_at + data_len > tar.len() {
            return tar.to_vec();
        }
        let regular = matches!(h[156], b'0' | 0);
        let keep = if regular { size.min(max) } else { size };
        if keep != size {
            h[124..136].copy_from_slice(format!("{keep:011o}\0").as_bytes());
            h[148..156].fill(b' ');
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        }
        out.extend_from_slice(&h);
        let kept = keep as usize;
        out.extend_from_slice(&tar[data_at..data_at + kept]);
        out.resize(out.len().next_multiple_of(512), 0);
        at = data_at + data_len;
    }
    out.resize(out.len() + 1024, 0);
    out
}

// ---------------------------------------------------------------------------------------
// ext4 images

/// ext4 images: `mkfs.ext4 -d` of the tree with several feature sets, and the project's
/// builder on some of the tars.
fn ext4_seeds(
    work: &Path,
    tree: &Path,
    tars: &[(String, PathBuf)],
) -> Result<Vec<(String, PathBuf)>> {
    mkdir(work)?;
    let mut out = Vec::new();
    let variants: &[(&str, &[&str], &str)] = &[
        (
            "1k",
            &["-b", "1024", "-N", "128", "-O", "^has_journal"],
            "512K",
        ),
        (
            "4k-csum",
            &["-b", "4096", "-O", "^has_journal,metadata_csum"],
            "2M",
        ),
        (
            "1k-blockmap",
            &[
                "-b",
                "1024",
                "-N",
                "128",
                "-O",
                "^has_journal,^extent,^flex_bg,^64bit",
            ],
            "512K",
        ),
        (
            "1k-inline",
            &["-b", "1024", "-N", "128", "-O", "^has_journal,inline_data"],
            "512K",
        ),
        (
            "1k-metabg",
            &[
                "-b",
                "1024",
                "-N",
                "128",
                "-O",
                "^has_journal,meta_bg,^resize_inode",
            ],
            "512K",
        ),
        (
            "1k-128inodes",
            &["-b", "1024", "-N", "128", "-I", "128", "-O", "^has_journal"],
            "512K",
        ),
        // Several groups, a journal and 64-bit descriptors: only as a file set.
        ("1k-3groups-journal", &["-b", "1024", "-O", "64bit"], "20M"),
    ];
    for (name, flags, size) in variants {
        let img = work.join(format!("mkfs-{name}.img"));
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "root_owner=0:0"])
            .args(*flags)
            .arg("-d")
            .arg(tree)
            .arg(&img)
            .arg(size))?;
        out.push((format!("mkfs-{name}.img"), img));
    }
    let tar2ext4 = example("ext4-writer", "tar2ext4")?;
    let wanted = [
        "gnutar-pax.tar",
        "layercheck-layer2.tar",
        "layercheck-layer3.tar",
        "testkit-same-layer-whiteouts.tar",
    ];
    for (name, tar) in tars.iter().filter(|(n, _)| wanted.contains(&n.as_str())) {
        for (tag, flags) in [
            ("", &[][..]),
            (
                "-csum-overlay",
                &["--metadata-csum", "--whiteouts", "overlay"][..],
            ),
        ] {
            let img = work.join(format!("builder-{name}{tag}.img"));
            run(Command::new(&tar2ext4)
                .arg("-i")
                .arg(tar)
                .arg("-o")
                .arg(&img)
                .args(flags))?;
            out.push((format!("builder-{name}{tag}.img"), img));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn slim_tar_cuts_file_data_and_keeps_headers_valid() {
        let mut tar = testkit::tarball::Tarball::new();
        tar.entry(testkit::tarball::Kind::File(vec![7u8; 10_000]), b"big", &[]);
        tar.entry(testkit::tarball::Kind::File(b"hi".to_vec()), b"small", &[]);
        let slim = slim_tar(&tar.finish(), 1000);
        // big: header + 1000 bytes padded to 1024; small: header + 512; two zero blocks.
        assert_eq!(slim.len(), 512 + 1024 + 512 + 512 + 1024);
        let h = &slim[..512];
        let stored = u32::from_str_radix(String::from_utf8_lossy(&h[148..154]).trim(), 8).unwrap();
        let mut copy = h.to_vec();
        copy[148..156].fill(b' ');
        assert_eq!(stored, copy.iter().map(|&b| u32::from(b)).sum::<u32>());
    }

    #[test]
    fn trimmed_keeps_whole_units_up_to_the_last_nonzero_byte() {
        let mut b = vec![0u8; 10_000];
        b[5000] = 1;
        assert_eq!(trimmed(b, 4096).len(), 8192);
        assert_eq!(trimmed(vec![0u8; 100], 4096).len(), 100);
    }
}
