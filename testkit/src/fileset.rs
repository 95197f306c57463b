//! A set of sparse files in one byte string: how a disk image that spans several files
//! (a flat VMDK and its extent, a child and its parent) becomes one fuzz input, and how a
//! crash input becomes files again in a regression test.
//!
//! Only the non-zero 512-byte sectors of each file are stored, so a 4 MiB VHDX whose
//! metadata fills a few KiB is a few KiB of input, and a mutation lands on a field instead
//! of on zeros. The layout, little-endian:
//!
//! ```text
//! "FSET"
//! u8 file count, then per file:
//!   u8 name length, name, u64 file length, u16 chunk count, then per chunk:
//!     u64 offset, u32 length, the bytes
//! ```
//!
//! [`mutate`] is the structure-aware half of a custom mutator for such inputs, and
//! [`SparseFile::reader`] reads one without expanding it.
//!
//! ```
//! use testkit::fileset::{FileSet, SparseFile};
//! let mut image = vec![0u8; 8192];
//! image[4096..4100].copy_from_slice(b"head");
//! let set = FileSet { files: vec![SparseFile::from_bytes(b"disk.vhdx", &image)] };
//! let bytes = set.encode();
//! assert!(bytes.len() < 600);
//! let back = FileSet::decode(&bytes).unwrap();
//! assert_eq!(back.files[0].to_bytes(), image);
//! ```

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The first bytes of an encoded set.
pub const MAGIC: &[u8; 4] = b"FSET";
/// Granularity of the zero runs left out by [`SparseFile::from_bytes`].
pub const SECTOR: usize = 512;
/// Files larger than this are cut to it by [`FileSet::materialize`] (they are sparse, so
/// the size costs nothing; the cap keeps a fuzzed length from filling a disk when read).
pub const MAX_FILE_LEN: u64 = 1 << 30;

/// Some bytes at an offset of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Byte offset in the file.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A file: a name, a length, and the bytes that are not zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseFile {
    /// File name (a single path component; see [`FileSet::materialize`]).
    pub name: Vec<u8>,
    /// Length in bytes; what no chunk covers reads as zeros.
    pub len: u64,
    /// Chunks, sorted by offset and apart as [`SparseFile::from_bytes`] and
    /// [`SparseFile::write`] make them; a mutated set may have them overlap, and then the
    /// later one wins.
    pub chunks: Vec<Chunk>,
}

/// A [`SparseFile`] read as a file (see [`SparseFile::reader`]).
#[derive(Debug)]
pub struct SparseReader<'a> {
    file: &'a SparseFile,
    pos: u64,
}

impl io::Read for SparseReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.file.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        self.file.fill(self.pos, &mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for SparseReader<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            io::SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            io::SeekFrom::End(d) => (self.file.len, d),
            io::SeekFrom::Current(d) => (self.pos, d),
        };
        self.pos = base.checked_add_signed(delta).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start or past 2^64",
            )
        })?;
        Ok(self.pos)
    }
}

/// Files, the first of them the one to open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSet {
    /// The files.
    pub files: Vec<SparseFile>,
}

impl SparseFile {
    /// The file holding `bytes`, with every run of all-zero sectors left out.
    pub fn from_bytes(name: &[u8], bytes: &[u8]) -> Self {
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + SECTOR).min(bytes.len());
            let sector = &bytes[at..end];
            if sector.iter().any(|&b| b != 0) {
                match chunks.last_mut() {
                    Some(last) if last.offset + last.data.len() as u64 == at as u64 => {
                        last.data.extend_from_slice(sector)
                    }
                    _ => chunks.push(Chunk {
                        offset: at as u64,
                        data: sector.to_vec(),
                    }),
                }
            }
            at = end;
        }
        SparseFile {
            name: name.to_vec(),
            len: bytes.len() as u64,
            chunks,
        }
    }

    /// `len` bytes at `offset`, zeros where no chunk is (and past the end).
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.fill(offset, &mut out);
        out
    }

    /// Fills `out` with the bytes at `offset`, zeros where no chunk is (and past the
    /// end). Where chunks overlap (a mutation can make them), the later one wins.
    fn fill(&self, offset: u64, out: &mut [u8]) {
        out.fill(0);
        let end = offset.saturating_add(out.len() as u64);
        for c in &self.chunks {
            let c_end = c.offset.saturating_add(c.data.len() as u64);
            if c_end <= offset || c.offset >= end {
                continue;
            }
            let from = offset.max(c.offset);
            let to = end.min(c_end);
            let src = (from - c.offset) as usize..(to - c.offset) as usize;
            let dst = (from - offset) as usize..(to - offset) as usize;
            out[dst].copy_from_slice(&c.data[src]);
        }
    }

    /// The file as `Read + Seek`, never holding its whole length in memory.
    pub fn reader(&self) -> SparseReader<'_> {
        SparseReader { file: self, pos: 0 }
    }

    /// Writes `bytes` at `offset`, merging the chunks it touches; the length grows to
    /// cover them.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let end = offset.saturating_add(bytes.len() as u64);
        let (touched, mut kept): (Vec<Chunk>, Vec<Chunk>) =
            std::mem::take(&mut self.chunks).into_iter().partition(|c| {
                let c_end = c.offset.saturating_add(c.data.len() as u64);
                c_end >= offset && c.offset <= end
            });
        let start = touched.iter().map(|c| c.offset).fold(offset, u64::min);
        let stop = touched
            .iter()
            .map(|c| c.offset.saturating_add(c.data.len() as u64))
            .fold(end, u64::max);
        let mut data = vec![0u8; (stop - start) as usize];
        for c in &touched {
            let at = (c.offset - start) as usize;
            data[at..at + c.data.len()].copy_from_slice(&c.data);
        }
        let at = (offset - start) as usize;
        data[at..at + bytes.len()].copy_from_slice(bytes);
        kept.push(Chunk {
            offset: start,
            data,
        });
        kept.sort_by_key(|c| c.offset);
        self.chunks = kept;
        self.len = self.len.max(stop);
    }

    /// The whole file in memory (for small files; the length is taken as it is).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.read(0, self.len as usize)
    }
}

impl FileSet {
    /// The encoded set; files past 255, and chunks past 65535 of a file, are left out.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let files = &self.files[..self.files.len().min(255)];
        out.push(files.len() as u8);
        for f in files {
            let name = &f.name[..f.name.len().min(255)];
            out.push(name.len() as u8);
            out.extend_from_slice(name);
            out.extend_from_slice(&f.len.to_le_bytes());
            let chunks = &f.chunks[..f.chunks.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(chunks.len() as u16).to_le_bytes());
            for c in chunks {
                let data = &c.data[..c.data.len().min(u32::MAX as usize)];
                out.extend_from_slice(&c.offset.to_le_bytes());
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                out.extend_from_slice(data);
            }
        }
        out
    }

    /// Decodes an encoded set; `None` when `bytes` is not one, whole (trailing bytes are
    /// not allowed either, so every input has one meaning).
    pub fn decode(bytes: &[u8]) -> Option<FileSet> {
        let mut r = Cursor { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return None;
        }
        let count = r.take(1)?[0];
        let mut files = Vec::new();
        for _ in 0..count {
            let name_len = r.take(1)?[0] as usize;
            let name = r.take(name_len)?.to_vec();
            let len = r.u64()?;
            let chunk_count = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
            let mut chunks = Vec::new();
            for _ in 0..chunk_count {
                let offset = r.u64()?;
                let data_len = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
                let data = r.take(data_len)?.to_vec();
                chunks.push(Chunk { offset, data });
            }
            files.push(SparseFile { name, len, chunks });
        }
        (r.at == bytes.len()).then_some(FileSet { files })
    }

    /// Writes the files into `dir` and returns their paths, the first file first. A name
    /// that is not a plain file name (empty, `.`, `..`, over 64 bytes, or holding anything
    /// but ASCII letters, digits, `.`, `_` and `-`) is replaced by `fileN`; a later file of
    /// the same name replaces an earlier one. Lengths are capped at [`MAX_FILE_LEN`], and
    /// chunk bytes past a file's length are dropped.
    pub fn materialize(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            let path = dir.join(safe_name(&f.name).unwrap_or_else(|| format!("file{i}")));
            let file = std::fs::File::create(&path)?;
            let len = f.len.min(MAX_FILE_LEN);
            file.set_len(len)?;
            for c in &f.chunks {
                if c.offset >= len {
                    continue;
                }
                let n = (len - c.offset).min(c.data.len() as u64) as usize;
                file.write_all_at(&c.data[..n], c.offset)?;
            }
            paths.push(path);
        }
        Ok(paths)
    }
}

/// A small deterministic generator for a mutator's choices.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (libFuzzer gives the mutator one).
    pub fn new(seed: u32) -> Self {
        Rng(u64::from(seed) | 1 << 40)
    }

    /// The next value (xorshift64*).
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Mutates a file set in place, for a fuzzer's custom mutator: mostly the bytes of one
/// chunk (through `mutate_bytes`, e.g. libFuzzer's own mutator), where nearly all the
/// structure of an image is; sometimes a copy of a chunk elsewhere, a chunk removed, a
/// file's length, a file named as another (a parent hint, an extent) or a file dropped.
/// Returns `false` when the set has no file to mutate.
pub fn mutate(set: &mut FileSet, rng: &mut Rng, mutate_bytes: impl FnOnce(&mut Vec<u8>)) -> bool {
    if set.files.is_empty() {
        return false;
    }
    let f = rng.below(set.files.len());
    let choice = rng.below(100);
    let file = &mut set.files[f];
    match choice {
        // A chunk's bytes: where nearly all the structure is.
        0..80 if !file.chunks.is_empty() => {
            let c = rng.below(file.chunks.len());
            let chunk = &mut file.chunks[c];
            mutate_bytes(&mut chunk.data);
            let end = chunk.offset.saturating_add(chunk.data.len() as u64);
            file.len = file.len.max(end);
        }
        // Bytes somewhere new: a copy of a chunk at another sector.
        80..86 if !file.chunks.is_empty() => {
            let c = rng.below(file.chunks.len());
            let data = file.chunks[c].data.clone();
            let at = (rng.below((file.len / 512).max(1) as usize) as u64) * 512;
            file.write(at, &data);
        }
        // A chunk's bytes gone.
        86..90 if !file.chunks.is_empty() => {
            let c = rng.below(file.chunks.len());
            file.chunks.remove(c);
        }
        // The file's length: shorter, longer, or off a sector boundary.
        90..95 => {
            file.len = match rng.below(3) {
                0 => file.len / 2,
                1 => file.len.saturating_add(1 << rng.below(24)),
                _ => file.len ^ (1 << rng.below(12)),
            };
            let len = file.len;
            file.chunks.retain(|c| c.offset < len);
        }
        // Names: a file named as another (a parent hint, an extent) or dropped.
        95..98 if set.files.len() > 1 => {
            let g = rng.below(set.files.len());
            let name = set.files[g].name.clone();
            set.files[f].name = name;
        }
        98..100 if set.files.len() > 1 => {
            set.files.remove(f);
        }
        _ => {
            let file = &mut set.files[f];
            let at = rng.below(file.len.max(1) as usize) as u64;
            file.write(at, &[rng.next_u64() as u8]);
        }
    }
    true
}

/// `name` as a plain file name, if it is one.
fn safe_name(name: &[u8]) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != b"."
        && name != b".."
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| String::from_utf8_lossy(name).into_owned())
}

/// Reads an encoded set front to back.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_file_round_trips_and_keeps_only_nonzero_sectors() {
        let mut bytes = vec![0u8; 5 * SECTOR + 7];
        bytes[10] = 1;
        bytes[3 * SECTOR] = 2;
        bytes[5 * SECTOR + 6] = 3;
        let f = SparseFile::from_bytes(b"a", &bytes);
        assert_eq!(f.chunks.len(), 3);
        assert_eq!(f.to_bytes(), bytes);
        let set = FileSet { files: vec![f] };
        assert_eq!(FileSet::decode(&set.encode()), Some(set));
    }

    #[test]
    fn decode_refuses_short_and_trailing_bytes() {
        let set = FileSet {
            files: vec![SparseFile::from_bytes(b"x", b"abc")],
        };
        let mut bytes = set.encode();
        assert!(FileSet::decode(&bytes[..bytes.len() - 1]).is_none());
        bytes.push(0);
        assert!(FileSet::decode(&bytes).is_none());
        assert!(FileSet::decode(b"FSE").is_none());
    }

    #[test]
    fn write_merges_touching_chunks_and_reads_back() {
        let mut f = SparseFile::from_bytes(b"a", &[0u8; 4096]);
        f.write(100, &[1; 10]);
        f.write(2000, &[2; 10]);
        f.write(105, &[3; 2000]);
        assert_eq!(f.chunks.len(), 1);
        let all = f.to_bytes();
        assert_eq!(&all[100..105], &[1; 5]);
        assert_eq!(&all[105..2105], &[3; 2000][..]);
        assert_eq!(all.len(), 4096);
        f.write(5000, &[4]);
        assert_eq!(f.len, 5001);
    }

    #[test]
    fn reader_reads_and_seeks_like_the_bytes() {
        use std::io::{Read, Seek, SeekFrom};
        let mut bytes = vec![0u8; 3000];
        bytes[600..700].fill(9);
        let f = SparseFile::from_bytes(b"a", &bytes);
        let mut r = f.reader();
        assert_eq!(r.seek(SeekFrom::End(0)).unwrap(), 3000);
        r.seek(SeekFrom::Start(550)).unwrap();
        let mut buf = [1u8; 200];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], &bytes[550..750]);
        assert!(r.seek(SeekFrom::Current(-1000)).is_err());
        let mut all = Vec::new();
        f.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, bytes);
    }

    #[test]
    fn mutate_keeps_a_set_decodable() {
        let mut set = FileSet {
            files: vec![
                SparseFile::from_bytes(b"a", &[1u8; 2048]),
                SparseFile::from_bytes(b"b", &[2u8; 512]),
            ],
        };
        let mut rng = Rng::new(7);
        for _ in 0..500 {
            mutate(&mut set, &mut rng, |b| b.push(3));
            assert_eq!(FileSet::decode(&set.encode()), Some(set.clone()));
        }
    }

    #[test]
    fn materialize_confines_names_to_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let set = FileSet {
            files: vec![
                SparseFile::from_bytes(b"../escape", b"x"),
                SparseFile::from_bytes(b"disk-flat.vmdk", b"y"),
            ],
        };
        let paths = set.materialize(dir.path()).unwrap();
        assert_eq!(paths[0], dir.path().join("file0"));
        assert_eq!(std::fs::read(&paths[1]).unwrap(), b"y");
    }
}
