//! The ext4 on-disk format, as `#[repr(C)]` zerocopy structures with little-endian fields.
//!
//! One module per structure family; each checks its size (and key field offsets) at
//! compile time. The facts come from the kernel's `Documentation/filesystems/ext4` and
//! e2fsprogs' `ext2_fs.h`; Microsoft's `tar2ext4` (hcsshim) showed that flex_bg plus
//! `sparse_super2` without backups lets all metadata follow the data.
//!
//! - [`superblock`]: the superblock and feature flags;
//! - [`group`]: group descriptors (32-byte, plus the 64-bit half for reading);
//! - [`inode`]: inodes, time and device encodings;
//! - [`extent`]: extent tree headers, leaves and index entries;
//! - [`dir`]: linear directory entries; [`htree`]: hashed directory indexes and the hash;
//! - [`xattr`]: xattr block header, entries, name prefixes, hashes, POSIX ACL form.
//!
//! Beside their structures, [`dir`], [`htree`], [`xattr`] and [`extent`] hold the
//! crate-private encoders the [`Builder`](crate::Builder) writes them with: directory
//! blocks, hashed directories, xattr areas and extent tree nodes.
//!
//! Checksums: `metadata_csum` ([`csum`]) is **off by default** and turned on with
//! [`Options::metadata_csum`](crate::Options::metadata_csum). Off, the image is what
//! hcsshim's `tar2ext4` makes and every ext4 kernel mounts; layers are read-only and their
//! integrity is checked by the layer digest one level up. On, every structure carries its
//! CRC32C (superblock, descriptors, both bitmaps, inodes, directory blocks via a tail entry,
//! htree indexes via `dx_tail`, extent blocks, xattr blocks) and the kernel verifies them on
//! read; e2fsck checks them all in the tests. `gdt_csum` (the older CRC16 scheme) is never
//! used. The [`Reader`](crate::Reader) accepts images with or without checksums and does not
//! verify them.

pub mod csum;
pub mod dir;
pub mod extent;
pub mod group;
pub mod htree;
pub mod inode;
pub mod superblock;
pub mod xattr;

/// Block size of the images we write, in bytes.
pub const BLOCK_SIZE: u64 = 4096;
/// [`BLOCK_SIZE`] as a `usize`, for sizing and slicing buffers.
pub(crate) const BS: usize = BLOCK_SIZE as usize;
/// `s_log_block_size` for [`BLOCK_SIZE`] (block size = 1024 << this).
pub const LOG_BLOCK_SIZE: u32 = 2;
/// Blocks per group of the images we write (one bitmap block of 4096 bytes).
pub const BLOCKS_PER_GROUP: u64 = 32768;
/// On-disk inode size of the images we write.
pub const INODE_SIZE: u64 = 256;
/// Size of the inode fields past the first 128 bytes that we use (`i_extra_isize`).
pub const EXTRA_ISIZE: u16 = 32;
/// First inode number that is not reserved.
pub const FIRST_INO: u32 = 11;
/// Inode number of the root directory.
pub const ROOT_INO: u32 = 2;
