//! Any bytes as a layer (plain tar, gzip or zstd) through `tar_engine::ingest`, the entry
//! stream every writer reads archives through, into a sink that reads each file's data
//! and keeps nothing: every rule of the engine (names, whiteouts, PAX records, xattrs,
//! hard links, digests) runs with no writer behind it. Twice: as the directory writer
//! reads (whiteouts applied, digests computed), then as the ext4 `Keep` writer reads
//! (whiteouts literal, no digests) under a filter that excludes, strips and rebases.
#![no_main]

use std::collections::BTreeSet;
use std::io::Read;

use libfuzzer_sys::fuzz_target;
use storage_core::{FilterSpec, Op};
use tar_engine::ingest::invalid;
use tar_engine::{Entry, EntrySink, IngestOptions, Written, ingest};
// Links the capped allocator.
use fuzz_support as _;

/// Reads every file's data, keeps nothing.
struct Drain;

impl EntrySink for Drain {
    type Error = storage_core::Error;

    fn create(
        &mut self,
        entry: &Entry,
        data: &mut dyn Read,
        _: &Written,
    ) -> storage_core::Result<bool> {
        std::io::copy(data, &mut std::io::sink()).map_err(|e| invalid(Some(&entry.raw), e))?;
        Ok(true)
    }

    fn whiteout(&mut self, _: &Entry, _: &Written) -> storage_core::Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> storage_core::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let op = Op::new("fuzz ingest");
    let _ = ingest(&op, data, IngestOptions::default(), &mut Drain);
    let filter = FilterSpec {
        inclusions: BTreeSet::new(),
        exclusions: BTreeSet::from(["etc/shadow".to_string()]),
        rebase: "rebased".into(),
        strip: "usr".into(),
    };
    let opts = IngestOptions {
        filter: Some(&filter),
        skip_digests: true,
        tar_split: None,
        literal_whiteouts: true,
        target: "fuzz",
        ..IngestOptions::default()
    };
    let _ = ingest(&op, data, opts, &mut Drain);
});
