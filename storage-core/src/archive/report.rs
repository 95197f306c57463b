//! What an import reports: how its input was compressed, the digests and lengths of what
//! was received, and how many entries were applied or left out.

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

/// What an import received and created. Every writer reports with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApplyReport {
    /// How the input was compressed.
    pub compression: Compression,
    /// `sha256:<hex>` of the bytes received (`None` when the writer asked for no digests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Number of bytes received.
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tar stream (`None` when not asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tar_digest: Option<String>,
    /// Length of the uncompressed tar stream.
    pub tar_size: u64,
    /// Entries applied.
    pub entries: u64,
    /// Entries left out: by the filter, hard links whose target was left out, whiteout
    /// metadata of other formats, and what the writer's medium cannot hold.
    pub skipped: u64,
    /// The owner uids of the entries applied, sorted, each once (containers-storage's
    /// `uidset` of a layer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uids: Vec<u32>,
    /// The owner gids of the entries applied, sorted, each once (`gidset`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gids: Vec<u32>,
    /// Entries created without part of what the archive gave them, which the writer could
    /// neither apply nor record (an unprivileged import: a symlink's owner, an xattr
    /// outside `user.`). Never dropped silently: whoever shows the import shows this.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost: u64,
    /// The first few of those entries, each as `path: what it lost`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost_paths: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
