//! The input side of an import: digesting what arrives and undoing its compression.
//!
//! Bytes flow `source -> DigestReader (what arrived) -> decoder` on a helper thread, then
//! in chunks to `Received -> DigestReader (the tar) -> tar parser` on the caller's. The
//! helper's half (reading, hashing, inflating) overlaps with extraction: on a gzip layer
//! inflating alone is about as much work as the rest. The first digest is checked against
//! the caller's `sha256:<hex>`; both are reported, as containers/storage records a layer's
//! compressed and uncompressed digests.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use sha2::{Digest, Sha256};

use storage_core::Error;
use storage_core::archive::Compression;

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

/// Size of the chunks handed from the decoding thread to the extracting one.
pub const CHUNK: usize = 1 << 20;

/// How many chunks may wait between the two threads.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Reads `input` to its end in chunks and sends them down `tx`, then an empty chunk.
/// A read error is sent on too, and returned. `false` when the consumer hung up first.
fn pump<R: Read>(
    mut input: R,
    tx: SyncSender<io::Result<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
) -> io::Result<bool> {
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
        if tx.send(Ok(buf)).is_err() {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// The consuming end of [`beside`]: a buffered reader over the chunks.
struct Received {
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

/// Runs `produce` on a helper thread, sending chunks, while `consume` reads them on this
/// one. Returns both results; `consume` hanging up (by returning) stops a producer that
/// is waiting to send.
fn beside<P, T>(
    produce: impl FnOnce(SyncSender<io::Result<Vec<u8>>>, Receiver<Vec<u8>>) -> io::Result<P> + Send,
    consume: impl FnOnce(&mut Received) -> T,
) -> (T, io::Result<P>)
where
    P: Send,
{
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
        let (free_tx, free_rx) = channel();
        let producer = s.spawn(move || produce(tx, free_rx));
        let mut stream = Received {
            rx,
            free: free_tx,
            chunk: Vec::new(),
            pos: 0,
            done: false,
        };
        let result = consume(&mut stream);
        drop(stream); // hang up, so a producer waiting to send stops
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the input reading thread panicked")));
        (result, produced)
    })
}

/// Peeks at the first bytes of a buffered stream and returns its compression.
fn sniff(stream: &mut impl BufRead) -> io::Result<Compression> {
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

/// The decoding thread: undoes `compression` and sends the tar down `tx` in chunks, then
/// reads whatever follows the compressed stream, so that `raw`'s digest covers every byte
/// sent. `None` when the consumer stopped reading first (it failed, and says why).
fn decode<R: Read>(
    mut raw: BufReader<DigestReader<R>>,
    compression: Compression,
    tx: SyncSender<io::Result<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
) -> io::Result<Option<Seen>> {
    let finished = match compression {
        Compression::None => pump(&mut raw, tx, free)?,
        Compression::Gzip => pump(flate2::bufread::MultiGzDecoder::new(&mut raw), tx, free)?,
        Compression::Zstd => pump(zstd::Decoder::with_buffer(&mut raw)?, tx, free)?,
    };
    if !finished {
        return Ok(None);
    }
    // What the buffer holds was hashed as it was read; `finish` reads the rest.
    raw.into_inner().finish().map(Some)
}

/// Undoes the compression of `input` (plain, gzip or zstd, detected), hands the tar stream
/// to `consume`, then reads whatever follows so the digests cover every byte sent. The
/// entry stream ([`crate::ingest()`]) takes every import's input through here.
///
/// Two threads share the work. A helper reads the input, hashes it and undoes its
/// compression; this one hashes the tar (when it was compressed: a plain tar is what
/// arrived, hashed once) and runs `consume`. On a gzip layer that splits the work about
/// in half; on a plain one the helper's hash overlaps with extraction.
///
/// `consume` may fail with its own error type `E`, into which the input's own errors
/// (an unsupported compression, a corrupt stream, a failed read) are turned; when the
/// input failed, that is the error returned, since `consume` only saw it passed on. With
/// `hash` unset, nothing is hashed (sha256 is about a third of the work of an uncompressed
/// import) and the digests are `None`.
pub fn read_tar<R: Read + Send, E: From<Error>>(
    input: R,
    hash: bool,
    consume: impl FnOnce(&mut dyn Read) -> std::result::Result<(), E>,
) -> std::result::Result<TarInput, E> {
    let mut raw = BufReader::with_capacity(CHUNK, DigestReader::new(input, hash));
    let compression = sniff(&mut raw).map_err(invalid)?;
    let hash_tar = hash && compression != Compression::None;
    let (consumed, decoded) = beside(
        move |tx, free| decode(raw, compression, tx, free),
        |stream| {
            let mut tar = DigestReader::new(stream, hash_tar);
            consume(&mut tar)?;
            // The tar's end may come before the stream's (padding blocks): `finish` reads
            // on, so the digest covers them.
            tar.finish().map_err(invalid)
        },
    );
    let (tar, received) = match (consumed, decoded) {
        (_, Err(input)) => return Err(invalid(input)),
        (Err(e), Ok(_)) => return Err(e),
        (Ok(_), Ok(None)) => {
            return Err(invalid(io::Error::other(
                "the tar reader stopped before the input's end",
            )));
        }
        (Ok(tar), Ok(Some(received))) => (tar, received),
    };
    // A plain tar is what arrived, hashed once.
    let (tar_digest, tar_size) = match compression {
        Compression::None => received.clone(),
        Compression::Gzip | Compression::Zstd => tar,
    };
    Ok(TarInput {
        compression,
        digest: received.0,
        size: received.1,
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

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, data).unwrap();
        gz.finish().unwrap()
    }

    fn sha256(data: &[u8]) -> String {
        DigestReader::new(data, true).finish().unwrap().0.unwrap()
    }

    /// Reads everything, as a tar parser that gets to the archive's end does.
    fn read_all(tar: &mut dyn Read) -> Result<(), Error> {
        io::copy(tar, &mut io::sink()).map_err(|e| Error::InvalidArchive {
            entry: Some("blamed/entry".into()),
            reason: e.to_string(),
        })?;
        Ok(())
    }

    #[test]
    fn read_tar_digests_what_arrived_and_the_tar_inside_both_compressions() {
        let tar: Vec<u8> = (0..2 * CHUNK + 5).map(|i| (i % 241) as u8).collect();
        let compressed = [
            (Compression::Gzip, gzip(&tar)),
            (Compression::Zstd, zstd::encode_all(&tar[..], 1).unwrap()),
        ];
        for (compression, sent) in compressed {
            let got = read_tar(&sent[..], true, read_all).unwrap();
            let want = TarInput {
                compression,
                digest: Some(sha256(&sent)),
                size: sent.len() as u64,
                tar_digest: Some(sha256(&tar)),
                tar_size: tar.len() as u64,
            };
            assert_eq!(got, want);
        }
        let plain = read_tar(&tar[..], true, read_all).unwrap();
        assert_eq!(plain.digest, plain.tar_digest);
        assert_eq!(plain.tar_digest, Some(sha256(&tar)));
        let unhashed = read_tar(&tar[..], false, read_all).unwrap();
        assert_eq!(
            (unhashed.digest, unhashed.tar_size),
            (None, tar.len() as u64)
        );
    }

    #[test]
    fn a_corrupt_compressed_stream_is_reported_as_the_inputs_fault_not_an_entrys() {
        let tar = vec![7u8; 3 * CHUNK];
        let mut sent = gzip(&tar);
        let middle = sent.len() / 2;
        sent.truncate(middle);
        let err = read_tar(&sent[..], true, read_all).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArchive { entry: None, .. }),
            "{err:?}"
        );
        let bzip2 = b"BZh91AY&SY".repeat(10);
        let err = read_tar(&bzip2[..], true, read_all).unwrap_err();
        assert!(err.to_string().contains("bzip2-compressed"), "{err}");
    }

    #[test]
    fn a_consumer_that_stops_first_is_the_error_and_the_rest_is_not_read() {
        // An endless input: reading it to its end would never return.
        let err = read_tar(io::repeat(0), true, |tar| {
            let mut head = [0u8; 512];
            tar.read_exact(&mut head)
                .map_err(|e| Error::io("read a header", e))?;
            Err(Error::InvalidArchive {
                entry: Some("../escape".into()),
                reason: "leaves the target".into(),
            })
        })
        .unwrap_err();
        assert!(err.to_string().contains("../escape"), "{err}");
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
