//! `monolithicFlat` VMDK: a text descriptor file naming one or more raw `FLAT` extents.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::descriptor::{Descriptor, Extent, MAX_DESCRIPTOR_BYTES, NO_PARENT_CID};
use super::header::SECTOR;
use super::new_cid;
use crate::disk::{Disk, DiskId, Durability, Format, RawExtent, check_range};
use crate::error::{Error, ErrorKind, Result};
use crate::file::ImageFile;

/// `createType` of flat disks.
pub const CREATE_TYPE: &str = "monolithicFlat";

#[derive(Debug)]
struct FlatExtent {
    file: ImageFile,
    /// Byte in `file` where this extent starts.
    offset: u64,
    /// Bytes of the disk this extent covers, from `start`.
    range: Range<u64>,
}

/// A `monolithicFlat` VMDK: descriptor plus raw extent files, raw-addressable.
#[derive(Debug)]
pub struct FlatVmdk {
    path: PathBuf,
    descriptor: Descriptor,
    extents: Vec<FlatExtent>,
    size: u64,
    writable: bool,
    cid_bumped: bool,
}

/// The extent file `name` a descriptor at `path` names, as a path below the descriptor's
/// directory: an absolute name or one with `..` is refused, so a descriptor cannot make
/// strata open (and, for a writable disk, write) any file elsewhere.
fn confined_extent<'a>(path: &Path, name: &'a str) -> Result<&'a Path> {
    let rel = Path::new(name);
    let plain = !name.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("VMDK extent {name:?} is not a file beside its descriptor"),
        )
        .with_path(path));
    }
    Ok(rel)
}

/// The name of the flat extent beside descriptor `path`: `disk.vmdk` -> `disk-flat.vmdk`.
fn extent_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "disk".into());
    format!("{stem}-flat.vmdk")
}

impl FlatVmdk {
    /// Creates descriptor `path` and the raw extent `<stem>-flat.vmdk` beside it (sparse on
    /// the host), `size` bytes; fails if either exists.
    pub fn create(path: &Path, size: u64) -> Result<Self> {
        if !size.is_multiple_of(SECTOR) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("VMDK size {size} is not a multiple of 512"),
            )
            .with_path(path));
        }
        let name = extent_name(path);
        let dir = path.parent().unwrap_or(Path::new("."));
        let extent_path = dir.join(&name);
        let extent = ImageFile::create(&extent_path)?;
        extent.set_len(size)?;
        let descriptor = Descriptor {
            cid: new_cid(NO_PARENT_CID),
            parent_cid: NO_PARENT_CID,
            create_type: CREATE_TYPE.into(),
            parent_hint: None,
            extents: vec![Extent {
                access: "RW".into(),
                sectors: size / SECTOR,
                kind: "FLAT".into(),
                file: name,
                offset: 0,
            }],
            ddb: Descriptor::default_ddb(size / SECTOR),
        };
        let desc = ImageFile::create(path)?;
        desc.write_all_at(descriptor.render().as_bytes(), 0)?;
        desc.sync_data()?;
        extent.sync_data()?;
        Ok(FlatVmdk {
            path: path.to_path_buf(),
            descriptor,
            extents: vec![FlatExtent {
                file: extent,
                offset: 0,
                range: 0..size,
            }],
            size,
            writable: true,
            cid_bumped: true,
        })
    }

    /// Opens a descriptor file whose extents are all `FLAT`.
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        let desc = ImageFile::open(path, true)?;
        let len = desc.len()?;
        if len > MAX_DESCRIPTOR_BYTES as u64 {
            return Err(Error::corrupt(path, 0, "VMDK descriptor file over 1 MiB"));
        }
        let mut text = vec![0u8; len as usize];
        desc.read_exact_at(&mut text, 0)?;
        let descriptor = Descriptor::parse(&text, path, 0)?;
        if descriptor.create_type != CREATE_TYPE {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("VMDK createType {:?}", descriptor.create_type),
            )
            .with_path(path));
        }
        if descriptor.parent_cid != NO_PARENT_CID || descriptor.parent_hint.is_some() {
            return Err(
                Error::new(ErrorKind::Unsupported, "a flat VMDK with a parent").with_path(path),
            );
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut extents = Vec::new();
        let mut size = 0u64;
        for e in &descriptor.extents {
            if e.kind != "FLAT" {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("VMDK extent type {} in a flat disk", e.kind),
                )
                .with_path(path));
            }
            let bytes = e
                .sectors
                .checked_mul(SECTOR)
                .filter(|b| size.checked_add(*b).is_some())
                .ok_or_else(|| Error::corrupt(path, 0, "extent sizes overflow"))?;
            let file = ImageFile::open(
                &dir.join(confined_extent(path, &e.file)?),
                read_only || e.access != "RW",
            )?;
            let offset = e
                .offset
                .checked_mul(SECTOR)
                .ok_or_else(|| Error::corrupt(path, 0, "extent offset overflows"))?;
            extents.push(FlatExtent {
                file,
                offset,
                range: size..size + bytes,
            });
            size += bytes;
        }
        if extents.is_empty() {
            return Err(Error::corrupt(path, 0, "VMDK descriptor names no extent"));
        }
        Ok(FlatVmdk {
            path: path.to_path_buf(),
            descriptor,
            extents,
            size,
            writable: !read_only,
            cid_bumped: false,
        })
    }

    /// The parsed descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    fn bump_cid(&mut self) -> Result<()> {
        if self.cid_bumped {
            return Ok(());
        }
        self.descriptor.cid = new_cid(self.descriptor.cid);
        let text = self.descriptor.render();
        // Write beside and rename, so the descriptor is never half written.
        let tmp = self.path.with_extension("vmdk.tmp");
        std::fs::write(&tmp, text.as_bytes())
            .map_err(|e| Error::io(&tmp, "writing descriptor", e))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| Error::io(&self.path, "replacing descriptor", e))?;
        self.cid_bumped = true;
        Ok(())
    }

    /// The pieces of `[offset, offset + len)`: extent index, file offset, buffer range.
    fn pieces(&self, offset: u64, len: usize) -> Vec<(usize, u64, Range<usize>)> {
        let end = offset + len as u64;
        self.extents
            .iter()
            .enumerate()
            .filter(|(_, e)| e.range.start < end && offset < e.range.end)
            .map(|(i, e)| {
                let from = offset.max(e.range.start);
                let to = end.min(e.range.end);
                (
                    i,
                    e.offset + (from - e.range.start),
                    (from - offset) as usize..(to - offset) as usize,
                )
            })
            .collect()
    }
}

impl Disk for FlatVmdk {
    fn format(&self) -> Format {
        Format::VmdkFlat
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&self.path, self.size, offset, buf.len())?;
        for (i, at, range) in self.pieces(offset, buf.len()) {
            self.extents[i]
                .file
                .read_zero_fill_at(&mut buf[range], at)?;
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(&self.path, self.size, offset, buf.len())?;
        if !self.writable {
            return Err(Error::new(ErrorKind::ReadOnly, "VMDK opened read-only")
                .with_path(&self.path)
                .with_offset(offset));
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.bump_cid()?;
        for (i, at, range) in self.pieces(offset, buf.len()) {
            self.extents[i].file.write_all_at(&buf[range], at)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        for e in &self.extents {
            e.file.sync_data()?;
        }
        Ok(())
    }

    fn set_durability(&mut self, durability: Durability) {
        for e in &mut self.extents {
            e.file.set_durability(durability);
        }
    }

    fn id(&self) -> Option<DiskId> {
        Some(DiskId::VmdkCid(self.descriptor.cid))
    }

    fn raw_extent(&self) -> Option<RawExtent> {
        match self.extents.as_slice() {
            [only] => Some(RawExtent {
                path: only.file.path().to_path_buf(),
                offset: only.offset,
                size: self.size,
            }),
            _ => None,
        }
    }
}

/// True when `first` (the start of a file) is a VMDK text descriptor.
pub fn is_descriptor(first: &[u8]) -> bool {
    first.starts_with(b"# Disk DescriptorFile")
}
