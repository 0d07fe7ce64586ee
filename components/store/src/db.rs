//! Connecting and migrating: the only place that knows which SQL engine is behind the pool.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use std::time::Duration;

use crate::{Error, Result};

/// Which engine serves the store. Queries are written once in the common subset; the few
/// places where dialects differ (upserts, migrations) branch on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MYSQL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

pub(crate) async fn connect(url: &str) -> Result<(AnyPool, Backend)> {
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
    let options = match backend {
        Backend::Sqlite => AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers (IMAP sessions) run beside the single writer; FULL
                    // makes every commit durable before we acknowledge mail.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 30000").await?;
                    Ok(())
                })
            }),
        Backend::MySql => AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30)),
    };
    let pool = options.connect(&url).await?;
    tracing::debug!(?backend, "store connected");
    Ok((pool, backend))
}

pub(crate) async fn migrate(pool: &AnyPool, backend: Backend) -> Result<()> {
    match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS.run(pool).await?,
        Backend::MySql => MYSQL_MIGRATIONS.run(pool).await?,
    }
    Ok(())
}
