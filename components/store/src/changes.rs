//! Which folders changed, without asking the database on every IMAP command.
//!
//! Each process keeps, for every folder some session has selected, the highest modseq it
//! knows of. Writes through this process raise it as they commit; one poller per process
//! reads the watched folders' `highest_modseq` in a single query every interval, which is
//! how changes made by other replicas arrive. Sessions compare their own position with it
//! and only read changed rows when it moved; IDLE waits on it instead of polling. Thousands
//! of idle sessions therefore cost one query per interval, not one each.
//!
//! Mailboxes are watched the same way for IMAP NOTIFY (RFC 5465 §5.4, §5.5): a mailbox's
//! `list_version` (migration 0011) moves with every CREATE, DELETE, RENAME, SUBSCRIBE and
//! UNSUBSCRIBE, and the same poller reads the watched mailboxes' versions in one query.

use std::collections::HashMap;

use crate::{lock, Store};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;

/// What a process knows of a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Every change up to this modseq has committed.
    At(i64),
    /// The folder was deleted.
    Gone,
}

struct Watched {
    watchers: usize,
    tx: watch::Sender<Version>,
}

/// What a watch follows: a folder's modseq, or a mailbox's list version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Folder,
    List,
}

#[derive(Default)]
struct Inner {
    folders: Mutex<HashMap<i64, Watched>>,
    /// Mailboxes (by id) whose list version some session follows.
    lists: Mutex<HashMap<i64, Watched>>,
    poller_started: AtomicBool,
    poll_interval_ms: AtomicU64,
}

/// The per-process registry; shared by all clones of a [`crate::Store`].
#[derive(Clone, Default)]
pub(crate) struct ChangeFeed {
    inner: Arc<Inner>,
}

impl ChangeFeed {
    pub(crate) fn new() -> ChangeFeed {
        let feed = ChangeFeed::default();
        feed.set_poll_interval(Duration::from_millis(500));
        feed
    }

    pub(crate) fn set_poll_interval(&self, interval: Duration) {
        let ms = interval.as_millis().clamp(10, u64::MAX as u128) as u64;
        self.inner.poll_interval_ms.store(ms, Ordering::Relaxed);
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.inner.poll_interval_ms.load(Ordering::Relaxed))
    }

    /// Registers interest in `folder_id`, known to be at `modseq` (read in the caller's
    /// snapshot); a later value already known wins.
    pub(crate) fn watch(&self, folder_id: i64, modseq: i64) -> FolderWatch {
        self.watch_kind(Kind::Folder, folder_id, modseq)
    }

    fn map(&self, kind: Kind) -> &Mutex<HashMap<i64, Watched>> {
        map_of(&self.inner, kind)
    }

    fn watch_kind(&self, kind: Kind, id: i64, modseq: i64) -> FolderWatch {
        let mut folders = lock(self.map(kind));
        let entry = folders.entry(id).or_insert_with(|| Watched {
            watchers: 0,
            tx: watch::channel(Version::At(modseq)).0,
        });
        entry.watchers += 1;
        raise(&entry.tx, Version::At(modseq));
        FolderWatch {
            feed: Arc::downgrade(&self.inner),
            kind,
            folder_id: id,
            rx: entry.tx.subscribe(),
        }
    }

    /// A write through this process committed list version `version` of `mailbox_id`.
    pub(crate) fn list_committed(&self, mailbox_id: i64, version: i64) {
        if let Some(w) = lock(&self.inner.lists).get(&mailbox_id) {
            raise(&w.tx, Version::At(version));
        }
    }

    /// A write through this process committed `modseq` in `folder_id`.
    pub(crate) fn committed(&self, folder_id: i64, modseq: i64) {
        if let Some(w) = lock(&self.inner.folders).get(&folder_id) {
            raise(&w.tx, Version::At(modseq));
        }
    }

    /// `folder_id` was deleted through this process.
    pub(crate) fn gone(&self, folder_id: i64) {
        if let Some(w) = lock(&self.inner.folders).get(&folder_id) {
            raise(&w.tx, Version::Gone);
        }
    }

    fn watched_ids(&self, kind: Kind) -> Vec<i64> {
        lock(self.map(kind)).keys().copied().collect()
    }

    /// Starts the poller once per process (it stops when the last store handle is gone).
    pub(crate) fn ensure_poller(&self, readers: &crate::db::readers::Readers) {
        if self.inner.poller_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.poller_started.store(false, Ordering::Release);
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let readers = readers.clone();
        runtime.spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let feed = ChangeFeed { inner };
                let interval = feed.poll_interval();
                if let Err(e) = feed.poll_once(&readers).await {
                    tracing::warn!(error = %e, "polling folder changes failed");
                }
                drop(feed);
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// Reads every watched folder's modseq and every watched mailbox's list version (one
    /// query each, none when nothing of the kind is watched) and publishes what moved.
    pub(crate) async fn poll_once(
        &self,
        readers: &crate::db::readers::Readers,
    ) -> crate::Result<()> {
        self.poll_kind(readers, Kind::Folder).await?;
        self.poll_kind(readers, Kind::List).await
    }

    async fn poll_kind(
        &self,
        readers: &crate::db::readers::Readers,
        kind: Kind,
    ) -> crate::Result<()> {
        let ids = self.watched_ids(kind);
        let (table, column) = match kind {
            Kind::Folder => ("folders", "highest_modseq"),
            Kind::List => ("mailboxes", "list_version"),
        };
        for chunk in ids.chunks(crate::IN_LIST_CHUNK) {
            let sql = format!(
                "SELECT id, {column} AS v FROM {table} WHERE id IN ({})",
                crate::placeholders(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(&mut *readers.get().await?).await?;
            let found: HashMap<i64, i64> = rows.iter().map(|r| (r.get("id"), r.get("v"))).collect();
            let folders = lock(self.map(kind));
            for id in chunk {
                if let Some(w) = folders.get(id) {
                    let version = found.get(id).map_or(Version::Gone, |m| Version::At(*m));
                    raise(&w.tx, version);
                }
            }
        }
        Ok(())
    }
}

/// Moves a folder's version forward only: modseqs never go back, and Gone is final.
fn raise(tx: &watch::Sender<Version>, new: Version) {
    tx.send_if_modified(|current| match (*current, new) {
        (Version::Gone, _) => false,
        (Version::At(_), Version::Gone) => {
            *current = Version::Gone;
            true
        }
        (Version::At(old), Version::At(m)) if m > old => {
            *current = Version::At(m);
            true
        }
        _ => false,
    });
}

fn map_of(inner: &Inner, kind: Kind) -> &Mutex<HashMap<i64, Watched>> {
    match kind {
        Kind::Folder => &inner.folders,
        Kind::List => &inner.lists,
    }
}

/// A session's handle on one folder's version (or one mailbox's list version, from
/// [`Store::watch_list`]); dropping it ends the interest.
pub struct FolderWatch {
    feed: Weak<Inner>,
    kind: Kind,
    folder_id: i64,
    rx: watch::Receiver<Version>,
}

impl FolderWatch {
    /// A watch fed by nobody, fixed at `modseq`: for code paths (and tests) without a store.
    pub fn detached(modseq: i64) -> FolderWatch {
        FolderWatch {
            feed: Weak::new(),
            kind: Kind::Folder,
            folder_id: 0,
            rx: watch::channel(Version::At(modseq)).1,
        }
    }

    pub fn folder_id(&self) -> i64 {
        self.folder_id
    }

    /// The newest version this process knows of; [`FolderWatch::changed`] waits for a
    /// newer one than this.
    pub fn current(&mut self) -> Version {
        *self.rx.borrow_and_update()
    }

    /// Waits until the version moves past what [`FolderWatch::current`] last returned.
    /// Never returns for a detached watch.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for FolderWatch {
    fn drop(&mut self) {
        let Some(inner) = self.feed.upgrade() else {
            return;
        };
        let mut folders = lock(map_of(&inner, self.kind));
        if let Some(w) = folders.get_mut(&self.folder_id) {
            w.watchers -= 1;
            if w.watchers == 0 {
                folders.remove(&self.folder_id);
            }
        }
    }
}

impl std::fmt::Debug for FolderWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderWatch")
            .field("kind", &self.kind)
            .field("folder_id", &self.folder_id)
            .field("version", &*self.rx.borrow())
            .finish()
    }
}

impl Store {
    /// Follows the folder's modseq as this process learns of changes (local commits at
    /// once, other replicas' through the poller); `modseq` is where the caller's snapshot stands.
    pub fn watch_folder(&self, folder_id: i64, modseq: i64) -> FolderWatch {
        self.changes.ensure_poller(&self.readers);
        self.changes.watch(folder_id, modseq)
    }

    /// Follows the list version of `mailbox_id` (RFC 5465 §5.4, §5.5: its folders and
    /// subscriptions), known to be at `version` ([`Store::list_version`]); it moves with
    /// every CREATE, DELETE, RENAME, SUBSCRIBE and UNSUBSCRIBE on any replica, and reads as
    /// [`Version::Gone`] once the mailbox is deleted.
    pub fn watch_list(&self, mailbox_id: i64, version: i64) -> FolderWatch {
        self.changes.ensure_poller(&self.readers);
        self.changes.watch_kind(Kind::List, mailbox_id, version)
    }

    /// The mailbox's current list version.
    pub async fn list_version(&self, mailbox_id: i64) -> crate::Result<i64> {
        let row = sqlx::query("SELECT list_version FROM mailboxes WHERE id = ?")
            .bind(mailbox_id)
            .fetch_optional(&mut *self.reader().await?)
            .await?
            .ok_or_else(|| crate::Error::NoSuchMailbox(mailbox_id.to_string()))?;
        Ok(row.get("list_version"))
    }

    /// How often this process reads the modseqs of watched folders, which bounds how late
    /// it notices changes made by other replicas.
    pub fn set_change_poll_interval(&self, interval: std::time::Duration) {
        self.changes.set_poll_interval(interval);
    }

    /// Publishes the current modseq of every watched folder now (tests; the poller does
    /// this every interval).
    pub async fn poll_changes(&self) -> crate::Result<()> {
        self.changes.poll_once(&self.readers).await
    }
}

/// Within a transaction that changes a mailbox's folders or subscriptions: raises its list
/// version (which also takes the mailbox row's lock, first, as the other writes of a
/// mailbox's list do) and returns the new value, to publish once committed.
pub(crate) async fn bump_list_version(
    tx: &mut crate::db::write::WriteTx,
    mailbox_id: i64,
) -> crate::Result<i64> {
    sqlx::query("UPDATE mailboxes SET list_version = list_version + 1 WHERE id = ?")
        .bind(mailbox_id)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query("SELECT list_version FROM mailboxes WHERE id = ?")
        .bind(mailbox_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| crate::Error::NoSuchMailbox(mailbox_id.to_string()))?;
    Ok(row.get("list_version"))
}
