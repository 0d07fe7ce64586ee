//! The maildrop: a snapshot of the INBOX taken at login (RFC 1939 §8 lets the server
//! present a fixed view), with per-session deletion marks that reach the store only in the
//! UPDATE state.
//!
//! Instead of RFC 1939's exclusive lock, sessions share the folder: mail arriving later is
//! shown at the next login, and a message expunged by someone else (another POP3 session,
//! IMAP) is reported missing when fetched. Two sessions deleting the same message both
//! succeed: [`Store::expunge`] skips UIDs that are already gone.
//!
//! # Unique ids
//!
//! UIDL answers `<uidvalidity>.<uid>` in decimal, e.g. `1732838400.17`: the INBOX's IMAP
//! UIDVALIDITY and the message's IMAP UID. UIDs are never reused within a UIDVALIDITY and a
//! re-created INBOX gets a larger UIDVALIDITY, so an id never names two messages and stays
//! the same across sessions, replicas and protocols (RFC 1939 §7 asks for at most 70
//! characters in 0x21..0x7E; this is at most 41).

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, PoisonError};

use postbay_store::FlagChange;
use postbay_store::{MessageMeta, Store};

use crate::message;

const SEEN: &str = "\\Seen";

/// One message of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uid: i64,
    pub blob_path: String,
    /// Octets as sent ([`message::wire_size`]).
    pub size: u64,
    pub deleted: bool,
    /// Fetched with RETR in this session; gets `\Seen` at UPDATE, as IMAP would show it.
    pub retrieved: bool,
    seen: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("no such message")]
    NoSuchMessage,
    #[error("message already deleted")]
    Deleted,
}

#[derive(Debug, thiserror::Error)]
pub enum MaildropError {
    #[error("store error: {0}")]
    Store(#[from] postbay_store::Error),
    #[error("mailbox has no INBOX")]
    NoInbox,
    #[error("reading {path}: {source}")]
    Blob {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("sizing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Debug)]
pub struct Maildrop {
    pub folder_id: i64,
    uidvalidity: i64,
    entries: Vec<Entry>,
}

impl Maildrop {
    /// Takes the snapshot of `mailbox_id`'s INBOX. Each blob not in `sizes` is read once to
    /// learn its size as sent (the stored size may count bare LFs); a blob already gone
    /// belongs to a message expunged meanwhile and is left out.
    pub async fn open(
        store: &Store,
        mailbox_id: i64,
        sizes: &SizeCache,
    ) -> Result<Maildrop, MaildropError> {
        let folder = store
            .folder(mailbox_id, "INBOX")
            .await?
            .ok_or(MaildropError::NoInbox)?;
        let messages = store.messages(folder.id).await?;
        let known = sizes.lookup(&messages);
        let blobs = store.blobs().clone();
        let entries =
            tokio::task::spawn_blocking(move || size_all(&blobs, messages, known)).await??;
        sizes.remember(&entries);
        Ok(Maildrop {
            folder_id: folder.id,
            uidvalidity: folder.uidvalidity,
            entries,
        })
    }

    /// Messages not marked deleted, and their total size (STAT, RFC 1939 §5).
    pub fn stat(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(n, size), (_, e)| (n + 1, size + e.size))
    }

    /// Messages not marked deleted, with their 1-based numbers.
    pub fn live(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.deleted)
            .map(|(i, e)| (i + 1, e))
    }

    /// Message `n` (1-based), unless it does not exist or is marked deleted.
    pub fn get(&self, n: u32) -> Result<&Entry, Missing> {
        let entry = (n as usize)
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .ok_or(Missing::NoSuchMessage)?;
        if entry.deleted {
            return Err(Missing::Deleted);
        }
        Ok(entry)
    }

    pub fn delete(&mut self, n: u32) -> Result<(), Missing> {
        self.get(n)?;
        self.entries[n as usize - 1].deleted = true;
        Ok(())
    }

    pub fn mark_retrieved(&mut self, n: u32) {
        if let Some(e) = (n as usize)
            .checked_sub(1)
            .and_then(|i| self.entries.get_mut(i))
        {
            e.retrieved = true;
        }
    }

    /// RSET (RFC 1939 §5): unmark everything.
    pub fn reset(&mut self) {
        for e in &mut self.entries {
            e.deleted = false;
        }
    }

    /// The unique-id listing value; see the module docs.
    pub fn unique_id(&self, entry: &Entry) -> String {
        format!("{}.{}", self.uidvalidity, entry.uid)
    }

    /// The UPDATE state (RFC 1939 §6): marks retrieved messages `\Seen`, then expunges the
    /// deleted ones. Returns how many messages remain in the snapshot's view.
    pub async fn commit(&self, store: &Store) -> Result<usize, postbay_store::Error> {
        let newly_seen: Vec<i64> = self
            .entries
            .iter()
            .filter(|e| e.retrieved && !e.deleted && !e.seen)
            .map(|e| e.uid)
            .collect();
        if !newly_seen.is_empty() {
            // Cosmetic for IMAP users; never a reason to keep deleted mail.
            if let Err(e) = store
                .update_flags(
                    self.folder_id,
                    &newly_seen,
                    FlagChange::Add,
                    &[SEEN.to_string()],
                )
                .await
            {
                tracing::warn!(error = %e, "could not mark retrieved messages \\Seen");
            }
        }
        let deleted: Vec<i64> = self
            .entries
            .iter()
            .filter(|e| e.deleted)
            .map(|e| e.uid)
            .collect();
        store.expunge(self.folder_id, &deleted).await?;
        Ok(self.entries.len() - deleted.len())
    }
}

/// Sizes as sent, by blob path. A blob never changes once written, so an entry never goes
/// stale, and a client polling every few minutes does not make us re-read its whole INBOX
/// at each login. Per process and bounded: when full, it starts over.
#[derive(Debug, Default)]
pub struct SizeCache {
    sizes: Mutex<HashMap<String, u64>>,
}

/// About 30 MiB of paths at most.
const MAX_CACHED_SIZES: usize = 200_000;

impl SizeCache {
    fn lookup(&self, messages: &[MessageMeta]) -> Vec<Option<u64>> {
        let sizes = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
        messages
            .iter()
            .map(|m| sizes.get(&m.blob_path).copied())
            .collect()
    }

    fn remember(&self, entries: &[Entry]) {
        let mut sizes = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
        for e in entries {
            if !sizes.contains_key(&e.blob_path) {
                if sizes.len() >= MAX_CACHED_SIZES {
                    sizes.clear();
                }
                sizes.insert(e.blob_path.clone(), e.size);
            }
        }
    }
}

fn size_all(
    blobs: &postbay_store::blobs::BlobStore,
    messages: Vec<MessageMeta>,
    known: Vec<Option<u64>>,
) -> Result<Vec<Entry>, MaildropError> {
    let mut entries = Vec::with_capacity(messages.len());
    for (m, known) in messages.into_iter().zip(known) {
        let size = match known {
            Some(size) => size,
            None => match std::fs::read(blobs.path(&m.blob_path)) {
                Ok(bytes) => message::wire_size(&bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::debug!(uid = m.uid, "message vanished while opening the maildrop");
                    continue;
                }
                Err(source) => {
                    return Err(MaildropError::Blob {
                        path: m.blob_path,
                        source,
                    })
                }
            },
        };
        entries.push(Entry {
            uid: m.uid,
            size,
            seen: m.flags.iter().any(|f| f.eq_ignore_ascii_case(SEEN)),
            blob_path: m.blob_path,
            deleted: false,
            retrieved: false,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop3() -> Maildrop {
        let entry = |uid: i64, size: u64| Entry {
            uid,
            blob_path: format!("x/{uid}.eml"),
            size,
            deleted: false,
            retrieved: false,
            seen: false,
        };
        Maildrop {
            folder_id: 7,
            uidvalidity: 1700000000,
            entries: vec![entry(3, 100), entry(5, 20), entry(9, 3)],
        }
    }

    #[test]
    fn numbering_deletion_and_reset() {
        let mut m = drop3();
        assert_eq!(m.stat(), (3, 123));
        assert_eq!(m.get(0), Err(Missing::NoSuchMessage));
        assert_eq!(m.get(4), Err(Missing::NoSuchMessage));
        assert_eq!(m.get(u32::MAX), Err(Missing::NoSuchMessage));
        assert_eq!(m.unique_id(m.get(2).unwrap()), "1700000000.5");
        m.delete(2).unwrap();
        assert_eq!(m.delete(2), Err(Missing::Deleted));
        assert_eq!(m.get(2), Err(Missing::Deleted));
        assert_eq!(m.stat(), (2, 103));
        // Numbers do not shift after a deletion (RFC 1939 §5).
        let numbers: Vec<usize> = m.live().map(|(n, _)| n).collect();
        assert_eq!(numbers, [1, 3]);
        m.reset();
        assert_eq!(m.stat(), (3, 123));
    }
}
