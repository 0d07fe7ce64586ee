//! Reaching the database: connecting (retried while the database is not reachable yet) and
//! migrating ([`migrate`], once under a lock) — the only place that knows which SQL engine
//! is behind the pool —, the read connections lent outside the pool ([`readers`]), the
//! writer gate ([`write`]) and single-round-trip write batches ([`batch`]).

pub(crate) mod batch;
mod migrate;
pub(crate) mod readers;
pub(crate) mod write;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};
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

/// SQLite read connections lent by [`readers`].
pub(crate) const SQLITE_READERS: usize = 6;

/// First wait before another attempt to reach the database; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Connects to `url` and brings its schema up to date, waiting (with backoff, and a log
/// line per attempt) while the database is not reachable yet or another process migrates
/// it: a role started before its database must not crash-loop. Errors that waiting cannot
/// cure (a bad URL, refused credentials, a broken migration) return at once.
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
    let mut delay = FIRST_RETRY;
    loop {
        match attempt(&url, backend).await {
            Ok(connected) => return Ok(connected),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in = ?delay, "database not reachable yet, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
            }
            Err(e) => return Err(e),
        }
    }
}

async fn attempt(url: &str, backend: Backend) -> Result<(AnyPool, Writers, Backend)> {
    match backend {
        Backend::Sqlite => {
            // Readers (IMAP sessions) run beside the writer thanks to WAL; writes go to
            // one connection per durability behind the process's write gate.
            // SQLITE_READERS of the readers are lent outside the pool (readers); the
            // pool keeps serving the rest (read transactions, other crates).
            let pool = sqlite_pool(4, "FULL").connect(url).await?;
            migrate::run(&mut *pool.acquire().await?, backend).await?;
            let writer = sqlite_pool(1, "NORMAL").connect(url).await?;
            let wal = sqlite_wal(&writer).await?;
            tracing::debug!(?backend, ?wal, "store connected");
            Ok((pool, Writers::serialized(writer, wal), backend))
        }
        Backend::MySql => {
            // One plain connection first: it fails at once when the server is not there
            // (the pool would retry silently for its whole acquire timeout), and it holds
            // the migration lock.
            let mut conn = AnyConnection::connect(url).await?;
            migrate::run(&mut conn, backend).await?;
            if let Err(e) = conn.close().await {
                tracing::debug!(error = %e, "closing the migration connection");
            }
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
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
                // The timeout first: switching to WAL waits for other processes' writes.
                conn.execute("PRAGMA busy_timeout = 30000").await?;
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute(format!("PRAGMA synchronous = {synchronous}").as_str())
                    .await?;
                Ok(())
            })
        })
}

/// See [`Error::is_transient`].
pub(crate) fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => {
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                // Too many connections, server shutdown in progress, lost connection.
                return matches!(my.number(), 1040 | 1053 | 2006 | 2013);
            }
            sqlite_busy(db.as_ref())
        }
        _ => false,
    }
}

/// See [`Error::is_conflict`].
pub(crate) fn conflict(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(my.number(), 1205 | 1213);
    }
    sqlite_busy(db.as_ref())
}

/// SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
fn sqlite_busy(db: &dyn sqlx::error::DatabaseError) -> bool {
    db.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}
