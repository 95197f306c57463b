//! Copying objects of another store into this one with what that store recorded about
//! them kept (`strata migrate`): a layer imported with its creation time, metadata and
//! compressed digest in the same transaction that completes it, and the creation time of
//! an image or container set once the copy of everything else of it is done (so a copy
//! whose time is not yet the source's is one an interruption left unfinished).

use storage_core::archive::ApplyReport;
use storage_core::driver::TarReader;
use storage_core::error::{ObjectKind, Result};
use storage_core::op::Op;

use crate::db::LayerRecord;
use crate::store::{LayerSpec, Store};

/// What a copied layer keeps of its source's record beyond its id, parent, names and
/// tar (which the import records itself).
#[derive(Debug, Clone, Default)]
pub struct KeptLayer {
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Free-form metadata.
    pub metadata: String,
    /// Digest of the compressed diff the source imported.
    pub compressed_digest: Option<String>,
    /// Size of that compressed diff.
    pub compressed_size: Option<u64>,
}

impl Store {
    /// [`import_layer_as`](Self::import_layer_as), recording `kept` in the transaction
    /// that completes the layer: the copy is whole or absent.
    pub async fn import_layer_kept(
        &self,
        op: &Op,
        spec: LayerSpec<'_>,
        tar: TarReader,
        expected_digest: Option<String>,
        kept: KeptLayer,
    ) -> Result<(LayerRecord, ApplyReport)> {
        self.import_layer_and(op, spec, tar, expected_digest, move |sql, id| {
            sql.exec(
                "UPDATE layers SET created = ?2, metadata = ?3, compressed_digest = ?4,
                 compressed_size = ?5 WHERE id = ?1",
                rusqlite::params![
                    id,
                    kept.created,
                    kept.metadata,
                    kept.compressed_digest,
                    kept.compressed_size.map(|s| s as i64)
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Replaces the name history of an image of this store with one kept elsewhere.
    pub async fn set_names_history(&self, id: &str, history: &[String]) -> Result<()> {
        let (id, history) = (id.to_owned(), history.to_vec());
        self.write(move |sql| crate::db::images::set_names_history(sql, &id, &history))
            .await
    }

    /// Sets the creation time (seconds since the epoch) of an image or container of this
    /// store.
    pub async fn set_created(&self, kind: ObjectKind, id: &str, created: i64) -> Result<()> {
        let id = id.to_owned();
        self.write(move |sql| crate::db::names::set_created(sql, kind, &id, created))
            .await
    }
}
