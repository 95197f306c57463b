//! Reading a containers-storage overlay store (the JSON files of containers/storage 1.x)
//! without ever writing it: its layers, images and containers with their names,
//! metadata, digests and big data, read under containers-storage's own locks so that the
//! view is one its writers left whole.
//!
//! ```text
//! <graph root>/overlay-layers/layers.json        layer records
//! <graph root>/overlay-layers/layers.lock        fcntl lock guarding them
//! <graph root>/overlay-layers/<id>.tar-split.gz  the imported tar's headers (tar-split)
//! <graph root>/overlay-images/images.json        image records; images.lock
//! <graph root>/overlay-images/<id>/<key name>    an image's big-data items
//! <graph root>/overlay-containers/containers.json  container records; containers.lock
//! <graph root>/overlay-containers/<id>/<key name>  a container's big-data items
//! <run root>/overlay-layers/mountpoints.json     mount counts of layers
//! ```
//!
//! containers-storage's `pkg/lockfile` takes whole-file `fcntl` locks (`F_SETLKW`) on the
//! `.lock` files, readers shared, writers exclusive, layers before images before
//! containers. [`CsStore::open`] takes the three shared, in that order (waiting for any
//! writer to finish), reads the JSON, and keeps the locks until the [`CsStore`] is
//! dropped: no containers-storage writer changes the store while it is held.
//!
//! [`CsStore::catalog`] turns the records into an in-memory strata [`Catalog`] with the
//! same schema, so an additional store that is a containers-storage store is read by the
//! same code as one that is a strata store; its big-data items point at the files in
//! the graph root.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use storage_core::error::{Error, IoContext, ObjectKind, Result};

use crate::db::{BigDataInfo, Catalog, LayerDigests, Sql, big_data, containers, images, layers};

/// The driver whose stores this reads (`<driver>-layers`, and its data in `<driver>/`).
const DRIVER: &str = "overlay";

/// Whether `root` holds a containers-storage overlay store and no strata catalog.
pub fn is_containers_storage(root: &Path) -> bool {
    !root.join("catalog.db").exists() && root.join(layers_json()).exists()
}

fn layers_json() -> String {
    format!("{DRIVER}-layers/layers.json")
}

/// A layer record of `layers.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CsLayer {
    /// The layer id.
    pub id: String,
    /// Its names.
    #[serde(default)]
    pub names: Vec<String>,
    /// The parent layer's id.
    #[serde(default)]
    pub parent: Option<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Option<String>,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created: Option<String>,
    /// Digest of the compressed diff it was imported from.
    #[serde(default)]
    pub compressed_diff_digest: Option<String>,
    /// Size of the compressed diff.
    #[serde(default)]
    pub compressed_size: Option<i64>,
    /// Digest of the uncompressed diff (the tar).
    #[serde(default)]
    pub diff_digest: Option<String>,
    /// Size of the uncompressed diff.
    #[serde(default)]
    pub diff_size: Option<i64>,
    /// Its big-data items (files in `overlay-layers/<id>/`; no sizes or digests recorded).
    #[serde(flatten)]
    pub big_data: CsBigData,
    /// The owner uids its tar used.
    #[serde(default, rename = "uidset")]
    pub uids: Vec<u32>,
    /// The owner gids its tar used.
    #[serde(default, rename = "gidset")]
    pub gids: Vec<u32>,
    /// Flags; `incomplete` marks a layer being created or deleted.
    #[serde(default)]
    pub flags: BTreeMap<String, serde_json::Value>,
}

impl CsLayer {
    /// Whether containers-storage marks the layer unfinished (being made or removed).
    pub fn incomplete(&self) -> bool {
        self.flags
            .get("incomplete")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }
}

/// The big-data fields of a layer, image or container record.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CsBigData {
    /// Big-data keys, in the order they were set.
    #[serde(default)]
    pub big_data_names: Vec<String>,
    /// Big-data sizes by key.
    #[serde(default)]
    pub big_data_sizes: BTreeMap<String, i64>,
    /// Big-data digests by key.
    #[serde(default)]
    pub big_data_digests: BTreeMap<String, String>,
}

/// An image record of `images.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CsImage {
    /// The image id.
    pub id: String,
    /// Its manifest digest.
    #[serde(default)]
    pub digest: Option<String>,
    /// Its names.
    #[serde(default)]
    pub names: Vec<String>,
    /// Every name it had after a change of its names, latest first.
    #[serde(default)]
    pub names_history: Vec<String>,
    /// The top layer.
    #[serde(default)]
    pub layer: Option<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Option<String>,
    /// Its big-data items.
    #[serde(flatten)]
    pub big_data: CsBigData,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created: Option<String>,
}

/// A container record of `containers.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CsContainer {
    /// The container id.
    pub id: String,
    /// Its names.
    #[serde(default)]
    pub names: Vec<String>,
    /// The image it was made from.
    #[serde(default)]
    pub image: String,
    /// Its read-write layer.
    pub layer: String,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Option<String>,
    /// Its big-data items.
    #[serde(flatten)]
    pub big_data: CsBigData,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created: Option<String>,
}

/// A mount record of the run root's `mountpoints.json`.
#[derive(Debug, Clone, Deserialize)]
struct CsMount {
    id: String,
    #[serde(default)]
    count: i64,
}

/// A shared `fcntl` lock on one of containers-storage's lock files, released on drop
/// (closing the file releases it).
#[derive(Debug)]
struct SharedLock {
    _file: File,
}

impl SharedLock {
    /// Waits for and takes a shared lock on `path`; `None` when the file is missing (the
    /// store never had that kind of object).
    fn take(path: &Path) -> Result<Option<Self>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io_path("open lock file", path, e)),
        };
        rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::LockShared)
            .map_err(|e| Error::io_path("take a shared lock on", path, e))?;
        Ok(Some(SharedLock { _file: file }))
    }
}

/// A containers-storage store, read under its locks, which are held until this is
/// dropped.
#[derive(Debug)]
pub struct CsStore {
    root: PathBuf,
    /// Every complete layer, parents before children (private: `index` points into it).
    layers: Vec<CsLayer>,
    /// Every image.
    pub images: Vec<CsImage>,
    /// Every container.
    pub containers: Vec<CsContainer>,
    /// Where each layer is in `layers`, by id.
    index: HashMap<String, usize>,
    _locks: Vec<SharedLock>,
}

impl CsStore {
    /// Reads the containers-storage store whose graph root is `root`, waiting for its
    /// writers, and holds its locks shared until dropped. Blocking.
    pub fn open(root: &Path) -> Result<Self> {
        let mut locks = Vec::new();
        let mut read = |dir: &str, file: &str, lock: &str| -> Result<Option<Vec<u8>>> {
            let dir = root.join(format!("{DRIVER}-{dir}"));
            locks.extend(SharedLock::take(&dir.join(lock))?);
            let path = dir.join(file);
            match std::fs::read(&path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io_path("read", &path, e)),
            }
        };
        let layer_bytes = read("layers", "layers.json", "layers.lock")?;
        let image_bytes = read("images", "images.json", "images.lock")?;
        let container_bytes = read("containers", "containers.json", "containers.lock")?;
        let Some(layer_bytes) = layer_bytes else {
            return Err(Error::StoreNotFound {
                store: root.display().to_string(),
                reason: format!("{} is missing", root.join(layers_json()).display()),
            });
        };
        let parse_err = |file: &str, e: serde_json::Error| Error::CorruptStore {
            path: root.join(format!("{DRIVER}-{file}")),
            reason: format!("not containers-storage's JSON: {e}"),
        };
        let all: Vec<CsLayer> =
            serde_json::from_slice(&layer_bytes).map_err(|e| parse_err("layers/layers.json", e))?;
        let images: Vec<CsImage> = match image_bytes {
            Some(b) => {
                serde_json::from_slice(&b).map_err(|e| parse_err("images/images.json", e))?
            }
            None => Vec::new(),
        };
        let containers: Vec<CsContainer> = match container_bytes {
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| parse_err("containers/containers.json", e))?,
            None => Vec::new(),
        };
        let layers = parents_first(root, all.into_iter().filter(|l| !l.incomplete()).collect())?;
        let index = layers
            .iter()
            .enumerate()
            .map(|(at, l)| (l.id.clone(), at))
            .collect();
        Ok(CsStore {
            root: root.to_owned(),
            layers,
            images,
            containers,
            index,
            _locks: locks,
        })
    }

    /// Every complete layer, parents before children.
    pub fn layers(&self) -> &[CsLayer] {
        &self.layers
    }

    /// The complete layer `id`.
    pub fn layer(&self, id: &str) -> Option<&CsLayer> {
        self.index.get(id).map(|&at| &self.layers[at])
    }

    /// The graph root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Layer `id`'s diff directory.
    pub fn layer_diff(&self, id: &str) -> PathBuf {
        self.root.join(DRIVER).join(id).join("diff")
    }

    /// Layer `id`'s tar-split file (gzip'd JSON lines), whether or not it exists.
    pub fn tar_split(&self, id: &str) -> PathBuf {
        self.root
            .join(format!("{DRIVER}-layers"))
            .join(format!("{id}.tar-split.gz"))
    }

    /// The file holding big-data item `key` of layer, image or container `owner`,
    /// relative to the graph root.
    pub fn big_data_file(kind: ObjectKind, owner: &str, key: &str) -> String {
        let dir = match kind {
            ObjectKind::Container => "containers",
            ObjectKind::Layer => "layers",
            _ => "images",
        };
        format!("{DRIVER}-{dir}/{owner}/{}", big_data_base_name(key))
    }

    /// The layers mounted according to the run root's `mountpoints.json`, with their
    /// mount counts. Blocking.
    pub fn mounted_layers(run_root: &Path) -> Result<Vec<(String, i64)>> {
        let dir = run_root.join(format!("{DRIVER}-layers"));
        let _lock = SharedLock::take(&dir.join("mountpoints.lock"))?;
        let path = dir.join("mountpoints.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io_path("read", &path, e)),
        };
        let mounts: Vec<CsMount> =
            serde_json::from_slice(&bytes).map_err(|e| Error::CorruptStore {
                path: path.clone(),
                reason: format!("not containers-storage's JSON: {e}"),
            })?;
        Ok(mounts
            .into_iter()
            .filter(|m| m.count > 0)
            .map(|m| (m.id, m.count))
            .collect())
    }

    /// The records as an in-memory strata catalog (never written to disk): layers with
    /// their digests, images and containers with their big-data items pointing at the
    /// files under the graph root. Blocking.
    pub fn catalog(&self) -> Result<Catalog> {
        let mut catalog = Catalog::in_memory(&self.root.join(layers_json()))?;
        catalog.write(|sql| self.load(sql))?;
        Ok(catalog)
    }

    fn load(&self, sql: &Sql<'_>) -> Result<()> {
        let rw: std::collections::HashSet<&str> =
            self.containers.iter().map(|c| c.layer.as_str()).collect();
        for l in &self.layers {
            layers::insert(
                sql,
                &l.id,
                l.parent.as_deref(),
                &l.names,
                rw.contains(l.id.as_str()),
            )?;
            sql.exec(
                "UPDATE layers SET created = ?2, metadata = ?3 WHERE id = ?1",
                rusqlite::params![
                    l.id,
                    created_seconds(l.created.as_deref()),
                    l.metadata.clone().unwrap_or_default()
                ],
            )?;
            layers::complete(
                sql,
                &l.id,
                &LayerDigests {
                    compressed_digest: l.compressed_diff_digest.clone(),
                    compressed_size: l.compressed_size.map(|s| s as u64),
                    uncompressed_digest: l.diff_digest.clone(),
                    uncompressed_size: l.diff_size.map(|s| s as u64),
                    uids: l.uids.clone(),
                    gids: l.gids.clone(),
                },
            )?;
            self.load_big_data(sql, ObjectKind::Layer, &l.id, &l.big_data)?;
        }
        for i in &self.images {
            images::insert(
                sql,
                &i.id,
                i.layer.as_deref(),
                &i.names,
                i.metadata.as_deref().unwrap_or(""),
                i.digest.as_deref(),
            )?;
            crate::db::names::set_created(
                sql,
                ObjectKind::Image,
                &i.id,
                created_seconds(i.created.as_deref()),
            )?;
            images::set_names_history(sql, &i.id, &i.names_history)?;
            self.load_big_data(sql, ObjectKind::Image, &i.id, &i.big_data)?;
        }
        for c in &self.containers {
            containers::insert(
                sql,
                &c.id,
                &c.image,
                &c.layer,
                &c.names,
                c.metadata.as_deref().unwrap_or(""),
            )?;
            crate::db::names::set_created(
                sql,
                ObjectKind::Container,
                &c.id,
                created_seconds(c.created.as_deref()),
            )?;
            self.load_big_data(sql, ObjectKind::Container, &c.id, &c.big_data)?;
        }
        Ok(())
    }

    fn load_big_data(
        &self,
        sql: &Sql<'_>,
        kind: ObjectKind,
        owner: &str,
        items: &CsBigData,
    ) -> Result<()> {
        let (sizes, digests) = (&items.big_data_sizes, &items.big_data_digests);
        for key in &items.big_data_names {
            let file = Self::big_data_file(kind, owner, key);
            let (size, digest) = match (sizes.get(key), digests.get(key)) {
                (Some(s), Some(d)) => (*s as u64, d.clone()),
                // containers-storage records neither for a layer's items: the size is the
                // file's, and the digest is worked out only when asked for (this store is
                // read again on every open).
                _ if kind == ObjectKind::Layer => {
                    let path = self.root.join(&file);
                    let size = std::fs::metadata(&path)
                        .ctx(|| {
                            format!(
                                "stat {kind} {owner} big-data item {key:?} at {}",
                                path.display()
                            )
                        })?
                        .len();
                    (size, String::new())
                }
                // Older image and container records lack sizes or digests: the file says.
                _ => {
                    let path = self.root.join(&file);
                    big_data::file_digest(&path).ctx(|| {
                        format!(
                            "read {kind} {owner} big-data item {key:?} from {}",
                            path.display()
                        )
                    })?
                }
            };
            big_data::put(
                sql,
                kind,
                owner,
                &BigDataInfo {
                    key: key.clone(),
                    size,
                    digest,
                    file,
                },
            )?;
        }
        Ok(())
    }
}

/// Orders layers so that every parent comes before its children; a parent that is not
/// among them (missing, or incomplete) is an error naming both.
fn parents_first(root: &Path, layers: Vec<CsLayer>) -> Result<Vec<CsLayer>> {
    let mut left: BTreeMap<String, CsLayer> =
        layers.into_iter().map(|l| (l.id.clone(), l)).collect();
    let mut done = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready: Vec<String> = left
            .values()
            .filter(|l| l.parent.as_ref().is_none_or(|p| done.contains(p)))
            .map(|l| l.id.clone())
            .collect();
        if ready.is_empty() {
            let (id, parent) = left
                .values()
                .next()
                .map(|l| (l.id.clone(), l.parent.clone().unwrap_or_default()))
                .unwrap_or_default();
            return Err(Error::CorruptStore {
                path: root.join(layers_json()),
                reason: format!(
                    "layer {id}'s parent {parent} is not a complete layer of the store"
                ),
            });
        }
        for id in ready {
            if let Some(l) = left.remove(&id) {
                done.insert(id);
                out.push(l);
            }
        }
    }
    Ok(out)
}

/// containers/storage's `makeBigDataBaseName`: a key made only of `.`, digits and
/// lowercase letters is its own file name; any other is `=` and its standard base64.
pub fn big_data_base_name(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b == b'.' || b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        key.to_owned()
    } else {
        format!("={}", base64_encode(key.as_bytes()))
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Seconds since the epoch of an RFC 3339 time (`2024-05-01T10:00:00.123456789Z`, or
/// with a `+hh:mm` offset); 0 when absent or unreadable.
pub fn created_seconds(created: Option<&str>) -> i64 {
    created.and_then(parse_rfc3339).unwrap_or(0)
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = s.get(19..)?;
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_data_names_follow_containers_storage() {
        assert_eq!(big_data_base_name("manifest"), "manifest");
        assert_eq!(
            big_data_base_name("sha256:abc/man ifest"),
            "=c2hhMjU2OmFiYy9tYW4gaWZlc3Q="
        );
        assert_eq!(big_data_base_name("Manifest"), "=TWFuaWZlc3Q=");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"a"), "YQ==");
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    const I: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn write(root: &Path, rel: &str, data: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    #[test]
    fn a_store_loads_parents_first_with_names_digests_times_and_big_data() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // The child is listed first; an incomplete layer is left out.
        write(
            root,
            "overlay-layers/layers.json",
            &format!(
                r#"[{{"id":"{B}","parent":"{A}","names":["child"],"created":"1970-01-01T00:01:00Z","diff-digest":"sha256:bb","diff-size":3}},
                   {{"id":"{A}","names":["base"],"metadata":"m","big-data-names":["toc"],"compressed-diff-digest":"sha256:cc","compressed-size":2}},
                   {{"id":"{C}","parent":"{A}","flags":{{"incomplete":true}}}}]"#
            ),
        );
        write(
            root,
            "overlay-images/images.json",
            &format!(
                r#"[{{"id":"{I}","names":["img:1"],"layer":"{B}","digest":"sha256:dd","metadata":"im",
                    "big-data-names":["manifest","Other key"],"big-data-sizes":{{"manifest":2}},
                    "big-data-digests":{{"manifest":"sha256:ee"}}}}]"#
            ),
        );
        // Without a recorded size and digest, the file gives them.
        write(root, &format!("overlay-images/{I}/=T3RoZXIga2V5"), "xyz");
        write(root, &format!("overlay-layers/{A}/toc"), "table");
        assert!(is_containers_storage(root));
        let cs = CsStore::open(root).unwrap();
        let ids: Vec<&str> = cs.layers().iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, [A, B]);
        assert_eq!(cs.layer(B).map(|l| l.parent.as_deref()), Some(Some(A)));
        assert!(cs.layer(C).is_none());
        let catalog = cs.catalog().unwrap();
        let child = catalog.layer("child").unwrap();
        assert_eq!(child.id, B);
        assert_eq!(child.parent.as_deref(), Some(A));
        assert_eq!(child.created, 60);
        assert_eq!(child.uncompressed_digest.as_deref(), Some("sha256:bb"));
        let base = catalog.layer(A).unwrap();
        assert_eq!(base.metadata, "m");
        assert_eq!(base.compressed_size, Some(2));
        assert!(catalog.layer(C).is_err());
        let toc = catalog
            .read(|sql| big_data::get(sql, ObjectKind::Layer, A, "toc"))
            .unwrap()
            .unwrap();
        // containers-storage records no digest for a layer's item: none is made on open.
        assert_eq!(
            (toc.size, toc.file.as_str(), toc.digest.as_str()),
            (5, &*format!("overlay-layers/{A}/toc"), "")
        );
        let image = catalog.image("img:1").unwrap();
        assert_eq!(image.top_layer.as_deref(), Some(B));
        assert_eq!(image.digest.as_deref(), Some("sha256:dd"));
        let items: Vec<(&str, u64, &str)> = image
            .big_data
            .iter()
            .map(|i| (i.key.as_str(), i.size, i.file.as_str()))
            .collect();
        let other = format!("overlay-images/{I}/=T3RoZXIga2V5");
        assert!(items.contains(&("manifest", 2, &*format!("overlay-images/{I}/manifest"))));
        assert!(items.contains(&("Other key", 3, other.as_str())));
    }

    #[test]
    fn a_missing_parent_or_bad_json_is_a_corrupt_store_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            root,
            "overlay-layers/layers.json",
            &format!(r#"[{{"id":"{B}","parent":"{A}"}}]"#),
        );
        let e = CsStore::open(root).unwrap_err().to_string();
        assert!(e.contains(B) && e.contains(A), "{e}");
        write(root, "overlay-layers/layers.json", "[{");
        let e = CsStore::open(root).unwrap_err().to_string();
        assert!(e.contains("layers.json"), "{e}");
    }

    #[test]
    fn rfc3339_times_read_as_epoch_seconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-12-03T07:27:29.158940982Z"),
            Some(1_796_282_849)
        );
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("junk"), None);
    }
}
