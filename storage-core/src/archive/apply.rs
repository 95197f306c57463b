//! Applying a tar stream to a directory, confined to it.
//!
//! Entries are created fd-relative below a [`Root`], so nothing outside the target
//! directory can be created, changed or deleted. Owners, modes (with setuid, setgid and
//! sticky bits), nanosecond times, xattrs, hard links, devices and FIFOs are kept;
//! directory times are set after all their children exist. OCI whiteouts are applied as
//! chosen by [`WhiteoutMode`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, futimens, makedev, mkdirat,
    mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat, linkat, symlinkat};
use tar::EntryType;

use super::confine::{Root, file_kind, list_dir, normalize, os, split_last};
use super::entry::{
    OVERLAY_OPAQUE_XATTR, Whiteout, Written, check_link_target, check_name, pax_time,
    reserved_xattr, unsafe_entry, whiteout,
};
use super::input::{Compression, DigestReader, received, sniff};
use crate::error::{Error, IoContext, Result};
use crate::filter::FilterSpec;
use crate::op::Op;

/// How OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`) are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The target is a full filesystem: whiteouts delete what lower layers put there.
    Delete,
    /// The target is an overlay upper/diff directory: whiteouts become overlay markers
    /// (a 0:0 character device; `trusted.overlay.opaque=y` on the directory).
    Overlay,
}

/// Who owns what the archive creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The owners recorded in the archive (needs root).
    Preserve,
    /// Whoever runs the import; owners in the archive are ignored.
    Caller,
    /// One fixed owner for everything (e.g. an NFS volume's `uid`/`gid`).
    Fixed {
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
}

/// What [`apply_tar`] does besides creating entries.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How whiteouts are applied.
    pub whiteouts: WhiteoutMode,
    /// Who owns the created entries.
    pub ownership: Ownership,
    /// Which entries are kept, and how they are renamed.
    pub filter: FilterSpec,
    /// `sha256:<hex>` the received bytes must have.
    pub expected_digest: Option<String>,
    /// Flush the target filesystem before returning, so the data is durable.
    pub sync: bool,
}

impl ApplyOptions {
    /// Options for a layer: whiteouts as chosen, owners kept when running as root,
    /// everything included, data made durable.
    pub fn new(whiteouts: WhiteoutMode) -> Self {
        ApplyOptions {
            whiteouts,
            ownership: if nix::unistd::geteuid().is_root() {
                Ownership::Preserve
            } else {
                Ownership::Caller
            },
            filter: FilterSpec::default(),
            expected_digest: None,
            sync: true,
        }
    }
}

/// What an import received and created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApplyReport {
    /// How the input was compressed.
    pub compression: Compression,
    /// `sha256:<hex>` of the bytes received.
    pub digest: String,
    /// Number of bytes received.
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tar stream.
    pub tar_digest: String,
    /// Length of the uncompressed tar stream.
    pub tar_size: u64,
    /// Entries applied.
    pub entries: u64,
    /// Entries left out by the filter (or hard links whose target was left out).
    pub skipped: u64,
}

/// Applies the tar stream `input` (plain, gzip or zstd) to the directory `target`.
///
/// On error the target may hold part of the archive: the caller owns the target and
/// removes it (a layer that fails to import is deleted whole).
pub fn apply_tar(
    op: &Op,
    target: &Path,
    input: impl Read + Send,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let _span = op.span().enter();
    let mut applier = Applier::new(op, target, opts)?;
    let input = read_tar(input, |tar| applier.run(tar))?;
    applier.finish()?;
    if let Some(expected) = &opts.expected_digest
        && !expected.eq_ignore_ascii_case(&input.digest)
    {
        return Err(Error::DigestMismatch {
            object: format!("archive applied to {}", target.display()),
            expected: expected.clone(),
            actual: input.digest,
        });
    }
    Ok(ApplyReport {
        compression: input.compression,
        digest: input.digest,
        size: input.size,
        tar_digest: input.tar_digest,
        tar_size: input.tar_size,
        entries: applier.entries,
        skipped: applier.skipped,
    })
}

/// What [`read_tar`] received: the input's compression, and the digests and lengths of
/// what arrived and of the tar stream inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarInput {
    /// How the input was compressed.
    pub compression: Compression,
    /// `sha256:<hex>` of the bytes received.
    pub digest: String,
    /// Number of bytes received.
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tar stream.
    pub tar_digest: String,
    /// Length of the uncompressed tar stream.
    pub tar_size: u64,
}

/// Undoes the compression of `input` (plain, gzip or zstd, detected), hands the tar stream
/// to `consume`, then reads whatever follows so the digests cover every byte sent. Every
/// importer, whatever it writes to, takes its input through here.
pub fn read_tar<R: Read + Send>(
    input: R,
    consume: impl FnOnce(&mut dyn Read) -> Result<()>,
) -> Result<TarInput> {
    let ((compression, tar_digest), received) = received(input, |stream| {
        let compression = sniff(stream).map_err(|e| invalid(None, e))?;
        let tar_digest = match compression {
            Compression::None => {
                consume(&mut *stream)?;
                None
            }
            Compression::Gzip => {
                let mut tar = DigestReader::new(flate2::read::MultiGzDecoder::new(&mut *stream));
                consume(&mut tar)?;
                Some(tar.finish().map_err(|e| invalid(None, e))?)
            }
            Compression::Zstd => {
                let decoder =
                    zstd::Decoder::with_buffer(&mut *stream).map_err(|e| invalid(None, e))?;
                let mut tar = DigestReader::new(decoder);
                consume(&mut tar)?;
                Some(tar.finish().map_err(|e| invalid(None, e))?)
            }
        };
        // Whatever follows the archive (padding, a second gzip member's garbage) was sent
        // too: read it so the digest covers it.
        io::copy(stream, &mut io::sink()).map_err(|e| invalid(None, e))?;
        Ok::<_, Error>((compression, tar_digest))
    })?;
    let (digest, size) = received.map_err(|e| invalid(None, e))?;
    let (tar_digest, tar_size) = tar_digest.unwrap_or_else(|| (digest.clone(), size));
    Ok(TarInput {
        compression,
        digest,
        size,
        tar_digest,
        tar_size,
    })
}

/// The name an archive entry `raw` gets under `filter`, normalised ([`normalize`]), or
/// `None` when the filter leaves it out.
pub fn entry_name(filter: &FilterSpec, raw: &[u8]) -> Option<Vec<u8>> {
    if filter.is_identity() {
        return Some(normalize(raw));
    }
    filter
        .apply(&String::from_utf8_lossy(raw))
        .map(|n| normalize(n.as_bytes()))
}

/// An [`Error::InvalidArchive`] about `entry` (or the archive as a whole).
pub fn invalid(entry: Option<&[u8]>, e: io::Error) -> Error {
    Error::InvalidArchive {
        entry: entry.map(|e| String::from_utf8_lossy(e).into_owned()),
        reason: e.to_string(),
    }
}

/// The metadata of one archive entry, with PAX records applied.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Entry type.
    pub kind: EntryType,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access time.
    pub atime: TimeSpec,
    /// Modification time.
    pub mtime: TimeSpec,
    /// Size of the entry's data.
    pub size: u64,
    /// Device major and minor (devices).
    pub dev: (u64, u64),
    /// Link target (symlinks, hard links).
    pub link: Option<Vec<u8>>,
    /// Extended attributes, without those the storage reserves.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Reads the metadata of `entry` (named `name`, for errors), PAX records applied; refuses
/// PAX sparse files and a link target no writer can store ([`check_name`]).
pub fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &[u8]) -> Result<Meta> {
    let bad = |e: io::Error| invalid(Some(name), e);
    let h = entry.header();
    let kind = h.entry_type();
    let mtime = TimeSpec::new(h.mtime().map_err(bad)? as i64, 0);
    let mut meta = Meta {
        kind,
        mode: h.mode().map_err(bad)? & 0o7777,
        uid: h.uid().map_err(bad)? as u32,
        gid: h.gid().map_err(bad)? as u32,
        atime: mtime,
        mtime,
        size: entry.size(),
        dev: if matches!(kind, EntryType::Char | EntryType::Block) {
            (
                h.device_major().map_err(bad)?.unwrap_or(0) as u64,
                h.device_minor().map_err(bad)?.unwrap_or(0) as u64,
            )
        } else {
            (0, 0)
        },
        link: entry.link_name_bytes().map(|l| l.into_owned()),
        xattrs: Vec::new(),
    };
    let mut atime = None;
    if let Some(exts) = entry.pax_extensions().map_err(bad)? {
        for ext in exts {
            let ext = ext.map_err(bad)?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            match key {
                "uid" => meta.uid = parse_num(value).unwrap_or(meta.uid),
                "gid" => meta.gid = parse_num(value).unwrap_or(meta.gid),
                "mtime" => meta.mtime = pax_time(value).unwrap_or(meta.mtime),
                "atime" => atime = pax_time(value),
                k if k.starts_with("GNU.sparse.") => {
                    return Err(Error::Unsupported {
                        what: format!("PAX sparse file {:?}", String::from_utf8_lossy(name)),
                        reason: "sparse PAX entries are not read; repack without --sparse".into(),
                    });
                }
                k => {
                    if let Some(x) = k.strip_prefix("SCHILY.xattr.")
                        && !reserved_xattr(x.as_bytes())
                    {
                        meta.xattrs.push((x.to_owned(), value.to_vec()));
                    }
                }
            }
        }
    }
    meta.atime = atime.unwrap_or(meta.mtime);
    if let Some(link) = &meta.link {
        let what = if kind == EntryType::Link {
            "hard link target"
        } else {
            "symlink target"
        };
        check_link_target(name, what, link)?;
    }
    Ok(meta)
}

fn parse_num(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Streaming state of one apply.
struct Applier<'a> {
    op: &'a Op,
    root: Root,
    opts: &'a ApplyOptions,
    buf: Vec<u8>,
    /// Directory times to set once all entries exist.
    dir_times: HashMap<Vec<u8>, (TimeSpec, TimeSpec)>,
    /// Delete mode: paths this archive wrote, and their ancestors, which whiteouts in the
    /// same archive must not remove (whiteouts act on lower layers only).
    written: Written,
    entries: u64,
    skipped: u64,
}

const COPY_BUFFER: usize = 1 << 20;

impl<'a> Applier<'a> {
    fn new(op: &'a Op, target: &Path, opts: &'a ApplyOptions) -> Result<Self> {
        Ok(Applier {
            op,
            root: Root::open(target)?,
            opts,
            buf: vec![0; COPY_BUFFER],
            dir_times: HashMap::new(),
            written: Written::default(),
            entries: 0,
            skipped: 0,
        })
    }

    fn run<R: Read>(&mut self, tar_stream: R) -> Result<()> {
        let mut archive = tar::Archive::new(tar_stream);
        let entries = archive.entries().map_err(|e| invalid(None, e))?;
        let mut last: Option<Vec<u8>> = None;
        for entry in entries {
            self.op.check()?;
            let mut entry = entry
                .map_err(|e| invalid(None, io::Error::new(e.kind(), after(last.as_deref(), e))))?;
            let name = entry.path_bytes().into_owned();
            self.entry(&mut entry, &name)?;
            last = Some(name);
        }
        Ok(())
    }

    /// Sets directory times (after every child exists) and makes the data durable.
    fn finish(&mut self) -> Result<()> {
        for (rel, (atime, mtime)) in std::mem::take(&mut self.dir_times) {
            let (parent, name) = split_last(&rel);
            let result = if rel.is_empty() {
                futimens(self.root.fd(), &atime, &mtime)
            } else {
                match self.root.lookup_dir(parent)? {
                    Some(dir) => utimensat(
                        dir.as_fd(),
                        os(name),
                        &atime,
                        &mtime,
                        UtimensatFlags::NoFollowSymlink,
                    ),
                    None => continue,
                }
            };
            match result {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("set times of {}", self.root.display(&rel)),
                        e,
                    ));
                }
            }
        }
        if self.opts.sync {
            nix::unistd::syncfs(self.root.fd())
                .ctx(|| format!("flush {} to disk", self.root.path().display()))?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<()> {
        check_name(raw)?;
        let name = match self.map_name(raw) {
            Some(n) => n,
            None => {
                self.skipped += 1;
                return Ok(());
            }
        };
        let meta = read_meta(entry, raw)?;
        let (parent_rel, base) = split_last(&name);
        match whiteout(raw, base)? {
            None => {}
            Some(Whiteout::Meta) => {
                self.skipped += 1;
                return Ok(());
            }
            Some(w) => {
                self.entries += 1;
                return self.whiteout(parent_rel, w, &meta);
            }
        }
        if name.is_empty() {
            if meta.kind != EntryType::Directory {
                return Err(unsafe_entry(
                    raw,
                    "a non-directory entry names the root itself",
                ));
            }
            self.entries += 1;
            let root = self.root.dir(b"")?;
            self.set_attrs_fd(root.as_fd(), &name, &meta)?;
            self.dir_times.insert(Vec::new(), (meta.atime, meta.mtime));
            return Ok(());
        }
        let parent = self.root.dir(parent_rel)?;
        let parent = parent.as_fd();
        match meta.kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular(entry, parent, base, &name, &meta)?
            }
            EntryType::Directory => self.directory(parent, base, &name, &meta)?,
            EntryType::Symlink => self.symlink(parent, base, &name, &meta, raw)?,
            EntryType::Link => {
                if !self.hardlink(parent, base, &name, &meta, raw)? {
                    self.skipped += 1;
                    return Ok(());
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.node(parent, base, &name, &meta)?
            }
            EntryType::XGlobalHeader => return Ok(()),
            other => {
                return Err(Error::Unsupported {
                    what: format!(
                        "tar entry {:?} of type {other:?}",
                        String::from_utf8_lossy(raw)
                    ),
                    reason: "only files, directories, links, devices and FIFOs are stored".into(),
                });
            }
        }
        if meta.kind != EntryType::Directory {
            self.dir_times.remove(&name);
        }
        self.entries += 1;
        self.note_written(&name);
        Ok(())
    }

    /// The filtered, normalised name of an entry, or `None` when it is filtered out.
    fn map_name(&self, raw: &[u8]) -> Option<Vec<u8>> {
        entry_name(&self.opts.filter, raw)
    }

    fn note_written(&mut self, rel: &[u8]) {
        self.written.note(rel);
    }

    /// Opens `name` in `dir` with `flags`, removing whatever is there first on `EEXIST`.
    fn create_with<T>(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        what: &str,
        mut create: impl FnMut() -> std::result::Result<T, Errno>,
    ) -> Result<T> {
        match create() {
            Ok(v) => Ok(v),
            Err(Errno::EEXIST) => {
                self.root.remove_at(dir, name)?;
                create().ctx(|| format!("{what} {}", self.root.display(rel)))
            }
            Err(e) => Err(Error::io(format!("{what} {}", self.root.display(rel)), e)),
        }
    }

    fn regular<R: Read>(
        &mut self,
        data: &mut R,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd: OwnedFd = self.create_with(dir, name, rel, "create file", || {
            openat(dir, os(name), flags, Mode::from_bits_truncate(0o600))
        })?;
        let mut file = File::from(fd);
        let mut left = meta.size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(Error::InvalidArchive {
                        entry: Some(String::from_utf8_lossy(rel).into_owned()),
                        reason: format!(
                            "archive is truncated: {left} of {} bytes missing",
                            meta.size
                        ),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(invalid(Some(rel), e)),
            };
            file.write_all(&self.buf[..n])
                .ctx(|| format!("write {}", self.root.display(rel)))?;
            left -= n as u64;
        }
        self.set_attrs_fd(file.as_fd(), rel, meta)?;
        futimens(file.as_fd(), &meta.atime, &meta.mtime)
            .ctx(|| format!("set times of {}", self.root.display(rel)))?;
        Ok(())
    }

    fn directory(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        match mkdirat(dir, os(name), Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = self.root.stat_at(dir, name)?;
                if let Some(st) = st.filter(|st| file_kind(st) != SFlag::S_IFDIR) {
                    self.root.remove_at(dir, name)?;
                    mkdirat(dir, os(name), Mode::from_bits_truncate(0o700))
                        .ctx(|| format!("create directory {}", self.root.display(rel)))?;
                    // A directory in place of a whiteout hides what lies below, as one
                    // made after a deletion does in overlayfs.
                    if self.opts.whiteouts == WhiteoutMode::Overlay && is_overlay_whiteout(&st) {
                        let fd = self.root.dir(rel)?;
                        self.mark_opaque(fd.as_fd(), rel)?;
                    }
                }
            }
            Err(e) => {
                return Err(Error::io(
                    format!("create directory {}", self.root.display(rel)),
                    e,
                ));
            }
        }
        let fd = self.root.dir(rel)?;
        self.set_attrs_fd(fd.as_fd(), rel, meta)?;
        self.dir_times
            .insert(rel.to_vec(), (meta.atime, meta.mtime));
        Ok(())
    }

    fn symlink(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
        raw: &[u8],
    ) -> Result<()> {
        let target = meta
            .link
            .clone()
            .ok_or_else(|| unsafe_entry(raw, "symlink without a target"))?;
        self.create_with(dir, name, rel, "create symlink", || {
            symlinkat(os(&target), dir, os(name))
        })?;
        self.set_owner_at(dir, name, rel, meta)?;
        if !meta.xattrs.is_empty() {
            // No descriptor can be opened on a symlink for writing xattrs; reach it by
            // name through its (confined) directory's descriptor.
            let path = format!("/proc/self/fd/{}/", dir.as_raw_fd());
            let mut path = path.into_bytes();
            path.extend_from_slice(name);
            for (k, v) in &meta.xattrs {
                rustix::fs::lsetxattr(os(&path), k.as_str(), v, rustix::fs::XattrFlags::empty())
                    .ctx(|| format!("set xattr {k} on {}", self.root.display(rel)))?;
            }
        }
        self.set_times_at(dir, name, rel, meta)
    }

    /// Returns false when the link's target was filtered out.
    fn hardlink(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
        raw: &[u8],
    ) -> Result<bool> {
        let link = meta
            .link
            .as_deref()
            .ok_or_else(|| unsafe_entry(raw, "hard link without a target"))?;
        let Some(target) = self.map_name(link) else {
            return Ok(false);
        };
        if target == rel {
            return Ok(true);
        }
        let missing = || {
            unsafe_entry(
                raw,
                format!(
                    "hard link target {:?} does not exist in the archive's root",
                    String::from_utf8_lossy(&target)
                ),
            )
        };
        let (tparent, tname) = split_last(&target);
        if tname.is_empty() {
            return Err(unsafe_entry(raw, "hard link to the root directory"));
        }
        let tdir = self.root.lookup_dir(tparent)?.ok_or_else(missing)?;
        let tst = self
            .root
            .stat_at(tdir.as_fd(), tname)?
            .ok_or_else(missing)?;
        if file_kind(&tst) == SFlag::S_IFDIR {
            return Err(unsafe_entry(raw, "hard link to a directory"));
        }
        if let Some(st) = self.root.stat_at(dir, name)?
            && st.st_ino == tst.st_ino
            && st.st_dev == tst.st_dev
        {
            return Ok(true);
        }
        self.create_with(dir, name, rel, "create hard link", || {
            linkat(tdir.as_fd(), os(tname), dir, os(name), AtFlags::empty())
        })?;
        Ok(true)
    }

    fn node(&mut self, dir: BorrowedFd<'_>, name: &[u8], rel: &[u8], meta: &Meta) -> Result<()> {
        let kind = match meta.kind {
            EntryType::Char => SFlag::S_IFCHR,
            EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        let dev = makedev(meta.dev.0, meta.dev.1);
        self.create_with(dir, name, rel, "create device node", || {
            mknodat(dir, os(name), kind, Mode::from_bits_truncate(0o600), dev)
        })?;
        self.set_owner_at(dir, name, rel, meta)?;
        fchmodat(
            dir,
            os(name),
            Mode::from_bits_truncate(meta.mode),
            FchmodatFlags::FollowSymlink,
        )
        .ctx(|| format!("set mode of {}", self.root.display(rel)))?;
        self.set_times_at(dir, name, rel, meta)
    }

    fn owner(&self, meta: &Meta) -> Option<(u32, u32)> {
        match self.opts.ownership {
            Ownership::Preserve => Some((meta.uid, meta.gid)),
            Ownership::Caller => None,
            Ownership::Fixed { uid, gid } => Some((uid, gid)),
        }
    }

    /// Owner, xattrs, then mode (in that order: chown clears setuid bits and capabilities).
    fn set_attrs_fd(&self, fd: BorrowedFd<'_>, rel: &[u8], meta: &Meta) -> Result<()> {
        if let Some((uid, gid)) = self.owner(meta) {
            fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .ctx(|| format!("set owner of {}", self.root.display(rel)))?;
        }
        for (k, v) in &meta.xattrs {
            rustix::fs::fsetxattr(fd, k.as_str(), v, rustix::fs::XattrFlags::empty())
                .ctx(|| format!("set xattr {k} on {}", self.root.display(rel)))?;
        }
        fchmod(fd, Mode::from_bits_truncate(meta.mode))
            .ctx(|| format!("set mode of {}", self.root.display(rel)))?;
        Ok(())
    }

    /// Sets times by name, without following a symlink.
    fn set_times_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        utimensat(
            dir,
            os(name),
            &meta.atime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .ctx(|| format!("set times of {}", self.root.display(rel)))
    }

    fn set_owner_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        if let Some((uid, gid)) = self.owner(meta) {
            fchownat(
                dir,
                os(name),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .ctx(|| format!("set owner of {}", self.root.display(rel)))?;
        }
        Ok(())
    }

    /// Applies a whiteout found in `parent_rel`. It acts on what lies below the archive:
    /// what the archive itself wrote there stays, and a directory it wrote is made to hide
    /// its lower content.
    fn whiteout(&mut self, parent_rel: &[u8], w: Whiteout<'_>, meta: &Meta) -> Result<()> {
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let dir = self.root.dir(parent_rel)?;
                match w {
                    Whiteout::Opaque => self.mark_opaque(dir.as_fd(), parent_rel)?,
                    Whiteout::Hides(hidden) => {
                        let rel = join(parent_rel, hidden);
                        let d = dir.as_fd();
                        if self.written.spares(&rel) {
                            if let Some(st) = self.root.stat_at(d, hidden)?
                                && file_kind(&st) == SFlag::S_IFDIR
                            {
                                let sub = self.root.dir(&rel)?;
                                self.mark_opaque(sub.as_fd(), &rel)?;
                            }
                            return Ok(());
                        }
                        self.create_with(d, hidden, &rel, "create whiteout", || {
                            mknodat(d, os(hidden), SFlag::S_IFCHR, Mode::empty(), 0)
                        })?;
                        self.set_owner_at(d, hidden, &rel, meta)?;
                        self.dir_times.remove(&rel);
                    }
                    Whiteout::Meta => {}
                }
            }
            WhiteoutMode::Delete => {
                let Some(dir) = self.root.lookup_dir(parent_rel)? else {
                    return Ok(());
                };
                match w {
                    Whiteout::Opaque => {
                        let names = list_dir(dir.as_fd())
                            .ctx(|| format!("list {}", self.root.display(parent_rel)))?;
                        for child in names {
                            let rel = join(parent_rel, &child);
                            self.remove_lower(dir.as_fd(), &child, &rel)?;
                        }
                    }
                    Whiteout::Hides(hidden) => {
                        let rel = join(parent_rel, hidden);
                        self.remove_lower(dir.as_fd(), hidden, &rel)?;
                    }
                    Whiteout::Meta => {}
                }
            }
        }
        Ok(())
    }

    /// Marks the directory `fd` (at `rel`) opaque for overlayfs.
    fn mark_opaque(&self, fd: BorrowedFd<'_>, rel: &[u8]) -> Result<()> {
        rustix::fs::fsetxattr(
            fd,
            OVERLAY_OPAQUE_XATTR,
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .ctx(|| {
            format!(
                "mark {} opaque (trusted xattrs need root)",
                self.root.display(rel)
            )
        })
    }

    /// Delete mode: removes what lower layers put at `rel`, keeping whatever this archive
    /// wrote there or below.
    fn remove_lower(&mut self, dir: BorrowedFd<'_>, name: &[u8], rel: &[u8]) -> Result<()> {
        if !self.written.spares(rel) {
            self.root.remove_at(dir, name)?;
            return Ok(());
        }
        let Some(st) = self.root.stat_at(dir, name)? else {
            return Ok(());
        };
        if file_kind(&st) != SFlag::S_IFDIR {
            return Ok(());
        }
        let sub = self.root.dir(rel)?;
        let names = list_dir(sub.as_fd()).ctx(|| format!("list {}", self.root.display(rel)))?;
        for child in names {
            let child_rel = join(rel, &child);
            self.remove_lower(sub.as_fd(), &child, &child_rel)?;
        }
        Ok(())
    }
}

/// True for an overlay whiteout: a character device 0:0.
fn is_overlay_whiteout(st: &nix::sys::stat::FileStat) -> bool {
    file_kind(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut v = Vec::with_capacity(parent.len() + 1 + name.len());
    v.extend_from_slice(parent);
    v.push(b'/');
    v.extend_from_slice(name);
    v
}

fn after(last: Option<&[u8]>, e: io::Error) -> String {
    match last {
        Some(l) => format!("{e} (after entry {:?})", String::from_utf8_lossy(l)),
        None => e.to_string(),
    }
}
