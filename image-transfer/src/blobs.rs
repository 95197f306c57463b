//! Where an image's files are: a directory, or the members of a tar read in place (no
//! extraction), and reading them verified.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result, io};

/// The largest document (index, manifest, config) read into memory.
pub const MAX_DOCUMENT: u64 = 16 << 20;

/// A file of an image source: where its bytes lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobLocation {
    /// The file holding it (the blob itself, or the archive).
    pub file: PathBuf,
    /// Where it starts in that file.
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

impl BlobLocation {
    /// Opens it for reading (positioned at its start, limited to its length).
    pub fn open(&self) -> Result<std::io::Take<File>> {
        let mut f = File::open(&self.file).map_err(io("open", &self.file))?;
        f.seek(SeekFrom::Start(self.offset))
            .map_err(io("seek in", &self.file))?;
        Ok(f.take(self.len))
    }
}

/// The files of an image source, by their path relative to its root.
#[derive(Debug)]
pub enum Blobs {
    /// A directory.
    Dir(PathBuf),
    /// The regular-file members of a tar, by normalised name.
    Archive {
        /// The tar file.
        file: PathBuf,
        /// Name to (offset of its data, length).
        members: HashMap<String, (u64, u64)>,
    },
}

/// A member name without `./` and leading `/`.
fn normalise(name: &str) -> String {
    name.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl Blobs {
    /// Indexes the members of the tar `file` (read once, headers only).
    pub fn archive(file: &Path) -> Result<Self> {
        let f = File::open(file).map_err(io("open", file))?;
        let mut tar = tar::Archive::new(f);
        let mut members = HashMap::new();
        let invalid = |e: std::io::Error| Error::Invalid {
            what: "the archive".into(),
            location: file.display().to_string(),
            reason: e.to_string(),
        };
        for entry in tar.entries_with_seek().map_err(invalid)? {
            let entry = entry.map_err(invalid)?;
            if entry.header().entry_type().is_file() {
                let name = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
                members.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        Ok(Blobs::Archive {
            file: file.to_owned(),
            members,
        })
    }

    /// What to name this source in messages.
    pub fn location(&self) -> String {
        match self {
            Blobs::Dir(d) => d.display().to_string(),
            Blobs::Archive { file, .. } => file.display().to_string(),
        }
    }

    /// Where the file `rel` lies, or `None` when the source has no such file.
    pub fn locate(&self, rel: &str) -> Result<Option<BlobLocation>> {
        match self {
            Blobs::Dir(dir) => {
                let path = dir.join(normalise(rel));
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => Ok(Some(BlobLocation {
                        file: path,
                        offset: 0,
                        len: m.len(),
                    })),
                    Ok(_) => Ok(None),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io("stat", path)(e)),
                }
            }
            Blobs::Archive { file, members } => {
                Ok(members
                    .get(&normalise(rel))
                    .map(|&(offset, len)| BlobLocation {
                        file: file.clone(),
                        offset,
                        len,
                    }))
            }
        }
    }

    /// Reads the file `rel` whole (at most [`MAX_DOCUMENT`] bytes), `what` naming it in
    /// errors; `None` when it is absent.
    pub fn read(&self, rel: &str, what: &str) -> Result<Option<Vec<u8>>> {
        let Some(at) = self.locate(rel)? else {
            return Ok(None);
        };
        if at.len > MAX_DOCUMENT {
            return Err(Error::Invalid {
                what: what.to_owned(),
                location: self.location(),
                reason: format!("{} bytes is more than the {MAX_DOCUMENT} read", at.len),
            });
        }
        let mut data = Vec::new();
        at.open()?
            .read_to_end(&mut data)
            .map_err(io("read", &at.file))?;
        Ok(Some(data))
    }

    /// Where the blob `digest` (`sha256:<hex>`) of an OCI layout lies, checked to be
    /// `size` bytes long when a size is given.
    pub fn locate_blob(&self, digest: &str, size: Option<u64>) -> Result<BlobLocation> {
        let at = self
            .locate(&blob_path(digest)?)?
            .ok_or_else(|| Error::MissingBlob {
                digest: digest.to_owned(),
                location: self.location(),
            })?;
        if let Some(expected) = size
            && expected != at.len
        {
            return Err(Error::SizeMismatch {
                digest: digest.to_owned(),
                expected,
                actual: at.len,
            });
        }
        Ok(at)
    }

    /// Reads the blob `digest` whole and checks its size and digest.
    pub fn read_blob(&self, digest: &str, size: Option<u64>) -> Result<Vec<u8>> {
        let at = self.locate_blob(digest, size)?;
        let data = self
            .read(&blob_path(digest)?, &format!("blob {digest}"))?
            .ok_or_else(|| Error::MissingBlob {
                digest: digest.to_owned(),
                location: self.location(),
            })?;
        if data.len() as u64 != at.len {
            return Err(Error::SizeMismatch {
                digest: digest.to_owned(),
                expected: at.len,
                actual: data.len() as u64,
            });
        }
        verify(digest, &data)?;
        Ok(data)
    }
}

/// `blobs/sha256/<hex>` for `sha256:<hex>`; other algorithms are refused.
pub fn blob_path(digest: &str) -> Result<String> {
    let hex = sha256_hex(digest)?;
    Ok(format!("blobs/sha256/{hex}"))
}

/// The hex of a `sha256:<hex>` digest, checked.
pub fn sha256_hex(digest: &str) -> Result<&str> {
    match digest.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(hex)
        }
        Some(("sha256", _)) => Err(Error::BadReference {
            reference: digest.to_owned(),
            reason: "a sha256 digest is 64 lowercase hex digits".into(),
        }),
        _ => Err(Error::Unsupported {
            what: format!("digest {digest:?}"),
            reason: "only sha256 digests are read".into(),
        }),
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Checks that `data` hashes to `digest`.
pub fn verify(digest: &str, data: &[u8]) -> Result<()> {
    sha256_hex(digest)?;
    let actual = sha256_digest(data);
    if actual != digest {
        return Err(Error::DigestMismatch {
            digest: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// A writer that hashes and counts what goes through it into `inner`.
pub struct Digester<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W> Digester<W> {
    /// Hashes what is written to `inner`.
    pub fn new(inner: W) -> Self {
        Digester {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The writer, the `sha256:<hex>` of what went through and its length.
    pub fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.len)
    }
}

impl<W: std::io::Write> std::io::Write for Digester<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_checked_by_size_and_digest_and_named_when_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"some blob".to_vec();
        let digest = sha256_digest(&data);
        let hex = sha256_hex(&digest).unwrap().to_owned();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        std::fs::write(dir.path().join("blobs/sha256").join(&hex), &data).unwrap();
        let blobs = Blobs::Dir(dir.path().to_owned());
        assert_eq!(blobs.read_blob(&digest, Some(9)).unwrap(), data);
        assert!(matches!(
            blobs.read_blob(&digest, Some(10)),
            Err(Error::SizeMismatch {
                expected: 10,
                actual: 9,
                ..
            })
        ));
        std::fs::write(dir.path().join("blobs/sha256").join(&hex), b"some blub").unwrap();
        match blobs.read_blob(&digest, None) {
            Err(Error::DigestMismatch { digest: d, .. }) => assert_eq!(d, digest),
            other => panic!("{other:?}"),
        }
        let missing = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            blobs.read_blob(&missing, None),
            Err(Error::MissingBlob { .. })
        ));
        assert!(matches!(
            blobs.read_blob("sha512:00", None),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn archive_members_are_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "./a/b", &b"hello"[..]).unwrap();
        let path = dir.path().join("x.tar");
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let blobs = Blobs::archive(&path).unwrap();
        assert_eq!(blobs.read("a/b", "b").unwrap().unwrap(), b"hello");
        assert_eq!(blobs.read("a/c", "c").unwrap(), None);
    }
}
