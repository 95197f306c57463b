//! The VMDK text descriptor: `CID`, `parentCID`, `createType`, `parentFileNameHint`,
//! the extent lines and the disk database (`ddb.*`).

use std::path::Path;

use crate::error::{Error, Result};

/// `parentCID` of a disk without a parent.
pub const NO_PARENT_CID: u32 = 0xffff_ffff;
/// Largest descriptor this crate parses, in bytes.
pub const MAX_DESCRIPTOR_BYTES: usize = 1 << 20;

/// One extent line: `RW 2097152 SPARSE "disk.vmdk"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    /// `RW`, `RDONLY` or `NOACCESS`.
    pub access: String,
    /// Size in sectors.
    pub sectors: u64,
    /// `SPARSE`, `FLAT`, `ZERO`, ...
    pub kind: String,
    /// The extent's file name, relative to the descriptor.
    pub file: String,
    /// For flat extents, the sector in `file` where the extent starts.
    pub offset: u64,
}

/// A parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Content id of this disk.
    pub cid: u32,
    /// Content id of the parent, [`NO_PARENT_CID`] when none.
    pub parent_cid: u32,
    /// `createType`, e.g. `monolithicSparse`.
    pub create_type: String,
    /// `parentFileNameHint`, when a parent exists.
    pub parent_hint: Option<String>,
    /// The extents, in order.
    pub extents: Vec<Extent>,
    /// `ddb.*` entries in order, values without quotes.
    pub ddb: Vec<(String, String)>,
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

fn parse_extent(line: &str) -> Option<Extent> {
    // ACCESS SECTORS TYPE ["FILE" [OFFSET]]
    let (head, rest) = match line.find('"') {
        Some(q) => (&line[..q], Some(&line[q..])),
        None => (line, None),
    };
    let mut words = head.split_whitespace();
    let access = words.next()?.to_string();
    let sectors = words.next()?.parse().ok()?;
    let kind = words.next()?.to_string();
    if words.next().is_some() {
        return None;
    }
    let (file, offset) = match rest {
        Some(rest) => {
            let rest = rest.strip_prefix('"')?;
            let end = rest.find('"')?;
            let file = rest[..end].to_string();
            let tail = rest[end + 1..].trim();
            let offset = if tail.is_empty() {
                0
            } else {
                tail.parse().ok()?
            };
            (file, offset)
        }
        None => (String::new(), 0),
    };
    Some(Extent {
        access,
        sectors,
        kind,
        file,
        offset,
    })
}

fn parse_cid(v: &str) -> Option<u32> {
    u32::from_str_radix(unquote(v), 16).ok()
}

impl Descriptor {
    /// Parses a descriptor; `path` and `offset` only name the source in errors. Trailing
    /// NUL padding is ignored.
    pub fn parse(bytes: &[u8], path: &Path, offset: u64) -> Result<Self> {
        if bytes.len() > MAX_DESCRIPTOR_BYTES {
            return Err(Error::corrupt(path, offset, "descriptor larger than 1 MiB"));
        }
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let text = std::str::from_utf8(&bytes[..end])
            .map_err(|_| Error::corrupt(path, offset, "descriptor is not UTF-8 text"))?;
        let mut cid = None;
        let mut parent_cid = None;
        let mut create_type = None;
        let mut parent_hint = None;
        let mut extents = Vec::new();
        let mut ddb = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || Error::corrupt(path, offset, format!("descriptor line {}: {line}", n + 1));
            if let Some((key, value)) = line.split_once('=')
                && !key.contains('"')
            {
                let key = key.trim();
                match key {
                    "CID" => cid = Some(parse_cid(value).ok_or_else(bad)?),
                    "parentCID" => parent_cid = Some(parse_cid(value).ok_or_else(bad)?),
                    "createType" => create_type = Some(unquote(value).to_string()),
                    "parentFileNameHint" => parent_hint = Some(unquote(value).to_string()),
                    k if k.starts_with("ddb.") => {
                        ddb.push((k.to_string(), unquote(value).to_string()));
                    }
                    _ => {}
                }
            } else {
                extents.push(parse_extent(line).ok_or_else(bad)?);
            }
        }
        let missing =
            |what: &str| Error::corrupt(path, offset, format!("descriptor has no {what}"));
        Ok(Descriptor {
            cid: cid.ok_or_else(|| missing("CID"))?,
            parent_cid: parent_cid.unwrap_or(NO_PARENT_CID),
            create_type: create_type.ok_or_else(|| missing("createType"))?,
            parent_hint,
            extents,
            ddb,
        })
    }

    /// Renders the descriptor as VMware writes it.
    pub fn render(&self) -> String {
        let mut s = String::from("# Disk DescriptorFile\nversion=1\n");
        s += &format!("CID={:08x}\n", self.cid);
        s += &format!("parentCID={:08x}\n", self.parent_cid);
        s += &format!("createType=\"{}\"\n", self.create_type);
        if let Some(hint) = &self.parent_hint {
            s += &format!("parentFileNameHint=\"{hint}\"\n");
        }
        s += "\n# Extent description\n";
        for e in &self.extents {
            s += &format!("{} {} {} \"{}\"", e.access, e.sectors, e.kind, e.file);
            if e.kind == "FLAT" {
                s += &format!(" {}", e.offset);
            }
            s.push('\n');
        }
        s += "\n# The Disk Data Base\n#DDB\n\n";
        for (k, v) in &self.ddb {
            s += &format!("{k} = \"{v}\"\n");
        }
        s
    }

    /// The default disk database for a disk of `sectors`: hardware version and an IDE
    /// geometry (16 heads, 63 sectors per track).
    pub fn default_ddb(sectors: u64) -> Vec<(String, String)> {
        let cylinders = (sectors / (16 * 63)).min(16383);
        vec![
            ("ddb.virtualHWVersion".into(), "4".into()),
            ("ddb.geometry.cylinders".into(), cylinders.to_string()),
            ("ddb.geometry.heads".into(), "16".into()),
            ("ddb.geometry.sectors".into(), "63".into()),
            ("ddb.adapterType".into(), "ide".into()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_delta_descriptor() {
        let d = Descriptor {
            cid: 0x1234abcd,
            parent_cid: 0xfffffffe,
            create_type: "monolithicSparse".into(),
            parent_hint: Some("base.vmdk".into()),
            extents: vec![Extent {
                access: "RW".into(),
                sectors: 2048,
                kind: "SPARSE".into(),
                file: "child.vmdk".into(),
                offset: 0,
            }],
            ddb: Descriptor::default_ddb(2048),
        };
        let text = d.render();
        let back = Descriptor::parse(text.as_bytes(), Path::new("x"), 512).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn parses_flat_extent_with_offset_and_rejects_garbage() {
        let text = "CID=fffffffe\ncreateType=\"monolithicFlat\"\nRW 100 FLAT \"a b-flat.vmdk\" 7\n";
        let d = Descriptor::parse(text.as_bytes(), Path::new("x"), 0).unwrap();
        assert_eq!(d.extents[0].file, "a b-flat.vmdk");
        assert_eq!(d.extents[0].offset, 7);
        assert_eq!(d.parent_cid, NO_PARENT_CID);
        assert!(Descriptor::parse(b"CID=zz\ncreateType=x\n", Path::new("x"), 0).is_err());
        assert!(Descriptor::parse(b"createType=x\n", Path::new("x"), 0).is_err());
        assert!(Descriptor::parse(b"CID=1\ncreateType=x\nRW lots\n", Path::new("x"), 0).is_err());
        assert!(Descriptor::parse(&[0xff, 0xfe], Path::new("x"), 0).is_err());
    }
}
