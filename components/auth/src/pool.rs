//! The bounded hashing pool: at most `threads` password verifications run at once, on
//! tokio's blocking threads; the rest wait their turn in a first-come queue (tokio's
//! semaphore is fair). Argon2id at Dovecot's parameters takes 64 MiB and tens of ms of CPU
//! per check, so a login storm unbounded would take all memory, and hashes on the async
//! workers would starve every mail session.

//!
//! Each running hash works in a [`Scratch`] taken from a stash of at most `threads`, so the
//! 64 MiB are faulted in once rather than on every login (a third of the CPU of a check).
//! The stash is emptied after `hash_memory_idle` (a minute) without hashing, so a quiet
//! replica gives the memory back.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use postbay_passwd::Scratch;
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
    #[error("the hashing pool is closed")]
    Closed(#[from] tokio::sync::AcquireError),
}

#[derive(Debug)]
pub(crate) struct HashPool {
    permits: Arc<Semaphore>,
    pub(crate) counters: Arc<Counters>,
    /// Work areas not in use; never more than `threads`, as each running hash holds one.
    stash: Arc<Mutex<Vec<Scratch>>>,
    idle_release: Duration,
}

impl HashPool {
    pub(crate) fn new(threads: usize, idle_release: Duration) -> HashPool {
        HashPool {
            permits: Arc::new(Semaphore::new(threads.max(1))),
            counters: Arc::new(Counters::default()),
            stash: Arc::new(Mutex::new(Vec::new())),
            idle_release,
        }
    }

    /// Bytes of hashing memory kept for the next verification.
    pub(crate) fn held_bytes(&self) -> usize {
        lock(&self.stash).iter().map(Scratch::held_bytes).sum()
    }

    /// Checks `password` against `stored` once a slot is free.
    pub(crate) async fn verify(&self, password: &[u8], stored: &str) -> Result<bool, PoolError> {
        let permit = self.permits.clone().acquire_owned().await?;
        let password = password.to_vec();
        let stored = stored.to_string();
        let counters = self.counters.clone();
        let stash = self.stash.clone();
        // The permit moves into the task: a session dropped while waiting for the result
        // (client gone) keeps its slot until the hash really ends, so the bound holds.
        let (result, generation) = tokio::task::spawn_blocking(move || {
            let running = counters.active.fetch_add(1, Ordering::SeqCst) + 1;
            counters.peak.fetch_max(running, Ordering::SeqCst);
            let generation = counters.verifications.fetch_add(1, Ordering::Relaxed) + 1;
            let mut scratch = lock(&stash).pop().unwrap_or_default();
            let result = postbay_passwd::verify_in(&password, &stored, &mut scratch);
            lock(&stash).push(scratch);
            counters.active.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            (result, generation)
        })
        .await?;
        self.release_when_idle(generation);
        Ok(result?)
    }

    /// Empties the stash if no verification starts within `idle_release` of this one.
    fn release_when_idle(&self, generation: u64) {
        let counters = self.counters.clone();
        let stash = self.stash.clone();
        let idle = self.idle_release;
        tokio::spawn(async move {
            tokio::time::sleep(idle).await;
            if counters.verifications.load(Ordering::Relaxed) == generation
                && counters.active.load(Ordering::SeqCst) == 0
            {
                let released: Vec<Scratch> = std::mem::take(&mut *lock(&stash));
                tracing::debug!(
                    bytes = released.iter().map(Scratch::held_bytes).sum::<usize>(),
                    "hashing memory released after idle"
                );
            }
        });
    }
}

/// The stash holds plain buffers, so a panic elsewhere leaves nothing inconsistent.
fn lock(stash: &Mutex<Vec<Scratch>>) -> std::sync::MutexGuard<'_, Vec<Scratch>> {
    stash.lock().unwrap_or_else(PoisonError::into_inner)
}
