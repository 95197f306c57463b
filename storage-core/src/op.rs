//! The operation context passed to every call of the contract.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{Error, Result};

/// One operation: an id for logs, a `tracing` span, and a cancellation flag that both async
/// and blocking code can observe.
///
/// Cloning an `Op` shares its cancellation flag, so work handed to `spawn_blocking` sees a
/// cancellation made by the caller.
#[derive(Debug, Clone)]
pub struct Op {
    id: String,
    span: tracing::Span,
    cancelled: Arc<AtomicBool>,
}

static NEXT_OP: AtomicU64 = AtomicU64::new(1);

impl Op {
    /// A new operation named for what it does (e.g. `"import-layer"`).
    pub fn new(name: &str) -> Self {
        let id = format!(
            "{name}.{}.{}",
            std::process::id(),
            NEXT_OP.fetch_add(1, Ordering::Relaxed)
        );
        let span = tracing::info_span!("op", id = %id);
        Op {
            id,
            span,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The operation's id, unique in this process.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tracing span to enter while working for this operation.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Asks the operation to stop at its next check.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// True once [`cancel`](Self::cancel) was called on this op or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once the operation was cancelled; long loops call this.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled {
                op: self.id.clone(),
            })
        } else {
            Ok(())
        }
    }
}

/// Runs blocking filesystem work `f` on tokio's blocking pool, so that no async fn
/// blocks a runtime thread, and returns its result; `task` names the work in the error
/// when the pool loses it (a panic, a runtime shutting down).
pub async fn blocking<T: Send + 'static>(
    task: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io(task.to_owned(), std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_is_seen_by_clones() {
        let op = Op::new("test");
        let other = op.clone();
        assert!(other.check().is_ok());
        op.cancel();
        assert!(matches!(other.check(), Err(Error::Cancelled { .. })));
        assert_ne!(Op::new("test").id(), op.id());
    }
}
