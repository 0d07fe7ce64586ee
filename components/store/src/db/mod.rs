//! Reaching the database: connecting and migrating (the only place that knows which SQL
//! engine is behind the pool), the read connections lent outside the pool ([`readers`]), the
//! writer gate ([`write`]) and single-round-trip write batches ([`batch`]).

pub(crate) mod batch;
pub(crate) mod readers;
pub(crate) mod write;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};
use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, Result};
use write::Writers;

/// Which engine serves the store. Queries are written once in the common subset; the few
/// places where dialects differ (upserts, migrations) branch on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MYSQL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

/// SQLite read connections lent by [`readers`].
pub(crate) const SQLITE_READERS: usize = 6;

pub(crate) async fn connect(url: &str) -> Result<(AnyPool, Writers, Backend)> {
    sqlx::any::install_default_drivers();
    let backend = if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        Backend::MySql
    } else {
        return Err(Error::UnsupportedUrl(url.to_string()));
    };
    let url = if let Some(rest) = url.strip_prefix("mariadb:") {
        format!("mysql:{rest}")
    } else {
        url.to_string()
    };
    match backend {
        Backend::Sqlite => {
            // Readers (IMAP sessions) run beside the writer thanks to WAL; writes go to
            // one connection per durability behind the process's write gate.
            // SQLITE_READERS of the readers are lent outside the pool (readers); the
            // pool keeps serving the rest (read transactions, other crates).
            let pool = sqlite_pool(4, "FULL").connect(&url).await?;
            let writer = sqlite_pool(1, "NORMAL").connect(&url).await?;
            let wal = sqlite_wal(&writer).await?;
            tracing::debug!(?backend, ?wal, "store connected");
            Ok((pool, Writers::serialized(writer, wal), backend))
        }
        Backend::MySql => {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect(&url)
                .await?;
            tracing::debug!(?backend, "store connected");
            Ok((pool.clone(), Writers::shared(pool), backend))
        }
    }
}

/// The write-ahead log of the open SQLite database, whose directory entry is made durable
/// here once, so flushing the file alone later is enough. `None` for an in-memory database.
async fn sqlite_wal(pool: &AnyPool) -> Result<Option<PathBuf>> {
    let row = sqlx::query("PRAGMA database_list").fetch_all(pool).await?;
    let file: String = row
        .iter()
        .find(|r| r.get::<String, _>("name") == "main")
        .map(|r| r.get("file"))
        .unwrap_or_default();
    if file.is_empty() {
        return Ok(None);
    }
    let wal = PathBuf::from(format!("{file}-wal"));
    if let Some(dir) = wal.parent().filter(|d| d.exists()) {
        crate::fs::sync_dir(dir)?;
    }
    Ok(Some(wal))
}

/// SQLite connections in WAL mode with the given `synchronous` level: FULL syncs the WAL at
/// every commit, NORMAL only at checkpoints and at the next FULL commit.
fn sqlite_pool(size: u32, synchronous: &'static str) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(30))
        // A local file cannot drop the connection; the default ping on every acquire
        // would cost each query an extra round trip to SQLite's worker thread.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute(format!("PRAGMA synchronous = {synchronous}").as_str())
                    .await?;
                conn.execute("PRAGMA busy_timeout = 30000").await?;
                Ok(())
            })
        })
}

pub(crate) async fn migrate(pool: &AnyPool, backend: Backend) -> Result<()> {
    match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS.run(pool).await?,
        Backend::MySql => MYSQL_MIGRATIONS.run(pool).await?,
    }
    Ok(())
}
