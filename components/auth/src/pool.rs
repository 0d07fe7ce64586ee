//! The bounded hashing pool: at most `threads` password verifications run at once, on
//! tokio's blocking threads; the rest wait their turn in a first-come queue (tokio's
//! semaphore is fair). Argon2id at Dovecot's parameters takes 64 MiB and tens of ms of CPU
//! per check, so a login storm unbounded would take all memory, and hashes on the async
//! workers would starve every mail session.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Hashes running now.
    active: AtomicUsize,
    /// Most hashes ever seen running at once.
    pub(crate) peak: AtomicUsize,
    /// Hashes run.
    pub(crate) verifications: AtomicU64,
}

/// Why a verification produced no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    #[error("stored password hash is unusable: {0}")]
    Hash(#[from] postbay_passwd::PasswdError),
    #[error("password verification task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Debug)]
pub(crate) struct HashPool {
    permits: Arc<Semaphore>,
    pub(crate) counters: Arc<Counters>,
}

impl HashPool {
    pub(crate) fn new(threads: usize) -> HashPool {
        HashPool {
            permits: Arc::new(Semaphore::new(threads.max(1))),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Checks `password` against `stored` once a slot is free.
    pub(crate) async fn verify(&self, password: &[u8], stored: &str) -> Result<bool, PoolError> {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("hashing semaphore is never closed");
        let password = password.to_vec();
        let stored = stored.to_string();
        let counters = self.counters.clone();
        // The permit moves into the task: a session dropped while waiting for the result
        // (client gone) keeps its slot until the hash really ends, so the bound holds.
        let result = tokio::task::spawn_blocking(move || {
            let running = counters.active.fetch_add(1, Ordering::SeqCst) + 1;
            counters.peak.fetch_max(running, Ordering::SeqCst);
            counters.verifications.fetch_add(1, Ordering::Relaxed);
            let result = postbay_passwd::verify(&password, &stored);
            counters.active.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            result
        })
        .await?;
        Ok(result?)
    }
}
