//! Installing what tests and benchmarks need, idempotently.

use anyhow::{Context, Result, bail};
use std::process::Command;

/// Debian packages the test suite needs: mkfs/e2fsck/debugfs, FUSE, libclang for bindgen,
/// qemu-img/qemu-io for the disk-image cross-checks, nfs-ganesha with rpcbind for the NFS
/// store (and libnfs's nfs-ls as an independent client), and the image tools strata's
/// pulls and pushes are checked against (umoci, skopeo, containers-storage) with runc and
/// busybox-static for a real container, attr for xattrs in test trees, fuse-overlayfs for
/// an unprivileged user's mounts.
pub const TEST_PACKAGES: &[&str] = &[
    "attr",
    "busybox-static",
    "containers-storage",
    "e2fsprogs",
    "fuse-overlayfs",
    "fuse3",
    "libclang-dev",
    "libnfs-utils",
    "nfs-ganesha",
    "nfs-ganesha-vfs",
    "qemu-utils",
    "rpcbind",
    "runc",
    "skopeo",
    "umoci",
    "util-linux",
];

/// Debian packages only the benchmarks need: the peers strata is measured against.
pub const BENCH_PACKAGES: &[&str] = &[
    "containers-storage",
    "tar",
    "containers-storage",
    "e2fsprogs",
    "qemu-utils",
    "libnfs-utils",
    "nfs-ganesha",
    "nfs-ganesha-vfs",
    "openssl",
    "rpcbind",
    "skopeo",
    "umoci",
];

/// Makes `/dev/fuse` usable by every user, as Debian's udev rule does on a full system
/// (`MODE="0666"`), so that an unprivileged user's fuse-overlayfs mounts can be tested; a
/// minimal container or VM may leave it root's only. As root only; a missing device is
/// left to the tests that need it to report.
pub fn ensure_fuse_device() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dev = std::path::Path::new("/dev/fuse");
    let Ok(md) = std::fs::metadata(dev) else {
        return Ok(());
    };
    if md.permissions().mode() & 0o666 == 0o666 || !is_root() {
        return Ok(());
    }
    eprintln!("xtask: making /dev/fuse usable by every user (mode 0666)");
    std::fs::set_permissions(dev, std::fs::Permissions::from_mode(0o666))
        .context("chmod 0666 /dev/fuse")
}

/// True when the effective user is root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the packages that are missing (as root, with apt-get); lists them otherwise.
pub fn ensure_packages(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        eprintln!(
            "xtask: not root, so not installing {}; tests that need them will skip (or fail under CI=true)",
            missing.join(" ")
        );
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let update = Command::new("apt-get")
        .args(["-qq", "update"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("run apt-get update")?;
    if !update.success() {
        bail!("apt-get update failed ({update})");
    }
    let install = Command::new("apt-get")
        .args(["-qq", "-y", "--no-install-recommends", "install"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("run apt-get install")?;
    if !install.success() {
        bail!("apt-get install {} failed ({install})", missing.join(" "));
    }
    Ok(())
}
