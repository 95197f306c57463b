//! Building the store's disks: a layer's `layer.vhd` from a tar, a container's
//! `sandbox.vhdx` from nothing. Neither mounts anything or needs root.
//!
//! A disk is built under a `.part` name beside its final one and renamed into place only
//! when it is whole and durable, so a failed or killed build (a digest mismatch, a bad
//! archive, a full disk) never leaves a disk that looks finished.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use disk_image::{DiskFile, Format};
use ext4_writer::{Builder, Options, ReadOptions, Reader, Whiteouts, WhiteoutsOut};
use storage_core::{Error, FilterSpec, IoContext, Op, Result};
use tar_engine::ApplyReport;

/// One ext4 block group: a sandbox's file system is made of whole ones.
pub const GROUP: u64 = 128 << 20;
/// The sandbox size LCOW gave a container by default: 20 GB.
pub const DEFAULT_SANDBOX_SIZE: u64 = 20 << 30;
/// One inode for every this many bytes of a sandbox (mkfs.ext4's default ratio is 16 KiB;
/// a container's writes are fewer, larger files than a whole system's).
const BYTES_PER_INODE: u64 = 64 << 10;

/// The options of a layer's ext4: whiteouts as overlay markers, digests of what was
/// received, no `lost+found` (which every layer would add to the union), and its
/// identity: `uuid`.
fn layer_options(uuid: [u8; 16]) -> Options {
    Options {
        whiteouts: Whiteouts::Overlay,
        digests: true,
        lost_found: false,
        uuid,
        label: *b"strata-layer\0\0\0\0",
        ..Options::default()
    }
}

/// The file system UUID of layer `id`'s disk: the first 16 bytes of its hex id (a fixed
/// one for an id that is not hex), so that `blkid` tells layers apart.
pub fn uuid_of(id: &str) -> [u8; 16] {
    let mut uuid = *b"strata-ext4-imag";
    let hex = id.as_bytes();
    if hex.len() >= 32 {
        let parsed: Option<Vec<u8>> = hex[..32]
            .chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        if let Some(bytes) = parsed {
            uuid.copy_from_slice(&bytes);
        }
    }
    uuid
}

/// How a `layer.vhd` is laid out on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LayerFormat {
    /// A fixed VHD, as LCOW's `tar2ext4 -vhd` writes it: the raw ext4 and a footer,
    /// attached straight on a loop device.
    #[default]
    Fixed,
    /// A dynamic VHD: only the blocks the ext4 uses are allocated (what hcsshim's
    /// `tar2ext4` users ask for), attached through a block view server.
    Dynamic,
}

impl LayerFormat {
    /// The store option that chooses it: `layer_format = fixed | dynamic`.
    pub fn parse(key: &str, value: &str) -> Result<Self> {
        match value {
            "fixed" => Ok(LayerFormat::Fixed),
            "dynamic" => Ok(LayerFormat::Dynamic),
            other => Err(Error::Unsupported {
                what: format!("{key} = {other:?}"),
                reason: "a layer.vhd is fixed or dynamic".into(),
            }),
        }
    }
}

/// What goes into a layer's image.
pub struct LayerInput<'a, R> {
    /// The operation (its cancellation).
    pub op: &'a Op,
    /// The tar stream.
    pub tar: R,
    /// Which entries are applied, and how they are renamed.
    pub filter: &'a FilterSpec,
    /// The digest the received bytes must have.
    pub expected_digest: Option<&'a str>,
    /// Names the layer in a digest mismatch.
    pub target: &'a str,
    /// Where to keep the archive's tar-split records, for a byte-exact diff.
    pub tar_split: Option<&'a Path>,
}

/// Builds `vhd` (a VHD of `format` holding an ext4) at `part` and renames it over `vhd`. With
/// `existing`, the image at `vhd` is read back first and the tar goes on top of it (a
/// second diff applied to a layer); without, the image holds the tar alone (`None` for
/// an empty layer). On any error `part` is removed and `vhd` is left as it was.
pub fn build_layer<R: std::io::Read + Send>(
    uuid: [u8; 16],
    vhd: &Path,
    part: &Path,
    format: LayerFormat,
    existing: bool,
    input: Option<LayerInput<'_, R>>,
) -> Result<Option<ApplyReport>> {
    let _ = std::fs::remove_file(part);
    let built = match format {
        LayerFormat::Fixed => {
            let out = File::create_new(part).ctx(|| format!("create {}", part.display()))?;
            build_into(out, uuid, vhd, existing, input).and_then(|(report, out)| {
                drop(out);
                // The footer goes on in place and the file is synced: LCOW's
                // `tar2ext4 -vhd`.
                disk_image::FixedVhd::from_raw(part)?;
                Ok(report)
            })
        }
        LayerFormat::Dynamic => {
            // As large as the builder may make the file system; only what it writes is
            // allocated.
            let size = layer_options(uuid).max_size / 4096 * 4096;
            let disk = disk_image::create(part, Format::VhdDynamic, size)?;
            build_into(DiskFile::new(disk), uuid, vhd, existing, input).and_then(|(report, out)| {
                let mut disk = out.into_inner();
                disk.flush()?;
                Ok(report)
            })
        }
    };
    let done = built.and_then(|report| {
        std::fs::rename(part, vhd).ctx(|| format!("rename {} into place", part.display()))?;
        sync_parent(vhd)?;
        Ok(report)
    });
    if done.is_err() {
        let _ = std::fs::remove_file(part);
    }
    done
}

/// Builds the layer's ext4 into `out`: the image at `vhd` read back first when
/// `existing`, then `input`'s tar. Returns the report on the tar and `out`, finished.
fn build_into<W: Write + Seek, R: std::io::Read + Send>(
    out: W,
    uuid: [u8; 16],
    vhd: &Path,
    existing: bool,
    input: Option<LayerInput<'_, R>>,
) -> Result<(Option<ApplyReport>, W)> {
    let mut builder = Builder::new(out, layer_options(uuid))?;
    if existing {
        // The image as a tar, OCI whiteouts and all, from a temporary file beside it.
        let tar_part = vhd.with_extension("readback.tar");
        let read_back = (|| {
            let mut tar = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tar_part)
                .ctx(|| format!("create {}", tar_part.display()))?;
            // Whatever format the disk has: its bytes through `DiskFile`.
            let img = DiskFile::new(disk_image::open(vhd, true)?);
            Reader::open(img)?.write_tar(
                &mut tar,
                ReadOptions {
                    whiteouts: WhiteoutsOut::Oci,
                },
            )?;
            tar.seek(SeekFrom::Start(0))
                .ctx(|| format!("rewind {}", tar_part.display()))?;
            builder.append_tar(tar)?;
            Ok::<(), Error>(())
        })();
        let _ = std::fs::remove_file(&tar_part);
        read_back?;
    }
    let report = match input {
        Some(i) => Some(builder.append_layer(
            i.op,
            i.tar,
            i.filter,
            i.expected_digest,
            i.target,
            i.tar_split,
        )?),
        None => None,
    };
    let (out, _) = builder.finish()?;
    Ok((report, out))
}

/// Builds a container's `sandbox.vhdx` of `size` bytes (whole block groups) at `part`
/// and renames it to `sandbox`: a dynamic VHDX whose ext4 fills it and holds only `upper/`
/// and `work/`, written straight into the disk through `DiskFile`, so the disk allocates
/// only the blocks the metadata takes.
pub fn build_sandbox(uuid: [u8; 16], sandbox: &Path, part: &Path, size: u64) -> Result<()> {
    let built = (|| {
        let _ = std::fs::remove_file(part);
        let disk = disk_image::create(part, Format::Vhdx, size)?;
        let options = Options {
            max_size: size,
            min_size: size,
            inode_headroom: u32::try_from(size / BYTES_PER_INODE).unwrap_or(u32::MAX),
            uuid,
            label: *b"strata-sandbox\0\0",
            ..Options::default()
        };
        let mut builder = Builder::new(DiskFile::new(disk), options)?;
        builder.append_tar(std::io::Cursor::new(upper_and_work()?))?;
        // The builder's last step flushes the disk.
        let (file, _) = builder.finish()?;
        drop(file);
        std::fs::rename(part, sandbox).ctx(|| format!("rename {} into place", part.display()))?;
        sync_parent(sandbox)
    })();
    if built.is_err() {
        let _ = std::fs::remove_file(part);
    }
    built
}

/// A tar of the two directories a sandbox's file system starts with.
fn upper_and_work() -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for name in ["upper/", "work/"] {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        tar.append_data(&mut header, name, std::io::empty())
            .ctx(|| format!("write the sandbox's {name} entry"))?;
    }
    tar.into_inner().ctx(|| "finish the sandbox's tar")
}

/// A size from a store or container option: bytes, or a number with `K`, `M`, `G` or `T`
/// (powers of 1024), rounded down to whole 128 MiB block groups; at least one.
pub fn parse_size(key: &str, value: &str) -> Result<u64> {
    let v = value.trim();
    let (digits, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, ""),
    };
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches(['B', 'I'])
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => u32::MAX,
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .filter(|_| shift != u32::MAX)
        .and_then(|n| n.checked_mul(1u64 << shift.min(63)));
    match bytes {
        Some(b) if b >= GROUP => Ok(b / GROUP * GROUP),
        _ => Err(Error::Unsupported {
            what: format!("the sandbox size {key}={value:?}"),
            reason: "a sandbox size is a number of bytes (K, M, G or T allowed) of at least 128M"
                .into(),
        }),
    }
}

/// Makes a rename in the directory of `path` durable.
fn sync_parent(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disks_uuid_is_the_start_of_its_layer_id() {
        let id = format!("0123456789abcdef0123456789abcdef{}", "f".repeat(32));
        assert_eq!(
            uuid_of(&id),
            [
                0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                0xcd, 0xef
            ]
        );
        assert_eq!(&uuid_of("not-hex"), b"strata-ext4-imag");
    }

    #[test]
    fn sizes_take_units_and_round_down_to_block_groups() {
        assert_eq!(parse_size("k", "20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("k", "20GiB").unwrap(), 20 << 30);
        assert_eq!(parse_size("k", "200M").unwrap(), 128 << 20);
        assert_eq!(parse_size("k", &(1u64 << 30).to_string()).unwrap(), 1 << 30);
        for bad in ["", "12", "1X", "G", "-1G", "99999999999T"] {
            assert!(parse_size("k", bad).is_err(), "{bad}");
        }
    }
}
