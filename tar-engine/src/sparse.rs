//! Sparse files: where their data lies, as GNU tar's encodings give it, so that a writer
//! leaves the rest of the file a hole instead of writing zeros.
//!
//! Four encodings are read (GNU tar's manual, "Sparse Formats"):
//! - **old GNU** (type `S`, what `tar --sparse --format=gnu` writes): the map is in the
//!   header and in 512-byte extension headers after it. The `tar` crate reads these but
//!   keeps the map to itself, and yields the file dense, its holes as zeros. So the stream
//!   is read through a `Tap`, which keeps what the crate reads while it parses a header
//!   (the extension headers among it), and the data is read past the crate by a
//!   `Direct` reader: holes are never made of zeros, whatever size the header claims.
//!   The crate is then handed zeros in place of what it would skip (`Shared::owed`).
//! - **PAX 0.0** (`GNU.sparse.offset`/`GNU.sparse.numbytes` pairs), **0.1**
//!   (`GNU.sparse.map`) and **1.0** (`GNU.sparse.major=1`, the map at the start of the
//!   data): regular entries whose data is the segments one after another, read from the
//!   entry as it is.
//!
//! In every encoding the stored data is the segments' bytes in order. Every segment but
//! the last is a multiple of 512 bytes (GNU tar pads each to a block, so anything else would
//! be read differently by different readers; the `tar` crate refuses it in old GNU maps).

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

/// A run of a sparse file's data: `len` bytes at `offset`. What no segment covers, up to
/// the file's size, is a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    /// Where the run starts in the file.
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

/// Tar's block size.
const BLOCK: u64 = 512;

fn bad(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

/// Checks a sparse map against the file's `size` and the `stored` bytes of data that
/// follow: segments in order, not overlapping, inside the file, all but the last a
/// multiple of 512 bytes, their lengths adding up to `stored`. Empty segments (GNU tar
/// ends a map that ends in a hole with one) are dropped.
pub(crate) fn checked(map: Vec<Segment>, size: u64, stored: u64) -> io::Result<Vec<Segment>> {
    let map: Vec<Segment> = map.into_iter().filter(|s| s.len > 0).collect();
    let mut end = 0u64;
    let mut total = 0u64;
    for (i, s) in map.iter().enumerate() {
        if s.offset < end {
            return Err(bad(format!(
                "sparse map: segment at {} overlaps or precedes the one before, which ends at {end}",
                s.offset
            )));
        }
        end = s
            .offset
            .checked_add(s.len)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                bad(format!(
                    "sparse map: segment of {} bytes at {} reaches past the file's size, {size}",
                    s.len, s.offset
                ))
            })?;
        if i + 1 < map.len() && !s.len.is_multiple_of(BLOCK) {
            return Err(bad(format!(
                "sparse map: segment of {} bytes at {} is not the last and not a multiple of 512 bytes",
                s.len, s.offset
            )));
        }
        total += s.len;
    }
    if total != stored {
        return Err(bad(format!(
            "sparse map: its segments hold {total} bytes, the archive stores {stored}"
        )));
    }
    Ok(map)
}

/// A decimal number as PAX and the 1.0 map write them: ASCII digits only.
fn number(text: &[u8], what: &str) -> io::Result<u64> {
    std::str::from_utf8(text)
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "{what} {:?} is not a number",
                String::from_utf8_lossy(text)
            ))
        })
}

/// What the `GNU.sparse.*` records of a PAX header say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PaxSparse {
    /// The file's real name (`GNU.sparse.name`, 0.1 and 1.0), replacing the header's.
    pub name: Option<Vec<u8>>,
    /// The file's size.
    pub size: u64,
    /// The map (0.0 and 0.1); `None` for 1.0, which keeps it at the start of the data.
    pub map: Option<Vec<Segment>>,
}

/// Reads the `GNU.sparse.*` records (key without the prefix, value), in archive order;
/// `None` when there are none.
pub(crate) fn pax_sparse(records: &[(Vec<u8>, Vec<u8>)]) -> io::Result<Option<PaxSparse>> {
    if records.is_empty() {
        return Ok(None);
    }
    let get = |key: &[u8]| {
        records
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    };
    let name = get(b"name").map(<[u8]>::to_vec);
    let size = |keys: &[&[u8]]| -> io::Result<u64> {
        let (key, value) = keys
            .iter()
            .find_map(|k| get(k).map(|v| (k, v)))
            .ok_or_else(|| bad("PAX sparse file without GNU.sparse.size"))?;
        number(
            value,
            &format!("PAX GNU.sparse.{}", String::from_utf8_lossy(key)),
        )
    };
    if let Some(major) = get(b"major") {
        let minor = get(b"minor").unwrap_or(b"0");
        if (major, minor) != (&b"1"[..], &b"0"[..]) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "PAX sparse format {}.{} (0.0, 0.1 and 1.0 are read)",
                    String::from_utf8_lossy(major),
                    String::from_utf8_lossy(minor)
                ),
            ));
        }
        return Ok(Some(PaxSparse {
            name,
            size: size(&[b"realsize", b"size"])?,
            map: None,
        }));
    }
    let map = if let Some(text) = get(b"map") {
        // 0.1: "offset,size,offset,size...".
        let numbers = text
            .split(|&b| b == b',')
            .map(|n| number(n, "PAX GNU.sparse.map entry"))
            .collect::<io::Result<Vec<u64>>>()?;
        if !numbers.len().is_multiple_of(2) {
            return Err(bad("PAX GNU.sparse.map holds an odd count of numbers"));
        }
        numbers
            .chunks_exact(2)
            .map(|p| Segment {
                offset: p[0],
                len: p[1],
            })
            .collect::<Vec<_>>()
    } else {
        // 0.0: each GNU.sparse.offset followed by its GNU.sparse.numbytes.
        let mut map = Vec::new();
        let mut offset = None;
        for (k, v) in records {
            match k.as_slice() {
                b"offset" if offset.is_none() => {
                    offset = Some(number(v, "PAX GNU.sparse.offset")?);
                }
                b"numbytes" => {
                    let o = offset.take().ok_or_else(|| {
                        bad("PAX GNU.sparse.numbytes without a GNU.sparse.offset before it")
                    })?;
                    map.push(Segment {
                        offset: o,
                        len: number(v, "PAX GNU.sparse.numbytes")?,
                    });
                }
                b"offset" => {
                    return Err(bad("PAX GNU.sparse.offset without its GNU.sparse.numbytes"));
                }
                _ => {}
            }
        }
        if offset.is_some() || map.is_empty() {
            return Err(bad(
                "PAX sparse file without a complete map (GNU.sparse.map, or GNU.sparse.offset and GNU.sparse.numbytes pairs)",
            ));
        }
        map
    };
    if let Some(n) = get(b"numblocks")
        && number(n, "PAX GNU.sparse.numblocks")? != map.len() as u64
    {
        return Err(bad(format!(
            "PAX GNU.sparse.numblocks says {}, the map holds {}",
            String::from_utf8_lossy(n),
            map.len()
        )));
    }
    Ok(Some(PaxSparse {
        name,
        size: size(&[b"size"])?,
        map: Some(map),
    }))
}

/// Reads the map a PAX 1.0 sparse file keeps at the start of its data: decimal numbers,
/// each ended by a newline (the count, then an offset and a length per segment), padded
/// with NULs to a block. Reads no more than `stored` bytes; returns the map and the bytes
/// it took.
pub(crate) fn read_data_map(data: &mut dyn Read, stored: u64) -> io::Result<(Vec<Segment>, u64)> {
    let mut numbers: Vec<u64> = Vec::new();
    let mut want: Option<u64> = None;
    let mut digits: Vec<u8> = Vec::new();
    let mut taken = 0u64;
    let mut block = [0u8; BLOCK as usize];
    loop {
        if taken + BLOCK > stored {
            return Err(bad("PAX 1.0 sparse map runs past the file's data"));
        }
        data.read_exact(&mut block).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                bad("archive is truncated inside a PAX 1.0 sparse map")
            } else {
                e
            }
        })?;
        taken += BLOCK;
        for &b in &block {
            if b != b'\n' {
                if digits.len() > 20 {
                    return Err(bad("PAX 1.0 sparse map: a number of more than 20 digits"));
                }
                digits.push(b);
                continue;
            }
            let n = number(&digits, "PAX 1.0 sparse map entry")?;
            digits.clear();
            match want {
                None => {
                    want = Some(n.checked_mul(2).ok_or_else(|| {
                        bad("PAX 1.0 sparse map: more segments than can be counted")
                    })?)
                }
                Some(_) => numbers.push(n),
            }
            if want == Some(numbers.len() as u64) {
                // The rest of this block is padding.
                let map = numbers
                    .chunks_exact(2)
                    .map(|p| Segment {
                        offset: p[0],
                        len: p[1],
                    })
                    .collect();
                return Ok((map, taken));
            }
        }
    }
}

/// The tar stream, shared by the [`Tap`] the `tar` crate reads and the [`Direct`] readers
/// of old GNU sparse files' data.
pub(crate) struct Shared<'a> {
    inner: &'a mut dyn Read,
    /// Bytes a [`Direct`] reader took past the `tar` crate, which it has yet to skip: they
    /// are handed to it as zeros, in place of reading them again.
    owed: u64,
    /// Whether what the crate reads is kept in `record`.
    recording: bool,
    record: Vec<u8>,
    /// Stream position of `record`'s first byte.
    record_start: u64,
    /// Bytes handed to the crate: its position in the stream.
    pos: u64,
    /// Data of the current old GNU sparse entry not read yet.
    direct_left: u64,
}

/// [`Shared`], as the tap and the direct readers hold it.
pub(crate) type Stream<'a> = Rc<RefCell<Shared<'a>>>;

/// A [`Stream`] over the tar stream `inner`.
pub(crate) fn stream(inner: &mut dyn Read) -> Stream<'_> {
    Rc::new(RefCell::new(Shared {
        inner,
        owed: 0,
        recording: false,
        record: Vec::new(),
        record_start: 0,
        pos: 0,
        direct_left: 0,
    }))
}

impl Shared<'_> {
    /// Starts keeping what the crate reads (the previous record is dropped).
    pub(crate) fn start_recording(&mut self) {
        self.recording = true;
        self.record.clear();
        self.record_start = self.pos;
    }

    /// Stops keeping what the crate reads; the record stays until the next start.
    pub(crate) fn stop_recording(&mut self) {
        self.recording = false;
    }

    /// `len` bytes at stream position `at`, if the record holds them.
    fn recorded(&self, at: u64, len: usize) -> Option<&[u8]> {
        let from = usize::try_from(at.checked_sub(self.record_start)?).ok()?;
        self.record.get(from..from.checked_add(len)?)
    }

    /// Sets how much data of an old GNU sparse entry its [`Direct`] reader may read.
    pub(crate) fn set_direct(&mut self, stored: u64) {
        self.direct_left = stored;
    }
}

/// The tar stream as the `tar` crate reads it.
pub(crate) struct Tap<'a>(pub Stream<'a>);

impl Read for Tap<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.borrow_mut();
        let n = if s.owed > 0 {
            let n = buf.len().min(usize::try_from(s.owed).unwrap_or(usize::MAX));
            buf[..n].fill(0);
            s.owed -= n as u64;
            // Skipped data is not worth keeping (and may be large).
            if s.recording && s.record.is_empty() {
                s.record_start += n as u64;
            } else if s.recording {
                s.record.extend_from_slice(&buf[..n]);
            }
            n
        } else {
            let n = s.inner.read(buf)?;
            if s.recording {
                s.record.extend_from_slice(&buf[..n]);
            }
            n
        };
        s.pos += n as u64;
        Ok(n)
    }
}

/// The stored data of the current old GNU sparse entry, read straight from the stream.
pub(crate) struct Direct<'a>(pub Stream<'a>);

impl Read for Direct<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.borrow_mut();
        let want = buf
            .len()
            .min(usize::try_from(s.direct_left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = s.inner.read(&mut buf[..want])?;
        s.direct_left -= n as u64;
        s.owed += n as u64;
        Ok(n)
    }
}

/// The sparse map of an old GNU sparse entry (type `S`): the header's four slots, then
/// the extension headers the `tar` crate read (and the tap kept) at `file_pos`, where its
/// data would otherwise start. `stored` is the size field: the bytes of data stored.
pub(crate) fn gnu_map(
    header: &tar::Header,
    file_pos: u64,
    stored: u64,
    stream: &Stream<'_>,
) -> io::Result<(u64, Vec<Segment>)> {
    let gnu = header
        .as_gnu()
        .ok_or_else(|| bad("sparse entry without a GNU header"))?;
    let mut map = Vec::new();
    let mut add = |slots: &[tar::GnuSparseHeader]| -> io::Result<()> {
        for slot in slots.iter().filter(|s| !s.is_empty()) {
            map.push(Segment {
                offset: slot.offset()?,
                len: slot.length()?,
            });
        }
        Ok(())
    };
    add(&gnu.sparse)?;
    let mut extended = gnu.is_extended();
    let mut at = file_pos;
    let shared = stream.borrow();
    while extended {
        let bytes = shared
            .recorded(at, BLOCK as usize)
            .ok_or_else(|| bad("sparse extension header was not read with its entry"))?;
        let mut ext = tar::GnuExtSparseHeader::new();
        ext.as_mut_bytes().copy_from_slice(bytes);
        add(&ext.sparse)?;
        extended = ext.is_extended();
        at += BLOCK;
    }
    let size = gnu.real_size()?;
    Ok((size, checked(map, size, stored)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(offset: u64, len: u64) -> Segment {
        Segment { offset, len }
    }

    fn records(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_map_is_checked_against_the_size_and_the_stored_data() {
        let ok = checked(vec![seg(0, 512), seg(4096, 5), seg(8192, 0)], 8192, 517).unwrap();
        assert_eq!(ok, vec![seg(0, 512), seg(4096, 5)]);
        for (map, size, stored) in [
            (vec![seg(4096, 512), seg(0, 512)], 8192, 1024), // out of order
            (vec![seg(0, 1024), seg(512, 512)], 8192, 1536), // overlapping
            (vec![seg(8000, 512)], 8192, 512),               // past the size
            (vec![seg(u64::MAX, 2)], u64::MAX, 2),           // overflowing
            (vec![seg(0, 100), seg(512, 512)], 8192, 612),   // unaligned, not last
            (vec![seg(0, 512)], 8192, 1024),                 // stored more than mapped
        ] {
            assert!(checked(map.clone(), size, stored).is_err(), "{map:?}");
        }
    }

    #[test]
    fn pax_0_0_pairs_offsets_with_the_lengths_that_follow() {
        let r = records(&[
            ("size", "10000"),
            ("numblocks", "2"),
            ("offset", "0"),
            ("numbytes", "512"),
            ("offset", "9000"),
            ("numbytes", "1000"),
        ]);
        let s = pax_sparse(&r).unwrap().unwrap();
        assert_eq!(s.size, 10000);
        assert_eq!(s.name, None);
        assert_eq!(s.map, Some(vec![seg(0, 512), seg(9000, 1000)]));
        let unpaired = records(&[("size", "1"), ("offset", "0"), ("offset", "1")]);
        assert!(pax_sparse(&unpaired).is_err());
        let miscounted = records(&[("size", "9"), ("numblocks", "3"), ("map", "0,1")]);
        assert!(pax_sparse(&miscounted).is_err());
    }

    #[test]
    fn pax_0_1_reads_its_map_and_its_real_name() {
        let r = records(&[
            ("size", "8192"),
            ("numblocks", "2"),
            ("name", "big"),
            ("map", "0,512,4096,4096"),
        ]);
        let s = pax_sparse(&r).unwrap().unwrap();
        assert_eq!((s.name.as_deref(), s.size), (Some(&b"big"[..]), 8192));
        assert_eq!(s.map, Some(vec![seg(0, 512), seg(4096, 4096)]));
        for bad_map in ["0,512,4096", "0,x", "0,-1", ""] {
            assert!(
                pax_sparse(&records(&[("size", "1"), ("map", bad_map)])).is_err(),
                "{bad_map:?}"
            );
        }
    }

    #[test]
    fn pax_1_0_leaves_its_map_to_the_data_and_refuses_other_versions() {
        let r = records(&[
            ("major", "1"),
            ("minor", "0"),
            ("name", "big"),
            ("realsize", "1073741824"),
        ]);
        let s = pax_sparse(&r).unwrap().unwrap();
        assert_eq!((s.size, s.map), (1 << 30, None));
        let two = records(&[("major", "2"), ("minor", "0"), ("realsize", "1")]);
        assert_eq!(
            pax_sparse(&two).unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
    }

    #[test]
    fn the_1_0_map_is_read_from_whole_blocks_of_the_data() {
        let mut data = b"2\n0\n512\n4096\n5\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(&[7u8; 517]);
        let mut r = &data[..];
        let (map, taken) = read_data_map(&mut r, data.len() as u64).unwrap();
        assert_eq!((map, taken), (vec![seg(0, 512), seg(4096, 5)], 512));
        assert_eq!(r.len(), 517);
        // A map longer than the data, or one cut short, is refused.
        let mut long = b"3\n".to_vec();
        long.resize(512, b'1');
        assert!(read_data_map(&mut &long[..], 512).is_err());
        assert!(read_data_map(&mut &b"1\n0\n"[..], 4).is_err());
    }
}
