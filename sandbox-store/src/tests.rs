use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::*;

fn store() -> (tempfile::TempDir, SandboxStore) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SandboxStore::new(Roots::new(dir.path().join("lib"), dir.path().join("run"))).unwrap();
    (dir, store)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Value {
    item: String,
    n: u64,
    tags: BTreeMap<String, String>,
}

fn value_for(item: Item, n: u64) -> Value {
    Value {
        item: item.name().to_owned(),
        n,
        tags: BTreeMap::from([("k".to_owned(), format!("v{n}"))]),
    }
}

/// Every item of `items` round-trips, and its file sits under exactly the root its
/// persistence names.
fn round_trip_every_item(items: &Items, store: &SandboxStore, rel: &Path) {
    for (n, item) in Item::ALL.into_iter().enumerate() {
        let value = value_for(item, n as u64);
        items.store_item(item, &value).unwrap();
        assert_eq!(items.fetch_item::<Value>(item).unwrap(), value, "{item}");
        let (here, there) = match item.persistence() {
            Persistence::Persistent => (&store.roots().persistent, &store.roots().run),
            Persistence::Volatile => (&store.roots().run, &store.roots().persistent),
        };
        let path = here.join(rel).join(item.file_name());
        assert_eq!(items.item_path(item), path);
        assert!(path.is_file(), "{item} not at {}", path.display());
        assert!(!there.join(rel).join(item.file_name()).exists(), "{item}");
        // A second store replaces the first.
        let newer = value_for(item, 100 + n as u64);
        items.store_item(item, &newer).unwrap();
        assert_eq!(items.fetch_item::<Value>(item).unwrap(), newer, "{item}");
    }
}

#[test]
fn every_sandbox_item_round_trips_under_its_root() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    round_trip_every_item(&sb, &store, Path::new("sb1"));
    assert_eq!(
        store.roots().persistent.join("sb1/config.json"),
        sb.item_path(Item::Configuration)
    );
    assert_eq!(
        store.roots().run.join("sb1/state.json"),
        sb.item_path(Item::State)
    );
}

#[test]
fn every_container_item_round_trips_under_its_root() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    let c = sb.container("c1").unwrap();
    round_trip_every_item(&c, &store, Path::new("sb1/c1"));
    assert_eq!((c.id(), c.sandbox_id()), ("c1", "sb1"));
    // The container's items are its own, not the sandbox's.
    assert!(matches!(
        sb.fetch_item::<Value>(Item::State),
        Err(SandboxError::NotFound {
            item: Item::State,
            ..
        })
    ));
    assert_eq!(sb.container_ids().unwrap(), vec!["c1".to_owned()]);
}

#[test]
fn items_are_whole_json_files_and_leave_no_temp_file() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    sb.store_item(Item::Network, &value_for(Item::Network, 1))
        .unwrap();
    let text = std::fs::read_to_string(sb.item_path(Item::Network)).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["item"], "network");
    let names: Vec<OsString> = std::fs::read_dir(sb.dir(Persistence::Volatile))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![OsString::from("network.json")]);
}

#[test]
fn a_missing_item_is_not_found_naming_owner_item_and_path() {
    let (_dir, store) = store();
    let c = store.sandbox("sb1").unwrap().container("c1").unwrap();
    let err = c.fetch_item::<Value>(Item::Process).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(
        err,
        SandboxError::NotFound {
            item: Item::Process,
            ..
        }
    ));
    assert!(msg.contains("container c1 of sandbox sb1"), "{msg}");
    assert!(msg.contains("sb1/c1/process.json"), "{msg}");
}

#[test]
fn an_item_of_another_shape_is_a_decode_error_with_its_path() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    sb.store_item(Item::Agent, &vec![1, 2, 3]).unwrap();
    let err = sb.fetch_item::<Value>(Item::Agent).unwrap_err();
    assert!(matches!(err, SandboxError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("sb1/agent.json"), "{err}");
}

#[test]
fn a_decode_error_names_the_path_and_serdes_cause_once() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    sb.store_item(Item::Agent, &vec![1, 2, 3]).unwrap();
    let err = sb.fetch_item::<Value>(Item::Agent).unwrap_err();
    let SandboxError::Decode { source, .. } = &err else {
        panic!("{err}");
    };
    let cause = source.to_string();
    assert!(!err.to_string().contains(&cause), "{err}");
    let printed = storage_core::Report(&err).to_string();
    assert_eq!(printed.matches(&cause).count(), 1, "{printed}");
    assert!(printed.contains("sb1/agent.json"), "{printed}");
}

#[test]
fn an_io_error_names_the_path_and_the_os_cause_once() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    let path = sb.item_path(Item::Agent);
    std::fs::create_dir_all(&path).unwrap();
    let err = sb.fetch_item::<Value>(Item::Agent).unwrap_err();
    let SandboxError::Io { source, .. } = &err else {
        panic!("{err}");
    };
    let cause = source.to_string();
    let printed = storage_core::Report(&err).to_string();
    assert_eq!(printed.matches(&cause).count(), 1, "{printed}");
    assert!(printed.contains(&path.display().to_string()), "{printed}");
}

#[test]
fn a_value_json_cannot_hold_is_an_encode_error() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    let map = BTreeMap::from([((1, 2), "non-string key")]);
    let err = sb.store_item(Item::Mounts, &map).unwrap_err();
    assert!(
        matches!(
            err,
            SandboxError::Encode {
                item: Item::Mounts,
                ..
            }
        ),
        "{err}"
    );
    assert!(!sb.item_path(Item::Mounts).exists());
}

#[test]
fn ids_are_validated() {
    let long = "a".repeat(MAX_ID_LEN + 1);
    let longest = "a".repeat(MAX_ID_LEN);
    let refused: &[(&str, &str)] = &[
        ("", "empty"),
        ("../x", "'/'"),
        ("..", "directory itself"),
        (".", "directory itself"),
        ("/", "'/'"),
        ("/etc", "'/'"),
        ("a/b", "'/'"),
        ("a\0b", "NUL"),
        (&long, "longer than 255"),
        (".hidden", "start with"),
        ("-flag", "start with"),
        ("a b", "only ASCII"),
        ("sändbox", "only ASCII"),
        ("a\\b", "only ASCII"),
    ];
    let (_dir, store) = store();
    for (id, why) in refused {
        let err = store.sandbox(id).unwrap_err();
        match &err {
            SandboxError::InvalidId {
                kind,
                id: got,
                reason,
            } => {
                assert_eq!(*kind, IdKind::Sandbox);
                assert_eq!(got, id);
                assert!(reason.contains(why), "{id:?}: {reason}");
            }
            other => panic!("{id:?}: {other}"),
        }
        let sb = store.sandbox("sb").unwrap();
        assert!(matches!(
            sb.container(id),
            Err(SandboxError::InvalidId {
                kind: IdKind::Container,
                ..
            })
        ));
        assert!(matches!(
            sb.raw(id),
            Err(SandboxError::InvalidId {
                kind: IdKind::Raw,
                ..
            })
        ));
    }
    for id in ["a", "sb-1", "0123abcd", "x.y_z+1", longest.as_str()] {
        store.sandbox(id).unwrap().container(id).unwrap();
    }
    // A container may not take an item file's name in its sandbox's directory.
    let sb = store.sandbox("sb").unwrap();
    for item in Item::ALL {
        assert!(sb.container(item.file_name()).is_err(), "{item}");
    }
    // Nothing was created by refusing.
    assert!(store.sandbox_ids().unwrap().is_empty());
}

#[test]
fn deleting_a_sandbox_removes_both_roots_directories() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    sb.store_item(Item::Configuration, &1).unwrap();
    sb.store_item(Item::State, &2).unwrap();
    let c = sb.container("c1").unwrap();
    c.store_item(Item::Configuration, &3).unwrap();
    c.store_item(Item::Process, &4).unwrap();
    let raw = sb.raw("disk").unwrap().to_file_path().unwrap();
    drop(sb.lock_item(Item::State, LockMode::Exclusive).unwrap());
    store
        .sandbox("other")
        .unwrap()
        .store_item(Item::State, &5)
        .unwrap();
    assert_eq!(store.sandbox_ids().unwrap(), vec!["other", "sb1"]);

    store.delete_sandbox("sb1").unwrap();
    assert!(!store.roots().persistent.join("sb1").exists());
    assert!(!store.roots().run.join("sb1").exists());
    assert!(!raw.exists());
    assert!(!sb.exists() && !c.exists());
    assert_eq!(store.sandbox_ids().unwrap(), vec!["other"]);
    // Again: nothing left to delete is not an error.
    store.delete_sandbox("sb1").unwrap();
}

#[test]
fn deleting_a_container_leaves_its_sandbox() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    sb.store_item(Item::State, &1).unwrap();
    let c = sb.container("c1").unwrap();
    c.store_item(Item::Configuration, &2).unwrap();
    c.store_item(Item::State, &3).unwrap();
    c.delete().unwrap();
    assert!(!c.exists());
    assert!(sb.container_ids().unwrap().is_empty());
    assert_eq!(sb.fetch_item::<i32>(Item::State).unwrap(), 1);
}

#[test]
fn a_held_item_lock_refuses_deletion_of_its_sandbox() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    let c = sb.container("c1").unwrap();
    c.store_item(Item::State, &1).unwrap();
    let guard = c.lock_item(Item::Mounts, LockMode::Shared).unwrap();
    let err = sb.delete().unwrap_err();
    assert!(
        matches!(&err, SandboxError::LockBusy { item: Item::Mounts, owner, .. } if owner == "container c1 of sandbox sb1"),
        "{err}"
    );
    assert!(matches!(c.delete(), Err(SandboxError::LockBusy { .. })));
    assert_eq!(c.fetch_item::<i32>(Item::State).unwrap(), 1);
    drop(guard);
    sb.delete().unwrap();
    assert!(!sb.exists());
}

#[test]
fn locks_exclude_by_mode_and_unlock_on_drop() {
    // Separate guards are separate locks, in one process as across processes.
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    let shared = sb.lock_item(Item::State, LockMode::Shared).unwrap();
    let shared_too = sb.try_lock_item(Item::State, LockMode::Shared).unwrap();
    assert_eq!(
        (shared_too.item(), shared_too.mode()),
        (Item::State, LockMode::Shared)
    );
    assert!(matches!(
        sb.try_lock_item(Item::State, LockMode::Exclusive),
        Err(SandboxError::LockBusy {
            item: Item::State,
            ..
        })
    ));
    // Other items are not affected.
    let other = sb
        .try_lock_item(Item::Network, LockMode::Exclusive)
        .unwrap();
    assert_eq!(
        other.path(),
        store.roots().run.join("sb1/.locks/network.lock")
    );
    drop(shared);
    drop(shared_too);
    let exclusive = sb.try_lock_item(Item::State, LockMode::Exclusive).unwrap();
    assert!(matches!(
        sb.try_lock_item(Item::State, LockMode::Shared),
        Err(SandboxError::LockBusy { .. })
    ));
    drop(exclusive);
    sb.try_lock_item(Item::State, LockMode::Shared).unwrap();
    // A lock file is never mistaken for an item, nor a container.
    assert!(sb.container_ids().unwrap().is_empty());
}

#[test]
fn a_blocking_lock_waits_for_the_holder() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    let held = sb.lock_item(Item::Hypervisor, LockMode::Exclusive).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let sb = sb.clone();
        std::thread::spawn(move || {
            let guard = sb.lock_item(Item::Hypervisor, LockMode::Exclusive).unwrap();
            tx.send(()).unwrap();
            drop(guard);
        })
    };
    // Whatever the waiter's progress, it cannot hold the lock while we do.
    assert!(rx.try_recv().is_err());
    drop(held);
    rx.recv().unwrap();
    waiter.join().unwrap();
}

#[test]
fn raw_is_a_file_url_to_a_caller_owned_file_in_the_sandbox() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    let url = sb.raw("fc-drive0").unwrap();
    assert_eq!(url.scheme(), "file");
    let path = url.to_file_path().unwrap();
    assert_eq!(path, store.roots().run.join("sb1/.raw/fc-drive0"));
    std::fs::write(&path, b"caller data").unwrap();
    // Asking again keeps the caller's content.
    assert_eq!(sb.raw("fc-drive0").unwrap(), url);
    assert_eq!(std::fs::read(&path).unwrap(), b"caller data");
    let in_container = sb.container("c1").unwrap().raw("fc-drive0").unwrap();
    assert_ne!(in_container, url);
}

#[test]
fn relative_roots_become_absolute_so_raw_urls_are_valid() {
    let store = SandboxStore::new(Roots::new("lib", "run")).unwrap();
    assert!(store.roots().persistent.is_absolute());
    assert!(store.roots().run.is_absolute());
}

fn every_kind_of_device() -> Vec<Device> {
    let generic = GenericDevice {
        id: "dev-1".into(),
        device_info: DeviceInfo {
            host_path: "/dev/null".into(),
            container_path: "/dev/null".into(),
            dev_type: "c".into(),
            major: 1,
            minor: 3,
            file_mode: 0o666,
            driver_options: BTreeMap::from([("blockDriver".into(), "virtio-blk".into())]),
            ..DeviceInfo::default()
        },
        ref_count: 2,
        attach_count: 1,
    };
    let vhost = |tag: &str| VhostUserDevice {
        device: generic.clone(),
        vhost_user_device_attrs: VhostUserAttrs {
            dev_id: format!("{tag}-0"),
            socket_path: PathBuf::from(format!("/run/vhost/{tag}.sock")),
            tag: tag.into(),
            index: 3,
            ..VhostUserAttrs::default()
        },
    };
    vec![
        Device::Generic(generic.clone()),
        Device::Block(BlockDevice {
            device: generic.clone(),
            block_drive: BlockDrive {
                file: "/var/lib/disk.img".into(),
                format: "raw".into(),
                id: "drive-0".into(),
                pci_path: "02/01".into(),
                share_rw: true,
                ..BlockDrive::default()
            },
        }),
        Device::Vfio(VfioDevice {
            device: generic.clone(),
            vfio_devs: vec![VfioDev {
                is_pcie: true,
                kind: VfioKind::Normal,
                bdf: "0000:03:00.0".into(),
                vendor_id: "0x10de".into(),
                ..VfioDev::default()
            }],
        }),
        Device::VhostUserBlk(vhost("blk")),
        Device::VhostUserScsi(vhost("scsi")),
        Device::VhostUserNet(vhost("net")),
        Device::VhostUserFs(vhost("fs")),
    ]
}

#[test]
fn devices_round_trip_as_type_and_data() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    assert!(sb.fetch_devices().unwrap().is_empty());
    let devices = every_kind_of_device();
    sb.store_devices(&devices).unwrap();
    assert_eq!(sb.fetch_devices().unwrap(), devices);

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.item_path(Item::Devices)).unwrap()).unwrap();
    let types: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["Type"].as_str().unwrap())
        .collect();
    assert_eq!(types, Device::TYPES);
    for (d, stored) in devices.iter().zip(json.as_array().unwrap()) {
        assert_eq!(stored.as_object().unwrap().len(), 2, "only Type and Data");
        assert_eq!(stored["Type"], d.device_type());
        assert_eq!(stored["Data"]["ID"], d.generic().id);
    }
    assert_eq!(json[1]["Data"]["BlockDrive"]["PCIPath"], "02/01");
    assert_eq!(json[2]["Data"]["VfioDevs"][0]["BDF"], "0000:03:00.0");
}

#[test]
fn an_unknown_device_type_names_the_type_and_the_file() {
    let (_dir, store) = store();
    let c = store.sandbox("sb1").unwrap().container("c1").unwrap();
    let path = c.item_path(Item::Devices);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        r#"[{"Type":"block","Data":{"ID":"b"}},{"Type":"vhost-user-gpu","Data":{}}]"#,
    )
    .unwrap();
    let err = c.fetch_devices().unwrap_err();
    match &err {
        SandboxError::UnknownDeviceType {
            device_type,
            path: at,
        } => {
            assert_eq!(device_type, "vhost-user-gpu");
            assert_eq!(at, &path);
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("\"vhost-user-gpu\"") && msg.contains("devices.json"),
        "{msg}"
    );
    // Through the generic call too.
    assert!(matches!(
        c.fetch_item::<Vec<Device>>(Item::Devices),
        Err(SandboxError::UnknownDeviceType { .. })
    ));
    // A known type with bad data is a decode error, not an unknown type.
    std::fs::write(&path, r#"[{"Type":"vfio","Data":{"VfioDevs":7}}]"#).unwrap();
    assert!(matches!(
        c.fetch_devices(),
        Err(SandboxError::Decode { .. })
    ));
}

#[test]
fn sparse_device_data_reads_with_defaults() {
    let (_dir, store) = store();
    let sb = store.sandbox("sb1").unwrap();
    let path = sb.item_path(Item::Devices);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, r#"[{"Type":"generic","Data":{"ID":"g"}}]"#).unwrap();
    let devices = sb.fetch_devices().unwrap();
    assert_eq!(devices[0].generic().id, "g");
    assert_eq!(devices[0].generic().ref_count, 0);
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let vars: Vec<(String, OsString)> = vars
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[test]
fn rootless_roots_come_from_xdg_variables() {
    let roots = Roots::rootless(
        1000,
        env(&[
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("XDG_DATA_HOME", "/home/u/data"),
            ("HOME", "/home/u"),
        ]),
        || None,
    )
    .unwrap();
    assert_eq!(
        roots,
        Roots::new("/home/u/data/strata/sbs", "/run/user/1000/strata/sbs")
    );

    // No XDG variables (or relative ones, which the specification says to ignore).
    let roots = Roots::rootless(
        1000,
        env(&[
            ("XDG_RUNTIME_DIR", "rel"),
            ("XDG_DATA_HOME", ""),
            ("HOME", "/home/u"),
        ]),
        || None,
    )
    .unwrap();
    assert_eq!(
        roots,
        Roots::new(
            "/home/u/.local/share/strata/sbs",
            "/run/user/1000/strata/sbs"
        )
    );

    let roots = Roots::rootless(7, env(&[]), || Some("/var/home/seven".into())).unwrap();
    assert_eq!(
        roots.persistent,
        Path::new("/var/home/seven/.local/share/strata/sbs")
    );
    assert!(matches!(
        Roots::rootless(7, env(&[]), || None),
        Err(SandboxError::NoDefaultRoot {
            which: "persistent",
            ..
        })
    ));
}

#[test]
fn root_uses_the_system_roots() {
    if rustix::process::geteuid().is_root() {
        assert_eq!(Roots::for_current_user().unwrap(), Roots::system());
    }
    assert_eq!(
        Roots::system(),
        Roots::new("/var/lib/strata/sbs", "/run/strata/sbs")
    );
}
