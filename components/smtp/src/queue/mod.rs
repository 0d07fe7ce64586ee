//! The durable queue between "250 OK" and delivery.
//!
//! Each accepted message is one file `<id>.msg` in this replica's queue directory on the shared
//! volume: a JSON envelope line, then the message with our Received header. It is written to a
//! temporary name, fsync'd and renamed (directory fsync'd) before the client hears 250, so a
//! crash at any later point loses nothing: on start the runner finds the file and delivers it.
//! Delivery is idempotent (LMTP carries the queue id as TRANSID, the mailbox deduplicates), so
//! a crash between delivering and deleting the file never duplicates mail.
//!
//! Replicas use separate directories (`queue/<node-id>/`), so there is no contention for files;
//! a StatefulSet pod keeps its node id across restarts and resumes its own queue.

pub mod dsn;
pub mod requests;
pub mod runner;

use std::path::{Path, PathBuf};

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use postbay_store::fs::write_file_durably;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue storage: {0}")]
    Store(#[from] postbay_store::Error),
    #[error("queue file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("queue file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// An admin request that names no message (`postbay queue`).
    #[error("bad queue request: {0}")]
    BadRequest(String),
    /// A file task on the blocking pool panicked or was cancelled (runtime shutting down).
    #[error("queue {what} task failed: {source}")]
    Blocking {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Maps a failed `spawn_blocking` join to [`QueueError::Blocking`].
pub(crate) fn blocking(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> QueueError {
    move |source| QueueError::Blocking { what, source }
}

/// Who a queued message goes to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueuedRecipient {
    /// Final address: a local mailbox (after alias expansion) or a remote address.
    pub address: String,
    /// The address the client gave in RCPT TO, for Delivered-To and DSNs.
    pub original: String,
    pub local: bool,
    /// RFC 3461 NOTIFY as the client gave it; `None`: not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<dsn::Notify>,
    /// RFC 3461 ORCPT: the rfc822 address, xtext decoded (smtp-proto takes the type off),
    /// passed on and quoted in DSNs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
}

/// The envelope stored in front of the message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    /// Reverse path; empty for bounces (`MAIL FROM:<>`).
    pub mail_from: String,
    pub recipients: Vec<QueuedRecipient>,
    pub received_at: i64,
    pub client_ip: String,
    pub helo: String,
    pub smtputf8: bool,
    pub eight_bit: bool,
    /// Failed attempts so far (the retry schedule's position), kept across restarts.
    #[serde(default)]
    pub attempts: u32,
    /// Unix time before which the next attempt must not start (0 = at once), so a restart
    /// does not retry early.
    #[serde(default)]
    pub next_attempt: i64,
    /// W3C `traceparent` of the span that accepted the message, so every delivery attempt
    /// joins the message's trace (absent when traces are off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// RFC 3461 RET: how much of the message a failure DSN returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<dsn::Ret>,
    /// RFC 3461 ENVID (decoded), passed on and quoted in DSNs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// A delay warning was sent (one per message).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warned: bool,
}

/// One replica's queue directory plus the channel that wakes its runner.
#[derive(Clone)]
pub struct Queue {
    dir: PathBuf,
    wake: mpsc::UnboundedSender<String>,
    /// Exclusive lock on the directory, held for the life of the process: two processes with
    /// the same node id (a restarted pod whose predecessor is still draining, or a
    /// misconfiguration) must never run one queue at once.
    _lock: Arc<std::fs::File>,
}

impl Queue {
    /// Opens (creating) `spool/queue/<node_id>`; the receiver wakes the runner for new ids.
    pub fn open(
        spool: &Path,
        node_id: &str,
    ) -> Result<(Queue, mpsc::UnboundedReceiver<String>), QueueError> {
        let dir = spool.join("queue").join(node_id);
        postbay_store::fs::create_dir_durably(&dir)?;
        let lock_path = dir.join(".lock");
        let io = |source| QueueError::Io {
            path: lock_path.clone(),
            source,
        };
        let lock = open_lock(&dir).map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::warn!(
                    node_id,
                    "queue is locked by another process of this node; waiting for it to exit"
                );
                lock.lock().map_err(io)?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // Under the lock and before this process can write, so no write in flight can be
        // mistaken for a leftover (the runner's first scan once raced new sessions).
        remove_unacknowledged(&dir);
        let (wake, rx) = mpsc::unbounded_channel();
        Ok((
            Queue {
                dir,
                wake,
                _lock: Arc::new(lock),
            },
            rx,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn new_id() -> String {
        ulid::Ulid::new().to_string()
    }

    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.msg"))
    }

    /// Writes the message durably; when this returns Ok the message may be acknowledged.
    pub async fn enqueue(
        &self,
        envelope: &Envelope,
        header: Vec<u8>,
        body: Vec<u8>,
    ) -> Result<(), QueueError> {
        let path = self.path_of(&envelope.id);
        let mut line = serde_json::to_vec(envelope).expect("envelope serialises");
        line.push(b'\n');
        tokio::task::spawn_blocking(move || write_file_durably(&path, &[&line, &header, &body]))
            .await
            .map_err(blocking("write"))??;
        let _ = self.wake.send(envelope.id.clone());
        Ok(())
    }

    /// Reads a queued message: its envelope and the message bytes.
    pub async fn load(&self, id: &str) -> Result<(Envelope, Vec<u8>), QueueError> {
        let path = self.path_of(id);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|source| QueueError::Io {
                path: path.clone(),
                source,
            })?;
        parse_queue_file(&path, bytes)
    }

    /// Removes a fully handled message. Not fsync'd: if the unlink is lost in a crash the
    /// message is delivered again, and delivery is idempotent.
    pub async fn remove(&self, id: &str) -> Result<(), QueueError> {
        let path = self.path_of(id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(QueueError::Io { path, source }),
        }
    }

    /// Ids of every message in the directory, oldest first (temporary files of writes in
    /// flight are skipped; [`Queue::open`] removed those of earlier processes).
    pub async fn scan(&self) -> Result<Vec<String>, QueueError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut ids = Vec::new();
            let entries = std::fs::read_dir(&dir).map_err(|source| QueueError::Io {
                path: dir.clone(),
                source,
            })?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some(id) = queued_id(&name) {
                    ids.push(id.to_string());
                }
            }
            ids.sort();
            Ok(ids)
        })
        .await
        .map_err(blocking("scan"))?
    }

    /// Takes in the queues of replicas that are gone (a StatefulSet scaled down leaves
    /// `spool/queue/<its node id>` behind): every sibling directory whose lock nobody holds
    /// has its messages renamed into this queue, where the next scan starts them with their
    /// retry schedule as recorded. An owner that starts again meanwhile waits for the lock
    /// in [`Queue::open`] and finds its directory empty; a live owner holds the lock, so its
    /// queue is never touched. Returns how many messages were taken.
    pub async fn adopt_orphaned(&self) -> Result<usize, QueueError> {
        let own = self.dir.clone();
        tokio::task::spawn_blocking(move || adopt_orphaned(&own))
            .await
            .map_err(blocking("adopt"))?
    }

    /// Moves a message that can never be delivered out of the way, keeping it for an admin.
    pub async fn park(&self, id: &str) -> Result<(), QueueError> {
        let failed = self.dir.join("failed");
        postbay_store::fs::create_dir_durably(&failed)?;
        let from = self.path_of(id);
        let to = failed.join(format!("{id}.msg"));
        tokio::fs::rename(&from, &to)
            .await
            .map_err(|source| QueueError::Io { path: from, source })
    }
}

/// One message found by [`list_all`].
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The replica whose queue holds it (its directory's name).
    pub node: String,
    /// In `failed/`: parked for an admin, no longer retried.
    pub parked: bool,
    /// Size of the queue file (envelope line included).
    pub size: u64,
    pub envelope: Envelope,
}

/// Every message in every replica's queue under `spool` (read-only; safe beside running
/// replicas: a file delivered meanwhile is simply missing from the list), oldest first.
/// Only each file's envelope line is read.
pub fn list_all(spool: &Path) -> Result<Vec<Listed>, QueueError> {
    use std::io::{BufRead, Read};
    let root = spool.join("queue");
    let mut out = Vec::new();
    let Ok(nodes) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    for node in nodes.flatten() {
        if !node.path().is_dir() {
            continue;
        }
        let name = node.file_name().to_string_lossy().to_string();
        for (dir, parked) in [(node.path(), false), (node.path().join("failed"), true)] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file_name = entry.file_name().to_string_lossy().to_string();
                if queued_id(&file_name).is_none() {
                    continue;
                }
                let path = entry.path();
                let Ok(file) = std::fs::File::open(&path) else {
                    continue; // delivered and removed since the listing
                };
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                let mut line = Vec::new();
                std::io::BufReader::new(file)
                    .take(1 << 20)
                    .read_until(b'\n', &mut line)
                    .map_err(|source| QueueError::Io {
                        path: path.clone(),
                        source,
                    })?;
                let envelope: Envelope = match serde_json::from_slice(&line) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "unreadable queue file");
                        continue;
                    }
                };
                out.push(Listed {
                    node: name.clone(),
                    parked,
                    size,
                    envelope,
                });
            }
        }
    }
    out.sort_by(|a, b| a.envelope.id.cmp(&b.envelope.id));
    Ok(out)
}

/// Whether a live process holds the queue directory `dir` (its owner's lock is taken).
pub fn owner_running(dir: &Path) -> bool {
    match open_lock(dir) {
        Ok(lock) => matches!(lock.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// Puts a parked message (`failed/<id>.msg`) of the queue in `dir` back in the queue, where
/// its owner's next scan starts it. Parked messages are never touched by a runner, so an
/// admin may move them while the owner runs.
pub fn unpark(dir: &Path, id: &str) -> Result<(), QueueError> {
    let from = dir.join("failed").join(format!("{id}.msg"));
    let to = dir.join(format!("{id}.msg"));
    std::fs::rename(&from, &to).map_err(|source| QueueError::Io { path: from, source })?;
    postbay_store::fs::sync_dir(dir)?;
    Ok(())
}

/// The path of a message in the queue under `spool` (as [`list_all`] found it).
pub fn file_of(spool: &Path, listed: &Listed) -> PathBuf {
    let dir = spool.join("queue").join(&listed.node);
    let dir = if listed.parked {
        dir.join("failed")
    } else {
        dir
    };
    dir.join(format!("{}.msg", listed.envelope.id))
}

/// The lock file a queue directory's owner holds for its whole life.
fn open_lock(dir: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
}

/// Removes the temporary files of writes that crashed before their rename: never
/// acknowledged, so nothing is lost. Call only with the directory's lock held.
fn remove_unacknowledged(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn adopt_orphaned(own: &Path) -> Result<usize, QueueError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| QueueError::Io { path, source }
    };
    let Some(parent) = own.parent() else {
        return Ok(0);
    };
    let mut adopted = 0;
    for entry in std::fs::read_dir(parent).map_err(io(parent))?.flatten() {
        let dir = entry.path();
        if dir == own || !dir.is_dir() {
            continue;
        }
        let Ok(lock) = open_lock(&dir) else {
            continue;
        };
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot lock a sibling queue");
                continue;
            }
        }
        remove_unacknowledged(&dir);
        let mut moved = 0;
        for file in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            let name = file.file_name().to_string_lossy().to_string();
            if queued_id(&name).is_none() {
                continue;
            }
            let to = own.join(&name);
            if to.exists() {
                continue;
            }
            std::fs::rename(file.path(), &to).map_err(io(&file.path()))?;
            moved += 1;
        }
        // Admin requests follow their messages.
        if let Ok(pending) = std::fs::read_dir(dir.join("requests")) {
            let into = own.join("requests");
            postbay_store::fs::create_dir_durably(&into)?;
            for request in pending.flatten() {
                let _ = std::fs::rename(request.path(), into.join(request.file_name()));
            }
        }
        if moved > 0 {
            // Both directory entries durable before the lock is let go.
            postbay_store::fs::sync_dir(own)?;
            let _ = postbay_store::fs::sync_dir(&dir);
            tracing::info!(from = %dir.display(), messages = moved, "adopted the queue of a replica that is gone");
        }
        adopted += moved;
        drop(lock);
    }
    Ok(adopted)
}

/// The message id a directory entry stands for, if it is a finished queue file. A write in
/// flight (`.tmp-<id>.msg`, from an enqueue or a partial-delivery rewrite) also ends in
/// `.msg`; taking it for a message would deliver a second copy from a half-written file.
fn queued_id(name: &str) -> Option<&str> {
    let id = name.strip_suffix(".msg")?;
    (!id.is_empty() && !id.starts_with('.')).then_some(id)
}

fn parse_queue_file(path: &Path, bytes: Vec<u8>) -> Result<(Envelope, Vec<u8>), QueueError> {
    let corrupt = |reason: String| QueueError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| corrupt("no envelope line".into()))?;
    let envelope: Envelope =
        serde_json::from_slice(&bytes[..newline]).map_err(|e| corrupt(e.to_string()))?;
    let message = bytes[newline + 1..].to_vec();
    Ok((envelope, message))
}

#[cfg(test)]
mod tests {
    use super::queued_id;

    #[test]
    fn writes_in_flight_are_not_messages() {
        assert_eq!(queued_id("01J0ABC.msg"), Some("01J0ABC"));
        assert_eq!(queued_id(".tmp-01J0ABC.msg"), None);
        assert_eq!(queued_id(".lock"), None);
        assert_eq!(queued_id(".msg"), None);
        assert_eq!(queued_id("failed"), None);
    }
}
