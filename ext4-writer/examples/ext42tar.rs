//! Writes the tree of an ext4 image as a deterministic tar.
//!
//! `ext42tar -i layer.img [--whiteouts oci] -o out.tar|-`

use std::io::Write;
use std::process::ExitCode;

use ext4_writer::{ReadOptions, Reader, WhiteoutsOut};

/// Parsed command line.
struct Args {
    input: String,
    output: String,
    whiteouts: WhiteoutsOut,
}

fn parse() -> Result<Args, String> {
    let mut input = None;
    let mut output = None;
    let mut whiteouts = WhiteoutsOut::Keep;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-i" => input = it.next(),
            "-o" => output = it.next(),
            "--whiteouts" => match it.next().as_deref() {
                Some("oci") => whiteouts = WhiteoutsOut::Oci,
                other => return Err(format!("--whiteouts takes `oci`, not {other:?}")),
            },
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        input: input.ok_or("missing -i IMAGE")?,
        output: output.ok_or("missing -o OUTPUT")?,
        whiteouts,
    })
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let img = std::fs::File::open(&args.input).map_err(|e| format!("{}: {e}", args.input))?;
    let mut reader = Reader::open(std::io::BufReader::new(img))?;
    let out: Box<dyn Write> = if args.output == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(&args.output).map_err(|e| format!("{}: {e}", args.output))?)
    };
    let out = std::io::BufWriter::with_capacity(1 << 20, out);
    let mut out = reader.write_tar(
        out,
        ReadOptions {
            whiteouts: args.whiteouts,
        },
    )?;
    out.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ext42tar: {e}\nusage: ext42tar -i layer.img [--whiteouts oci] -o out.tar|-");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ext42tar: {}", storage_core::Report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
