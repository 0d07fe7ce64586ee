//! Schema migrations, applied exactly once however many processes start together on a
//! fresh database: the migrating process holds a database-wide lock (MariaDB `GET_LOCK`,
//! SQLite an exclusive lock on a file beside the database) and every other one waits for it,
//! then finds nothing left to do.
//!
//! sqlx's own migration lock does not serialise on MariaDB: it asks for
//! `GET_LOCK(name, -1)`, which MySQL reads as "wait forever" but MariaDB answers at once
//! with NULL, so two processes applied migration 1 together and the loser stopped with
//! "migration 1 is partially applied". Its SQLite lock is a no-op.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sqlx::migrate::{Migrate, Migrator};
use sqlx::{AnyConnection, Row};

use super::Backend;
use crate::{Error, Result};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static MYSQL_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/mysql");

/// Seconds one `GET_LOCK` waits before we log that we are still waiting and ask again.
const LOCK_WAIT_SECONDS: i64 = 5;

/// The MariaDB lock name: one per database (names are server-wide), at most 64 characters.
const MYSQL_LOCK_NAME: &str = "CONCAT('postbay_migrate_', SHA1(DATABASE()))";

/// Applies every pending migration over `conn`, under the lock.
pub(crate) async fn run(conn: &mut AnyConnection, backend: Backend) -> Result<()> {
    let migrator = match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::MySql => &MYSQL_MIGRATIONS,
    };
    match backend {
        Backend::MySql => {
            lock_mysql(conn).await?;
            let outcome = apply(conn, migrator).await;
            let release = format!("SELECT RELEASE_LOCK({MYSQL_LOCK_NAME})");
            // Closing the connection releases the lock too; a failed release is harmless.
            if let Err(e) = sqlx::query(&release).execute(&mut *conn).await {
                tracing::debug!(error = %e, "releasing the migration lock");
            }
            outcome
        }
        Backend::Sqlite => {
            let _lock = match sqlite_file(conn).await? {
                Some(db) => Some(lock_file(&lock_path(&db)).await?),
                None => None, // in memory: no other process can see it
            };
            apply(conn, migrator).await
        }
    }
}

/// Logs and applies the migrations the database lacks; called with the lock held, so what
/// it reads as applied cannot change under it.
async fn apply(conn: &mut AnyConnection, migrator: &Migrator) -> Result<()> {
    conn.ensure_migrations_table().await?;
    let applied: HashSet<i64> = conn
        .list_applied_migrations()
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    let pending: Vec<_> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
        .collect();
    if pending.is_empty() {
        tracing::debug!("database schema is up to date");
        return Ok(());
    }
    for m in &pending {
        tracing::info!(version = m.version, description = %m.description, "applying schema migration");
    }
    migrator.run(&mut *conn).await?;
    tracing::info!(applied = pending.len(), "database schema migrated");
    Ok(())
}

/// Waits for the database's migration lock, saying so every [`LOCK_WAIT_SECONDS`].
async fn lock_mysql(conn: &mut AnyConnection) -> Result<()> {
    let sql = format!("SELECT CAST(COALESCE(GET_LOCK({MYSQL_LOCK_NAME}, ?), -1) AS SIGNED)");
    loop {
        let got: i64 = sqlx::query(&sql)
            .bind(LOCK_WAIT_SECONDS)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        match got {
            1 => return Ok(()),
            0 => tracing::info!("waiting for another process to finish migrating the schema"),
            _ => return Err(Error::MigrationLock("GET_LOCK returned NULL".into())),
        }
    }
}

/// The main database file, or `None` for an in-memory database.
async fn sqlite_file(conn: &mut AnyConnection) -> Result<Option<PathBuf>> {
    let rows = sqlx::query("PRAGMA database_list")
        .fetch_all(&mut *conn)
        .await?;
    let file: String = rows
        .iter()
        .find(|r| r.get::<String, _>("name") == "main")
        .map(|r| r.get("file"))
        .unwrap_or_default();
    Ok((!file.is_empty()).then(|| PathBuf::from(file)))
}

/// `<database>.migrate-lock`, never removed (removing a lock file races with its next user).
fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".migrate-lock");
    PathBuf::from(name)
}

/// An exclusive lock on `path`, held until the file is dropped (the kernel drops it if the
/// process dies).
async fn lock_file(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(Error::io(path))?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            tracing::info!("waiting for another process to finish migrating the schema")
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path)(e)),
    }
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(Error::blocking("waiting for the migration lock"))?
        .map_err(Error::io(owned))
}
