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
