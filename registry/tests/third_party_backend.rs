//! A backend in a crate the registry does not name (this test) registers through
//! `inventory` and resolves by its scheme.

use registry::{Backend, BackendDescriptor, Config, StoreConfig, backends, resolve};
use storage_core::backend::Capabilities;

fn open_memo(config: &StoreConfig) -> storage_core::Result<Backend> {
    assert_eq!(config.url.scheme(), "memo");
    Ok(Backend::default())
}

inventory::submit! {
    BackendDescriptor {
        scheme: "memo",
        name: "memo",
        summary: "a backend defined outside the registry",
        capabilities: Capabilities {
            layers: false,
            volumes: false,
            local_root: false,
            vm_disks: false,
            max_depth: None,
        },
        options: &[],
        open: open_memo,
    }
}

#[test]
fn a_backend_from_an_unnamed_crate_registers_and_resolves() {
    assert!(backends().iter().any(|d| d.name == "memo"));
    let dir = tempfile::tempdir().unwrap();
    let resolved = match resolve("memo://somewhere/x", &Config::default(), dir.path()) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(resolved.descriptor.name, "memo");
    let backend = resolved.open().unwrap();
    assert!(backend.layers.is_none() && backend.volumes.is_none());
}
