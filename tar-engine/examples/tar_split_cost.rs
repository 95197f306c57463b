//! What byte-exact layers cost: applies a tar to a directory with and without tar-split
//! records (alternating, several runs), then writes the tree back with the records and
//! with the deterministic writer, and prints the medians and the records' size.
//!
//! ```text
//! cargo run --release -p tar-engine --example tar_split_cost -- INPUT.tar SCRATCH_DIR [RUNS]
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use storage_core::Op;
use storage_core::archive::ExportOptions;
use tar_engine::split::write_layer_exact;
use tar_engine::{ApplyOptions, WhiteoutMode, apply_tar, write_layer};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Applies `tar` into a fresh `dir/diff`, keeping records at `split` when given.
fn import(tar: &Path, dir: &Path, split: Option<PathBuf>) -> Result<Duration> {
    if dir.exists() {
        dirtree::remove_all(dir)?;
    }
    std::fs::create_dir_all(dir.join("diff"))?;
    let mut opts = ApplyOptions::new(WhiteoutMode::Overlay);
    opts.tar_split = split;
    let input = std::fs::File::open(tar)?;
    let start = Instant::now();
    apply_tar(&Op::new("cost"), &dir.join("diff"), input, &opts)?;
    Ok(start.elapsed())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(tar), Some(scratch)) = (args.get(1), args.get(2)) else {
        return Err("usage: tar_split_cost INPUT.tar SCRATCH_DIR [RUNS]".into());
    };
    let runs: usize = args.get(3).map_or(Ok(3), |r| r.parse())?;
    let (tar, scratch) = (Path::new(tar), Path::new(scratch));
    let (plain, exact) = (scratch.join("plain"), scratch.join("exact"));
    let split = exact.join("tar-split");
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        without.push(import(tar, &plain, None)?);
        with.push(import(tar, &exact, Some(split.clone()))?);
    }
    let tar_len = std::fs::metadata(tar)?.len();
    let split_len = std::fs::metadata(&split)?.len();
    let op = Op::new("cost");
    let opts = ExportOptions::default();
    let (mut replayed, mut written) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        write_layer_exact(
            &op,
            &exact.join("diff"),
            &[],
            &split,
            &opts,
            std::io::sink(),
        )?;
        replayed.push(start.elapsed());
        let start = Instant::now();
        write_layer(&op, &exact.join("diff"), &[], &opts, std::io::sink())?;
        written.push(start.elapsed());
    }
    println!("input: {tar_len} bytes of tar");
    println!(
        "tar-split records: {split_len} bytes ({:.3}% of the tar)",
        split_len as f64 * 100.0 / tar_len.max(1) as f64
    );
    println!(
        "import without records: {:?}, with: {:?} (median of {runs})",
        median(without),
        median(with)
    );
    println!(
        "diff byte-exact (check pass + replay): {:?}, deterministic writer: {:?}",
        median(replayed),
        median(written)
    );
    dirtree::remove_all(&plain)?;
    dirtree::remove_all(&exact)?;
    Ok(())
}
