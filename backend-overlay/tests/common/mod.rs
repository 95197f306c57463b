//! What the store tests share: a store over a real overlay driver on a temporary
//! directory, and small tars.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backend_overlay::OverlayDriver;
use catalog::{ContainerRecord, Store};
use storage_core::run_root::RunRoot;
use storage_core::{LayerDriver, Op, TarReader};

/// A store on a fresh temporary directory, cleaned up (unmounted) on drop.
pub struct Fixture {
    /// The temporary directory holding the store and its run root.
    pub dir: tempfile::TempDir,
    /// The store.
    pub store: Arc<Store>,
    /// Its driver.
    pub driver: OverlayDriver,
    /// The operation every call uses.
    pub op: Op,
}

impl Fixture {
    /// A new, empty store.
    pub async fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("overlay-store-")
            .tempdir()
            .unwrap();
        let (store, driver) = open(dir.path(), &[]).await;
        Fixture {
            dir,
            store,
            driver,
            op: Op::new("test"),
        }
    }

    /// A new, empty store using the read-only additional stores rooted at `roots`.
    pub async fn with_additional(roots: &[PathBuf]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("overlay-store-")
            .tempdir()
            .unwrap();
        let (store, driver) = open(dir.path(), roots).await;
        Fixture {
            dir,
            store,
            driver,
            op: Op::new("test"),
        }
    }

    /// An image of one layer holding `path` with `data`, and a container on it: the
    /// image's layer id and the container.
    pub async fn container_on_file(&self, path: &str, data: &[u8]) -> (String, ContainerRecord) {
        let (s, op) = (&self.store, &self.op);
        let (l, _) = s
            .import_layer(op, None, &[], tar_with(path, data), None)
            .await
            .unwrap();
        let image = s
            .create_image(Some(&l.id), None, &[], "", None)
            .await
            .unwrap();
        let c = s
            .create_container(op, &image.id, None, &[], "")
            .await
            .unwrap();
        (l.id, c)
    }

    /// Opens the same store again, as another process would.
    pub async fn reopen(&self) -> Arc<Store> {
        open(self.dir.path(), &[]).await.0
    }
}

async fn open(dir: &Path, additional: &[PathBuf]) -> (Arc<Store>, OverlayDriver) {
    let run = RunRoot::open(&dir.join("run")).unwrap();
    let driver =
        OverlayDriver::open_with_additional(&dir.join("store"), run.clone(), additional).unwrap();
    let store = Store::open_with_additional(
        &Op::new("open"),
        &dir.join("store"),
        run,
        Arc::new(driver.clone()),
        additional,
    )
    .await
    .unwrap();
    (Arc::new(store), driver)
}

/// Every path below `root` with its size and mtime, sorted: equal listings mean nothing
/// was created, removed or rewritten (the run root and catalog side files excepted).
pub fn tree_listing(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with("run") || rel.ends_with("-shm") || rel.ends_with("-wal") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            out.push(format!("{rel} {} {:?}", m.len(), m.modified().ok()));
            if m.is_dir() {
                walk(&p, root, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let driver = self.driver.clone();
        let op = self.op.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(driver.cleanup(&op))
        })
        .join();
    }
}

/// A tar of one regular file.
pub fn tar_with(name: &str, data: &[u8]) -> TarReader {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, name, data).unwrap();
    Box::new(Cursor::new(b.into_inner().unwrap()))
}

/// Names as owned strings.
pub fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
