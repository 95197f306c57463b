//! The input side of an import: digesting what arrives and undoing its compression.
//!
//! Bytes flow `source -> DigestReader (what was received) -> decoder -> DigestReader (the
//! tar) -> tar parser`. The first digest is checked against the caller's `sha256:<hex>`;
//! both are reported, as containers/storage records a layer's compressed and uncompressed
//! digests.

use std::io::{self, BufRead, BufReader, Read};

use sha2::{Digest, Sha256};

/// How an input stream is compressed, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
    /// Zstandard.
    Zstd,
}

/// Magic numbers of compression formats we recognise but do not read.
const UNSUPPORTED: &[(&[u8], &str)] = &[
    (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz"),
    (b"BZh", "bzip2"),
];

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// Detects the compression from the first bytes of a stream. `Err` names formats that
    /// are recognised but not supported.
    pub fn detect(head: &[u8]) -> Result<Self, &'static str> {
        if head.starts_with(GZIP_MAGIC) {
            return Ok(Compression::Gzip);
        }
        if head.starts_with(ZSTD_MAGIC) {
            return Ok(Compression::Zstd);
        }
        for (magic, name) in UNSUPPORTED {
            if head.starts_with(magic) {
                return Err(name);
            }
        }
        Ok(Compression::None)
    }
}

/// A reader that computes the sha256 and the length of everything read through it.
pub struct DigestReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> DigestReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        DigestReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads `inner` to its end (so the digest covers every byte sent), then returns the
    /// digest as `sha256:<hex>` and the total length.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        ))
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Size of the read buffer in front of the decoder and the tar parser.
pub const READ_BUFFER: usize = 1 << 20;

/// Peeks at the first bytes of `raw` and returns the compression and a buffered reader
/// positioned at the start.
pub fn sniff<R: Read>(raw: R) -> io::Result<(Compression, BufReader<R>)> {
    let mut buffered = BufReader::with_capacity(READ_BUFFER, raw);
    // A short first read is fine: magic numbers are at most 6 bytes, and a stream shorter
    // than that is plain (and will fail tar parsing if it is not empty).
    let head = buffered.fill_buf()?;
    let compression = Compression::detect(head).map_err(|name| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name}-compressed input is not supported (use plain tar, gzip or zstd)"),
        )
    })?;
    Ok((compression, buffered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_compression_by_magic_number() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Ok(Compression::Gzip));
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Ok(Compression::Zstd)
        );
        assert_eq!(Compression::detect(b"etc/passwd\0"), Ok(Compression::None));
        assert_eq!(Compression::detect(b""), Ok(Compression::None));
        assert_eq!(Compression::detect(b"BZh91AY"), Err("bzip2"));
    }

    #[test]
    fn digest_reader_covers_unread_tail() {
        let data = b"hello world".to_vec();
        let mut r = DigestReader::new(&data[..]);
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        let (digest, n) = r.finish().unwrap();
        assert_eq!(n, 11);
        assert_eq!(
            digest,
            "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }
}
