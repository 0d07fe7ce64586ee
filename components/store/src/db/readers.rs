//! Connections for reads, handed out without going back through sqlx's pool on SQLite.
//!
//! sqlx 0.8 pings every connection its pool takes back. For SQLite that ping is one more
//! round trip to the connection's worker thread, so each query cost two thread handoffs
//! instead of one; on a busy two-core machine that measured 16–20% of IMAP throughput.
//! Here SQLite read connections are taken out of the pool once ([`PoolConnection::detach`])
//! and lent from a plain list. A query abandoned half-way needs no check: the connection's
//! worker finishes or drops it before it runs the next command, and reads hold no
//! transaction. MariaDB keeps sqlx's pool, whose check there guards the wire protocol.

use std::sync::{Arc, Mutex};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{lock, Result};

/// Where read connections come from.
#[derive(Clone)]
pub(crate) enum Readers {
    /// Detached SQLite connections, lent one query (or a few) at a time.
    Held(Arc<Lender>),
    /// sqlx's pool (MariaDB).
    Pool(AnyPool),
}

pub(crate) struct Lender {
    idle: Mutex<Vec<AnyConnection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    /// Takes `count` connections out of `pool` for good.
    pub(crate) async fn detach_from(pool: &AnyPool, count: usize) -> Result<Readers> {
        let mut idle = Vec::with_capacity(count);
        for _ in 0..count {
            idle.push(pool.acquire().await?.detach());
        }
        Ok(Readers::Held(Arc::new(Lender {
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(count)),
        })))
    }

    /// A connection for reads; it goes back when dropped.
    pub(crate) async fn get(&self) -> Result<Reader> {
        match self {
            Readers::Pool(pool) => Ok(Reader::Pooled(pool.acquire().await?)),
            Readers::Held(lender) => {
                let Ok(permit) = lender.permits.clone().acquire_owned().await else {
                    return Err(sqlx::Error::PoolClosed.into());
                };
                // A permit always finds a connection (see `Lent::drop`); if that ever failed,
                // the read fails rather than the process.
                let Some(conn) = lock(&lender.idle).pop() else {
                    return Err(sqlx::Error::PoolClosed.into());
                };
                Ok(Reader::Lent(Lent {
                    conn: Some(conn),
                    lender: lender.clone(),
                    _permit: permit,
                }))
            }
        }
    }

    /// Closes the held connections (the pool closes its own); later reads fail.
    pub(crate) async fn close(&self) {
        if let Readers::Held(lender) = self {
            lender.permits.close();
            let conns = std::mem::take(&mut *lock(&lender.idle));
            for conn in conns {
                let _ = sqlx::Connection::close(conn).await;
            }
        }
    }
}

/// A read connection on loan; dereferences to the connection.
pub(crate) enum Reader {
    Lent(Lent),
    Pooled(PoolConnection<Any>),
}

pub(crate) struct Lent {
    conn: Option<AnyConnection>,
    lender: Arc<Lender>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Pushed back before the permit is released (field order), so a permit always
            // finds a connection.
            lock(&self.lender.idle).push(conn);
        }
    }
}

impl std::ops::Deref for Reader {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            Reader::Lent(lent) => lent.conn.as_ref().expect("lent until dropped"),
            Reader::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Reader {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Reader::Lent(lent) => lent.conn.as_mut().expect("lent until dropped"),
            Reader::Pooled(conn) => conn,
        }
    }
}
