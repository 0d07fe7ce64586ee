//! Write transactions: one place that decides which connection a write runs on and how
//! it is made durable.
//!
//! SQLite has a single writer. Letting every pooled connection race for the write lock
//! makes the losers sleep in SQLite's busy handler (1, 2, 5, 10 … ms), which under IMAP load
//! left a third of the CPU idle. Here writes of one process queue on a fair async gate
//! instead and run on one dedicated writer connection; other processes sharing the file (a
//! second `postbay` on the same data folder) still meet the busy timeout.
//!
//! The writer commits with `synchronous = NORMAL`: the commit appends its frames to the WAL
//! without waiting for the disk, and the gate passes to the next writer at once. A
//! [`Durability::Synced`] write then flushes the WAL itself, outside the gate, before it
//! returns. Flushes of concurrent commits overlap and the kernel merges them into one
//! journal commit, which is group commit without a coordinator; a checkpoint in between
//! does no harm, since SQLite syncs the WAL before copying it into the database.
//!
//! On MariaDB writes use the main pool, and commit durability is the server's setting
//! (`innodb_flush_log_at_trx_commit`, group-committed by the server).

use std::path::PathBuf;
use std::sync::Arc;

use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::batch::{Batch, Returned};
use crate::{lock, Error, Result};

/// How a committed write must survive a crash of the whole machine, not only of the
/// process (which never loses a commit either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk before the commit returns: messages, anything acknowledged to a sender.
    Synced,
    /// On disk with the next synced commit or checkpoint, as Dovecot's
    /// `mail_fsync = optimized` treats index updates: flag changes, subscriptions, expunges
    /// (whose blobs go only once the WAL is flushed: [`Writers::remove_when_durable`]). A
    /// power loss can undo the last of these, never corrupt the database.
    Relaxed,
}

/// The connection writes run on.
#[derive(Clone)]
pub(crate) struct Writers {
    pool: AnyPool,
    /// SQLite only: one writer at a time per process, and the WAL file synced writes flush.
    serial: Option<Serial>,
}

/// The gate, holding the connection batches run on. It is taken out of sqlx's pool on first
/// use, because the pool pings a connection it takes back (see [`super::readers`]), and
/// that round trip to the worker thread would be paid with the gate held. Transactions
/// written statement by statement ([`Writers::begin`], [`Writers::run`]) still come from
/// the pool, one at a time behind the same gate.
type Gate = Arc<Mutex<Option<AnyConnection>>>;

#[derive(Clone)]
struct Serial {
    gate: Gate,
    /// None for an in-memory database, which has nothing to flush.
    wal: Option<PathBuf>,
    /// Files to remove once the commits that stopped referring to them are on disk.
    doomed: Arc<Doomed>,
}

/// Blobs of expunged messages, waiting for the WAL flush that makes their expunge durable.
/// Removing a blob before that could leave, after a power loss, a message row whose bytes
/// are gone; removing it after costs nothing on a busy server, where the next delivery's
/// flush carries it, and one flush per [`DOOMED_DELAY`] on a quiet one.
#[derive(Default)]
struct Doomed {
    state: std::sync::Mutex<DoomedState>,
}

#[derive(Default)]
struct DoomedState {
    paths: Vec<PathBuf>,
    /// A flush is scheduled that will take them.
    scheduled: bool,
}

/// How long a blob of an expunged message waits for a flush it can ride on.
const DOOMED_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

impl Writers {
    /// Writes share the main pool (MariaDB).
    pub(crate) fn shared(pool: AnyPool) -> Writers {
        Writers { pool, serial: None }
    }

    /// One writer connection (`synchronous = NORMAL`) behind a gate; `wal` is the
    /// database's write-ahead log (SQLite).
    pub(crate) fn serialized(writer: AnyPool, wal: Option<PathBuf>) -> Writers {
        Writers {
            pool: writer,
            serial: Some(Serial {
                gate: Arc::new(Mutex::new(None)),
                wal,
                doomed: Arc::default(),
            }),
        }
    }

    /// Starts a write transaction holding the gate until it ends; [`WriteTx::commit`]
    /// flushes it as `durability` asks. For the rarer writes; hot paths use [`Writers::run`]
    /// or [`Writers::batch`].
    pub(crate) async fn begin(&self, durability: Durability) -> Result<WriteTx> {
        let gate = match &self.serial {
            Some(serial) => Some(serial.gate.clone().lock_owned().await),
            None => None,
        };
        let tx = self.pool.begin().await?;
        let flush = match (&self.serial, durability) {
            (Some(serial), Durability::Synced) => Some(serial.clone()),
            _ => None,
        };
        Ok(WriteTx {
            tx: Some(tx),
            gate,
            flush,
        })
    }

    /// Runs `body` as one write transaction and returns once its commit is as durable as
    /// asked for. `body` commits with [`WriteTx::commit_in_place`]; a transaction it leaves
    /// open (an error, or nothing to change) is rolled back before the next writer starts.
    pub(crate) async fn run<T, E>(
        &self,
        durability: Durability,
        body: impl AsyncFnOnce(&mut WriteTx) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<Error>,
    {
        let gate = match &self.serial {
            Some(serial) => Some(serial.gate.clone().lock_owned().await),
            None => None,
        };
        let tx = self.pool.begin().await.map_err(Error::from)?;
        // The gate travels with the transaction: if this future is dropped mid-way, the
        // transaction's Drop rolls back before letting the next writer in.
        let mut tx = WriteTx {
            tx: Some(tx),
            gate,
            flush: None,
        };
        let out = body(&mut tx).await;
        if tx.tx.is_some() {
            tx.rollback_in_place().await?;
        }
        drop(tx);
        if out.is_ok() && durability == Durability::Synced {
            if let Some(serial) = &self.serial {
                serial.flush().await?;
            }
        }
        out
    }

    /// Runs a [`Batch`] (SQLite only) on the writer connection in one round trip, and returns
    /// its `RETURNING` rows once the commit is as durable as asked for. A statement that
    /// fails leaves the transaction open; it is rolled back before the gate opens.
    pub(crate) async fn batch(&self, durability: Durability, batch: &Batch) -> Result<Returned> {
        let serial = self
            .serial
            .as_ref()
            .expect("write batches are for the serialized (SQLite) writer");
        let mut gate = serial.gate.clone().lock_owned().await;
        if gate.is_none() {
            *gate = Some(self.pool.acquire().await?.detach());
        }
        let mut held = HeldWriter { gate: Some(gate) };
        let mut result = held.run(batch).await;
        if let Err(sqlx::Error::Database(e)) = &result {
            if e.message().contains("within a transaction") {
                // A batch abandoned mid-way (its caller went away) left its transaction
                // open; the rollback above ended it, so this one can run now.
                tracing::warn!("writer connection had an open transaction; retrying");
                result = held.run(batch).await;
            }
        }
        held.release();
        let rows = result?;
        if durability == Durability::Synced {
            serial.flush().await?;
        }
        Ok(rows)
    }

    /// Removes `paths` (blobs no committed row refers to any more) once that commit is on
    /// disk: at once on MariaDB and in-memory SQLite, else with the next WAL flush, which
    /// comes within [`DOOMED_DELAY`]. Files already gone are not an error.
    pub(crate) async fn remove_when_durable(&self, paths: Vec<PathBuf>) {
        if paths.is_empty() {
            return;
        }
        let Some(serial) = self.serial.as_ref().filter(|s| s.wal.is_some()) else {
            let _ = tokio::task::spawn_blocking(move || remove_files(&paths)).await;
            return;
        };
        let schedule = {
            let mut state = lock(&serial.doomed.state);
            state.paths.extend(paths);
            !std::mem::replace(&mut state.scheduled, true)
        };
        if schedule {
            let serial = serial.clone();
            tokio::spawn(async move {
                tokio::time::sleep(DOOMED_DELAY).await;
                lock(&serial.doomed.state).scheduled = false;
                if let Err(e) = serial.flush().await {
                    tracing::warn!(error = %e, "WAL flush for expunged blobs failed");
                }
            });
        }
    }

    /// Waits for pending removals (with a flush), then closes the writer connections.
    pub(crate) async fn close(&self) {
        if let Some(serial) = &self.serial {
            if let Err(e) = serial.flush().await {
                tracing::warn!(error = %e, "final WAL flush failed");
            }
            if let Some(conn) = serial.gate.lock().await.take() {
                let _ = sqlx::Connection::close(conn).await;
            }
        }
        self.pool.close().await;
    }
}

impl Serial {
    /// Flushes the WAL: every commit appended before the call is then durable. Blobs
    /// waiting for an earlier commit's durability are removed in the same blocking trip.
    async fn flush(&self) -> Result<()> {
        let Some(wal) = self.wal.clone() else {
            return Ok(());
        };
        let paths = std::mem::take(&mut lock(&self.doomed.state).paths);
        let doomed = self.doomed.clone();
        tokio::task::spawn_blocking(move || {
            let flushed = std::fs::File::open(&wal)
                .and_then(|f| f.sync_data())
                .map_err(Error::io(&wal));
            match flushed {
                Ok(()) => remove_files(&paths),
                // Not durable yet: the next flush takes them.
                Err(_) => lock(&doomed.state).paths.extend(paths),
            }
            flushed
        })
        .await
        // The flush task panicked or was cancelled (runtime shutting down): not durable.
        .unwrap_or_else(|e| Err(Error::blocking("WAL flush")(e)))
    }
}

fn remove_files(paths: &[PathBuf]) {
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, path = %path.display(), "could not remove blob"),
        }
    }
}

/// The gate with the writer connection in it, held for one batch. Dropped before
/// [`HeldWriter::release`] (the caller went away mid-batch), it rolls back in a task that
/// keeps the gate: the ROLLBACK queues behind the batch on the connection's worker, so it
/// ends whatever the batch left open, and answers "no transaction" harmlessly otherwise.
struct HeldWriter {
    gate: Option<OwnedMutexGuard<Option<AnyConnection>>>,
}

impl HeldWriter {
    async fn run(&mut self, batch: &Batch) -> std::result::Result<Returned, sqlx::Error> {
        // Empty only once the store was closed.
        let Some(conn) = self.gate.as_mut().and_then(|g| g.as_mut()) else {
            return Err(sqlx::Error::PoolClosed);
        };
        let result = batch.query().fetch_all(&mut *conn).await;
        if result.is_err() {
            let _ = sqlx::Executor::execute(&mut *conn, "ROLLBACK").await;
        }
        result
    }

    fn release(&mut self) {
        self.gate.take();
    }
}

impl Drop for HeldWriter {
    fn drop(&mut self) {
        let Some(mut gate) = self.gate.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Some(conn) = gate.as_mut() {
                    let _ = sqlx::Executor::execute(conn, "ROLLBACK").await;
                }
                drop(gate);
            });
        }
    }
}

/// A write transaction holding the process's write gate until it ends. Dereferences to the
/// connection, so queries run on `&mut *tx` as on a plain transaction. End it with
/// [`WriteTx::commit`] or [`WriteTx::rollback`]; one dropped on an error path is rolled back
/// by a task that keeps the gate until the rollback is done, so the next writer never finds
/// it half-open on the shared writer connection.
pub(crate) struct WriteTx {
    tx: Option<Transaction<'static, Any>>,
    gate: Option<OwnedMutexGuard<Option<AnyConnection>>>,
    /// Whose WAL to flush after commit (synced writes on SQLite).
    flush: Option<Serial>,
}

impl WriteTx {
    /// Commits, lets the next writer in, and returns once the commit is as durable as
    /// asked for.
    pub(crate) async fn commit(mut self) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
        }
        drop(self.gate.take());
        if let Some(serial) = self.flush.take() {
            serial.flush().await?;
        }
        Ok(())
    }

    pub(crate) async fn rollback(mut self) -> Result<()> {
        self.rollback_in_place().await
    }

    /// Commits inside [`Writers::run`], which makes it durable after the gate opens.
    pub(crate) async fn commit_in_place(&mut self) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
        }
        Ok(())
    }

    pub(crate) async fn rollback_in_place(&mut self) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            tx.rollback().await?;
        }
        Ok(())
    }

    fn open(&self) -> &Transaction<'static, Any> {
        self.tx
            .as_ref()
            .expect("write transaction used after it ended")
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let gate = self.gate.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "rollback of an abandoned write failed");
                }
                drop(gate);
            });
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.open()
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.tx
            .as_mut()
            .expect("write transaction used after it ended")
    }
}
