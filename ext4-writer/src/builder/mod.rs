//! [`Builder`]: tar entries in, an ext4 image out, in one pass.
//!
//! File data is appended to the image as it arrives, block-aligned and contiguous, skipping
//! all-zero blocks (they become holes); a sparse file's holes are never read at all, only
//! the blocks its data segments touch. Everything else (directories, extent tree blocks,
//! long symlinks, xattr blocks, inode tables, bitmaps, group descriptors, superblock) is
//! written by [`Builder::finish`], after the data.
//!
//! Image layout (4 KiB blocks, `flex_bg`, `sparse_super2` with no backups, so nothing has to
//! sit at fixed places inside the data):
//!
//! ```text
//! block 0        boot area + superblock
//! 1 ..           group descriptors (room for `max_size`; the unused rest is free space)
//! data_start ..  file data, in tar order
//! ..             directory blocks, long symlinks, extent tree blocks, xattr blocks
//! ..             inode tables of all groups, block bitmaps, inode bitmaps
//! ```
//!
//! The work is split as it happens: `ingest` turns the tar engine's entries into the
//! in-memory tree and file data into image blocks; `finish` numbers the inodes and fits
//! the groups (`geometry`), plans each inode and writes the inode tables (`inodes`), then
//! the bitmaps, group descriptors and superblock (`tables`). All of it goes through `out`,
//! the buffered image output. The on-disk encoders live in [`crate::layout`].

mod geometry;
mod ingest;
mod inodes;
mod out;
mod tables;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};

use storage_core::Op;
use tar_engine::{ApplyReport, IngestOptions};

use crate::error::{Error, Result};
use crate::layout::csum;
use crate::layout::{BLOCK_SIZE, BLOCKS_PER_GROUP};
use crate::tree::{self, Kind, Meta, Node, Tree};

use geometry::{MAX_BLOCKS, number_inodes};
use ingest::Ingest;
use out::Out;

/// What to do with OCI whiteout files (`.wh.NAME`, `.wh..wh..opq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Whiteouts {
    /// Keep them as the plain files they are in the tar.
    #[default]
    Keep,
    /// Convert them to overlayfs markers: `.wh.NAME` becomes a character device 0:0 named
    /// `NAME`, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory; other
    /// `.wh..wh.*` entries are dropped.
    Overlay,
}

/// How the image is built.
#[derive(Clone, Debug)]
pub struct Options {
    /// Whiteout handling.
    pub whiteouts: Whiteouts,
    /// Largest image size in bytes; building fails past it. It also sizes the room kept for
    /// group descriptors (32 bytes per 128 MiB), so a larger value costs a little space.
    pub max_size: u64,
    /// Free inodes to leave beyond those the content needs.
    pub inode_headroom: u32,
    /// The least size of the image in bytes: past what the content needs, the rest is
    /// free space, for a file system the kernel writes into later (a disk's root file
    /// system, a container's sandbox). 0 makes the image as small as its content allows.
    /// At most `max_size`. Free inode table blocks are left as holes, which read as
    /// zeros: build into an empty or sparse target.
    pub min_size: u64,
    /// Set the `read-only` compatibility flag: kernels then refuse to mount it read-write.
    pub read_only: bool,
    /// The file system UUID. The default is one fixed value, so that the same tar gives
    /// the same bytes; give each image its own where they are told apart by UUID.
    pub uuid: [u8; 16],
    /// The volume label (`s_volume_name`, as `e2label` and `blkid` show it): up to 16
    /// bytes, NUL-padded; all zeros for none. Set it with [`Options::with_label`].
    pub label: [u8; 16],
    /// Enable `metadata_csum`: CRC32C over the superblock, descriptors, bitmaps, inodes,
    /// directory blocks, htree indexes, extent blocks and xattr blocks, which the kernel
    /// then verifies on every read.
    pub metadata_csum: bool,
    /// Hash the input and report its digests in [`append_tar`](Builder::append_tar)'s
    /// [`ApplyReport`], as a layer store needs them; off, nothing is hashed (sha256 is about
    /// a third of the work on an uncompressed tar) and the digests are `None`.
    pub digests: bool,
    /// Add an empty `lost+found` to the root, as `mkfs` does. Off, the root holds only what
    /// the tar holds, for an image whose root is a layer stacked in a union, where a
    /// `lost+found` of every layer would show; `e2fsck` accepts either.
    pub lost_found: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            whiteouts: Whiteouts::Keep,
            max_size: 128 << 30,
            inode_headroom: 0,
            min_size: 0,
            read_only: false,
            uuid: *b"strata-ext4-imag",
            label: [0; 16],
            metadata_csum: false,
            digests: false,
            lost_found: true,
        }
    }
}

impl Options {
    /// These options with the volume label `label`, which must fit ext4's 16 bytes and
    /// hold no NUL.
    pub fn with_label(mut self, label: &str) -> Result<Self> {
        let bytes = label.as_bytes();
        if bytes.len() > 16 || bytes.contains(&0) {
            return Err(Error::InvalidOption {
                option: "label",
                reason: format!(
                    "{label:?} is {} bytes{}; an ext4 label holds at most 16 and no NUL",
                    bytes.len(),
                    if bytes.contains(&0) {
                        " with a NUL"
                    } else {
                        ""
                    }
                ),
            });
        }
        self.label = [0; 16];
        self.label[..bytes.len()].copy_from_slice(bytes);
        Ok(self)
    }
}

/// What [`Builder::finish`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Image size in bytes.
    pub size: u64,
    /// Inodes in use (including the reserved ones).
    pub inodes_used: u64,
    /// Blocks in use.
    pub blocks_used: u64,
}

/// Streams tar entries into an ext4 image written to `W`.
///
/// ```no_run
/// # fn main() -> Result<(), ext4_writer::Error> {
/// let tar = std::fs::File::open("layer.tar").map_err(|e| ext4_writer::Error::Read { offset: 0, source: e })?;
/// let img = std::fs::File::create("layer.img").map_err(|e| ext4_writer::Error::Write { offset: 0, source: e })?;
/// let mut b = ext4_writer::Builder::new(img, ext4_writer::Options::default())?;
/// b.append_tar(tar)?;
/// let (_img, summary) = b.finish()?;
/// println!("{} bytes", summary.size);
/// # Ok(()) }
/// ```
pub struct Builder<W: Write + Seek> {
    out: Out<W>,
    options: Options,
    tree: Tree,
    /// Blocks kept for group descriptors.
    gdt_reserved: u64,
    /// First block of file data.
    data_start: u64,
    /// Block count the image may not exceed.
    max_blocks: u64,
    /// The `metadata_csum` seed, when enabled.
    csum: Option<u32>,
}

fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

impl<W: Write + Seek> Builder<W> {
    /// Starts an image on `out`, which should be empty (it is written from offset 0 and its
    /// old content past the image end is left alone).
    pub fn new(mut out: W, options: Options) -> Result<Self> {
        let max_blocks = (options.max_size / BLOCK_SIZE).min(MAX_BLOCKS);
        if max_blocks < 64 {
            return Err(Error::TooLarge {
                entry: None,
                what: format!("max_size {} is below the 256 KiB minimum", options.max_size),
            });
        }
        let groups = div_ceil(max_blocks, BLOCKS_PER_GROUP);
        let gdt_reserved = div_ceil(groups * 32, BLOCK_SIZE);
        let data_start = 1 + gdt_reserved;
        let pos = data_start * BLOCK_SIZE;
        out.seek(SeekFrom::Start(pos))
            .map_err(|source| Error::Write {
                offset: pos,
                source,
            })?;
        let csum = options.metadata_csum.then(|| csum::fs_seed(&options.uuid));
        Ok(Builder {
            out: Out::new(out, pos),
            tree: Tree::new(),
            gdt_reserved,
            data_start,
            max_blocks,
            csum,
            options,
        })
    }

    /// Reads a whole tar stream (plain, gzip or zstd) through the tar engine's one entry
    /// stream and adds its entries, with every rule of the engine applied (the same verdict
    /// and tree as the directory and NFS writers). Later entries replace earlier ones of
    /// the same path, also across calls; each call is one archive for whiteouts, which
    /// spare what the same archive wrote.
    pub fn append_tar<R: Read + Send>(&mut self, tar: R) -> Result<ApplyReport> {
        let op = Op::new("tar to ext4");
        let opts = IngestOptions {
            target: "ext4 image",
            literal_whiteouts: self.options.whiteouts == Whiteouts::Keep,
            skip_digests: !self.options.digests,
            ..IngestOptions::default()
        };
        tar_engine::ingest(&op, tar, opts, &mut Ingest(self))
    }

    /// [`append_tar`](Self::append_tar) as a layer store imports: under the caller's
    /// `op` (its cancellation), with `filter` applied and the received bytes checked
    /// against `expected_digest` (`sha256:<hex>`; a mismatch fails before anything is
    /// finished). `target` names what is built in a mismatch ("layer 1234…"). With
    /// `tar_split`, the archive is recorded there (`tar_engine::split`) so that the
    /// image's tree can give it back byte for byte.
    pub fn append_layer<R: Read + Send>(
        &mut self,
        op: &Op,
        tar: R,
        filter: &storage_core::FilterSpec,
        expected_digest: Option<&str>,
        target: &str,
        tar_split: Option<&std::path::Path>,
    ) -> Result<ApplyReport> {
        let opts = IngestOptions {
            target,
            filter: Some(filter),
            expected_digest,
            literal_whiteouts: self.options.whiteouts == Whiteouts::Keep,
            skip_digests: !self.options.digests,
            tar_split,
        };
        tar_engine::ingest(op, tar, opts, &mut Ingest(self))
    }

    /// Writes all metadata and returns the target with a summary.
    pub fn finish(mut self) -> Result<(W, Summary)> {
        if self.options.lost_found {
            self.add_lost_found();
        }
        let numbering = number_inodes(&self.tree)?;
        let (plans, xattr_blocks) = self.plan_inodes(&numbering)?;
        let xattr_first = self.write_xattr_blocks(&xattr_blocks)?;
        let meta_end = self.out.next_block();
        let last_ino = numbering.last_ino();
        let geo = self.geometry(meta_end, last_ino)?;
        let dirs_per_group = self.write_inode_tables(&geo, &numbering, &plans, xattr_first)?;
        let blocks = self.write_block_bitmaps(&geo, &numbering)?;
        let inodes = self.write_inode_bitmaps(&geo, last_ino)?;
        self.finish_appending(&geo)?;
        self.write_group_descriptors(&geo, &blocks, &inodes, &dirs_per_group)?;
        let free_blocks = blocks.total_free();
        let free_inodes = geo.inodes_count() - last_ino;
        self.write_superblock(&geo, free_blocks, free_inodes)?;
        Ok((
            self.out.into_inner()?,
            Summary {
                size: geo.total_blocks * BLOCK_SIZE,
                inodes_used: last_ino,
                blocks_used: geo.total_blocks - free_blocks,
            },
        ))
    }

    /// Adds an empty `lost+found` (mode 0700) to the root, unless the root already has an
    /// entry of that name.
    fn add_lost_found(&mut self) {
        if self.tree.get(tree::ROOT, b"lost+found").is_none() {
            let id = self.tree.add(Node {
                kind: Kind::Dir(BTreeMap::new()),
                meta: Meta {
                    perm: 0o700,
                    ..Meta::default()
                },
            });
            self.tree.link(tree::ROOT, b"lost+found".to_vec(), id);
        }
    }
}
