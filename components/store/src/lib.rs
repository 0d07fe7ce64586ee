//! Postbay's store: the directory (domains, mailboxes, aliases, DKIM keys) and the mailbox
//! metadata (folders, UIDs, flags) in one SQL database reached through sqlx's `Any` driver, so
//! the same queries serve the embedded SQLite default and production MariaDB; message bodies
//! live as immutable blobs on the shared volume (see [`blobs`]).
//!
//! Every replica of every component may use the same database and volume at once: UIDs are
//! allocated inside a row-locking transaction and deliveries carry an idempotency key, so
//! concurrent or repeated deliveries never share a UID and never duplicate a message.
//!
//! Modules go by concept, each using only those before it: [`fs`] (durable files), `db`
//! (connections, the writer gate, write batches), [`blobs`], `changes` (the change feed),
//! [`folders`], [`directory`], [`messages`].

pub mod bayes;
pub mod blobs;
mod changes;
mod check;
mod db;
pub mod directory;
pub mod folders;
pub mod fs;
pub mod greylist;
pub mod messages;
pub mod ratelimit;
pub mod subscriptions;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use db::{batch, readers, write};

pub use blobs::BlobStore;
pub use changes::{FolderWatch, Version};
pub use check::{sweep_orphans_every, BlobCheck, Orphan};
pub use db::write::Durability;
pub use db::Backend;
pub use directory::{
    DkimKeyRow, DomainRow, MailboxRow, MailboxSpec, Recipient, Resolution, Sending,
};
pub use folders::{FolderInfo, FolderStats, DEFAULT_FOLDERS};
pub use messages::{
    apply_flag_change, Copied, Delivered, Expunged, FlagChange, FlagState, FlagUpdate,
    FolderChanges, MessageMeta, NewMessage, HEADER_CACHE_MAX,
};

/// Errors at the store's edge. Callers map them to protocol replies: everything here is a
/// temporary failure unless a variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("migration lock: {0}")]
    MigrationLock(String),
    #[error("unsupported database url {0:?} (use sqlite://PATH or mysql://USER@HOST/DB)")]
    UnsupportedUrl(String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no such mailbox {0}")]
    NoSuchMailbox(String),
    #[error("no such folder {0}")]
    NoSuchFolder(String),
    #[error("folder {0} already exists")]
    FolderExists(String),
    #[error("at most {0} subscriptions per mailbox")]
    TooManySubscriptions(i64),
    /// A blocking file task (a blob's write, read or link, a WAL flush) panicked, or was
    /// cancelled because the runtime is shutting down: whether it did its work is unknown.
    /// Shared, so a failed batch read can fail each of its blobs.
    #[error("{what} did not complete: {source}")]
    Blocking {
        what: &'static str,
        #[source]
        source: Arc<tokio::task::JoinError>,
    },
    #[error("mailbox {address} is over quota ({used} + {size} > {quota} bytes)")]
    OverQuota {
        address: String,
        used: i64,
        size: i64,
        quota: i64,
    },
}

impl Error {
    /// Whether the transaction lost a race with another writer and may simply be run again:
    /// an InnoDB deadlock or lock wait timeout, SQLite busy.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Database(e) => db::conflict(e),
            _ => false,
        }
    }

    /// Whether waiting may cure it: the database is not reachable (yet), is starting or
    /// shutting down, has no free connection, or SQLite's file is busy.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(e) => db::transient(e),
            Error::Migrate(
                sqlx::migrate::MigrateError::Execute(e)
                | sqlx::migrate::MigrateError::ExecuteMigration(e, _),
            ) => db::transient(e),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Io { path, source }
    }

    /// For the `JoinError` of a `spawn_blocking` task doing `what`.
    pub(crate) fn blocking(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Error {
        move |e| Error::Blocking {
            what,
            source: Arc::new(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// [`Error::is_conflict`] for an error of the store or of the `sqlx` queries other crates
/// run on its pool, wherever it sits in an error chain.
pub fn is_conflict(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<Error>().is_some_and(Error::is_conflict)
        || e.downcast_ref::<sqlx::Error>().is_some_and(db::conflict)
}

/// Locks a std mutex whose data stays consistent even if a holder panicked (every update
/// under these locks is a single push, pop or insert), so poisoning is not an error.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handle on the database and the blob volume; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: sqlx::AnyPool,
    readers: readers::Readers,
    writers: write::Writers,
    changes: changes::ChangeFeed,
    backend: Backend,
    blobs: blobs::BlobStore,
}

impl Store {
    /// Connects to `database_url` (`sqlite://...` or `mysql://...`), waiting while it is not
    /// reachable yet, runs pending migrations (once, under a lock, whoever starts first) and
    /// keeps message blobs under `mail_root` (the shared volume).
    pub async fn open(database_url: &str, mail_root: &Path) -> Result<Store> {
        let (pool, writers, backend) = db::connect(database_url).await?;
        let readers = match backend {
            Backend::Sqlite => readers::Readers::detach_from(&pool, db::SQLITE_READERS).await?,
            Backend::MySql => readers::Readers::Pool(pool.clone()),
        };
        let blobs = blobs::BlobStore::new(mail_root.to_path_buf());
        Ok(Store {
            pool,
            readers,
            writers,
            changes: changes::ChangeFeed::new(),
            backend,
            blobs,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn blobs(&self) -> &blobs::BlobStore {
        &self.blobs
    }

    pub fn pool(&self) -> &sqlx::AnyPool {
        &self.pool
    }

    /// Whether the database answers a trivial query (readiness probes).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// A connection for the store's own reads (see [`readers`]).
    pub(crate) async fn reader(&self) -> Result<readers::Reader> {
        self.readers.get().await
    }

    /// Starts a write transaction; see [`Durability`].
    pub(crate) async fn begin_write(&self, durability: Durability) -> Result<write::WriteTx> {
        self.writers.begin(durability).await
    }

    /// Runs one write transaction; see [`write::Writers::run`].
    pub(crate) async fn write<T, E: From<Error>>(
        &self,
        durability: Durability,
        body: impl AsyncFnOnce(&mut write::WriteTx) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.writers.run(durability, body).await
    }

    /// Runs a whole write transaction in one round trip (SQLite); see [`batch`].
    pub(crate) async fn write_batch(
        &self,
        durability: Durability,
        batch: &batch::Batch,
    ) -> Result<batch::Returned> {
        self.writers.batch(durability, batch).await
    }

    pub async fn close(&self) {
        self.writers.close().await;
        self.readers.close().await;
        self.pool.close().await;
    }
}

/// Values per `IN (…)` list or multi-row `VALUES`, well under every engine's limit on bound
/// parameters.
pub(crate) const IN_LIST_CHUNK: usize = 200;

/// Messages per single-round-trip write batch ([`batch`]); each is a few statements.
pub(crate) const BATCH_ROWS: usize = 100;

/// `?, ?, …` for `n` bound values.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Seconds since the Unix epoch, the store's only time unit.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_blocking_task_is_a_typed_error() {
        // resume_unwind panics without the panic hook, so the test output stays quiet.
        let e = tokio::task::spawn_blocking(|| {
            std::panic::resume_unwind(Box::new("blob writer gave up"));
        })
        .await
        .map_err(Error::blocking("blob write"))
        .unwrap_err();
        let Error::Blocking { what, source } = &e else {
            panic!("not a Blocking error: {e:?}");
        };
        assert_eq!(*what, "blob write");
        assert!(source.is_panic());
        assert!(
            e.to_string().starts_with("blob write did not complete"),
            "{e}"
        );
    }
}
