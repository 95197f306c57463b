//! Small ext4 filesystems on loop devices.
//!
//! [`LoopDisk`] is one mounted, for tests that need a disk that fills or fails: the store
//! or an NFS export put on it meets ENOSPC (or, with its image on a full tmpfs, EIO) from
//! the kernel, as on a real disk. [`ext4_image`] and [`LoopDevice`] are the parts, for
//! tests of code that mounts block devices itself, and [`e2fsck_clean`] checks an image
//! after.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An ext4 image made in a directory and mounted with `-o loop`, unmounted when dropped.
pub struct LoopDisk {
    image: PathBuf,
    mount: PathBuf,
    /// The directory the image and its mount point live in, when this disk made it.
    _dir: Option<tempfile::TempDir>,
}

/// Runs `c`, which must succeed (else the panic shows what it printed); its output.
fn run(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{c:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

impl LoopDisk {
    /// A `mib` MiB disk in a new temporary directory, with no blocks reserved for root.
    pub fn new(mib: u64) -> LoopDisk {
        let dir = tempfile::Builder::new()
            .prefix("strata-disk-")
            .tempdir()
            .expect("create a directory for a loop disk");
        let mut disk = LoopDisk::in_dir(dir.path(), dir.path(), mib);
        disk._dir = Some(dir);
        disk
    }

    /// A `mib` MiB disk whose (sparse) image is made in `image_dir` and mounted in
    /// `mount_dir`.
    pub fn in_dir(image_dir: &Path, mount_dir: &Path, mib: u64) -> LoopDisk {
        let image = image_dir.join("disk.img");
        let mount = mount_dir.join("mnt");
        std::fs::create_dir_all(&mount).expect("create the mount point");
        ext4_image(&image, mib);
        let disk = LoopDisk {
            image,
            mount,
            _dir: None,
        };
        disk.mount_again();
        disk
    }

    /// Where the filesystem is mounted.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The image file.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// Unmounts the filesystem (to check or repair its image).
    pub fn unmount(&self) {
        run(Command::new("umount").arg(&self.mount));
    }

    /// Mounts the filesystem again.
    pub fn mount_again(&self) {
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&self.image)
            .arg(&self.mount));
    }

    /// Fills what is free with a file; returns it (remove it to free the space).
    pub fn fill(&self) -> PathBuf {
        let filler = self.mount.join("filler");
        let mut f = std::fs::File::create(&filler).expect("create the filler");
        let block = vec![0x5a; 1 << 20];
        while f.write_all(&block).is_ok() {}
        // What is left is smaller than a block; take it too.
        while f.write_all(&block[..4096]).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

/// Makes `image` a sparse `mib` MiB file holding an empty ext4 filesystem
/// (`mkfs.ext4`, no blocks reserved for root).
pub fn ext4_image(image: &Path, mib: u64) {
    std::fs::File::create(image)
        .and_then(|f| f.set_len(mib << 20))
        .expect("create the disk image");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0"])
        .arg(image));
}

/// Asserts that `e2fsck -fn` finds nothing to fix in `image`.
pub fn e2fsck_clean(image: &Path) {
    run(Command::new("e2fsck").arg("-fn").arg(image));
}

/// An image attached to a free loop device (`losetup --find`), detached when dropped.
/// Whatever is still mounted from it then is the test's to unmount: the kernel detaches
/// the device once the last mount goes.
pub struct LoopDevice {
    device: PathBuf,
}

impl LoopDevice {
    /// Attaches `image`, read-write.
    pub fn attach(image: &Path) -> LoopDevice {
        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image));
        LoopDevice {
            device: PathBuf::from(device.trim()),
        }
    }

    /// The device (`/dev/loopN`).
    pub fn path(&self) -> &Path {
        &self.device
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}
