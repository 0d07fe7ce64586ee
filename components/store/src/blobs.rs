//! Message bodies as immutable files on the shared volume.
//!
//! A blob is created under its final, unique name and fsync'd, so once `write` returns the
//! bytes survive a crash or power loss (decision 16 in docs/decisions.md: no temporary name,
//! no directory fsync). Blobs never change after that; flags and folder membership live in
//! the database, whose row is written only after the blob is durable, so a blob cut short by
//! a crash is an orphan nobody reads. Paths are relative to the mail root so the volume can
//! be mounted anywhere.

use std::path::{Path, PathBuf};

use crate::fs::create_file_durably;
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    pub fn new(root: PathBuf) -> BlobStore {
        BlobStore { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores `parts` (concatenated) as a new blob below `home` and returns its relative path.
    pub async fn write(&self, home: &str, parts: Vec<bytes_owned::Part>) -> Result<String> {
        let month = month_dir();
        let name = format!("{}.eml", ulid::Ulid::new());
        let rel = format!("{home}/{month}/{name}");
        let path = self.root.join(&rel);
        tokio::task::spawn_blocking(move || {
            let slices: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            create_file_durably(&path, &slices)
        })
        .await
        .map_err(Error::blocking("blob write"))??;
        Ok(rel)
    }

    pub async fn read(&self, rel: &str) -> Result<Vec<u8>> {
        let path = self.root.join(rel);
        let started = std::time::Instant::now();
        let read = tokio::fs::read(&path).await.map_err(Error::io(&path));
        postbay_telemetry::store_latency("fetch", started.elapsed());
        read
    }

    /// Reads several blobs with one trip to the blocking pool (a FETCH of ten envelopes
    /// would otherwise pay ten); each result stands alone.
    pub async fn read_many(&self, rels: Vec<String>) -> Vec<Result<Vec<u8>>> {
        let root = self.root.clone();
        let count = rels.len();
        tokio::task::spawn_blocking(move || {
            rels.iter()
                .map(|rel| {
                    let path = root.join(rel);
                    let started = std::time::Instant::now();
                    let read = std::fs::read(&path).map_err(Error::io(&path));
                    postbay_telemetry::store_latency("fetch", started.elapsed());
                    read
                })
                .collect()
        })
        .await
        .unwrap_or_else(|e| {
            let source = std::sync::Arc::new(e);
            (0..count)
                .map(|_| {
                    Err(Error::Blocking {
                        what: "blob read",
                        source: source.clone(),
                    })
                })
                .collect()
        })
    }

    /// A new blob path under `home` sharing `rel`'s bytes.
    pub(crate) async fn link(&self, rel: &str, home: &str) -> Result<String> {
        let new_rel = format!("{home}/{}/{}.eml", month_dir(), ulid::Ulid::new());
        let src = self.path(rel);
        let dst = self.path(&new_rel);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let dir = dst.parent().expect("blob path has a parent");
            crate::fs::create_dir_durably(dir)?;
            if std::fs::hard_link(&src, &dst).is_err() {
                // Another filesystem or no link support: copy durably instead.
                let bytes = std::fs::read(&src).map_err(Error::io(&src))?;
                crate::fs::write_file_durably(&dst, &[&bytes])?;
            }
            crate::fs::sync_dir(dir)
        })
        .await
        .map_err(Error::blocking("blob link"))??;
        Ok(new_rel)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Removes a blob; a blob that is already gone is not an error.
    pub async fn remove(&self, rel: &str) -> Result<()> {
        let path = self.root.join(rel);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path)(e)),
        }
    }
}

/// Owned byte parts, so callers can hand a header they built plus a shared body to the
/// blocking writer without copying them into one buffer first.
pub mod bytes_owned {
    use std::sync::Arc;

    #[derive(Clone, Debug)]
    pub enum Part {
        Owned(Vec<u8>),
        Shared(Arc<Vec<u8>>),
    }

    impl Part {
        pub fn as_slice(&self) -> &[u8] {
            match self {
                Part::Owned(v) => v,
                Part::Shared(v) => v,
            }
        }
    }
}

fn month_dir() -> String {
    // Days since epoch / ~30: a coarse shard that keeps directories small without a
    // calendar dependency; only its stability within a month matters.
    let days = crate::now_unix() / 86_400;
    format!("{:05}", days / 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn write_read_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().to_path_buf());
        let rel = store
            .write(
                "example.test/alice",
                vec![
                    bytes_owned::Part::Owned(b"Received: x\r\n".to_vec()),
                    bytes_owned::Part::Owned(b"Subject: hi\r\n\r\nbody\r\n".to_vec()),
                ],
            )
            .await
            .unwrap();
        assert!(rel.starts_with("example.test/alice/"));
        assert_eq!(
            store.read(&rel).await.unwrap(),
            b"Received: x\r\nSubject: hi\r\n\r\nbody\r\n"
        );
        // No temporary file is left behind.
        let parent = store.path(&rel).parent().unwrap().to_path_buf();
        let names: Vec<_> = std::fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        store.remove(&rel).await.unwrap();
        store.remove(&rel).await.unwrap();
        assert!(store.read(&rel).await.is_err());
    }
}
