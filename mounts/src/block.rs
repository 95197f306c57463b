//! Filesystems on block devices: an ext4 (by default) mounted from a loop device, read-only
//! for a layer's disk, read-write for a container's.
//!
//! What a mount gets, and why:
//!
//! - **Read-only is read-only all the way down.** The superblock is made read-only
//!   (`ro`, `MS_RDONLY`) and so is the mount (`MOUNT_ATTR_RDONLY`), so nothing is written
//!   to the device, not even the times a read-write mount records.
//! - **No journal is replayed by a read-only mount.** A read-only ext4 mount still
//!   replays a journal that needs recovery, and cleans up orphaned inodes, writing both to
//!   the device (unless the device itself is read-only, when the kernel refuses the
//!   mount). `noload` would skip the replay but show the filesystem without its last
//!   committed transactions: stale or inconsistent metadata, so it is never passed.
//!   Instead a read-only mount of an ext filesystem that needs recovery (or has orphans to
//!   clean up) is refused with [`Error::Unsupported`]; a read-write mount or `e2fsck`
//!   replays it first. A filesystem still mounted (the device is claimed) is exempt: its
//!   superblock is loaded and nothing is replayed again.
//! - **`errors=remount-ro`** on every ext filesystem: on the corruption it detects, a
//!   mount stops writing rather than write on (`continue`) or take the host down
//!   (`panic`, which a disk's superblock may ask for: a disk strata did not make must not
//!   be able to do that).
//! - **No `nodev`, no `nosuid`**: the mount is a container's root, whose device nodes and
//!   set-id programs are part of its image. Whoever wants them adds them as options.
//!
//! Mounts use the new mount API, so an error carries what the kernel logged about it;
//! `mount(2)` is the fallback where `fsopen` is missing.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use storage_core::{Error, Result};

use crate::fs_context::{Failed, FsContext};

/// A filesystem on a block device to mount at a directory.
#[derive(Debug, Clone)]
pub struct BlockMount {
    device: PathBuf,
    target: PathBuf,
    fstype: String,
    read_only: bool,
    options: Vec<(String, Option<String>)>,
}

impl BlockMount {
    /// The ext4 filesystem on `device`, to mount read-write at `target` (which exists).
    pub fn new(device: impl Into<PathBuf>, target: impl Into<PathBuf>) -> BlockMount {
        BlockMount {
            device: device.into(),
            target: target.into(),
            fstype: "ext4".into(),
            read_only: false,
            options: Vec::new(),
        }
    }

    /// Another filesystem type than ext4.
    pub fn fstype(mut self, fstype: &str) -> BlockMount {
        self.fstype = fstype.to_owned();
        self
    }

    /// Mounts read-only: nothing is written to the device (see the [module](self)).
    pub fn read_only(mut self) -> BlockMount {
        self.read_only = true;
        self
    }

    /// Adds a filesystem option: `key=value`, or a flag `key` with `None`. An `errors`
    /// option replaces the default `errors=remount-ro`.
    pub fn option(mut self, key: &str, value: Option<&str>) -> BlockMount {
        self.options
            .push((key.to_owned(), value.map(str::to_owned)));
        self
    }

    /// The block device.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Where it is mounted.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Mounts it.
    pub fn mount(&self) -> Result<()> {
        if self.read_only && is_ext(&self.fstype) {
            self.refuse_replay()?;
        }
        let options = self.options();
        let fs = match FsContext::open(&self.fstype) {
            Ok(fs) => fs,
            // No new mount API here (or a filter refuses it): mount(2) says what is wrong.
            Err(_) => return self.mount_legacy(&options),
        };
        self.mount_new(fs, &options)
            .map_err(|f| self.fail(&f.step, f.source))
    }

    fn mount_new(
        &self,
        fs: FsContext,
        options: &[(String, Option<String>)],
    ) -> std::result::Result<(), Failed> {
        fs.set("source", &self.device)?;
        if self.read_only {
            fs.flag("ro")?;
        }
        for (key, value) in options {
            match value {
                Some(v) => fs.set(key, v)?,
                None => fs.flag(key)?,
            }
        }
        fs.mount_at(&self.target, self.read_only, "the superblock")
    }

    fn mount_legacy(&self, options: &[(String, Option<String>)]) -> Result<()> {
        use nix::mount::{MsFlags, mount};
        let mut data = Vec::new();
        for (key, value) in options {
            let option = match value {
                Some(v) => format!("{key}={v}"),
                None => key.clone(),
            };
            if option.contains(',') {
                return Err(Error::Unsupported {
                    what: format!("the option {option:?} for {}", self.describe()),
                    reason: "mount(2) separates options with commas".into(),
                });
            }
            data.push(option);
        }
        let flags = if self.read_only {
            MsFlags::MS_RDONLY
        } else {
            MsFlags::empty()
        };
        mount(
            Some(&self.device),
            &self.target,
            Some(self.fstype.as_str()),
            flags,
            Some(data.join(",").as_str()),
        )
        .map_err(|e| self.fail("mount(2)", e.into()))
    }

    /// The options passed: the caller's, and `errors=remount-ro` on ext filesystems unless
    /// the caller chose another.
    fn options(&self) -> Vec<(String, Option<String>)> {
        let mut options = self.options.clone();
        if is_ext(&self.fstype) && !options.iter().any(|(k, _)| k == "errors") {
            options.insert(0, ("errors".into(), Some("remount-ro".into())));
        }
        options
    }

    /// Refuses a read-only mount that would replay a journal or clean up orphans (both
    /// write), unless the filesystem is still mounted and so already replayed.
    fn refuse_replay(&self) -> Result<()> {
        let read = |device: std::io::Result<std::fs::File>| {
            let mut block = [0u8; SUPERBLOCK_LEN];
            device
                .and_then(|d| d.read_exact_at(&mut block, SUPERBLOCK_OFFSET))
                .map(|()| ExtSuperblock(&block).pending_writes())
                .map_err(|e| self.fail("read the superblock", e))
        };
        if read(std::fs::File::open(&self.device))?.is_none() {
            return Ok(());
        }
        // Only now is the device opened exclusively, for as short a time as it takes to
        // read the superblock again: the claim would make anyone's mount of it fail.
        let pending = match open_exclusive(&self.device) {
            Ok(device) => read(Ok(device))?,
            // Mounted, or unmounted and not let go yet: the kernel shares the superblock
            // it holds (replayed when it was loaded) or makes a new one once that one has
            // been written back clean.
            Err(e) if e.raw_os_error() == Some(EBUSY) => None,
            Err(e) => return Err(self.fail("open the device", e)),
        };
        match pending {
            None => Ok(()),
            Some(pending) => Err(Error::Unsupported {
                what: format!("mounting {}", self.describe()),
                reason: format!(
                    "{pending}, which a read-only mount would write to the device; mount it \
                     read-write once or run e2fsck first"
                ),
            }),
        }
    }

    /// `ext4 /dev/loop3 at /mnt (read-only)`.
    fn describe(&self) -> String {
        format!(
            "{} {} at {}{}",
            self.fstype,
            self.device.display(),
            self.target.display(),
            if self.read_only { " (read-only)" } else { "" }
        )
    }

    fn fail(&self, step: &str, source: std::io::Error) -> Error {
        Error::io(format!("mount {}: {step}", self.describe()), source)
    }
}

const EBUSY: i32 = rustix::io::Errno::BUSY.raw_os_error();

/// Opens a block device for reading with `O_EXCL`, which the kernel refuses (`EBUSY`)
/// while anything holds the device: a mounted filesystem above all.
fn open_exclusive(device: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::EXCL | OFlags::CLOEXEC;
    Ok(rustix::fs::open(device, flags, Mode::empty())?.into())
}

/// True while something holds the block device `device`: a filesystem on it is mounted,
/// or was unmounted lazily and is not let go yet (its last writes may still be under
/// way). A caller about to detach or check a device waits for this to turn false.
///
/// It asks by opening the device exclusively for an instant. A mount of the device in
/// that instant fails (`EBUSY`), and so does one while a process that another thread
/// forked meanwhile still holds the descriptor, until it executes its program.
pub fn is_claimed(device: &Path) -> Result<bool> {
    match open_exclusive(device) {
        Ok(_) => Ok(false),
        Err(e) if e.raw_os_error() == Some(EBUSY) => Ok(true),
        Err(e) => Err(Error::io_path("open exclusively", device, e)),
    }
}

fn is_ext(fstype: &str) -> bool {
    matches!(fstype, "ext2" | "ext3" | "ext4")
}

/// Where an ext superblock starts on its device, and the part of it read here.
const SUPERBLOCK_OFFSET: u64 = 1024;
const SUPERBLOCK_LEN: usize = 1024;

/// The fields of an ext2/3/4 superblock that say whether a mount would write.
struct ExtSuperblock<'a>(&'a [u8; SUPERBLOCK_LEN]);

impl ExtSuperblock<'_> {
    const MAGIC: u16 = 0xEF53;
    /// `EXT3_FEATURE_INCOMPAT_RECOVER`: the journal holds transactions to replay.
    const INCOMPAT_RECOVER: u32 = 0x4;
    /// `EXT4_FEATURE_RO_COMPAT_ORPHAN_PRESENT`: the orphan file lists inodes.
    const RO_COMPAT_ORPHAN_PRESENT: u32 = 0x1_0000;

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }

    /// What a mount would write before anything else, if anything; `None` too for what is
    /// not an ext superblock (the kernel says what it is not).
    fn pending_writes(&self) -> Option<&'static str> {
        if self.u16_at(0x38) != Self::MAGIC {
            return None;
        }
        if self.u32_at(0x60) & Self::INCOMPAT_RECOVER != 0 {
            Some("its journal needs recovery")
        } else if self.u32_at(0xE8) != 0 || self.u32_at(0x64) & Self::RO_COMPAT_ORPHAN_PRESENT != 0
        {
            Some("it has orphaned inodes to clean up")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(incompat: u32, ro_compat: u32, last_orphan: u32) -> [u8; SUPERBLOCK_LEN] {
        let mut b = [0u8; SUPERBLOCK_LEN];
        b[0x38..0x3A].copy_from_slice(&ExtSuperblock::MAGIC.to_le_bytes());
        b[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
        b[0x64..0x68].copy_from_slice(&ro_compat.to_le_bytes());
        b[0xE8..0xEC].copy_from_slice(&last_orphan.to_le_bytes());
        b
    }

    #[test]
    fn a_clean_superblock_has_nothing_to_write() {
        // extents | 64bit | flex_bg, as mkfs.ext4 sets them: no recovery among them.
        let b = superblock(0x40 | 0x80 | 0x200, 0x1 | 0x2, 0);
        assert_eq!(ExtSuperblock(&b).pending_writes(), None);
    }

    #[test]
    fn a_journal_to_replay_or_orphans_to_clean_are_writes() {
        let b = superblock(0x40 | ExtSuperblock::INCOMPAT_RECOVER, 0, 0);
        assert!(
            ExtSuperblock(&b)
                .pending_writes()
                .unwrap()
                .contains("journal")
        );
        let b = superblock(0x40, 0, 12);
        assert!(
            ExtSuperblock(&b)
                .pending_writes()
                .unwrap()
                .contains("orphan")
        );
        let b = superblock(0x40, ExtSuperblock::RO_COMPAT_ORPHAN_PRESENT, 0);
        assert!(
            ExtSuperblock(&b)
                .pending_writes()
                .unwrap()
                .contains("orphan")
        );
    }

    #[test]
    fn what_is_not_an_ext_superblock_is_left_to_the_kernel() {
        let mut b = superblock(ExtSuperblock::INCOMPAT_RECOVER, 0, 0);
        b[0x38] = 0;
        assert_eq!(ExtSuperblock(&b).pending_writes(), None);
    }

    #[test]
    fn ext_mounts_get_errors_remount_ro_unless_the_caller_chose() {
        let m = BlockMount::new("/dev/loop9", "/mnt");
        assert_eq!(
            m.options(),
            vec![("errors".to_owned(), Some("remount-ro".to_owned()))]
        );
        let m = m.option("errors", Some("continue")).option("discard", None);
        assert_eq!(
            m.options(),
            vec![
                ("errors".to_owned(), Some("continue".to_owned())),
                ("discard".to_owned(), None)
            ]
        );
        assert!(
            BlockMount::new("/dev/sr0", "/mnt")
                .fstype("iso9660")
                .options()
                .is_empty()
        );
    }
}
