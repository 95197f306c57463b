//! Copying part of one tree into another through a tar stream: what the exporter
//! writes, the directory writer applies, so the copy keeps owners, modes, times, xattrs,
//! links and holes, and lands inside the target whatever the names say.

use std::path::Path;

use storage_core::archive::{ApplyReport, ExportOptions};
use storage_core::{Error, FilterSpec, Op, Result};

use crate::apply::{ApplyOptions, WhiteoutMode, apply_tar};
use crate::export::write_layer;

/// Copies the entries of the tree at `from` that `spec` keeps, renamed as it renames
/// them, into the tree at `to`. The walk of `from` never follows a symlink and skips
/// subtrees `spec` keeps nothing of; the writes into `to` stay inside it (symlinks and
/// `..` included) and replace what is there. Returns what was applied.
pub fn copy_tree(op: &Op, from: &Path, spec: &FilterSpec, to: &Path) -> Result<ApplyReport> {
    let (reader, writer) = std::io::pipe()
        .map_err(|e| Error::io(format!("make a pipe to copy {}", from.display()), e))?;
    let opts = ExportOptions {
        filter: spec.clone(),
        ..ExportOptions::default()
    };
    std::thread::scope(|s| {
        let exporter = s.spawn(|| write_layer(op, from, &[], &opts, writer).map(drop));
        let applied = apply_tar(op, to, reader, &ApplyOptions::new(WhiteoutMode::Delete));
        let exported = exporter.join().unwrap_or_else(|_| {
            Err(Error::io(
                format!("read {}", from.display()),
                std::io::Error::other("the exporting thread panicked"),
            ))
        });
        // The exporter's error is the cause when both failed: the applier then saw a
        // stream cut short.
        match (exported, applied) {
            (Err(e), _) => Err(e),
            (Ok(()), applied) => applied,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(keep: &str, strip: &str, rebase: &str) -> FilterSpec {
        FilterSpec {
            inclusions: [keep.to_owned()].into(),
            exclusions: [String::new()].into(),
            strip: strip.to_owned(),
            rebase: rebase.to_owned(),
        }
    }

    #[test]
    fn a_subtree_lands_renamed_inside_the_target_and_nothing_else_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::create_dir_all(from.join("a/b")).unwrap();
        std::fs::write(from.join("a/b/f"), b"kept").unwrap();
        std::fs::create_dir_all(from.join("other")).unwrap();
        std::fs::write(from.join("other/g"), b"left").unwrap();
        std::fs::create_dir_all(&to).unwrap();
        // A symlink in the target that climbs out: the copy still lands inside.
        std::os::unix::fs::symlink("../../..", to.join("up")).unwrap();

        let report =
            copy_tree(&Op::new("copy"), &from, &spec("a/b", "a/b", "up/dest"), &to).unwrap();
        assert_eq!(report.entries, 2, "{report:?}");
        assert_eq!(
            std::fs::read(to.join("up/dest/f")).ok(),
            None,
            "went through the symlink"
        );
        let landed: Vec<_> = walk(&to);
        assert!(landed.iter().any(|p| p.ends_with("dest/f")), "{landed:?}");
        assert!(!landed.iter().any(|p| p.contains("other")), "{landed:?}");
        assert!(!dir.path().join("dest").exists() && !Path::new("/dest").exists());
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_owned()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let t = e.file_type().unwrap();
                if t.is_dir() {
                    todo.push(e.path());
                }
                out.push(e.path().strip_prefix(root).unwrap().display().to_string());
            }
        }
        out
    }
}
