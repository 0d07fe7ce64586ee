//! Finding blobs that no message row points at: what a delivery leaves when a crash comes
//! between the blob's fsync and its row's commit (decision 16), or an expunge whose file
//! deletion was cut short (decision 17). They cost space, never mail.
//!
//! Only files older than a grace period are considered: a younger blob may belong to a
//! delivery whose transaction is still running in some process, and removing it would lose
//! a message about to be acknowledged. The listing is taken before the rows are read, so a
//! row committed meanwhile is seen.

use std::path::Path;
use std::time::{Duration, SystemTime};

use sqlx::Row;

use crate::{placeholders, Error, Result, Store, IN_LIST_CHUNK};

/// A blob file without a message row.
#[derive(Debug, Clone)]
pub struct Orphan {
    /// Relative to the mail root, as `messages.blob_path` would hold it.
    pub rel: String,
    pub size: u64,
    pub age: Duration,
}

#[derive(Debug, Default)]
pub struct BlobCheck {
    /// Blob files (`*.eml`) under the mail root.
    pub blobs: usize,
    /// Of those, younger than the grace period and not looked at.
    pub young: usize,
    pub orphans: Vec<Orphan>,
}

impl Store {
    /// Blobs older than `grace` that no message row names.
    pub async fn check_blobs(&self, grace: Duration) -> Result<BlobCheck> {
        let root = self.blobs.root().to_path_buf();
        let files = tokio::task::spawn_blocking(move || list_blobs(&root))
            .await
            .map_err(Error::blocking("blob listing"))??;
        let mut check = BlobCheck {
            blobs: files.len(),
            ..Default::default()
        };
        let old: Vec<Orphan> = files
            .into_iter()
            .filter(|f| {
                let keep = f.age >= grace;
                check.young += usize::from(!keep);
                keep
            })
            .collect();
        check.orphans = self.without_rows(old).await?;
        Ok(check)
    }

    /// Removes `orphans` whose rows are still absent (read again just before), returning
    /// how many files went.
    pub async fn remove_orphans(&self, orphans: Vec<Orphan>) -> Result<usize> {
        let mut removed = 0;
        for orphan in self.without_rows(orphans).await? {
            self.blobs.remove(&orphan.rel).await?;
            tracing::info!(blob = orphan.rel, size = orphan.size, "removed orphan blob");
            removed += 1;
        }
        Ok(removed)
    }

    /// The candidates no `messages.blob_path` names.
    async fn without_rows(&self, candidates: Vec<Orphan>) -> Result<Vec<Orphan>> {
        let mut out = Vec::new();
        for chunk in candidates.chunks(IN_LIST_CHUNK) {
            let sql = format!(
                "SELECT blob_path FROM messages WHERE blob_path IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for c in chunk {
                query = query.bind(c.rel.clone());
            }
            let known: std::collections::HashSet<String> = query
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
            out.extend(chunk.iter().filter(|c| !known.contains(&c.rel)).cloned());
        }
        Ok(out)
    }
}

/// Every `*.eml` file below `root`, with its size and age (from its modification time).
fn list_blobs(root: &Path) -> Result<Vec<Orphan>> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io(&dir))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(Error::io(&path))?;
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() && path.extension().is_some_and(|e| e == "eml") {
                let Ok(rel) = path.strip_prefix(root) else {
                    continue;
                };
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                out.push(Orphan {
                    rel: rel.to_string_lossy().into_owned(),
                    size: meta.len(),
                    age,
                });
            }
        }
    }
    Ok(out)
}

/// The periodic form of [`Store::check_blobs`] + [`Store::remove_orphans`] that every
/// mailbox replica runs: each round, whoever takes the sweep lock (a file lock on the shared
/// volume, released by the kernel if its holder dies) sweeps and the others skip, so N
/// replicas do not list the volume N times. `grace` must exceed the longest delivery in
/// flight (LMTP's DATA timeout is minutes; the default hour is far beyond it).
pub async fn sweep_orphans_every(store: Store, interval: Duration, grace: Duration) {
    let lock = store.blobs.root().join(".orphan-sweep.lock");
    loop {
        tokio::time::sleep(interval).await;
        match sweep_once(&store, &lock, grace).await {
            Ok(Some(removed)) => postbay_telemetry::orphan_sweep("done", removed),
            Ok(None) => {
                tracing::debug!("orphan sweep skipped: another replica holds the lock");
                postbay_telemetry::orphan_sweep("skipped", 0);
            }
            Err(e) => {
                tracing::warn!(error = %e, "orphan sweep failed");
                postbay_telemetry::orphan_sweep("failed", 0);
            }
        }
    }
}

/// One round under the lock: `None` when another process holds it.
async fn sweep_once(store: &Store, lock: &Path, grace: Duration) -> Result<Option<usize>> {
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock)
        .map_err(Error::io(lock))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(lock)(e)),
    }
    let check = store.check_blobs(grace).await?;
    let found = check.orphans.len();
    let removed = if found == 0 {
        0
    } else {
        store.remove_orphans(check.orphans).await?
    };
    tracing::info!(blobs = check.blobs, found, removed, "orphan sweep done");
    drop(file);
    Ok(Some(removed))
}
