//! The devices a sandbox attaches, as the Devices item stores them.
//!
//! The file holds a JSON array of `{"Type": "<kind>", "Data": {…}}` objects, one per
//! device (serde's adjacent tagging). The kinds are the device types a Kata-style runtime
//! hands a hypervisor: a generic host device, a block drive, VFIO passthrough and the
//! vhost-user family. The fields are PascalCase, as such runtimes write them; missing
//! fields read as their defaults, so a file from a runtime that sets fewer fields still
//! loads. A `Type` outside [`Device::TYPES`] is refused with
//! [`SandboxError::UnknownDeviceType`](super::SandboxError::UnknownDeviceType), naming the
//! type and the file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One attached device, tagged by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Type", content = "Data")]
pub enum Device {
    /// A host device passed through as-is (a character device, a FIFO, …).
    #[serde(rename = "generic")]
    Generic(GenericDevice),
    /// A block device or image file attached as a drive.
    #[serde(rename = "block")]
    Block(BlockDevice),
    /// PCI or mediated devices passed through with VFIO.
    #[serde(rename = "vfio")]
    Vfio(VfioDevice),
    /// A vhost-user block device (`vhost-user-blk-pci`).
    #[serde(rename = "vhost-user-blk-pci")]
    VhostUserBlk(VhostUserDevice),
    /// A vhost-user SCSI controller (`vhost-user-scsi-pci`).
    #[serde(rename = "vhost-user-scsi-pci")]
    VhostUserScsi(VhostUserDevice),
    /// A vhost-user network device (`virtio-net-pci`).
    #[serde(rename = "virtio-net-pci")]
    VhostUserNet(VhostUserDevice),
    /// A virtio-fs device served by a vhost-user daemon (`vhost-user-fs-pci`).
    #[serde(rename = "vhost-user-fs-pci")]
    VhostUserFs(VhostUserDevice),
}

impl Device {
    /// Every `Type` tag this version reads.
    pub const TYPES: [&'static str; 7] = [
        "generic",
        "block",
        "vfio",
        "vhost-user-blk-pci",
        "vhost-user-scsi-pci",
        "virtio-net-pci",
        "vhost-user-fs-pci",
    ];

    /// The device's `Type` tag.
    pub fn device_type(&self) -> &'static str {
        match self {
            Device::Generic(_) => "generic",
            Device::Block(_) => "block",
            Device::Vfio(_) => "vfio",
            Device::VhostUserBlk(_) => "vhost-user-blk-pci",
            Device::VhostUserScsi(_) => "vhost-user-scsi-pci",
            Device::VhostUserNet(_) => "virtio-net-pci",
            Device::VhostUserFs(_) => "vhost-user-fs-pci",
        }
    }

    /// The part every kind shares: id, host device and reference counts.
    pub fn generic(&self) -> &GenericDevice {
        match self {
            Device::Generic(d) => d,
            Device::Block(d) => &d.device,
            Device::Vfio(d) => &d.device,
            Device::VhostUserBlk(d)
            | Device::VhostUserScsi(d)
            | Device::VhostUserNet(d)
            | Device::VhostUserFs(d) => &d.device,
        }
    }
}

/// What every device kind records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GenericDevice {
    /// The device's id in the runtime.
    #[serde(rename = "ID")]
    pub id: String,
    /// The host device it stands for.
    pub device_info: DeviceInfo,
    /// How many containers refer to it.
    pub ref_count: u32,
    /// How many times it is attached to the VM.
    pub attach_count: u32,
}

/// A host device as a container asked for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceInfo {
    /// The device's path on the host.
    pub host_path: PathBuf,
    /// The device's path inside the container.
    pub container_path: PathBuf,
    /// `c`, `u` (character), `b` (block) or `p` (FIFO), as mknod(1) spells them.
    pub dev_type: String,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Whether the host path backs a persistent-memory (nvdimm) device in the guest.
    pub pmem: bool,
    /// Whether the device is read-only.
    pub read_only: bool,
    /// Whether it is attached before the VM boots (cold plug) rather than hotplugged.
    pub cold_plug: bool,
    /// Permission bits of the device node.
    pub file_mode: u32,
    /// Owner of the device node.
    #[serde(rename = "UID")]
    pub uid: u32,
    /// Group of the device node.
    #[serde(rename = "GID")]
    pub gid: u32,
    /// The id given to the hypervisor.
    #[serde(rename = "ID")]
    pub id: String,
    /// Driver-specific options (for example `blockDriver = virtio-blk`).
    pub driver_options: BTreeMap<String, String>,
}

/// A block device attached as a drive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BlockDevice {
    /// What every device records.
    #[serde(flatten)]
    pub device: GenericDevice,
    /// The drive as the hypervisor sees it.
    pub block_drive: BlockDrive,
}

/// A drive handed to the hypervisor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BlockDrive {
    /// The image file or block device behind the drive.
    pub file: PathBuf,
    /// The image format (`raw`, `qcow2`, …).
    pub format: String,
    /// The drive's id in the hypervisor.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its index (the LUN with virtio-scsi).
    pub index: i32,
    /// The MMIO address, with virtio-mmio.
    pub mmio_addr: String,
    /// The PCI path of its slot (`bridge/slot`), with virtio-blk-pci.
    #[serde(rename = "PCIPath")]
    pub pci_path: String,
    /// The SCSI address (`id:lun`), with virtio-scsi.
    #[serde(rename = "SCSIAddr")]
    pub scsi_addr: String,
    /// The nvdimm id in the guest.
    #[serde(rename = "NvdimmID")]
    pub nvdimm_id: String,
    /// The path at which the drive appears in the VM.
    pub virt_path: String,
    /// The CCW device number, with virtio-blk-ccw.
    pub dev_no: String,
    /// Whether several VMs may share the file.
    #[serde(rename = "ShareRW")]
    pub share_rw: bool,
    /// Whether the drive is read-only.
    pub read_only: bool,
    /// Whether the file backs persistent memory in the guest.
    pub pmem: bool,
}

/// Devices passed through with VFIO.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VfioDevice {
    /// What every device records.
    #[serde(flatten)]
    pub device: GenericDevice,
    /// The functions of the IOMMU group, one per VFIO device.
    pub vfio_devs: Vec<VfioDev>,
}

/// Whether a VFIO device is a whole PCI function or a mediated device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VfioKind {
    /// A PCI function, named by its BDF.
    #[default]
    Normal,
    /// A mediated device, named by its sysfs path.
    Mediated,
}

/// One VFIO device of an IOMMU group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VfioDev {
    /// Whether it sits on a PCIe (rather than PCI) bus in the guest.
    #[serde(rename = "IsPCIe")]
    pub is_pcie: bool,
    /// Whole function or mediated device.
    #[serde(rename = "Type")]
    pub kind: VfioKind,
    /// Its id in the hypervisor.
    #[serde(rename = "ID")]
    pub id: String,
    /// Bus:Device.Function of the host PCI address.
    #[serde(rename = "BDF")]
    pub bdf: String,
    /// The sysfs path of a mediated device.
    pub sysfs_dev: String,
    /// PCI vendor id.
    #[serde(rename = "VendorID")]
    pub vendor_id: String,
    /// PCI device id.
    #[serde(rename = "DeviceID")]
    pub device_id: String,
    /// PCI class code.
    pub class: String,
    /// The guest bus it is attached to.
    pub bus: String,
}

/// A device served by a vhost-user daemon over a socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VhostUserDevice {
    /// What every device records.
    #[serde(flatten)]
    pub device: GenericDevice,
    /// The vhost-user side.
    pub vhost_user_device_attrs: VhostUserAttrs,
}

/// The vhost-user side of a device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VhostUserAttrs {
    /// The device's id in the hypervisor.
    #[serde(rename = "DevID")]
    pub dev_id: String,
    /// The daemon's socket.
    pub socket_path: PathBuf,
    /// MAC address (network devices only).
    pub mac_address: String,
    /// Mount tag (virtio-fs only).
    pub tag: String,
    /// DAX cache size in MiB (virtio-fs only).
    pub cache_size: u32,
    /// Cache mode (virtio-fs only).
    pub cache: String,
    /// PCI path of its slot (block devices only).
    #[serde(rename = "PCIPath")]
    pub pci_path: String,
    /// Block index, when one was assigned.
    pub index: i32,
}

/// Finds the first `Type` in a Devices file that [`Device::TYPES`] does not hold. Used to
/// turn serde's "unknown variant" into an error a caller can branch on.
pub(crate) fn unknown_type(json: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Tagged {
        #[serde(rename = "Type")]
        device_type: String,
    }
    let tagged: Vec<Tagged> = serde_json::from_slice(json).ok()?;
    tagged
        .into_iter()
        .map(|t| t.device_type)
        .find(|t| !Device::TYPES.contains(&t.as_str()))
}
