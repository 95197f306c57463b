//! The input side of an import: digesting what arrives and undoing its compression.
//!
//! Bytes flow `source -> Received (read and hashed on a helper thread) -> decoder ->
//! DigestReader (the tar) -> tar parser`. Hashing what was received on its own thread lets
//! it overlap with extraction: on an uncompressed import it would otherwise be a quarter
//! of the work. The first digest is checked against the caller's `sha256:<hex>`;
//! both are reported, as containers/storage records a layer's compressed and uncompressed
//! digests.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use sha2::{Digest, Sha256};

use storage_core::archive::Compression;
use storage_core::{Error, Result};

/// A reader that counts, and unless told otherwise hashes (sha256), everything read
/// through it.
pub struct DigestReader<R> {
    inner: R,
    hasher: Option<Sha256>,
    count: u64,
}

impl<R: Read> DigestReader<R> {
    /// Wraps `inner`, hashing what is read only when `hash` is set.
    pub fn new(inner: R, hash: bool) -> Self {
        DigestReader {
            inner,
            hasher: hash.then(Sha256::new),
            count: 0,
        }
    }

    /// Reads `inner` to its end (so the digest covers every byte sent), then returns the
    /// digest as `sha256:<hex>` (when hashing) and the total length.
    pub fn finish(mut self) -> io::Result<Seen> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.hasher.map(hex_digest), self.count))
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// What went through a reader: its digest (`sha256:<hex>`, when hashed) and its length.
pub type Seen = (Option<String>, u64);

/// `sha256:<hex>` of what `hasher` has seen.
fn hex_digest(hasher: Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Size of the chunks handed from the reading thread to the extracting one.
pub const CHUNK: usize = 1 << 20;

/// How many chunks may wait between the two threads.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Reads `input` to its end in chunks, hashing each when `hash` is set, and sends them down
/// `tx`. Returns the digest (`sha256:<hex>`, when hashing) and length of everything read,
/// or the read error (which the consumer also receives). Stops early when the consumer
/// hangs up.
fn pump<R: Read>(
    mut input: R,
    hash: bool,
    tx: SyncSender<io::Result<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
) -> io::Result<Seen> {
    let mut hasher = hash.then(Sha256::new);
    let mut total = 0u64;
    loop {
        let mut buf = free.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut n = 0;
        while n < CHUNK {
            match input.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let kind = e.kind();
                    let msg = storage_core::Report(&e).to_string();
                    let _ = tx.send(Err(e));
                    return Err(io::Error::new(kind, msg));
                }
            }
        }
        buf.truncate(n);
        if let Some(h) = &mut hasher {
            h.update(&buf);
        }
        total += n as u64;
        if n == 0 || tx.send(Ok(buf)).is_err() {
            break;
        }
    }
    Ok((hasher.map(hex_digest), total))
}

/// The consuming end of [`received`]: a buffered reader over the chunks.
pub struct Received {
    rx: Receiver<io::Result<Vec<u8>>>,
    free: Sender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for Received {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Received {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.chunk.len() && !self.done {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let old = std::mem::replace(&mut self.chunk, next);
                    let _ = self.free.send(old);
                    self.pos = 0;
                    if self.chunk.is_empty() {
                        self.done = true;
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => self.done = true,
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.chunk.len());
    }
}

/// Runs `consume` on the bytes of `input`, which a helper thread reads and, when `hash` is
/// set, hashes meanwhile. `consume` must read to the end (so the digest covers everything
/// sent). Returns what `consume` returned, and the digest and length of what was received.
pub fn received<R, T, E>(
    input: R,
    hash: bool,
    consume: impl FnOnce(&mut Received) -> Result<T, E>,
) -> Result<(T, io::Result<Seen>), E>
where
    R: Read + Send,
{
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
        let (free_tx, free_rx) = channel();
        let reader = s.spawn(move || pump(input, hash, tx, free_rx));
        let mut stream = Received {
            rx,
            free: free_tx,
            chunk: Vec::new(),
            pos: 0,
            done: false,
        };
        let result = consume(&mut stream);
        drop(stream); // hang up, so a reader waiting to send stops
        let digest = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the input reading thread panicked")));
        result.map(|r| (r, digest))
    })
}

/// Peeks at the first bytes of a buffered stream and returns its compression.
pub fn sniff(stream: &mut impl BufRead) -> io::Result<Compression> {
    // A short first chunk is fine: magic numbers are at most 6 bytes, and a stream shorter
    // than that is plain (and will fail tar parsing if it is not empty).
    let head = stream.fill_buf()?;
    Compression::detect(head).map_err(|name| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name}-compressed input is not supported (use plain tar, gzip or zstd)"),
        )
    })
}

/// What [`read_tar`] received: the input's compression, and the digests and lengths of
/// what arrived and of the tar stream inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarInput {
    /// How the input was compressed.
    pub compression: Compression,
    /// `sha256:<hex>` of the bytes received, when hashed.
    pub digest: Option<String>,
    /// Number of bytes received.
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tar stream, when hashed.
    pub tar_digest: Option<String>,
    /// Length of the uncompressed tar stream.
    pub tar_size: u64,
}

/// Undoes the compression of `input` (plain, gzip or zstd, detected), hands the tar stream
/// to `consume`, then reads whatever follows so the digests cover every byte sent. The
/// entry stream ([`crate::ingest()`]) takes every import's input through here.
///
/// `consume` may fail with its own error type `E`, into which the input's own errors
/// (an unsupported compression, a corrupt stream, a failed read) are turned. With `hash`
/// unset, nothing is hashed (sha256 is about a third of the work of an uncompressed
/// import) and the digests are `None`.
pub fn read_tar<R: Read + Send, E: From<Error>>(
    input: R,
    hash: bool,
    consume: impl FnOnce(&mut dyn Read) -> std::result::Result<(), E>,
) -> std::result::Result<TarInput, E> {
    let ((compression, tar_digest), received) = received(input, hash, |stream| {
        let compression = sniff(stream).map_err(invalid)?;
        let tar_digest = match compression {
            Compression::None => {
                consume(&mut *stream)?;
                None
            }
            Compression::Gzip => {
                let gz = flate2::read::MultiGzDecoder::new(&mut *stream);
                let mut tar = DigestReader::new(gz, hash);
                consume(&mut tar)?;
                Some(tar.finish().map_err(invalid)?)
            }
            Compression::Zstd => {
                let decoder = zstd::Decoder::with_buffer(&mut *stream).map_err(invalid)?;
                let mut tar = DigestReader::new(decoder, hash);
                consume(&mut tar)?;
                Some(tar.finish().map_err(invalid)?)
            }
        };
        // Whatever follows the archive (padding, a second gzip member's garbage) was sent
        // too: read it so the digest covers it.
        io::copy(stream, &mut io::sink()).map_err(invalid)?;
        Ok::<_, E>((compression, tar_digest))
    })?;
    let (digest, size) = received.map_err(invalid)?;
    let (tar_digest, tar_size) = tar_digest.unwrap_or_else(|| (digest.clone(), size));
    Ok(TarInput {
        compression,
        digest,
        size,
        tar_digest,
        tar_size,
    })
}

/// An [`Error::InvalidArchive`] about the archive as a whole.
fn invalid<E: From<Error>>(e: io::Error) -> E {
    E::from(Error::InvalidArchive {
        entry: None,
        reason: storage_core::Report(&e).to_string(),
    })
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
    fn received_hashes_everything_sent_even_what_is_not_consumed() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let (first, digest) = received(&data[..], true, |r| {
            let mut head = [0u8; 10];
            r.read_exact(&mut head)?;
            io::copy(r, &mut io::sink())?;
            Ok::<_, io::Error>(head)
        })
        .unwrap();
        assert_eq!(first[..], data[..10]);
        let (d, n) = digest.unwrap();
        assert_eq!(n, data.len() as u64);
        let (want, _) = DigestReader::new(&data[..], true).finish().unwrap();
        assert_eq!(d, want);
        let (_, unhashed) = received(&data[..], false, |r| io::copy(r, &mut io::sink())).unwrap();
        assert_eq!(unhashed.unwrap(), (None, data.len() as u64));
    }

    #[test]
    fn digest_reader_covers_unread_tail() {
        let data = b"hello world".to_vec();
        let mut r = DigestReader::new(&data[..], true);
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        let (digest, n) = r.finish().unwrap();
        assert_eq!(n, 11);
        assert_eq!(
            digest.as_deref(),
            Some("sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
        );
    }
}
