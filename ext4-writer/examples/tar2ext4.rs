//! Builds an ext4 image from a layer tar (plain, gzip or zstd).
//!
//! `tar2ext4 -i layer.tar|- -o OUT [--format F [--unsynced] | --vhd] [--max-size BYTES]
//! [--whiteouts overlay] [--metadata-csum] [--label NAME] [--uuid UUID] [--read-only]
//! [--size BYTES]`
//!
//! `--label` and `--uuid` set the volume label (at most 16 bytes) and the file system
//! UUID (32 hex digits, dashes allowed) instead of the defaults; `--read-only` sets the
//! read-only compatibility flag, so kernels refuse to mount the image read-write (it is
//! read-write by default); `--size` makes the file system at least that many bytes
//! long (whole 4 KiB blocks), free space and all, for an image to be written once mounted.
//!
//! By default OUT is the raw image, as long as the file system. With `--format F` (`vhdx`,
//! `vmdk`, `vhd-fixed`, `vhd-dynamic`, or any other format `disk-image` creates) OUT is a
//! new virtual disk of that format, and the image is built straight into it through
//! `disk_image::DiskFile`: no raw file, no conversion. The disk's virtual size is the
//! builder's `--max-size` (128 GiB by default), rounded down to whole 4 KiB blocks, which is
//! all the builder may use; the file system is as long as its content needs and the rest
//! of the disk stays unallocated. `--unsynced` makes the disk's final flush write its
//! metadata without waiting for the storage (qemu's `cache=unsafe`), for disks that are
//! rebuilt rather than recovered after a crash.
//!
//! With `--vhd` the raw image gets a fixed-VHD footer appended in place (through
//! `disk-image`), as an LCOW `layer.vhd` has: a VHD exactly as long as the file system.

use std::io::Read;
use std::process::ExitCode;

use disk_image::{DiskFile, Durability, Format};
use ext4_writer::{Builder, Options, Summary, Whiteouts};

const USAGE: &str = "usage: tar2ext4 -i layer.tar|- -o OUT [--format F [--unsynced] | --vhd] \
     [--max-size BYTES] [--whiteouts overlay] [--metadata-csum] [--label NAME] [--uuid UUID] \
     [--read-only] [--size BYTES]";

/// The builder's block size: a disk needs no byte past the last whole block of
/// `max_size`, the most the builder uses.
const BLOCK: u64 = 4096;

/// Parsed command line.
struct Args {
    input: String,
    output: String,
    whiteouts: Whiteouts,
    /// The disk format to build into; `None` for a plain raw file.
    format: Option<Format>,
    unsynced: bool,
    vhd: bool,
    max_size: Option<u64>,
    metadata_csum: bool,
    label: Option<String>,
    uuid: Option<[u8; 16]>,
    read_only: bool,
    size: Option<u64>,
}

/// A UUID: 32 hex digits, dashes anywhere.
fn parse_uuid(text: &str) -> Result<[u8; 16], String> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    let bad = || format!("--uuid takes 32 hex digits (dashes allowed), not {text:?}");
    if digits.len() != 32 {
        return Err(bad());
    }
    let mut uuid = [0u8; 16];
    for (i, pair) in digits.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).map_err(|_| bad())?;
        uuid[i] = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
    }
    Ok(uuid)
}

fn parse() -> Result<Args, String> {
    let mut input = None;
    let mut output = None;
    let mut whiteouts = Whiteouts::Keep;
    let mut format = None;
    let mut unsynced = false;
    let mut vhd = false;
    let mut max_size = None;
    let mut metadata_csum = false;
    let mut label = None;
    let mut uuid = None;
    let mut read_only = false;
    let mut size = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-i" => input = it.next(),
            "-o" => output = it.next(),
            "--vhd" => vhd = true,
            "--unsynced" => unsynced = true,
            "--metadata-csum" => metadata_csum = true,
            "--read-only" => read_only = true,
            "--label" => label = Some(it.next().ok_or("--label takes a name")?),
            "--uuid" => uuid = Some(parse_uuid(&it.next().ok_or("--uuid takes a UUID")?)?),
            "--size" => {
                let n = it.next().ok_or("--size takes a number of bytes")?;
                size = Some(
                    n.parse()
                        .map_err(|_| format!("--size takes a number of bytes, not {n:?}"))?,
                );
            }
            "--format" => {
                let name = it.next().ok_or("--format takes a disk format")?;
                let f: Format = name
                    .parse()
                    .map_err(|e| format!("--format {name:?}: {}", storage_core::Report(&e)))?;
                // A raw disk through the adapter would be a raw file of max-size bytes:
                // the plain file is that, as long as the image.
                format = (f != Format::Raw).then_some(f);
            }
            "--max-size" => {
                let n = it.next().ok_or("--max-size takes a number of bytes")?;
                max_size = Some(
                    n.parse()
                        .map_err(|_| format!("--max-size takes a number of bytes, not {n:?}"))?,
                );
            }
            "--whiteouts" => match it.next().as_deref() {
                Some("overlay") => whiteouts = Whiteouts::Overlay,
                other => return Err(format!("--whiteouts takes `overlay`, not {other:?}")),
            },
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if vhd && format.is_some() {
        return Err("--vhd footers a raw image; it does not go with --format".into());
    }
    if unsynced && format.is_none() {
        return Err("--unsynced is for a disk (--format); a raw image is never synced".into());
    }
    Ok(Args {
        input: input.ok_or("missing -i INPUT")?,
        output: output.ok_or("missing -o OUTPUT")?,
        whiteouts,
        format,
        unsynced,
        vhd,
        max_size,
        metadata_csum,
        label,
        uuid,
        read_only,
        size,
    })
}

/// Builds the tar into `out`; returns the target, flushed, and what was written.
fn build<W: std::io::Write + std::io::Seek>(
    out: W,
    input: Box<dyn Read + Send>,
    options: Options,
) -> Result<(W, Summary), ext4_writer::Error> {
    let mut b = Builder::new(out, options)?;
    b.append_tar(input)?;
    b.finish()
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let input: Box<dyn Read + Send> = if args.input == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&args.input).map_err(|e| format!("{}: {e}", args.input))?)
    };
    let mut options = Options {
        whiteouts: args.whiteouts,
        metadata_csum: args.metadata_csum,
        read_only: args.read_only,
        min_size: args.size.unwrap_or(0),
        ..Options::default()
    };
    if let Some(label) = &args.label {
        options = options.with_label(label)?;
    }
    if let Some(uuid) = args.uuid {
        options.uuid = uuid;
    }
    if let Some(max_size) = args.max_size.or(args.size) {
        // A file system of `--size` is the whole disk unless told otherwise.
        options.max_size = max_size;
    }
    let summary = match args.format {
        Some(format) => {
            let size = options.max_size - options.max_size % BLOCK;
            let mut disk = disk_image::create(args.output.as_ref(), format, size)?;
            if args.unsynced {
                disk.set_durability(Durability::Unsynced);
            }
            // The builder's last step flushes the disk (`Write::flush` is `Disk::flush`).
            let (file, summary) = build(DiskFile::new(disk), input, options)?;
            drop(file);
            eprintln!("{}: a {format} disk of {size} bytes", args.output);
            summary
        }
        None => {
            let out =
                std::fs::File::create(&args.output).map_err(|e| format!("{}: {e}", args.output))?;
            let (out, summary) = build(out, input, options)?;
            drop(out);
            if args.vhd {
                disk_image::vhd::FixedVhd::from_raw(args.output.as_ref())?;
            }
            summary
        }
    };
    eprintln!(
        "{}: {} bytes of ext4, {} inodes",
        args.output, summary.size, summary.inodes_used
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tar2ext4: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tar2ext4: {}", storage_core::Report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
