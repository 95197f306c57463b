//! The VHD hard disk footer (Microsoft "Virtual Hard Disk Image Format Specification"):
//! 512 big-endian bytes at the end of every VHD, and copied at the start of dynamic ones.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use zerocopy::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, ErrorKind, Result};

/// `cookie`.
pub const FOOTER_COOKIE: [u8; 8] = *b"conectix";
/// `features`: the reserved bit that must always be set.
pub const FEATURES_RESERVED: u32 = 2;
/// `file_format_version` 1.0.
pub const FORMAT_VERSION: u32 = 0x0001_0000;
/// `data_offset` of a fixed disk.
pub const NO_DATA_OFFSET: u64 = u64::MAX;
/// `disk_type`: fixed.
pub const DISK_FIXED: u32 = 2;
/// `disk_type`: dynamic.
pub const DISK_DYNAMIC: u32 = 3;
/// `disk_type`: differencing.
pub const DISK_DIFFERENCING: u32 = 4;
/// `creator_host_os`: Windows.
pub const HOST_OS_WINDOWS: u32 = 0x5769_326b;
/// `creator_application`. "win " is what Hyper-V writes; readers (qemu among them) take
/// the size of such disks from `current_size` rather than from the CHS geometry, which is
/// the size this crate means.
pub const CREATOR_APP: [u8; 4] = *b"win ";
/// Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC).
pub const VHD_EPOCH_UNIX: u64 = 946_684_800;
/// Largest disk the format allows (2040 GiB).
pub const MAX_SIZE: u64 = 2040 << 30;

/// The footer, byte for byte.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Footer {
    /// [`FOOTER_COOKIE`].
    pub cookie: [u8; 8],
    /// [`FEATURES_RESERVED`] and feature bits.
    pub features: U32,
    /// [`FORMAT_VERSION`].
    pub format_version: U32,
    /// Offset of the dynamic header, [`NO_DATA_OFFSET`] for fixed disks.
    pub data_offset: U64,
    /// Creation time, seconds since the VHD epoch.
    pub timestamp: U32,
    /// Creating application.
    pub creator_app: [u8; 4],
    /// Creating application's version.
    pub creator_version: U32,
    /// Creating host OS.
    pub creator_host_os: U32,
    /// Size at creation, bytes.
    pub original_size: U64,
    /// Current virtual size, bytes.
    pub current_size: U64,
    /// CHS cylinders.
    pub cylinders: U16,
    /// CHS heads.
    pub heads: u8,
    /// CHS sectors per track.
    pub sectors_per_track: u8,
    /// `DISK_*`.
    pub disk_type: U32,
    /// One's complement of the byte sum of the footer with this field zero.
    pub checksum: U32,
    /// Identifies the disk; children record it.
    pub unique_id: [u8; 16],
    /// Saved-state flag.
    pub saved_state: u8,
    /// Zero.
    pub reserved: [u8; 427],
}

const _: () = assert!(size_of::<Footer>() == 512);

/// One's complement of the sum of `bytes` (with the checksum field already zeroed).
pub fn checksum(bytes: &[u8]) -> u32 {
    !bytes
        .iter()
        .fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)))
}

/// Seconds since the VHD epoch, now.
pub fn timestamp_now() -> u32 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(VHD_EPOCH_UNIX);
    u32::try_from(unix.saturating_sub(VHD_EPOCH_UNIX)).unwrap_or(u32::MAX)
}

/// The CHS geometry the specification's algorithm gives a disk of `size` bytes.
pub fn geometry(size: u64) -> (u16, u8, u8) {
    let total = (size / 512).min(65535 * 16 * 255);
    let (spt, heads, cyl_times_heads);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cyl_times_heads = total / spt;
    } else {
        let mut s = 17;
        let mut cth = total / s;
        let mut h = cth.div_ceil(1024).max(4);
        if cth >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            cth = total / s;
        }
        if cth >= h * 1024 {
            s = 63;
            h = 16;
            cth = total / s;
        }
        spt = s;
        heads = h;
        cyl_times_heads = cth;
    }
    let cylinders = (cyl_times_heads / heads).min(65535);
    (cylinders as u16, heads as u8, spt as u8)
}

impl Footer {
    /// A new footer for a disk of `size` bytes and `disk_type`, with a fresh unique id.
    pub fn new(size: u64, disk_type: u32, data_offset: u64) -> Self {
        let mut f = Footer::new_zeroed();
        f.cookie = FOOTER_COOKIE;
        f.features = FEATURES_RESERVED.into();
        f.format_version = FORMAT_VERSION.into();
        f.data_offset = data_offset.into();
        f.timestamp = timestamp_now().into();
        f.creator_app = CREATOR_APP;
        f.creator_version = 0x000a_0000.into();
        f.creator_host_os = HOST_OS_WINDOWS.into();
        f.original_size = size.into();
        f.current_size = size.into();
        let (c, h, s) = geometry(size);
        f.cylinders = c.into();
        f.heads = h;
        f.sectors_per_track = s;
        f.disk_type = disk_type.into();
        f.unique_id = *uuid::Uuid::new_v4().as_bytes();
        f.seal();
        f
    }

    /// Recomputes the checksum.
    pub fn seal(&mut self) {
        self.checksum = 0.into();
        self.checksum = checksum(self.as_bytes()).into();
    }

    /// True when `bytes` start with the footer cookie.
    pub fn is_footer(bytes: &[u8]) -> bool {
        bytes.get(..8) == Some(&FOOTER_COOKIE[..])
    }

    /// Parses a footer found at `offset` of `path`, verifying cookie, checksum, type and
    /// size before anything else reads it.
    pub fn parse(bytes: &[u8], path: &Path, offset: u64) -> Result<Self> {
        let (footer, _) = Footer::read_from_prefix(bytes)
            .map_err(|_| Error::corrupt(path, offset, "file is shorter than a VHD footer"))?;
        if footer.cookie != FOOTER_COOKIE {
            return Err(Error::corrupt(path, offset, "no VHD footer cookie"));
        }
        let mut copy = footer.clone();
        copy.checksum = 0.into();
        let want = checksum(copy.as_bytes());
        if footer.checksum.get() != want {
            return Err(Error::corrupt(
                path,
                offset,
                format!(
                    "VHD footer checksum {:#x}, computed {want:#x}",
                    footer.checksum.get()
                ),
            ));
        }
        let disk_type = footer.disk_type.get();
        if !matches!(disk_type, DISK_FIXED | DISK_DYNAMIC | DISK_DIFFERENCING) {
            return Err(
                Error::new(ErrorKind::Unsupported, format!("VHD disk type {disk_type}"))
                    .with_path(path)
                    .with_offset(offset),
            );
        }
        let size = footer.current_size.get();
        if size % 512 != 0 || size > MAX_SIZE {
            return Err(Error::corrupt(
                path,
                offset,
                format!("VHD size {size} is not a multiple of 512 up to 2040 GiB"),
            ));
        }
        Ok(footer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_checksum_is_verified() {
        let f = Footer::new(1 << 30, DISK_FIXED, NO_DATA_OFFSET);
        let p = Path::new("x.vhd");
        assert!(Footer::parse(f.as_bytes(), p, 0).is_ok());
        let mut bytes = f.as_bytes().to_vec();
        bytes[100] ^= 1;
        let err = Footer::parse(&bytes, p, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn geometry_follows_the_specification() {
        // 127 MiB disk: the spec's algorithm gives 17 sectors/track first, then 31/63.
        let (c, h, s) = geometry(127 << 20);
        assert!(u64::from(c) * u64::from(h) * u64::from(s) <= (127 << 20) / 512);
        assert_eq!(geometry(u64::MAX / 2), (65535, 16, 255));
        assert_eq!(geometry(64 << 20), (963, 8, 17));
    }
}
