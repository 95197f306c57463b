//! Builds an ext4 image from a layer tar (plain, gzip or zstd).
//!
//! `tar2ext4 -i layer.tar|- -o layer.img [--vhd] [--whiteouts overlay] [--metadata-csum]`
//!
//! With `--vhd` the image gets a fixed-VHD footer (through `disk-image`), as an LCOW
//! `layer.vhd` does.

use std::io::Read;
use std::process::ExitCode;

use ext4_writer::{Builder, Options, Whiteouts};

/// Parsed command line.
struct Args {
    input: String,
    output: String,
    whiteouts: Whiteouts,
    vhd: bool,
    metadata_csum: bool,
}

fn parse() -> Result<Args, String> {
    let mut input = None;
    let mut output = None;
    let mut whiteouts = Whiteouts::Keep;
    let mut vhd = false;
    let mut metadata_csum = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-i" => input = it.next(),
            "-o" => output = it.next(),
            "--vhd" => vhd = true,
            "--metadata-csum" => metadata_csum = true,
            "--whiteouts" => match it.next().as_deref() {
                Some("overlay") => whiteouts = Whiteouts::Overlay,
                other => return Err(format!("--whiteouts takes `overlay`, not {other:?}")),
            },
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        input: input.ok_or("missing -i INPUT")?,
        output: output.ok_or("missing -o OUTPUT")?,
        whiteouts,
        vhd,
        metadata_csum,
    })
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let input: Box<dyn Read + Send> = if args.input == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&args.input).map_err(|e| format!("{}: {e}", args.input))?)
    };
    let out = std::fs::File::create(&args.output).map_err(|e| format!("{}: {e}", args.output))?;
    let mut b = Builder::new(
        out,
        Options {
            whiteouts: args.whiteouts,
            metadata_csum: args.metadata_csum,
            ..Options::default()
        },
    )?;
    b.append_tar(input)?;
    let (out, summary) = b.finish()?;
    drop(out);
    if args.vhd {
        disk_image::vhd::FixedVhd::from_raw(args.output.as_ref())?;
    }
    eprintln!(
        "{}: {} bytes, {} inodes",
        args.output, summary.size, summary.inodes_used
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "tar2ext4: {e}\nusage: tar2ext4 -i layer.tar|- -o layer.img [--vhd] [--whiteouts overlay] [--metadata-csum]"
            );
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
