//! The one entry stream: a tar in, normalised [`Entry`]s out to a writer's [`EntrySink`].
//!
//! Every writer (a directory, an NFS volume, an ext4 image) takes its input through
//! [`ingest`], which owns everything that does not depend on where entries go:
//! - the input: compression (plain, gzip, zstd), the digests of what was received and of
//!   the tar inside it, and the caller's expected digest ([`crate::input`]);
//! - the tar format: ustar, PAX and GNU extensions, read by the `tar` crate, and sparse
//!   files in GNU tar's four encodings ([`crate::sparse`]), handed on as their data
//!   segments so that no writer makes their holes of zeros;
//! - the rules ([`crate::entry`]): names are checked and normalised into safe components,
//!   the [`FilterSpec`] renames or drops them, whiteouts are recognised, overlay markers
//!   and xattrs outside Linux's namespaces are left out, PAX values are parsed strictly
//!   (a malformed number refuses the archive), owners past 32 bits and device numbers
//!   Linux cannot hold are refused, times are clamped to what ext4 stores;
//! - the bookkeeping whiteouts need ([`Written`]: what this archive wrote, which they
//!   spare) and the counts of the [`ApplyReport`].
//!
//! A writer only creates what it is handed, the way ripgrep's searcher drives a `Sink`:
//! [`EntrySink::create`] for every kind but whiteouts, [`EntrySink::whiteout`] for those,
//! and [`EntrySink::finish`] once the whole archive was read and its digest checked.

use std::collections::BTreeSet;
use std::io::{self, Read};

use tar::EntryType;

use crate::confine::{normalize, split_last};
pub use crate::entry::Time;
use crate::entry::{
    Whiteout, Written, check_link_target, check_name, check_path_len, pax_time, reserved_xattr,
    unsafe_entry, whiteout,
};
use crate::input::read_tar;
pub use crate::sparse::Segment;
use crate::sparse::{Direct, PaxSparse, Stream, Tap, gnu_map, pax_sparse, read_data_map};
use crate::split::{SplitWriter, Splitter};
use storage_core::FilterSpec;
use storage_core::Op;
use storage_core::archive::ApplyReport;
use storage_core::{Error, Report, Result};

/// The metadata of an entry, PAX records applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access time (the modification time when the archive has none).
    pub atime: Time,
    /// Modification time.
    pub mtime: Time,
    /// Change time, when the archive has one (only an image writer can store it).
    pub ctime: Option<Time>,
    /// Extended attributes, by name, in archive order; overlay markers and names outside
    /// `user.`, `trusted.`, `security.` and `system.` are left out.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file of `size` bytes, read from the data handed with it.
    File {
        /// Its length.
        size: u64,
        /// For a sparse file (GNU tar's old GNU, PAX 0.0, 0.1 and 1.0 encodings), where its
        /// data lies: the data handed with the entry is then these segments' bytes one
        /// after another, each to be written at its offset, and the rest of the file up to
        /// `size` is a hole, for the writer to leave unwritten. `None`: the data is the
        /// whole file.
        sparse: Option<Vec<Segment>>,
    },
    /// A directory. Its times are for the writer to set after its children exist.
    Dir,
    /// A symbolic link (its target is stored as it is, never resolved by the writer).
    Symlink {
        /// The link's target: not empty, no NUL, under 4096 bytes.
        target: Vec<u8>,
    },
    /// A hard link to an earlier entry (to itself, when the entry exists: nothing to do).
    HardLink {
        /// The target's path, normalised and filtered as entry paths are; never the root.
        target: Vec<u8>,
    },
    /// A character device.
    Char {
        /// Major number (12 bits).
        major: u32,
        /// Minor number (20 bits).
        minor: u32,
    },
    /// A block device.
    Block {
        /// Major number (12 bits).
        major: u32,
        /// Minor number (20 bits).
        minor: u32,
    },
    /// A FIFO.
    Fifo,
    /// An OCI whiteout: what lies below the archive at the entry's path is hidden.
    Whiteout,
    /// An OCI opaque marker: what lies below the archive in the directory at the entry's
    /// path is hidden.
    Opaque,
}

/// One archive entry, every rule applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name as the archive has it, for messages.
    pub raw: Vec<u8>,
    /// Where it goes, relative to the target: normalised (no `.`, `..`, empty or absolute
    /// components), filtered; empty for the target's root (only a [`Kind::Dir`] or
    /// [`Kind::Opaque`] can name it). For a whiteout, the path it hides.
    pub path: Vec<u8>,
    /// What it is.
    pub kind: Kind,
    /// Its metadata.
    pub meta: Meta,
}

/// A writer of entries: a directory, an NFS volume, an ext4 image.
pub trait EntrySink {
    /// The writer's error. The stream's own errors (an unsafe or invalid archive, a digest
    /// mismatch, a cancelled operation) are turned into it, keeping their kind.
    type Error: From<Error>;

    /// Creates what `entry` describes (any kind but a whiteout or an opaque marker),
    /// replacing whatever the path held; a file's data is read from `data`. `written`
    /// says what this archive wrote before. Returns `false` when the writer left the entry
    /// out because its medium cannot hold it (it is counted as skipped).
    fn create(
        &mut self,
        entry: &Entry,
        data: &mut dyn Read,
        written: &Written,
    ) -> std::result::Result<bool, Self::Error>;

    /// Applies a [`Kind::Whiteout`] or [`Kind::Opaque`] entry to what lies below the
    /// archive, sparing what `written` says this archive wrote.
    fn whiteout(
        &mut self,
        entry: &Entry,
        written: &Written,
    ) -> std::result::Result<(), Self::Error>;

    /// Called once, after the last entry, when the whole input was read and its digest
    /// matched: sets what had to wait (directory times) and makes the data durable.
    fn finish(&mut self) -> std::result::Result<(), Self::Error>;
}

/// How [`ingest`] reads its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestOptions<'a> {
    /// Which entries are kept, and how they are renamed.
    pub filter: Option<&'a FilterSpec>,
    /// `sha256:<hex>` the received bytes must have; a mismatch fails before
    /// [`EntrySink::finish`].
    pub expected_digest: Option<&'a str>,
    /// Hash nothing and report no digests, for a writer whose caller needs none (an
    /// expected digest is still checked). sha256 is about a third of the work of an
    /// uncompressed import.
    pub skip_digests: bool,
    /// Names the target in a digest mismatch ("layer 1234…", "volume data").
    pub target: &'a str,
    /// Whiteout names are entries like any other (`.wh.x` is a file of that name), as GNU
    /// tar reads them, for writers that make a plain copy of a tar. They are still checked:
    /// `.wh.` followed by nothing, `.` or `..` is refused.
    pub literal_whiteouts: bool,
    /// Record the tar stream into a tar-split file at this path ([`crate::split`]), so
    /// that the tree the writer makes can give the same bytes back. Only meaningful with
    /// no filter: the file is committed after [`EntrySink::finish`], and nothing is left
    /// there when the ingest fails.
    pub tar_split: Option<&'a std::path::Path>,
}

/// Reads the tar stream `input` (plain, gzip or zstd), hands every entry to `sink` with
/// every rule applied, checks the digest, then finishes the sink.
///
/// On error the target may hold part of the archive: its owner removes or keeps it (a
/// layer that fails to import is deleted whole).
pub fn ingest<S: EntrySink + ?Sized>(
    op: &Op,
    input: impl Read + Send,
    opts: IngestOptions<'_>,
    sink: &mut S,
) -> std::result::Result<ApplyReport, S::Error> {
    let identity = FilterSpec::default();
    let mut reader = Reader {
        op,
        filter: opts.filter.unwrap_or(&identity),
        literal_whiteouts: opts.literal_whiteouts,
        written: Written::default(),
        entries: 0,
        skipped: 0,
        xattrs_dropped: 0,
        uids: BTreeSet::new(),
        gids: BTreeSet::new(),
    };
    let hash = !opts.skip_digests || opts.expected_digest.is_some() || opts.tar_split.is_some();
    let mut split = None;
    let input = read_tar(input, hash, |tar| match opts.tar_split {
        Some(path) => {
            let mut splitter = Splitter::new(tar, SplitWriter::create(path)?);
            reader.run(&mut splitter, sink)?;
            split = Some(splitter.finish().map_err(|e| invalid(None, e))?);
            Ok(())
        }
        None => reader.run(tar, sink),
    })?;
    if let Some(expected) = opts.expected_digest {
        let actual = input.digest.clone().unwrap_or_default();
        if !expected.eq_ignore_ascii_case(&actual) {
            return Err(S::Error::from(Error::DigestMismatch {
                object: opts.target.to_owned(),
                expected: expected.to_owned(),
                actual,
            }));
        }
    }
    sink.finish()?;
    if let Some(split) = split {
        let digest = input.tar_digest.as_deref().unwrap_or_default();
        split.commit(input.tar_size, digest)?;
    }
    if reader.xattrs_dropped > 0 {
        tracing::warn!(
            "{}: {} extended attribute(s) outside the user, trusted, security and system namespaces left out",
            opts.target,
            reader.xattrs_dropped
        );
    }
    Ok(ApplyReport {
        compression: input.compression,
        digest: input.digest,
        size: input.size,
        tar_digest: input.tar_digest,
        tar_size: input.tar_size,
        entries: reader.entries,
        skipped: reader.skipped,
        uids: reader.uids.into_iter().collect(),
        gids: reader.gids.into_iter().collect(),
        lost: 0,
        lost_paths: Vec::new(),
    })
}

/// The name an archive entry `raw` gets under `filter`, or `None` when the filter leaves
/// it out. The name is normalised ([`normalize`]) before the filter sees it, so `..` cannot
/// carry an entry past an exclusion or out of a rebase, and again after.
pub fn entry_name(filter: &FilterSpec, raw: &[u8]) -> Option<Vec<u8>> {
    let name = normalize(raw);
    if filter.is_identity() {
        return Some(name);
    }
    filter
        .apply(&String::from_utf8_lossy(&name))
        .map(|n| normalize(n.as_bytes()))
}

/// An [`Error::InvalidArchive`] about `entry` (or the archive as a whole); `e`, with its
/// causes, becomes the reason.
pub fn invalid(entry: Option<&[u8]>, e: io::Error) -> Error {
    Error::InvalidArchive {
        entry: entry.map(|e| String::from_utf8_lossy(e).into_owned()),
        reason: Report(&e).to_string(),
    }
}

fn invalid_value(entry: &[u8], reason: String) -> Error {
    Error::InvalidArchive {
        entry: Some(String::from_utf8_lossy(entry).into_owned()),
        reason,
    }
}

/// Longest symlink target stored (`PATH_MAX` less its NUL).
const MAX_SYMLINK: usize = 4095;
/// The largest owner id stored: `u32::MAX` is `(uid_t)-1`, which `chown` reads as "leave
/// unchanged".
const MAX_ID: u64 = u32::MAX as u64 - 1;
/// xattr namespaces Linux knows.
const XATTR_NAMESPACES: [&str; 4] = ["user.", "trusted.", "security.", "system."];
/// Longest xattr name (`XATTR_NAME_MAX`).
const XATTR_NAME_MAX: usize = 255;

/// Streaming state of one ingest.
struct Reader<'a> {
    op: &'a Op,
    filter: &'a FilterSpec,
    literal_whiteouts: bool,
    written: Written,
    entries: u64,
    skipped: u64,
    xattrs_dropped: u64,
    /// Owners of the entries applied, for the report.
    uids: BTreeSet<u32>,
    gids: BTreeSet<u32>,
}

impl Reader<'_> {
    fn run<S: EntrySink + ?Sized>(
        &mut self,
        tar_stream: &mut dyn Read,
        sink: &mut S,
    ) -> std::result::Result<(), S::Error> {
        let stream = crate::sparse::stream(tar_stream);
        let mut archive = tar::Archive::new(Tap(stream.clone()));
        let mut entries = archive.entries().map_err(|e| invalid(None, e))?;
        let mut last: Option<Vec<u8>> = None;
        loop {
            self.op.check()?;
            // What the crate reads to reach the next entry is kept: an old GNU sparse
            // entry's map continues in the extension headers it reads there.
            stream.borrow_mut().start_recording();
            let next = entries.next();
            stream.borrow_mut().stop_recording();
            let Some(entry) = next else {
                break;
            };
            let mut entry = entry
                .map_err(|e| invalid(None, io::Error::new(e.kind(), after(last.as_deref(), e))))?;
            let raw = entry.path_bytes().into_owned();
            let gnu_sparse = entry.header().entry_type().is_gnu_sparse();
            if gnu_sparse {
                let stored = entry
                    .header()
                    .entry_size()
                    .map_err(|e| invalid(Some(&raw), e))?;
                stream.borrow_mut().set_direct(stored);
            }
            let name = self.entry(&mut entry, raw, &stream, sink)?;
            // Whatever the writer left unread is read here rather than skipped by the
            // crate while it is recorded; an old GNU sparse entry's data past the crate.
            let rest = if gnu_sparse {
                io::copy(&mut Direct(stream.clone()), &mut io::sink())
            } else {
                io::copy(&mut entry, &mut io::sink())
            };
            rest.map_err(|e| invalid(Some(&name), e))?;
            last = Some(name);
        }
        Ok(())
    }

    /// Hands the tar entry `data`, named `raw`, to `sink` with every rule applied, and
    /// gives the name back (for messages about what follows it).
    fn entry<R: Read, S: EntrySink + ?Sized>(
        &mut self,
        data: &mut tar::Entry<'_, R>,
        raw: Vec<u8>,
        stream: &Stream<'_>,
        sink: &mut S,
    ) -> std::result::Result<Vec<u8>, S::Error> {
        let header_kind = data.header().entry_type();
        if header_kind == EntryType::XGlobalHeader {
            return Ok(raw);
        }
        let pax_sparse = self.pax_sparse(data, &raw)?;
        // A PAX sparse file's header names a stand-in (`./GNUSparseFile.<pid>/name`).
        let raw = match pax_sparse.as_ref().and_then(|p| p.name.clone()) {
            Some(name) => name,
            None => raw,
        };
        check_name(&raw)?;
        let Some(path) = entry_name(self.filter, &raw) else {
            self.skipped += 1;
            return Ok(raw);
        };
        let meta = self.meta(data, &raw)?;
        let (parent, base) = split_last(&path);
        let whiteout = whiteout(&raw, base)?.filter(|_| !self.literal_whiteouts);
        let (path, kind) = match whiteout {
            Some(Whiteout::Meta) => {
                self.skipped += 1;
                return Ok(raw);
            }
            Some(Whiteout::Hides(name)) => (crate::tree::join_rel(parent, name), Kind::Whiteout),
            Some(Whiteout::Opaque) => (parent.to_vec(), Kind::Opaque),
            None => match self.kind(data, header_kind, &raw, pax_sparse, stream)? {
                Some(kind) => (path, kind),
                None => {
                    self.skipped += 1;
                    return Ok(raw);
                }
            },
        };
        if path.is_empty() && kind == Kind::Opaque {
            return Err(Error::Unsupported {
                what: format!(
                    "opaque marker {:?} for the archive's root",
                    String::from_utf8_lossy(&raw)
                ),
                reason: "overlayfs cannot hide what lower layers hold at their root, so no store that stacks layers could keep it".into(),
            }
            .into());
        }
        if path.is_empty() && kind != Kind::Dir {
            return Err(unsafe_entry(&raw, "a non-directory entry names the root itself").into());
        }
        check_path_len(&raw, path.len())?;
        let entry = Entry {
            raw,
            path,
            kind,
            meta,
        };
        self.entries += 1;
        self.uids.insert(entry.meta.uid);
        self.gids.insert(entry.meta.gid);
        match entry.kind {
            Kind::Whiteout | Kind::Opaque => sink.whiteout(&entry, &self.written)?,
            _ => {
                // An old GNU sparse file's data is read past the `tar` crate, which would
                // hand out its holes as zeros.
                let mut direct = Direct(stream.clone());
                let data: &mut dyn Read = if header_kind.is_gnu_sparse() {
                    &mut direct
                } else {
                    data
                };
                if sink.create(&entry, data, &self.written)? {
                    self.written.note(entry.path);
                } else {
                    self.entries -= 1;
                    self.skipped += 1;
                }
            }
        }
        Ok(entry.raw)
    }

    /// The kind of a non-whiteout entry; `None` for a hard link whose target the filter
    /// left out.
    fn kind<R: Read>(
        &self,
        data: &mut tar::Entry<'_, R>,
        header_kind: EntryType,
        raw: &[u8],
        pax_sparse: Option<PaxSparse>,
        stream: &Stream<'_>,
    ) -> Result<Option<Kind>> {
        if let Some(pax) = pax_sparse {
            if !matches!(header_kind, EntryType::Regular | EntryType::Continuous) {
                return Err(invalid_value(
                    raw,
                    format!("a PAX sparse map on an entry of type {header_kind:?}"),
                ));
            }
            let stored = data.size();
            let (map, taken) = match pax.map {
                Some(map) => (map, 0),
                None => read_data_map(data, stored).map_err(|e| invalid(Some(raw), e))?,
            };
            let map = crate::sparse::checked(map, pax.size, stored - taken)
                .map_err(|e| invalid(Some(raw), e))?;
            return Ok(Some(Kind::File {
                size: pax.size,
                sparse: Some(map),
            }));
        }
        let link = || -> Result<Vec<u8>> {
            let what = if header_kind == EntryType::Link {
                "hard link"
            } else {
                "symlink"
            };
            let target = data
                .link_name_bytes()
                .ok_or_else(|| unsafe_entry(raw, format!("{what} without a target")))?
                .into_owned();
            check_link_target(raw, &format!("{what} target"), &target)?;
            Ok(target)
        };
        Ok(Some(match header_kind {
            EntryType::Regular | EntryType::Continuous => Kind::File {
                size: data.size(),
                sparse: None,
            },
            EntryType::GNUSparse => {
                let stored = data
                    .header()
                    .entry_size()
                    .map_err(|e| invalid(Some(raw), e))?;
                let (size, map) = gnu_map(data.header(), data.raw_file_position(), stored, stream)
                    .map_err(|e| invalid(Some(raw), e))?;
                Kind::File {
                    size,
                    sparse: Some(map),
                }
            }
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => {
                let target = link()?;
                if target.is_empty() || target.len() > MAX_SYMLINK {
                    return Err(invalid_value(
                        raw,
                        format!(
                            "its symlink target is {} bytes; 1 to {MAX_SYMLINK} are stored",
                            target.len()
                        ),
                    ));
                }
                Kind::Symlink { target }
            }
            EntryType::Link => {
                let target = link()?;
                let Some(target) = entry_name(self.filter, &target) else {
                    return Ok(None);
                };
                if target.is_empty() {
                    return Err(unsafe_entry(raw, "hard link to the root directory"));
                }
                Kind::HardLink { target }
            }
            EntryType::Char | EntryType::Block => {
                let h = data.header();
                let bad = |e: io::Error| invalid(Some(raw), e);
                let major = h.device_major().map_err(bad)?.unwrap_or(0);
                let minor = h.device_minor().map_err(bad)?.unwrap_or(0);
                if major > 0xfff || minor > 0xf_ffff {
                    return Err(invalid_value(
                        raw,
                        format!(
                            "device {major}:{minor} does not fit Linux's 12-bit major and 20-bit minor"
                        ),
                    ));
                }
                if header_kind == EntryType::Char {
                    Kind::Char { major, minor }
                } else {
                    Kind::Block { major, minor }
                }
            }
            EntryType::Fifo => Kind::Fifo,
            other => {
                return Err(Error::Unsupported {
                    what: format!(
                        "tar entry {:?} of type {other:?}",
                        String::from_utf8_lossy(raw)
                    ),
                    reason: "only files, directories, links, devices and FIFOs are stored".into(),
                });
            }
        }))
    }

    /// What the entry's `GNU.sparse.*` PAX records say, if it has any.
    fn pax_sparse<R: Read>(
        &self,
        data: &mut tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<Option<PaxSparse>> {
        let bad = |e: io::Error| invalid(Some(raw), e);
        let Some(exts) = data.pax_extensions().map_err(bad)? else {
            return Ok(None);
        };
        let mut records = Vec::new();
        for ext in exts {
            let ext = ext.map_err(bad)?;
            if let Some(key) = ext.key_bytes().strip_prefix(b"GNU.sparse.") {
                records.push((key.to_vec(), ext.value_bytes().to_vec()));
            }
        }
        pax_sparse(&records).map_err(|e| match e.kind() {
            io::ErrorKind::Unsupported => Error::Unsupported {
                what: format!("sparse file {:?}", String::from_utf8_lossy(raw)),
                reason: e.to_string(),
            },
            _ => bad(e),
        })
    }

    /// The entry's metadata, PAX records applied; refuses values that are not what PAX
    /// says they are.
    fn meta<R: Read>(&mut self, data: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<Meta> {
        let bad = |e: io::Error| invalid(Some(raw), e);
        let h = data.header();
        let mtime = Time {
            secs: i64::try_from(h.mtime().map_err(bad)?).unwrap_or(i64::MAX),
            nanos: 0,
        };
        let mut uid = h.uid().map_err(bad)?;
        let mut gid = h.gid().map_err(bad)?;
        let mut meta = Meta {
            mode: h.mode().map_err(bad)? & 0o7777,
            mtime,
            ..Meta::default()
        };
        let mut atime = None;
        if let Some(exts) = data.pax_extensions().map_err(bad)? {
            for ext in exts {
                let ext = ext.map_err(bad)?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                let time = || {
                    pax_time(value).ok_or_else(|| {
                        invalid_value(
                            raw,
                            format!(
                                "PAX {} {:?} is not a time",
                                String::from_utf8_lossy(key),
                                String::from_utf8_lossy(value)
                            ),
                        )
                    })
                };
                let id = || {
                    std::str::from_utf8(value)
                        .ok()
                        .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| {
                            invalid_value(
                                raw,
                                format!(
                                    "PAX {} {:?} is not a number",
                                    String::from_utf8_lossy(key),
                                    String::from_utf8_lossy(value)
                                ),
                            )
                        })
                };
                match key {
                    b"uid" => uid = id()?,
                    b"gid" => gid = id()?,
                    b"mtime" => meta.mtime = time()?,
                    b"atime" => atime = Some(time()?),
                    b"ctime" => meta.ctime = Some(time()?),
                    // Read by `pax_sparse`.
                    k if k.starts_with(b"GNU.sparse.") => {}
                    k => {
                        if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                            self.xattr(raw, name, value, &mut meta)?;
                        }
                    }
                }
            }
        }
        if uid > MAX_ID || gid > MAX_ID {
            return Err(invalid_value(
                raw,
                format!("owner {uid}:{gid} is past the largest id stored, {MAX_ID}"),
            ));
        }
        meta.uid = uid as u32;
        meta.gid = gid as u32;
        meta.mtime = meta.mtime.clamped();
        meta.atime = atime.map_or(meta.mtime, Time::clamped);
        meta.ctime = meta.ctime.map(Time::clamped);
        Ok(meta)
    }

    /// Keeps the xattr `name` unless the storage reserves it or Linux has no namespace for
    /// it; refuses a name no filesystem can hold.
    fn xattr(&mut self, raw: &[u8], name: &[u8], value: &[u8], meta: &mut Meta) -> Result<()> {
        let Some(text) = std::str::from_utf8(name)
            .ok()
            .filter(|n| !n.is_empty() && n.len() <= XATTR_NAME_MAX && !n.contains('\0'))
        else {
            return Err(invalid_value(
                raw,
                format!(
                    "xattr name {:?} is not 1 to {XATTR_NAME_MAX} bytes of UTF-8 without NUL",
                    String::from_utf8_lossy(name)
                ),
            ));
        };
        if reserved_xattr(name) {
            return Ok(());
        }
        if !XATTR_NAMESPACES.iter().any(|ns| text.starts_with(ns)) {
            self.xattrs_dropped += 1;
            return Ok(());
        }
        meta.xattrs.push((text.to_owned(), value.to_vec()));
        Ok(())
    }
}

fn after(last: Option<&[u8]>, e: io::Error) -> String {
    match last {
        Some(l) => format!(
            "{} (after entry {:?})",
            Report(&e),
            String::from_utf8_lossy(l)
        ),
        None => Report(&e).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use testkit::tarball::{Kind as TarKind, Tarball};

    use super::*;

    /// Records what it is handed.
    #[derive(Debug, Default)]
    struct Recorder {
        entries: Vec<Entry>,
        finished: bool,
    }

    impl EntrySink for Recorder {
        type Error = Error;

        fn create(&mut self, e: &Entry, data: &mut dyn Read, _: &Written) -> Result<bool> {
            io::copy(data, &mut io::sink()).map_err(|e| invalid(None, e))?;
            self.entries.push(e.clone());
            Ok(true)
        }
        fn whiteout(&mut self, e: &Entry, _: &Written) -> Result<()> {
            self.entries.push(e.clone());
            Ok(())
        }
        fn finish(&mut self) -> Result<()> {
            self.finished = true;
            Ok(())
        }
    }

    /// PAX records of a test entry.
    type Pax<'a> = &'a [(&'a str, &'a [u8])];

    /// An archive of empty entries: `f` file, `d` directory, `l` hard link and `s` symlink
    /// (both to `t`), each with its PAX records.
    fn tar(entries: &[(&str, char, Pax<'_>)]) -> Vec<u8> {
        let mut t = Tarball::new();
        for (name, kind, pax) in entries {
            let kind = match kind {
                'd' => TarKind::Dir,
                'l' => TarKind::HardLink(b"t".to_vec()),
                's' => TarKind::Symlink(b"t".to_vec()),
                _ => TarKind::File(Vec::new()),
            };
            t.entry(kind, name.as_bytes(), pax);
        }
        t.finish()
    }

    fn run(t: &[u8], filter: Option<&FilterSpec>) -> Result<(Recorder, ApplyReport)> {
        let mut r = Recorder::default();
        let opts = IngestOptions {
            filter,
            ..IngestOptions::default()
        };
        let report = ingest(&Op::new("t"), t, opts, &mut r)?;
        Ok((r, report))
    }

    #[test]
    fn entries_arrive_normalised_with_whiteouts_recognised() {
        let t = tar(&[
            ("./a/../b/", 'd', &[]),
            ("/b/f", 'f', &[]),
            ("b/.wh.gone", 'f', &[]),
            ("b/.wh..wh..opq", 'f', &[]),
            ("b/.wh..wh.plnk", 'f', &[]),
            ("./", 'd', &[]),
        ]);
        let (r, report) = run(&t, None).unwrap();
        let got: Vec<(&[u8], &Kind)> = r
            .entries
            .iter()
            .map(|e| (e.path.as_slice(), &e.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"b"[..], &Kind::Dir),
                (
                    b"b/f",
                    &Kind::File {
                        size: 0,
                        sparse: None,
                    },
                ),
                (b"b/gone", &Kind::Whiteout),
                (b"b", &Kind::Opaque),
                (b"", &Kind::Dir),
            ]
        );
        assert_eq!((report.entries, report.skipped), (5, 1));
        assert!(r.finished);
    }

    #[test]
    fn malformed_pax_values_refuse_the_archive() {
        for (key, value) in [
            ("uid", &b"12x"[..]),
            ("gid", b"-1"),
            ("uid", b"4294967296"),
            ("uid", b"4294967295"),
            ("mtime", b"soon"),
            ("atime", b"1.2.3"),
            ("ctime", b""),
        ] {
            let t = tar(&[("f", 'f', &[(key, value)])]);
            let err = run(&t, None).unwrap_err();
            assert!(matches!(err, Error::InvalidArchive { .. }), "{key}: {err}");
        }
        let ok = tar(&[("f", 'f', &[("uid", &b"4294967294"[..])])]);
        assert_eq!(run(&ok, None).unwrap().0.entries[0].meta.uid, 4_294_967_294);
    }

    #[test]
    fn times_are_clamped_to_what_ext4_stores() {
        let t = tar(&[
            ("late", 'f', &[("mtime", &b"99999999999999"[..])]),
            ("early", 'f', &[("mtime", b"-99999999999.5")]),
        ]);
        let (r, _) = run(&t, None).unwrap();
        assert_eq!(r.entries[0].meta.mtime, Time::MAX);
        assert_eq!(r.entries[0].meta.atime, Time::MAX);
        assert_eq!(r.entries[1].meta.mtime, Time::MIN);
    }

    #[test]
    fn xattrs_keep_linux_namespaces_only_and_never_overlay_markers() {
        let t = tar(&[(
            "f",
            'f',
            &[
                ("SCHILY.xattr.user.a", &b"1"[..]),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                ("SCHILY.xattr.com.apple.quarantine", b"q"),
                ("SCHILY.xattr.security.capability", b"c"),
            ],
        )]);
        let (r, _) = run(&t, None).unwrap();
        let names: Vec<&str> = r.entries[0]
            .meta
            .xattrs
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["user.a", "security.capability"]);
    }

    #[test]
    fn hard_links_are_filtered_like_names_and_never_name_the_root() {
        let mut spec = FilterSpec::default();
        spec.exclusions.insert("t".into());
        let t = tar(&[("h", 'l', &[])]);
        let (r, report) = run(&t, Some(&spec)).unwrap();
        assert!(r.entries.is_empty());
        assert_eq!(report.skipped, 1);
        let to_root = tar(&[("h", 'l', &[("linkpath", &b"./"[..])])]);
        assert!(matches!(
            run(&to_root, None),
            Err(Error::UnsafeArchive { .. })
        ));
    }

    #[test]
    fn filters_see_normalised_names_so_dotdot_passes_no_exclusion_or_rebase() {
        let mut spec = FilterSpec::default();
        spec.exclusions.insert("etc/shadow".into());
        spec.rebase = "sub".into();
        assert_eq!(entry_name(&spec, b"x/../etc/shadow"), None);
        assert_eq!(entry_name(&spec, b"../../top"), Some(b"sub/top".to_vec()));
        assert_eq!(entry_name(&spec, b"./a//b"), Some(b"sub/a/b".to_vec()));
    }

    #[test]
    fn a_non_directory_naming_the_root_is_refused() {
        let t = tar(&[("./", 'f', &[])]);
        assert!(matches!(run(&t, None), Err(Error::UnsafeArchive { .. })));
        let t = tar(&[("..", 's', &[])]);
        assert!(matches!(run(&t, None), Err(Error::UnsafeArchive { .. })));
    }
}
