//! containers/storage's tar-split (vbatts/tar-split's format): the tar a
//! containers-storage layer was imported from, written back byte for byte from the
//! layer's `<id>.tar-split.gz` and its diff directory.
//!
//! The file is gzip'd JSON, one entry a line: `{"type":2,"payload":<base64>}` segments
//! hold raw bytes of the stream (headers, padding, the end blocks), `{"type":1,"name":
//! <path>,"size":N,"payload":<base64 crc64-ISO>}` entries stand for a file's content,
//! read from the tree (`name_raw`, base64, replaces `name` when the path is not UTF-8).
//! As with [`crate::split::reassemble`], the whole stream is first built without being
//! written, checking every file's size and CRC-64; only if all match is it written.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use storage_core::{IoContext, Op, Result};

use crate::split::{PassResult, check_then_write, copy_checked};

/// Writes the tar recorded in containers-storage's tar-split file `split` with file
/// contents from the tree `root`; `None` (nothing written) when the tree no longer holds
/// what was recorded or the file is unusable.
pub fn reassemble_cs(
    op: &Op,
    root: &Path,
    split: &Path,
    out: &mut dyn Write,
) -> Result<Option<u64>> {
    let root_dir = File::open(root).ctx(|| format!("open layer tree {}", root.display()))?;
    check_then_write(root, split, out, |out, _first| {
        replay(op, &root_dir, split, out)
    })
}

/// One pass over the entries; the inner `Err` says why the tree or file does not match.
fn replay(op: &Op, root: &File, split: &Path, out: &mut dyn Write) -> PassResult {
    let file = File::open(split).ctx(|| format!("open {}", split.display()))?;
    let lines = BufReader::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    let table = crc64_iso_table();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let wctx = || "write the reassembled tar".to_string();
    for line in lines.lines() {
        op.check()?;
        let line = match line {
            Ok(l) => l,
            Err(e) => return Ok(Err(format!("unreadable: {e}"))),
        };
        if line.trim().is_empty() {
            continue;
        }
        let entry: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => return Ok(Err(format!("bad entry: {e}"))),
        };
        let payload = match entry.get("payload").and_then(|p| p.as_str()) {
            Some(p) => match base64_decode(p) {
                Some(b) => b,
                None => return Ok(Err("a payload is not base64".into())),
            },
            None => Vec::new(),
        };
        match entry.get("type").and_then(serde_json::Value::as_u64) {
            Some(2) => {
                out.write_all(&payload).ctx(wctx)?;
                total += payload.len() as u64;
            }
            Some(1) => {
                let name = match (
                    entry.get("name").and_then(|n| n.as_str()),
                    entry.get("name_raw").and_then(|n| n.as_str()),
                ) {
                    (_, Some(raw)) => match base64_decode(raw) {
                        Some(b) => b,
                        None => return Ok(Err("a name_raw is not base64".into())),
                    },
                    (Some(n), None) => n.as_bytes().to_vec(),
                    (None, None) => return Ok(Err("a file entry has no name".into())),
                };
                let size = entry
                    .get("size")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                if size == 0 {
                    continue;
                }
                let mut crc = !0u64;
                let copied = copy_checked(root, &name, size, &mut buf, out, |data| {
                    crc = crc64_update(&table, crc, data);
                })?;
                if let Err(why) = copied {
                    return Ok(Err(why));
                }
                // containers-storage records a CRC-64 of 8 bytes; anything else cannot
                // vouch for the content.
                if payload[..] != (!crc).to_be_bytes()[..] {
                    let shown = String::from_utf8_lossy(&name);
                    return Ok(Err(format!("{shown} has other content")));
                }
                total += size;
            }
            other => return Ok(Err(format!("unknown entry type {other:?}"))),
        }
    }
    Ok(Ok(total))
}

/// Go's `crc64.MakeTable(crc64.ISO)`.
fn crc64_iso_table() -> [u64; 256] {
    const ISO: u64 = 0xD800_0000_0000_0000;
    let mut table = [0u64; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut crc = i as u64;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ ISO
            } else {
                crc >> 1
            };
        }
        *slot = crc;
    }
    table
}

/// Go's `crc64.Update` on an already inverted `crc`.
fn crc64_update(table: &[u64; 256], mut crc: u64, data: &[u8]) -> u64 {
    for &b in data {
        crc = table[usize::from((crc as u8) ^ b)] ^ (crc >> 8);
    }
    crc
}

/// Standard base64 (with or without padding); `None` for anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_iso_matches_go() {
        // The CRC-64/GO-ISO check value.
        let t = crc64_iso_table();
        assert_eq!(!crc64_update(&t, !0, b"123456789"), 0xB909_56C7_75A4_1001);
    }

    fn base64(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in data.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                out.push(if i <= c.len() {
                    char::from(A[((n >> (18 - 6 * i)) & 63) as usize])
                } else {
                    '='
                });
            }
        }
        out
    }

    /// A tar-split file of a raw segment, the file `dir/f` and a closing segment.
    fn split_for(dir: &Path, content: &[u8]) -> std::path::PathBuf {
        let t = crc64_iso_table();
        let crc = !crc64_update(&t, !0, content);
        split_with(dir, content, &crc.to_be_bytes())
    }

    /// [`split_for`] with the file's checksum payload as given.
    fn split_with(dir: &Path, content: &[u8], crc: &[u8]) -> std::path::PathBuf {
        let lines = format!(
            "{{\"type\":2,\"payload\":\"{}\",\"position\":0}}\n\
             {{\"type\":1,\"name\":\"./dir/\",\"payload\":null,\"position\":1}}\n\
             {{\"type\":1,\"name\":\"./dir/f\",\"size\":{},\"payload\":\"{}\",\"position\":2}}\n\
             {{\"type\":2,\"payload\":\"{}\",\"position\":3}}\n",
            base64(b"HEADER"),
            content.len(),
            base64(crc),
            base64(b"PADDING")
        );
        let path = dir.join("layer.tar-split.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(lines.as_bytes()).unwrap();
        gz.finish().unwrap();
        path
    }

    #[test]
    fn the_recorded_tar_comes_back_while_the_tree_matches_and_nothing_when_it_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("diff");
        std::fs::create_dir_all(tree.join("dir")).unwrap();
        std::fs::write(tree.join("dir/f"), b"hello").unwrap();
        let split = split_for(tmp.path(), b"hello");
        let op = Op::new("test");
        let mut out = Vec::new();
        assert_eq!(
            reassemble_cs(&op, &tree, &split, &mut out).unwrap(),
            Some(18)
        );
        assert_eq!(out, b"HEADERhelloPADDING");

        // Same size, other content: the CRC-64 tells, and nothing is written.
        std::fs::write(tree.join("dir/f"), b"jello").unwrap();
        let mut out = Vec::new();
        assert_eq!(reassemble_cs(&op, &tree, &split, &mut out).unwrap(), None);
        assert!(out.is_empty());
        // Another size.
        std::fs::write(tree.join("dir/f"), b"hello!").unwrap();
        assert_eq!(
            reassemble_cs(&op, &tree, &split, &mut Vec::new()).unwrap(),
            None
        );
    }

    #[test]
    fn a_checksum_that_is_not_a_crc64_vouches_for_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("diff");
        std::fs::create_dir_all(tree.join("dir")).unwrap();
        std::fs::write(tree.join("dir/f"), b"hello").unwrap();
        let op = Op::new("test");
        for payload in [&b""[..], b"\x01\x02\x03\x04"] {
            let split = split_with(tmp.path(), b"hello", payload);
            let mut out = Vec::new();
            assert_eq!(reassemble_cs(&op, &tree, &split, &mut out).unwrap(), None);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn base64_decodes_padded_and_unpadded() {
        assert_eq!(base64_decode("YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("aGVsbG8K").as_deref(), Some(&b"hello\n"[..]));
        assert_eq!(base64_decode("a*=="), None);
    }
}
