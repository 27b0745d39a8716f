//! Local adapters for the core ports: in-memory stores for unit tests, and SQLite + filesystem
//! stores for the single-binary local server. All of them pass `sightline-store-contract`.

mod fs_blob;
mod memory;
mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sightline_core::ports::{Clock, IdGen, StoreError};

pub use fs_blob::FsBlobStore;
pub use memory::{MemoryBlobStore, MemoryItemStore};
pub use sqlite::SqliteItemStore;

/// The real wall clock of a native host (core has no I/O, so hosts supply it).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Random ids from the operating system's generator, for native hosts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdGen for RandomIds {
    fn random_hex128(&self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

/// Opens (creating if needed) the local server's stores: `data_dir/sightline.db` and
/// `data_dir/blobs/`. Blocking; call it once at startup.
pub fn open_local_store(
    data_dir: &Path,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<SqliteItemStore>, Arc<FsBlobStore>), StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        StoreError::Backend(format!(
            "cannot create data dir {}: {e}",
            data_dir.display()
        ))
    })?;
    let items = SqliteItemStore::open(&data_dir.join("sightline.db"), clock)?;
    let blobs = FsBlobStore::open(&data_dir.join("blobs"))?;
    Ok((Arc::new(items), Arc::new(blobs)))
}

/// TTL checks use whole seconds, like DynamoDB.
fn now_secs(clock: &dyn Clock) -> i64 {
    clock.now_ms().div_euclid(1000)
}
