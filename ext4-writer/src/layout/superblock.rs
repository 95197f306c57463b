//! The superblock: 1024 bytes at byte offset 1024 of the image.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Byte offset of the superblock in the image.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// `s_magic`.
pub const MAGIC: u16 = 0xEF53;
/// `s_state`: cleanly unmounted.
pub const STATE_CLEAN: u16 = 1;
/// `s_errors`: continue on errors.
pub const ERRORS_CONTINUE: u16 = 1;
/// `s_rev_level`: dynamic inode sizes.
pub const REV_DYNAMIC: u32 = 1;

/// `s_feature_compat`: extended attributes.
pub const COMPAT_EXT_ATTR: u32 = 0x8;
/// `s_feature_compat`: has a journal.
pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
/// `s_feature_compat`: hashed directories may exist.
pub const COMPAT_DIR_INDEX: u32 = 0x20;
/// `s_feature_compat`: backups only in the groups named by `s_backup_bgs`.
pub const COMPAT_SPARSE_SUPER2: u32 = 0x200;

/// `s_feature_incompat`: directory entries record the file type.
pub const INCOMPAT_FILETYPE: u32 = 0x2;
/// `s_feature_incompat`: the journal needs recovery.
pub const INCOMPAT_RECOVER: u32 = 0x4;
/// `s_feature_incompat`: meta block groups.
pub const INCOMPAT_META_BG: u32 = 0x10;
/// `s_feature_incompat`: files may use extents.
pub const INCOMPAT_EXTENTS: u32 = 0x40;
/// `s_feature_incompat`: 64-bit block numbers and descriptor sizes.
pub const INCOMPAT_64BIT: u32 = 0x80;
/// `s_feature_incompat`: multiple mount protection.
pub const INCOMPAT_MMP: u32 = 0x100;
/// `s_feature_incompat`: flexible block groups (metadata may live anywhere).
pub const INCOMPAT_FLEX_BG: u32 = 0x200;
/// `s_feature_incompat`: xattr values in their own inodes.
pub const INCOMPAT_EA_INODE: u32 = 0x400;
/// `s_feature_incompat`: directory data in directory entries.
pub const INCOMPAT_DIRDATA: u32 = 0x1000;
/// `s_feature_incompat`: checksum seed in the superblock.
pub const INCOMPAT_CSUM_SEED: u32 = 0x2000;
/// `s_feature_incompat`: large directories (3-level htree).
pub const INCOMPAT_LARGEDIR: u32 = 0x4000;
/// `s_feature_incompat`: small files' data inside the inode.
pub const INCOMPAT_INLINE_DATA: u32 = 0x8000;
/// `s_feature_incompat`: encrypted files.
pub const INCOMPAT_ENCRYPT: u32 = 0x10000;
/// `s_feature_incompat`: case-folded names.
pub const INCOMPAT_CASEFOLD: u32 = 0x20000;

/// `s_feature_ro_compat`: sparse superblock backups.
pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
/// `s_feature_ro_compat`: files larger than 2 GiB.
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// `s_feature_ro_compat`: `i_blocks` in file-system blocks when flagged.
pub const RO_COMPAT_HUGE_FILE: u32 = 0x8;
/// `s_feature_ro_compat`: more than 65000 subdirectories.
pub const RO_COMPAT_DIR_NLINK: u32 = 0x20;
/// `s_feature_ro_compat`: inodes have extra fields (`i_extra_isize`).
pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
/// `s_feature_ro_compat`: the file system may only be mounted read-only.
pub const RO_COMPAT_READONLY: u32 = 0x1000;

/// Incompatible features the [`Reader`](crate::Reader) understands.
pub const INCOMPAT_READ_SUPPORTED: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_RECOVER
    | INCOMPAT_META_BG
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_MMP
    | INCOMPAT_FLEX_BG
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_INLINE_DATA;

/// The ext4 superblock (`struct ext4_super_block`), fields through `s_checksum_seed`
/// named, the rest kept as padding.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Debug)]
#[repr(C)]
pub struct Superblock {
    /// Total inode count.
    pub inodes_count: U32,
    /// Total block count, low 32 bits.
    pub blocks_count_lo: U32,
    /// Blocks reserved for the super-user, low 32 bits.
    pub r_blocks_count_lo: U32,
    /// Free block count, low 32 bits.
    pub free_blocks_count_lo: U32,
    /// Free inode count.
    pub free_inodes_count: U32,
    /// First data block (0 for block sizes above 1 KiB).
    pub first_data_block: U32,
    /// Block size is `1024 << log_block_size`.
    pub log_block_size: U32,
    /// Cluster size is `1024 << log_cluster_size`.
    pub log_cluster_size: U32,
    /// Blocks per group.
    pub blocks_per_group: U32,
    /// Clusters per group.
    pub clusters_per_group: U32,
    /// Inodes per group.
    pub inodes_per_group: U32,
    /// Last mount time.
    pub mtime: U32,
    /// Last write time.
    pub wtime: U32,
    /// Mounts since the last check.
    pub mnt_count: U16,
    /// Mounts allowed before a check (0xFFFF: never).
    pub max_mnt_count: U16,
    /// [`MAGIC`].
    pub magic: U16,
    /// File-system state.
    pub state: U16,
    /// Behaviour on errors.
    pub errors: U16,
    /// Minor revision level.
    pub minor_rev_level: U16,
    /// Time of the last check.
    pub lastcheck: U32,
    /// Maximum time between checks.
    pub checkinterval: U32,
    /// Creator OS (0: Linux).
    pub creator_os: U32,
    /// Revision level.
    pub rev_level: U32,
    /// Default uid for reserved blocks.
    pub def_resuid: U16,
    /// Default gid for reserved blocks.
    pub def_resgid: U16,
    /// First non-reserved inode.
    pub first_ino: U32,
    /// Inode size in bytes.
    pub inode_size: U16,
    /// Block group holding this superblock.
    pub block_group_nr: U16,
    /// Compatible features.
    pub feature_compat: U32,
    /// Incompatible features.
    pub feature_incompat: U32,
    /// Read-only compatible features.
    pub feature_ro_compat: U32,
    /// Volume UUID.
    pub uuid: [u8; 16],
    /// Volume label.
    pub volume_name: [u8; 16],
    /// Directory where last mounted.
    pub last_mounted: [u8; 64],
    /// Compression bitmap.
    pub algorithm_usage_bitmap: U32,
    /// Blocks to preallocate for files.
    pub prealloc_blocks: u8,
    /// Blocks to preallocate for directories.
    pub prealloc_dir_blocks: u8,
    /// Reserved GDT blocks for growth.
    pub reserved_gdt_blocks: U16,
    /// Journal UUID.
    pub journal_uuid: [u8; 16],
    /// Journal inode.
    pub journal_inum: U32,
    /// Journal device.
    pub journal_dev: U32,
    /// Head of the orphan list.
    pub last_orphan: U32,
    /// Htree hash seed.
    pub hash_seed: [U32; 4],
    /// Default htree hash version.
    pub def_hash_version: u8,
    /// Journal backup type.
    pub jnl_backup_type: u8,
    /// Group descriptor size (64-bit feature).
    pub desc_size: U16,
    /// Default mount options.
    pub default_mount_opts: U32,
    /// First meta block group.
    pub first_meta_bg: U32,
    /// File-system creation time.
    pub mkfs_time: U32,
    /// Journal inode backup.
    pub jnl_blocks: [U32; 17],
    /// Total block count, high 32 bits.
    pub blocks_count_hi: U32,
    /// Reserved block count, high 32 bits.
    pub r_blocks_count_hi: U32,
    /// Free block count, high 32 bits.
    pub free_blocks_count_hi: U32,
    /// Every inode has at least this many extra bytes.
    pub min_extra_isize: U16,
    /// New inodes should have this many extra bytes.
    pub want_extra_isize: U16,
    /// Miscellaneous flags.
    pub flags: U32,
    /// RAID stride.
    pub raid_stride: U16,
    /// MMP update interval.
    pub mmp_interval: U16,
    /// MMP block.
    pub mmp_block: U64,
    /// RAID stripe width.
    pub raid_stripe_width: U32,
    /// Groups per flex group is `1 << log_groups_per_flex`.
    pub log_groups_per_flex: u8,
    /// Metadata checksum algorithm.
    pub checksum_type: u8,
    /// Padding.
    pub reserved_pad: U16,
    /// KiB written over the life of the file system.
    pub kbytes_written: U64,
    /// Fields from `s_snapshot_inum` to `s_mount_opts` that we never set.
    pub unused_snapshot_error: [u8; 0x240 - 0x180],
    /// User quota inode.
    pub usr_quota_inum: U32,
    /// Group quota inode.
    pub grp_quota_inum: U32,
    /// Overhead blocks.
    pub overhead_blocks: U32,
    /// With `sparse_super2`: the only groups with superblock backups (0: none).
    pub backup_bgs: [U32; 2],
    /// Encryption, quota, checksum seed and the rest, never set by us.
    pub tail: [u8; 1024 - 0x254],
}

const _: () = assert!(core::mem::size_of::<Superblock>() == 1024);
const _: () = assert!(core::mem::offset_of!(Superblock, feature_compat) == 0x5C);
const _: () = assert!(core::mem::offset_of!(Superblock, desc_size) == 0xFE);
const _: () = assert!(core::mem::offset_of!(Superblock, blocks_count_hi) == 0x150);
const _: () = assert!(core::mem::offset_of!(Superblock, log_groups_per_flex) == 0x174);
const _: () = assert!(core::mem::offset_of!(Superblock, backup_bgs) == 0x24C);
