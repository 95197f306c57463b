//! The directory writer: entries from the one entry stream ([`crate::ingest()`]) created in
//! a directory, confined to it.
//!
//! Entries are created fd-relative below a [`Root`], so nothing outside the target
//! directory can be created, changed or deleted. Owners, modes (with setuid, setgid and
//! sticky bits), nanosecond times, xattrs, hard links, devices and FIFOs are kept;
//! directory times are set after all their children exist. OCI whiteouts are applied as
//! chosen by [`WhiteoutMode`].
//!
//! An unprivileged writer ([`Ownership::Xattr`]) cannot give entries their owners or make
//! devices: it records owners, modes and device numbers in
//! `user.containers.override_stat` ([`crate::override_stat`]) as containers-storage does,
//! and counts in the report ([`ApplyReport::lost`]) whatever it could keep in no form (a
//! symlink's owner, an xattr of a namespace it may not write).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, futimens, makedev,
    mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat, linkat, symlinkat};

use crate::confine::{Root, child_len, file_kind, list_dir, os, split_last};
use crate::entry::{
    OVERLAY_OPAQUE_XATTR, USER_OPAQUE_XATTR, WHITEOUT_THROUGH_SYMLINK, Written, check_path_len,
    missing_link_target, unsafe_entry,
};
use crate::ingest::{Entry, EntrySink, IngestOptions, Kind, Meta, Time, ingest};
use crate::override_stat::{OverrideKind, OverrideStat, RecordOn};
use crate::tree::join_rel;
use storage_core::FilterSpec;
use storage_core::Op;
use storage_core::archive::ApplyReport;
use storage_core::{Error, IoContext, Result};

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
    /// The owners and modes recorded in the archive, kept without privilege: entries are
    /// owned by whoever runs the import and every file and directory records the
    /// archive's owner, mode and type in `user.containers.override_stat`; devices and
    /// FIFOs are stored as empty files recording what they are; opaque directories are
    /// marked `user.overlay.opaque`. What cannot be kept even so (a symlink's owner, an
    /// xattr outside `user.`) is counted in [`ApplyReport::lost`], never dropped silently.
    /// As containers-storage keeps a rootless layer, and fuse-overlayfs presents it.
    Xattr,
}

impl Ownership {
    /// What a process keeps of an archive's owners: [`Ownership::Preserve`] as root,
    /// [`Ownership::Xattr`] otherwise. Decided once, by the effective user.
    pub fn for_this_process() -> Ownership {
        if storage_core::archive::unprivileged_marks() {
            Ownership::Xattr
        } else {
            Ownership::Preserve
        }
    }
}

/// How many paths [`ApplyReport::lost_paths`] names at most.
pub const LOST_PATHS_SHOWN: usize = 5;

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
    /// On failure, remove every entry this archive created where nothing was before
    /// (for a target the caller keeps, such as a volume; a layer that fails is removed
    /// whole instead). What the archive replaced or whited out stays as it was left.
    pub rollback: bool,
    /// Keep a tar-split file here ([`crate::split`]), so that [`crate::reassemble`] can
    /// write the archive back byte for byte from the target while it is unchanged.
    pub tar_split: Option<std::path::PathBuf>,
}

impl ApplyOptions {
    /// Options for a layer: whiteouts as chosen, owners kept (applied when running as
    /// root, recorded in xattrs otherwise: [`Ownership::for_this_process`]), everything
    /// included, data made durable.
    pub fn new(whiteouts: WhiteoutMode) -> Self {
        ApplyOptions {
            whiteouts,
            ownership: Ownership::for_this_process(),
            filter: FilterSpec::default(),
            expected_digest: None,
            sync: true,
            rollback: false,
            tar_split: None,
        }
    }
}

/// Applies the tar stream `input` (plain, gzip or zstd) to the directory `target`.
///
/// On error the target may hold part of the archive, unless [`ApplyOptions::rollback`]
/// asks for what it created to be removed: the caller owns the target (a layer that fails
/// to import is deleted whole).
pub fn apply_tar(
    op: &Op,
    target: &Path,
    input: impl Read + Send,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let _span = op.span().enter();
    let mut writer = DirWriter::new(target, opts)?;
    let name = format!("archive applied to {}", target.display());
    let ingest_opts = IngestOptions {
        filter: Some(&opts.filter),
        expected_digest: opts.expected_digest.as_deref(),
        target: &name,
        literal_whiteouts: false,
        skip_digests: false,
        tar_split: opts.tar_split.as_deref(),
    };
    let result = ingest(op, input, ingest_opts, &mut writer);
    if result.is_err() && opts.rollback {
        writer.roll_back();
    }
    let mut report = result?;
    report.lost = writer.lost;
    report.lost_paths = std::mem::take(&mut writer.lost_paths);
    Ok(report)
}

/// A time as the kernel takes it.
fn timespec(t: Time) -> TimeSpec {
    TimeSpec::new(t.secs, i64::from(t.nanos))
}

/// Writes entries into one directory.
struct DirWriter<'a> {
    root: Root,
    opts: &'a ApplyOptions,
    buf: Vec<u8>,
    /// Directory times to set once all entries exist.
    dir_times: HashMap<Vec<u8>, (TimeSpec, TimeSpec)>,
    /// With [`ApplyOptions::rollback`]: the entries made where nothing was, in order.
    created: Vec<Vec<u8>>,
    /// Entries that lost something the writer could neither apply nor record.
    lost: u64,
    /// The first [`LOST_PATHS_SHOWN`] of them, each with what it lost.
    lost_paths: Vec<String>,
    /// Whether the archive gave the root directory its own entry (with
    /// [`Ownership::Xattr`], a root without one records a default).
    root_entry: bool,
}

const COPY_BUFFER: usize = 1 << 20;

impl EntrySink for DirWriter<'_> {
    type Error = Error;

    fn create(&mut self, entry: &Entry, data: &mut dyn Read, _: &Written) -> Result<bool> {
        let rel = entry.path.as_slice();
        let meta = &entry.meta;
        if rel.is_empty() {
            let root = self.root.dir(b"")?;
            self.root_entry = true;
            self.set_attrs_fd(root.as_fd(), rel, meta, OverrideKind::Dir)?;
            self.dir_times.insert(Vec::new(), times(meta));
            return Ok(true);
        }
        let (parent_rel, name) = split_last(rel);
        let (parent, parent_len) = self
            .root
            .dir_len(parent_rel)
            .map_err(|e| path_refused(e, &entry.raw))?;
        if self.opts.rollback && self.root.stat_at(parent.as_fd(), name)?.is_none() {
            // Recorded before it is made: a file cut short by a failure is removed too.
            self.created.push(rel.to_vec());
        }
        // Where it lands, not what the archive calls it: symlinks must not let a tree grow
        // deeper than names can reach.
        check_path_len(&entry.raw, child_len(parent_len, name))?;
        let parent = parent.as_fd();
        match &entry.kind {
            Kind::File { size, sparse } => {
                self.regular(data, parent, name, rel, *size, sparse.as_deref(), meta)?
            }
            Kind::Dir => self.directory(parent, parent_len, name, rel, meta)?,
            Kind::Symlink { target } => self.symlink(parent, name, rel, target, meta)?,
            Kind::HardLink { target } => self.hardlink(parent, name, rel, target, &entry.raw)?,
            Kind::Char { major, minor } => {
                self.node(parent, name, rel, SFlag::S_IFCHR, (*major, *minor), meta)?
            }
            Kind::Block { major, minor } => {
                self.node(parent, name, rel, SFlag::S_IFBLK, (*major, *minor), meta)?
            }
            Kind::Fifo => self.node(parent, name, rel, SFlag::S_IFIFO, (0, 0), meta)?,
            Kind::Whiteout | Kind::Opaque => return Ok(false),
        }
        if entry.kind != Kind::Dir {
            self.dir_times.remove(rel);
        }
        Ok(true)
    }

    /// Applies a whiteout. It acts on what lies below the archive: what the archive itself
    /// wrote stays, and a directory it wrote is made to hide its lower content.
    fn whiteout(&mut self, entry: &Entry, written: &Written) -> Result<()> {
        let rel = entry.path.as_slice();
        let dir_rel = if entry.kind == Kind::Opaque {
            rel
        } else {
            split_last(rel).0
        };
        if !self
            .root
            .reached_without_symlinks(dir_rel)
            .map_err(|e| path_refused(e, &entry.raw))?
        {
            return Err(unsafe_entry(&entry.raw, WHITEOUT_THROUGH_SYMLINK));
        }
        match (self.opts.whiteouts, &entry.kind) {
            (WhiteoutMode::Overlay, Kind::Opaque) => {
                let dir = self.dir_of(rel, &entry.raw)?;
                self.mark_opaque(dir.as_fd(), rel)
            }
            (WhiteoutMode::Overlay, _) => {
                let (parent_rel, hidden) = split_last(rel);
                let dir = self.dir_of(parent_rel, &entry.raw)?;
                let d = dir.as_fd();
                if written.spares(rel) {
                    if let Some(st) = self.root.stat_at(d, hidden)?
                        && file_kind(&st) == SFlag::S_IFDIR
                    {
                        let sub = self.root.dir(rel)?;
                        self.mark_opaque(sub.as_fd(), rel)?;
                    }
                    return Ok(());
                }
                self.create_with(d, hidden, rel, "create whiteout", || {
                    mknodat(d, os(hidden), SFlag::S_IFCHR, Mode::empty(), 0)
                })?;
                self.set_owner_at(d, hidden, rel, &entry.meta)?;
                self.dir_times.remove(rel);
                Ok(())
            }
            (WhiteoutMode::Delete, Kind::Opaque) => {
                let Some(dir) = self.existing_dir_of(rel, &entry.raw)? else {
                    return Ok(());
                };
                let names =
                    list_dir(dir.as_fd()).ctx(|| format!("list {}", self.root.display(rel)))?;
                for child in names {
                    let child_rel = join_rel(rel, &child);
                    self.remove_lower(dir.as_fd(), &child, &child_rel, written)?;
                }
                Ok(())
            }
            (WhiteoutMode::Delete, _) => {
                let (parent_rel, hidden) = split_last(rel);
                let Some(dir) = self.existing_dir_of(parent_rel, &entry.raw)? else {
                    return Ok(());
                };
                self.remove_lower(dir.as_fd(), hidden, rel, written)
            }
        }
    }

    /// Sets directory times (after every child exists) and makes the data durable.
    fn finish(&mut self) -> Result<()> {
        if self.opts.ownership == Ownership::Xattr {
            if !self.root_entry {
                // fuse-overlayfs reads records only in a layer whose root has one, as
                // containers-storage writes it: root's, 0755, unless an earlier apply
                // left one.
                let root = self.root.dir(b"")?;
                record_dir_as_roots(root.as_fd(), &self.root.display(b""), || Ok(0o755))?;
            }
            // Whether or not the archive described its root, a path may have needed
            // directories it did not describe.
            self.record_made_dirs()?;
        }
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
}

fn times(meta: &Meta) -> (TimeSpec, TimeSpec) {
    (timespec(meta.atime), timespec(meta.mtime))
}

impl<'a> DirWriter<'a> {
    fn new(target: &Path, opts: &'a ApplyOptions) -> Result<Self> {
        Ok(DirWriter {
            root: Root::open(target)?,
            opts,
            buf: vec![0; COPY_BUFFER],
            dir_times: HashMap::new(),
            created: Vec::new(),
            lost: 0,
            lost_paths: Vec::new(),
            root_entry: false,
        })
    }

    /// Removes what this archive created where nothing was (entries, and the directories
    /// made on their way), newest first. Best effort: the archive's own error is what the
    /// caller reports.
    fn roll_back(&mut self) {
        let mut made = std::mem::take(&mut self.created);
        made.extend(self.root.take_made());
        // Deepest first, so a directory goes after what it holds.
        made.sort_by_key(|rel| std::cmp::Reverse(rel.len()));
        for rel in made {
            let (parent, name) = split_last(&rel);
            if let Ok(Some(dir)) = self.root.lookup_dir(parent)
                && let Err(e) = self.root.remove_at(dir.as_fd(), name)
            {
                tracing::warn!("undoing a failed import: {}", storage_core::Report(&e));
            }
        }
    }

    /// Opens (making it when missing) the directory `rel` that the entry `raw` needs; a path
    /// through something that is not a directory refuses the entry.
    fn dir_of(&mut self, rel: &[u8], raw: &[u8]) -> Result<Rc<OwnedFd>> {
        self.root.dir(rel).map_err(|e| path_refused(e, raw))
    }

    /// Opens the directory `rel` that the entry `raw` needs, `None` when it does not exist;
    /// a path through something that is not a directory refuses the entry.
    fn existing_dir_of(&mut self, rel: &[u8], raw: &[u8]) -> Result<Option<Rc<OwnedFd>>> {
        self.root.lookup_dir(rel).map_err(|e| path_refused(e, raw))
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

    /// Creates the file `name` in `dir` from `data`: the whole file, or for a sparse one
    /// each segment at its offset, the rest left a hole (the file is then extended to
    /// `size` without writing).
    #[allow(clippy::too_many_arguments)]
    fn regular(
        &mut self,
        data: &mut dyn Read,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        size: u64,
        sparse: Option<&[crate::ingest::Segment]>,
        meta: &Meta,
    ) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd: OwnedFd = self.create_with(dir, name, rel, "create file", || {
            openat(dir, os(name), flags, Mode::from_bits_truncate(0o600))
        })?;
        let file = File::from(fd);
        let whole = [crate::ingest::Segment {
            offset: 0,
            len: size,
        }];
        let segments = sparse.unwrap_or(&whole);
        let total: u64 = segments.iter().map(|s| s.len).sum();
        let mut left = total;
        for segment in segments {
            let mut at = segment.offset;
            let end = segment.offset + segment.len;
            while at < end {
                let want = (end - at).min(self.buf.len() as u64) as usize;
                let n = match data.read(&mut self.buf[..want]) {
                    Ok(0) => {
                        return Err(Error::InvalidArchive {
                            entry: Some(String::from_utf8_lossy(rel).into_owned()),
                            reason: format!(
                                "archive is truncated: {left} of {total} bytes missing"
                            ),
                        });
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(Error::InvalidArchive {
                            entry: Some(String::from_utf8_lossy(rel).into_owned()),
                            reason: storage_core::Report(&e).to_string(),
                        });
                    }
                };
                file.write_all_at(&self.buf[..n], at)
                    .ctx(|| format!("write {}", self.root.display(rel)))?;
                at += n as u64;
                left -= n as u64;
            }
        }
        if sparse.is_some() {
            // Past the last segment, a hole to the file's size.
            file.set_len(size)
                .ctx(|| format!("set the size of {}", self.root.display(rel)))?;
        }
        self.set_attrs_fd(file.as_fd(), rel, meta, OverrideKind::File)?;
        let (atime, mtime) = times(meta);
        futimens(file.as_fd(), &atime, &mtime)
            .ctx(|| format!("set times of {}", self.root.display(rel)))?;
        Ok(())
    }

    fn directory(
        &mut self,
        dir: BorrowedFd<'_>,
        dir_len: usize,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        match mkdirat(dir, os(name), Mode::from_bits_truncate(0o700)) {
            Ok(()) => {
                self.root.made_dir(dir, dir_len, name);
            }
            Err(Errno::EEXIST) => {
                let st = self.root.stat_at(dir, name)?;
                if let Some(st) = st.filter(|st| file_kind(st) != SFlag::S_IFDIR) {
                    self.root.remove_at(dir, name)?;
                    mkdirat(dir, os(name), Mode::from_bits_truncate(0o700))
                        .ctx(|| format!("create directory {}", self.root.display(rel)))?;
                    self.root.made_dir(dir, dir_len, name);
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
        let fd = self.root.open_child_dir(dir, dir_len, name, rel)?;
        self.set_attrs_fd(fd.as_fd(), rel, meta, OverrideKind::Dir)?;
        self.dir_times.insert(rel.to_vec(), times(meta));
        Ok(())
    }

    fn symlink(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        self.create_with(dir, name, rel, "create symlink", || {
            symlinkat(os(target), dir, os(name))
        })?;
        self.set_owner_at(dir, name, rel, meta)?;
        if self.opts.ownership == Ownership::Xattr && !self.callers(meta) {
            // No user.* xattr can be set on a symlink: its owner has nowhere to go.
            self.note_lost(
                rel,
                format!(
                    "owner {}:{} (a symlink cannot record it)",
                    meta.uid, meta.gid
                ),
            );
        }
        if !meta.xattrs.is_empty() {
            // No descriptor can be opened on a symlink for writing xattrs; reach it by
            // name through its (confined) directory's descriptor.
            let path = format!("/proc/self/fd/{}/", dir.as_raw_fd());
            let mut path = path.into_bytes();
            path.extend_from_slice(name);
            for (k, v) in &meta.xattrs {
                let set = rustix::fs::lsetxattr(
                    os(&path),
                    k.as_str(),
                    v,
                    rustix::fs::XattrFlags::empty(),
                );
                self.xattr_set(set, k, rel)?;
            }
        }
        self.set_times_at(dir, name, rel, meta)
    }

    fn hardlink(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        target: &[u8],
        raw: &[u8],
    ) -> Result<()> {
        let missing = || missing_link_target(raw, target);
        let (tparent, tname) = split_last(target);
        let tdir = self.existing_dir_of(tparent, raw)?.ok_or_else(missing)?;
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
            return Ok(());
        }
        self.create_with(dir, name, rel, "create hard link", || {
            linkat(tdir.as_fd(), os(tname), dir, os(name), AtFlags::empty())
        })?;
        Ok(())
    }

    fn node(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        kind: SFlag,
        (major, minor): (u32, u32),
        meta: &Meta,
    ) -> Result<()> {
        if self.opts.ownership == Ownership::Xattr {
            return self.node_as_file(dir, name, rel, kind, (major, minor), meta);
        }
        let dev = makedev(u64::from(major), u64::from(minor));
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

    /// With [`Ownership::Xattr`], records the directories no entry described but a path
    /// needed as root's, with the mode they were made with, as an import by root makes
    /// them: fuse-overlayfs fails to list a directory holding a file or directory without
    /// a record in a layer that has them. A directory the archive described later already
    /// has its own record.
    fn record_made_dirs(&mut self) -> Result<()> {
        for rel in self.root.take_made() {
            let dir = match self.root.lookup_dir(&rel) {
                Ok(Some(dir)) => dir,
                // Replaced or whited out since: nothing to record.
                Ok(None) => continue,
                Err(e) if e.raw_os_error() == Some(Errno::ENOTDIR as i32) => continue,
                Err(e) => return Err(e),
            };
            let shown = self.root.display(&rel);
            record_dir_as_roots(dir.as_fd(), &shown, || {
                let st = nix::sys::stat::fstat(dir.as_fd()).ctx(|| format!("stat {shown}"))?;
                Ok(st.st_mode & 0o7777)
            })?;
        }
        Ok(())
    }

    /// With [`Ownership::Xattr`], a device or FIFO as containers-storage keeps one it
    /// cannot make: an empty regular file recording its owner, mode and device numbers.
    fn node_as_file(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        kind: SFlag,
        (major, minor): (u32, u32),
        meta: &Meta,
    ) -> Result<()> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd: OwnedFd = self.create_with(dir, name, rel, "create file for device", || {
            openat(dir, os(name), flags, Mode::from_bits_truncate(0o600))
        })?;
        let recorded = if kind == SFlag::S_IFCHR {
            OverrideKind::Char { major, minor }
        } else if kind == SFlag::S_IFBLK {
            OverrideKind::Block { major, minor }
        } else {
            OverrideKind::Pipe
        };
        self.set_attrs_fd(fd.as_fd(), rel, meta, recorded)?;
        let (atime, mtime) = times(meta);
        futimens(fd.as_fd(), &atime, &mtime)
            .ctx(|| format!("set times of {}", self.root.display(rel)))
    }

    fn owner(&self, meta: &Meta) -> Option<(u32, u32)> {
        match self.opts.ownership {
            Ownership::Preserve => Some((meta.uid, meta.gid)),
            Ownership::Caller | Ownership::Xattr => None,
            Ownership::Fixed { uid, gid } => Some((uid, gid)),
        }
    }

    /// True when the entry's owner is this process's own user and group, which a symlink
    /// gets without privilege.
    fn callers(&self, meta: &Meta) -> bool {
        meta.uid == nix::unistd::geteuid().as_raw() && meta.gid == nix::unistd::getegid().as_raw()
    }

    /// Counts `rel` among the entries that lost `what`.
    fn note_lost(&mut self, rel: &[u8], what: String) {
        self.lost += 1;
        if self.lost_paths.len() < LOST_PATHS_SHOWN {
            self.lost_paths
                .push(format!("{}: {what}", String::from_utf8_lossy(rel)));
        }
    }

    /// The result of setting the xattr `name` of `rel`: with [`Ownership::Xattr`], one
    /// the process may not set (`EPERM`, `EACCES`: `trusted.*`, `security.capability`; a
    /// `user.*` one on a symlink) or the filesystem cannot hold (`ENOTSUP`) is counted as
    /// lost; anything else fails the import.
    fn xattr_set(&mut self, result: rustix::io::Result<()>, name: &str, rel: &[u8]) -> Result<()> {
        match result {
            Ok(()) => Ok(()),
            Err(
                rustix::io::Errno::PERM | rustix::io::Errno::ACCESS | rustix::io::Errno::NOTSUP,
            ) if self.opts.ownership == Ownership::Xattr => {
                self.note_lost(rel, format!("xattr {name} (not permitted without root)"));
                Ok(())
            }
            Err(e) => Err(Error::io(
                format!("set xattr {name} on {}", self.root.display(rel)),
                e,
            )),
        }
    }

    /// Owner, xattrs, then mode (in that order: chown clears setuid bits and capabilities).
    /// With [`Ownership::Xattr`], the owner, mode and `kind` go into the entry's
    /// `user.containers.override_stat` instead, and the entry itself gets the mode's
    /// permission bits with the owner's read and write (and search, for a directory)
    /// added, so that this user can still read and replace what it stored.
    fn set_attrs_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        rel: &[u8],
        meta: &Meta,
        kind: OverrideKind,
    ) -> Result<()> {
        if let Some((uid, gid)) = self.owner(meta) {
            fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .ctx(|| format!("set owner of {}", self.root.display(rel)))?;
        }
        for (k, v) in &meta.xattrs {
            let set = rustix::fs::fsetxattr(fd, k.as_str(), v, rustix::fs::XattrFlags::empty());
            self.xattr_set(set, k, rel)?;
        }
        let mode = if self.opts.ownership == Ownership::Xattr {
            OverrideStat {
                uid: meta.uid,
                gid: meta.gid,
                mode: meta.mode & 0o7777,
                kind: Some(kind),
            }
            .set(fd, &self.root.display(rel))?;
            let own = if kind == OverrideKind::Dir {
                0o700
            } else {
                0o600
            };
            (meta.mode & 0o777) | own
        } else {
            meta.mode
        };
        fchmod(fd, Mode::from_bits_truncate(mode))
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
        let (atime, mtime) = times(meta);
        utimensat(
            dir,
            os(name),
            &atime,
            &mtime,
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

    /// Marks the directory `fd` (at `rel`) opaque for overlayfs: `trusted.overlay.opaque`,
    /// or with [`Ownership::Xattr`] `user.overlay.opaque`, which needs no privilege.
    fn mark_opaque(&self, fd: BorrowedFd<'_>, rel: &[u8]) -> Result<()> {
        let name = if self.opts.ownership == Ownership::Xattr {
            USER_OPAQUE_XATTR
        } else {
            OVERLAY_OPAQUE_XATTR
        };
        rustix::fs::fsetxattr(fd, name, b"y", rustix::fs::XattrFlags::empty()).ctx(|| {
            format!(
                "mark {} opaque with {name} (trusted xattrs need root)",
                self.root.display(rel)
            )
        })
    }

    /// Delete mode: removes what lower layers put at `rel` (`name` in `dir`), keeping
    /// whatever this archive wrote there or below. Iterative: the directories it goes
    /// through are those the archive wrote below, as deep as its names go.
    fn remove_lower(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        written: &Written,
    ) -> Result<()> {
        if !written.spares(rel) {
            self.root.remove_at(dir, name)?;
            return Ok(());
        }
        let mut todo = vec![rel.to_vec()];
        while let Some(rel) = todo.pop() {
            let (parent_rel, name) = split_last(&rel);
            let Some(parent) = self.root.lookup_dir(parent_rel)? else {
                continue;
            };
            if !written.spares(&rel) {
                self.root.remove_at(parent.as_fd(), name)?;
                continue;
            }
            let Some(st) = self.root.stat_at(parent.as_fd(), name)? else {
                continue;
            };
            if file_kind(&st) != SFlag::S_IFDIR {
                continue;
            }
            let sub = self.root.dir(&rel)?;
            let names =
                list_dir(sub.as_fd()).ctx(|| format!("list {}", self.root.display(&rel)))?;
            todo.extend(names.iter().map(|child| join_rel(&rel, child)));
        }
        Ok(())
    }
}

/// An error met while opening the directories of the entry `raw`'s path: one that says the
/// path crosses something that is not a directory (a file, a symlink that leads nowhere or
/// through more than 40 others) refuses the entry as unsafe, as on every writer; others
/// stay what they are.
fn path_refused(e: Error, raw: &[u8]) -> Error {
    match e.raw_os_error() {
        Some(errno)
            if [Errno::ENOTDIR, Errno::ENOENT, Errno::ELOOP].contains(&Errno::from_raw(errno)) =>
        {
            unsafe_entry(
                raw,
                format!(
                    "its path crosses something that is not a directory ({})",
                    storage_core::Report(&e)
                ),
            )
        }
        _ => e,
    }
}

/// True for an overlay whiteout: a character device 0:0.
fn is_overlay_whiteout(st: &FileStat) -> bool {
    file_kind(st) == SFlag::S_IFCHR && st.st_rdev == 0
}
/// Records directory `dir` as root's, with the mode `mode` gives, unless it has a record
/// already (an entry of the archive described it, or an earlier apply recorded it).
fn record_dir_as_roots(
    dir: BorrowedFd<'_>,
    shown: &dyn std::fmt::Display,
    mode: impl FnOnce() -> Result<u32>,
) -> Result<()> {
    if OverrideStat::get(RecordOn::Open(dir), None, shown)?.is_some() {
        return Ok(());
    }
    OverrideStat {
        uid: 0,
        gid: 0,
        mode: mode()?,
        kind: Some(OverrideKind::Dir),
    }
    .set(dir, shown)
}
