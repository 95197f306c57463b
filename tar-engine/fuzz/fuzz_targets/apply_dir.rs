//! Any bytes as a layer applied by `tar_engine::apply_tar`, the directory writer, into a
//! fresh temporary directory: with whiteouts deleting, then as overlay markers over what
//! the first pass left. It must return an error or a report, never panic, and never touch
//! anything outside the directory. The overlay pass also keeps tar-split records (beside
//! the directory), so the splitter reads every input, and a tree that applied is written
//! back from them: byte for byte, or by the deterministic writer, never a panic.
//!
//! The target drops root first (`fuzz_support::drop_root`): an escape found here must not
//! be able to write anywhere that matters, and as `nobody` no device node can be made.
//! Owners are therefore the caller's; chown and device paths are the tests' to cover.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage_core::Op;
use storage_core::archive::ExportOptions;
use tar_engine::{ApplyOptions, Ownership, WhiteoutMode, apply_tar, write_layer_exact};

fuzz_target!(init: fuzz_support::drop_root(), |data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let Ok(records) = tempfile::tempdir() else { return };
    let split = records.path().join("tar-split");
    let op = Op::new("fuzz apply");
    for whiteouts in [WhiteoutMode::Delete, WhiteoutMode::Overlay] {
        let opts = ApplyOptions {
            ownership: Ownership::Caller,
            sync: false,
            tar_split: (whiteouts == WhiteoutMode::Overlay).then(|| split.clone()),
            ..ApplyOptions::new(whiteouts)
        };
        let applied = apply_tar(&op, dir.path(), data, &opts);
        if applied.is_ok() && opts.tar_split.is_some() {
            let export = ExportOptions::default();
            let _ = write_layer_exact(&op, dir.path(), &[], &split, &export, std::io::sink());
        }
    }
    fuzz_support::make_removable(dir.path());
});
