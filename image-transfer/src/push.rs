//! Writing images into OCI layouts: blobs named by digest (layers compressed as asked and
//! hashed before and after), `index.json` with the image's tag, and archives of layouts.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use crate::REF_NAME;
use crate::blobs::{Digester, sha256_hex};
use crate::error::{Error, Result, io};

/// How pushed layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compress {
    /// Plain tar.
    None,
    /// gzip (flate2), the default, as registries expect.
    #[default]
    Gzip,
    /// zstd.
    Zstd,
}

impl Compress {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compress::None => "application/vnd.oci.image.layer.v1.tar",
            Compress::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compress::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

impl FromStr for Compress {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Compress::None),
            "gzip" => Ok(Compress::Gzip),
            "zstd" => Ok(Compress::Zstd),
            other => Err(Error::Unsupported {
                what: format!("compression {other:?}"),
                reason: "use gzip, zstd or none".into(),
            }),
        }
    }
}

/// A layer blob written into a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenBlob {
    /// `sha256:<hex>` of the blob as stored.
    pub digest: String,
    /// Its length.
    pub size: u64,
    /// `sha256:<hex>` of the tar before compression.
    pub diff_id: String,
    /// Its media type.
    pub media_type: &'static str,
}

/// An OCI layout being written.
pub struct LayoutWriter {
    dir: PathBuf,
}

static PARTS: AtomicU64 = AtomicU64::new(0);

impl LayoutWriter {
    /// Opens the layout at `dir`, creating it (and its `oci-layout` file) when needed.
    pub fn create(dir: &Path) -> Result<Self> {
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(io("create", &blobs))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(LayoutWriter {
            dir: dir.to_owned(),
        })
    }

    /// The layout's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn part(&self) -> PathBuf {
        let n = PARTS.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join("blobs")
            .join("sha256")
            .join(format!(".part-{}-{n}", std::process::id()))
    }

    fn place(&self, part: &Path, digest: &str) -> Result<()> {
        let to = self.dir.join(crate::blobs::blob_path(digest)?);
        std::fs::rename(part, &to).map_err(io("rename into place", &to))
    }

    /// Writes a layer: `produce` writes the tar, which is hashed, compressed as asked,
    /// hashed again and stored under its digest. Nothing is left behind on failure.
    pub fn write_layer<E: From<Error>>(
        &self,
        compress: Compress,
        produce: impl FnOnce(&mut dyn Write) -> std::result::Result<(), E>,
    ) -> std::result::Result<WrittenBlob, E> {
        let part = self.part();
        let result = (|| {
            let file = File::create(&part).map_err(io("create", &part))?;
            let stored = Digester::new(BufWriter::with_capacity(1 << 20, file));
            let (stored, diff_id) = match compress {
                Compress::None => {
                    let mut tar = Digester::new(stored);
                    produce(&mut tar)?;
                    let (stored, diff_id, _) = tar.finish();
                    (stored, diff_id)
                }
                // The encoders are fed in fixed chunks: their output may depend on how the
                // input is cut, and the same tar must give the same blob.
                Compress::Gzip => {
                    let gz = flate2::write::GzEncoder::new(stored, flate2::Compression::fast());
                    let mut tar = Digester::new(Chunked::new(gz));
                    produce(&mut tar)?;
                    let (gz, diff_id, _) = tar.finish();
                    let gz = gz.finish().map_err(io("write", &part))?;
                    (gz.finish().map_err(io("write", &part))?, diff_id)
                }
                Compress::Zstd => {
                    let z = zstd::Encoder::new(stored, 3).map_err(io("write", &part))?;
                    let mut tar = Digester::new(Chunked::new(z));
                    produce(&mut tar)?;
                    let (z, diff_id, _) = tar.finish();
                    let z = z.finish().map_err(io("write", &part))?;
                    (z.finish().map_err(io("write", &part))?, diff_id)
                }
            };
            let (out, digest, size) = stored.finish();
            let file = out
                .into_inner()
                .map_err(|e| io("write", &part)(e.into_error()))?;
            file.sync_all().map_err(io("sync", &part))?;
            self.place(&part, &digest)?;
            Ok::<_, E>(WrittenBlob {
                digest,
                size,
                diff_id,
                media_type: compress.media_type(),
            })
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }

    /// Stores a document (a manifest, a config) as a blob and returns its digest.
    pub fn write_blob(&self, data: &[u8]) -> Result<String> {
        let digest = crate::blobs::sha256_digest(data);
        let to = self.dir.join(crate::blobs::blob_path(&digest)?);
        if !to.exists() {
            write_atomic(&to, data)?;
        }
        Ok(digest)
    }

    /// Lists the manifest `digest` in `index.json`, tagged `tag` (an image with the same
    /// tag before loses it).
    pub fn add_to_index(
        &self,
        digest: &str,
        size: u64,
        media_type: &str,
        tag: Option<&str>,
    ) -> Result<()> {
        let path = self.dir.join("index.json");
        let invalid = |reason: String| Error::Invalid {
            what: "index.json".into(),
            location: self.dir.display().to_string(),
            reason,
        };
        let mut manifests = match std::fs::read(&path) {
            Ok(data) => ImageIndex::from_reader(&data[..])
                .map_err(|e| invalid(e.to_string()))?
                .manifests()
                .clone(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("read", &path)(e)),
        };
        sha256_hex(digest)?;
        let mut desc = Descriptor::new(
            MediaType::from(media_type),
            size,
            oci_spec::image::Digest::from_str(digest).map_err(|e| invalid(e.to_string()))?,
        );
        if let Some(tag) = tag {
            desc.set_annotations(Some([(REF_NAME.to_owned(), tag.to_owned())].into()));
            manifests.retain(|m| {
                m.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_none_or(|t| t != tag)
            });
        }
        manifests.retain(|m| m != &desc);
        manifests.push(desc);
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let data = index.to_string().map_err(|e| invalid(e.to_string()))?;
        write_atomic(&path, data.as_bytes())
    }
}

/// How much a [`Chunked`] writer hands on at once.
const CHUNK: usize = 1 << 20;

/// A writer that hands `inner` its data in chunks of exactly [`CHUNK`] bytes (the last
/// one shorter), however it was written.
struct Chunked<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Chunked<W> {
    fn new(inner: W) -> Self {
        Chunked {
            inner,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    /// Writes what is left and returns the inner writer.
    fn finish(mut self) -> std::io::Result<W> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = (CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }

    /// Chunks are only ever handed on whole: a flush leaves the partial one buffered.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `data` to `path` whole or not at all, as the run root's files are written (a
/// temporary name of its own per call, synced, renamed over, the directory synced).
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    storage_core::run_root::write_file_atomic(path, data, 0o644)
        .map_err(|f| io(f.step, f.path)(f.source))
}

/// Writes the layout at `dir` as the tar `file` (an `oci-archive:`), through a temporary
/// file renamed into place.
pub fn archive_layout(dir: &Path, file: &Path) -> Result<()> {
    let mut part = file.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let written = (|| {
        let out = BufWriter::new(File::create(&part)?);
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        for name in ["oci-layout", "index.json"] {
            tar.append_path_with_name(dir.join(name), name)?;
        }
        tar.append_dir_all("blobs", dir.join("blobs"))?;
        let out = tar.into_inner()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&part);
        return Err(io("write", &part)(e));
    }
    std::fs::rename(&part, file).map_err(io("rename into place", file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::Blobs;

    #[test]
    fn a_written_layer_is_named_by_its_digest_and_hashed_before_compression() {
        let dir = tempfile::tempdir().unwrap();
        let w = LayoutWriter::create(dir.path()).unwrap();
        let tar = vec![0u8; 2048];
        for c in [Compress::None, Compress::Gzip, Compress::Zstd] {
            let blob = w
                .write_layer::<Error>(c, |out| out.write_all(&tar).map_err(io("write", "test")))
                .unwrap();
            assert_eq!(blob.diff_id, crate::blobs::sha256_digest(&tar));
            let data = Blobs::Dir(dir.path().to_owned())
                .read_blob(&blob.digest, Some(blob.size))
                .unwrap();
            assert_eq!(c == Compress::None, data == tar);
        }
        let failed = w.write_layer::<Error>(Compress::Gzip, |_| {
            Err(Error::Unsupported {
                what: "x".into(),
                reason: "y".into(),
            })
        });
        assert!(failed.is_err());
        let parts = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".part")
            })
            .count();
        assert_eq!(parts, 0);
    }

    #[test]
    fn the_same_tar_gives_the_same_blob_however_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let w = LayoutWriter::create(dir.path()).unwrap();
        let tar: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for c in [Compress::Gzip, Compress::Zstd] {
            let mut digests = Vec::new();
            for piece in [100, 65_536, 1_000_003] {
                let blob = w
                    .write_layer::<Error>(c, |out| {
                        for chunk in tar.chunks(piece) {
                            out.write_all(chunk).map_err(io("write", "test"))?;
                        }
                        Ok(())
                    })
                    .unwrap();
                digests.push(blob.digest);
            }
            digests.dedup();
            assert_eq!(digests.len(), 1, "{c:?}");
        }
    }

    #[test]
    fn a_tag_moves_to_the_image_pushed_last() {
        let dir = tempfile::tempdir().unwrap();
        let w = LayoutWriter::create(dir.path()).unwrap();
        let a = w.write_blob(b"{}").unwrap();
        let b = w.write_blob(b"{ }").unwrap();
        let t = "application/vnd.oci.image.manifest.v1+json";
        w.add_to_index(&a, 2, t, Some("v1")).unwrap();
        w.add_to_index(&b, 3, t, Some("v1")).unwrap();
        w.add_to_index(&a, 2, t, Some("old")).unwrap();
        let index =
            ImageIndex::from_reader(&std::fs::read(dir.path().join("index.json")).unwrap()[..])
                .unwrap();
        let tags: Vec<(String, String)> = index
            .manifests()
            .iter()
            .map(|m| {
                (
                    m.digest().to_string(),
                    m.annotations().as_ref().unwrap()[REF_NAME].clone(),
                )
            })
            .collect();
        assert_eq!(tags, vec![(b, "v1".into()), (a, "old".into())]);
    }
}
