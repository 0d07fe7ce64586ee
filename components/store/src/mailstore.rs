//! Mailbox metadata: folders with their UID counters, and one row per message.
//!
//! UID allocation is the heart of replica safety. A delivery increments the folder's
//! `uidnext` and `highest_modseq` with an `UPDATE` as the first statement of its transaction,
//! which takes the row lock in MariaDB and the write lock in SQLite; the new message row is
//! inserted before commit. Two replicas delivering into the same folder therefore serialise
//! on that row and can never hand out the same UID, and a UID is never reused because
//! `uidnext` only grows. A `delivery_key` (queue id + recipient) with a unique index makes a
//! retried delivery a no-op instead of a duplicate.

use sqlx::Row;

use crate::blobs::bytes_owned::Part;
use crate::db::batch::{Arg, Batch};
use crate::db::write::WriteTx;
use crate::directory::DEFAULT_FOLDERS;
use crate::{now_unix, Backend, Durability, Error, Result, Store, BATCH_ROWS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    pub id: i64,
    pub mailbox_id: i64,
    pub name: String,
    pub special_use: Option<String>,
    pub subscribed: bool,
    pub uidvalidity: i64,
    pub uidnext: i64,
    pub highest_modseq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub id: i64,
    pub uid: i64,
    pub modseq: i64,
    pub blob_path: String,
    pub size: i64,
    pub internal_date: i64,
    pub flags: Vec<String>,
}

/// Outcome of a delivery into a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub uid: i64,
    pub uidvalidity: i64,
    /// The folder's modseq this delivery committed (0 for a duplicate).
    pub modseq: i64,
    /// The same delivery key had already been stored: nothing new was written.
    pub duplicate: bool,
}

/// A message to store: its bytes (in parts), arrival time, initial flags and idempotency key.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub parts: Vec<Part>,
    pub internal_date: i64,
    pub flags: Vec<String>,
    pub delivery_key: Option<String>,
}

impl NewMessage {
    pub fn size(&self) -> i64 {
        self.parts.iter().map(|p| p.as_slice().len() as i64).sum()
    }

    /// The header section (through the blank line that ends it), for the header cache;
    /// `None` if it is longer than [`HEADER_CACHE_MAX`]. A message without a body is all
    /// header.
    pub fn header(&self) -> Option<Vec<u8>> {
        let mut header = Vec::new();
        for part in &self.parts {
            // Never more than the cache takes (plus the blank line): a 50 MB body is not copied.
            let room = (HEADER_CACHE_MAX + 4).saturating_sub(header.len());
            let bytes = &part.as_slice()[..part.as_slice().len().min(room)];
            // Search from a little before the join, where "\r\n\r\n" may straddle parts.
            let from = header.len().saturating_sub(3);
            header.extend_from_slice(bytes);
            if let Some(at) = find_blank_line(&header[from..]) {
                header.truncate(from + at + 4);
                return (header.len() <= HEADER_CACHE_MAX).then_some(header);
            }
            if header.len() > HEADER_CACHE_MAX {
                return None;
            }
        }
        Some(header)
    }
}

/// Longest header section kept in the header cache; longer ones are read from the blob.
pub const HEADER_CACHE_MAX: usize = 16 * 1024;

fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

/// A folder's counters right after [`bump_folder`] moved them, read under its lock.
pub(crate) struct Bumped {
    pub uidnext: i64,
    pub modseq: i64,
    pub uidvalidity: i64,
    pub mailbox_id: i64,
    pub name: String,
}

/// The first statement of every transaction that changes a folder: reserves `new_uids` UIDs
/// and one modseq, which takes the folder's row lock (MariaDB) or the write lock (SQLite)
/// before anything is read, and returns the counters after the change. SQLite answers in
/// the same statement (`RETURNING`); MariaDB, which has no `UPDATE … RETURNING`, reads the
/// row it now holds locked.
pub(crate) async fn bump_folder(
    tx: &mut WriteTx,
    backend: Backend,
    folder_id: i64,
    new_uids: i64,
) -> Result<Bumped> {
    const BUMP: &str =
        "UPDATE folders SET uidnext = uidnext + ?, highest_modseq = highest_modseq + 1 WHERE id = ?";
    const COUNTERS: &str = "uidnext, highest_modseq, uidvalidity, mailbox_id, name";
    let row = match backend {
        Backend::Sqlite => {
            sqlx::query(&format!("{BUMP} RETURNING {COUNTERS}"))
                .bind(new_uids)
                .bind(folder_id)
                .fetch_optional(&mut **tx)
                .await?
        }
        Backend::MySql => {
            sqlx::query(BUMP)
                .bind(new_uids)
                .bind(folder_id)
                .execute(&mut **tx)
                .await?;
            sqlx::query(&format!("SELECT {COUNTERS} FROM folders WHERE id = ?"))
                .bind(folder_id)
                .fetch_optional(&mut **tx)
                .await?
        }
    };
    let row = row.ok_or_else(|| Error::NoSuchFolder(folder_id.to_string()))?;
    Ok(Bumped {
        uidnext: row.get("uidnext"),
        modseq: row.get("highest_modseq"),
        uidvalidity: row.get("uidvalidity"),
        mailbox_id: row.get("mailbox_id"),
        name: row.get("name"),
    })
}

/// The message row a delivery inserts, once its blob is written.
struct NewRow<'a> {
    blob_path: &'a str,
    size: i64,
    header: Option<Vec<u8>>,
    flags: &'a [String],
    internal_date: i64,
    delivery_key: Option<&'a str>,
}

pub(crate) const FOLDER_COLUMNS: &str =
    "id, mailbox_id, name, special_use, subscribed, uidvalidity, uidnext, highest_modseq";

impl Store {
    pub(crate) async fn ensure_default_folders(&self, mailbox_id: i64) -> Result<()> {
        for (name, special_use) in DEFAULT_FOLDERS {
            if self.folder(mailbox_id, name).await?.is_none() {
                match self.create_folder(mailbox_id, name, *special_use).await {
                    Ok(_) | Err(Error::FolderExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    pub async fn create_folder(
        &self,
        mailbox_id: i64,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<FolderInfo> {
        let result = sqlx::query(
            "INSERT INTO folders (mailbox_id, name, special_use, subscribed, uidvalidity, uidnext, highest_modseq) \
             VALUES (?, ?, ?, 1, ?, 1, 1)",
        )
        .bind(mailbox_id)
        .bind(name)
        .bind(special_use)
        .bind(now_unix())
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Error::FolderExists(name.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
        self.folder(mailbox_id, name)
            .await?
            .ok_or_else(|| Error::NoSuchFolder(name.to_string()))
    }

    pub async fn folder(&self, mailbox_id: i64, name: &str) -> Result<Option<FolderInfo>> {
        let row = sqlx::query(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE mailbox_id = ? AND name = ?"
        ))
        .bind(mailbox_id)
        .bind(name)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(row.map(|r| folder_from_row(&r)))
    }

    pub async fn folders(&self, mailbox_id: i64) -> Result<Vec<FolderInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE mailbox_id = ? ORDER BY name"
        ))
        .bind(mailbox_id)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        Ok(rows.iter().map(folder_from_row).collect())
    }

    /// Stores a message into `folder` of the mailbox `address`: blob first (durable), then the
    /// metadata row in one transaction that allocates the UID and charges the quota.
    pub async fn deliver(
        &self,
        address: &str,
        folder: &str,
        message: NewMessage,
    ) -> Result<Delivered> {
        let (mailbox, folder_info) = self.mailbox_and_folder(address, folder).await?;
        let size = message.size();
        // A retried delivery (same key) is normally caught here without touching the
        // volume; a race between two replicas is caught by the unique index below.
        if let Some(key) = &message.delivery_key {
            if let Some(uid) = self.uid_for_delivery_key(folder_info.id, key).await? {
                return Ok(Delivered {
                    uid,
                    uidvalidity: folder_info.uidvalidity,
                    modseq: 0,
                    duplicate: true,
                });
            }
        }
        if mailbox.quota_bytes > 0 && mailbox.used_bytes + size > mailbox.quota_bytes {
            return Err(over_quota(&mailbox, size));
        }
        let target = Target {
            mailbox_id: mailbox.id,
            home: &mailbox.home,
            folder: &folder_info,
        };
        match self.deliver_to(&target, message).await {
            Err(Refused::OverQuota) => Err(over_quota(&mailbox, size)),
            Err(Refused::Store(e)) => Err(e),
            Ok(delivered) => Ok(delivered),
        }
    }

    /// [`Store::deliver`] into a folder the caller has already looked up: an IMAP session
    /// appending to the folder it has selected saves the lookup. What the caller knows may
    /// be stale, which is harmless: the quota and the folder's existence are checked by
    /// the inserting transaction, and a refusal reports the mailbox's current usage.
    pub async fn deliver_known(
        &self,
        mailbox_id: i64,
        home: &str,
        folder: &FolderInfo,
        message: NewMessage,
    ) -> Result<Delivered> {
        let size = message.size();
        let target = Target {
            mailbox_id,
            home,
            folder,
        };
        match self.deliver_to(&target, message).await {
            Err(Refused::OverQuota) => {
                let row = sqlx::query(
                    "SELECT id, address, domain, local_part, password_hash, quota_bytes, used_bytes, \
                     enabled, home, owner FROM mailboxes WHERE id = ?",
                )
                .bind(mailbox_id)
                .fetch_optional(&mut *self.reader().await?)
                .await?
                .ok_or_else(|| Error::NoSuchMailbox(format!("mailbox #{mailbox_id}")))?;
                Err(over_quota(&crate::directory::mailbox_from_row(&row), size))
            }
            Err(Refused::Store(e)) => Err(e),
            Ok(delivered) => Ok(delivered),
        }
    }

    /// Writes the blob, then the row; removes the blob again if the row is refused.
    async fn deliver_to(
        &self,
        target: &Target<'_>,
        message: NewMessage,
    ) -> std::result::Result<Delivered, Refused> {
        let (mailbox_id, folder_info) = (target.mailbox_id, target.folder);
        let size = message.size();
        let header = message.header();
        let blob_path = self.blobs.write(target.home, message.parts).await?;
        tracing::debug!(
            blob_path,
            key = message.delivery_key.as_deref(),
            "blob written"
        );
        match self
            .insert_message_row(
                mailbox_id,
                folder_info,
                &NewRow {
                    blob_path: &blob_path,
                    size,
                    header,
                    flags: &message.flags,
                    internal_date: message.internal_date,
                    delivery_key: message.delivery_key.as_deref(),
                },
            )
            .await
        {
            Ok(delivered) => Ok(delivered),
            Err(e) => {
                // The row never committed: the blob is unreachable, remove it.
                if let Err(cleanup) = self.blobs.remove(&blob_path).await {
                    tracing::warn!(%cleanup, blob_path, "could not remove orphan blob");
                }
                match (e, message.delivery_key) {
                    (InsertError::DuplicateKey, Some(key)) => {
                        let uid = self
                            .uid_for_delivery_key(folder_info.id, &key)
                            .await?
                            .unwrap_or(0);
                        Ok(Delivered {
                            uid,
                            uidvalidity: folder_info.uidvalidity,
                            modseq: 0,
                            duplicate: true,
                        })
                    }
                    (InsertError::DuplicateKey, None) => unreachable!("no key, no duplicate"),
                    (InsertError::OverQuota, _) => Err(Refused::OverQuota),
                    (InsertError::Store(e), _) => Err(Refused::Store(e)),
                }
            }
        }
    }

    /// The mailbox row and one of its folders in a single query (the delivery hot path).
    async fn mailbox_and_folder(
        &self,
        address: &str,
        folder: &str,
    ) -> Result<(crate::MailboxRow, FolderInfo)> {
        let address = crate::directory::canonical_address(address);
        let row = sqlx::query(
            "SELECT b.id, b.address, b.domain, b.local_part, b.password_hash, b.quota_bytes, b.used_bytes, b.enabled, \
             b.home, b.owner, f.id AS f_id, f.name AS f_name, f.special_use AS f_special_use, f.subscribed AS f_subscribed, \
             f.uidvalidity AS f_uidvalidity, f.uidnext AS f_uidnext, f.highest_modseq AS f_highest_modseq \
             FROM mailboxes b LEFT JOIN folders f ON f.mailbox_id = b.id AND f.name = ? WHERE b.address = ?",
        )
        .bind(folder)
        .bind(&address)
        .fetch_optional(&mut *self.reader().await?)
        .await?
        .ok_or_else(|| Error::NoSuchMailbox(address.clone()))?;
        let mailbox = crate::directory::mailbox_from_row(&row);
        let folder_id: Option<i64> = row.get("f_id");
        let Some(folder_id) = folder_id else {
            return Err(Error::NoSuchFolder(folder.to_string()));
        };
        let folder = FolderInfo {
            id: folder_id,
            mailbox_id: mailbox.id,
            name: row.get("f_name"),
            special_use: row.get("f_special_use"),
            subscribed: row.get::<i64, _>("f_subscribed") != 0,
            uidvalidity: row.get("f_uidvalidity"),
            uidnext: row.get("f_uidnext"),
            highest_modseq: row.get("f_highest_modseq"),
        };
        Ok((mailbox, folder))
    }

    async fn uid_for_delivery_key(&self, folder_id: i64, key: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT uid FROM messages WHERE folder_id = ? AND delivery_key = ?")
            .bind(folder_id)
            .bind(key)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        Ok(row.map(|r| r.get("uid")))
    }

    async fn insert_message_row(
        &self,
        mailbox_id: i64,
        folder: &FolderInfo,
        row: &NewRow<'_>,
    ) -> Result<Delivered, InsertError> {
        let backend = self.backend;
        if backend == Backend::Sqlite {
            let delivered = self.insert_message_batched(mailbox_id, folder, row).await?;
            self.changes.committed(folder.id, delivered.modseq);
            return Ok(delivered);
        }
        let delivered = self
            .write(Durability::Synced, async |tx| {
                let delivered =
                    Self::insert_message_in(tx, backend, mailbox_id, folder, row).await?;
                tx.commit_in_place().await?;
                Ok::<_, InsertError>(delivered)
            })
            .await?;
        self.changes.committed(folder.id, delivered.modseq);
        Ok(delivered)
    }

    /// [`Store::insert_message_in`] as one SQLite batch: charge the quota (only if the
    /// folder exists), then reserve the UID and modseq, then insert, each step only if the
    /// one before changed its row. Nothing applies when the quota is exceeded.
    async fn insert_message_batched(
        &self,
        mailbox_id: i64,
        folder: &FolderInfo,
        row: &NewRow<'_>,
    ) -> Result<Delivered, InsertError> {
        let mut batch = Batch::transaction();
        batch.push(
            "UPDATE mailboxes SET used_bytes = used_bytes + ? WHERE id = ? \
             AND (quota_bytes = 0 OR used_bytes + ? <= quota_bytes) \
             AND EXISTS (SELECT 1 FROM folders WHERE id = ? AND name = ?)",
            [
                Arg::Int(row.size),
                Arg::Int(mailbox_id),
                Arg::Int(row.size),
                Arg::Int(folder.id),
                Arg::Text(folder.name.clone()),
            ],
        );
        batch.push(
            "UPDATE folders SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1 \
             WHERE id = ? AND changes() = 1",
            [Arg::Int(folder.id)],
        );
        batch.push(
            "INSERT INTO messages (folder_id, uid, modseq, blob_path, size, header, internal_date, flags, delivery_key) \
             SELECT id, uidnext - 1, highest_modseq, ?, ?, ?, ?, ?, ? FROM folders WHERE id = ? AND changes() = 1 \
             RETURNING uid, modseq, (SELECT uidvalidity FROM folders WHERE id = ?) AS uidvalidity",
            [
                Arg::Text(row.blob_path.to_string()),
                Arg::Int(row.size),
                Arg::OptBlob(row.header.clone()),
                Arg::Int(row.internal_date),
                Arg::Text(row.flags.join(" ")),
                Arg::OptText(row.delivery_key.map(str::to_string)),
                Arg::Int(folder.id),
                Arg::Int(folder.id),
            ],
        );
        let rows = match self.write_batch(Durability::Synced, &batch.commit()).await {
            Ok(rows) => rows,
            Err(Error::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                return Err(InsertError::DuplicateKey)
            }
            Err(e) => return Err(e.into()),
        };
        let Some(row) = rows.first() else {
            // Gone, or renamed since the caller looked (it may then look again by name).
            return Err(match self.folder_by_id(folder.id).await? {
                Some(f) if f.name == folder.name => InsertError::OverQuota,
                _ => InsertError::Store(Error::NoSuchFolder(folder.name.clone())),
            });
        };
        Ok(Delivered {
            uid: row.get("uid"),
            uidvalidity: row.get("uidvalidity"),
            modseq: row.get("modseq"),
            duplicate: false,
        })
    }

    async fn insert_message_in(
        tx: &mut WriteTx,
        backend: Backend,
        mailbox_id: i64,
        folder: &FolderInfo,
        row: &NewRow<'_>,
    ) -> Result<Delivered, InsertError> {
        let bumped = bump_folder(tx, backend, folder.id, 1).await?;
        if bumped.name != folder.name {
            // Renamed since the caller looked (it may then look again by name).
            return Err(InsertError::Store(Error::NoSuchFolder(folder.name.clone())));
        }
        let uid = bumped.uidnext - 1;
        let modseq = bumped.modseq;
        let uidvalidity = bumped.uidvalidity;
        let charged = sqlx::query(
            "UPDATE mailboxes SET used_bytes = used_bytes + ? WHERE id = ? AND (quota_bytes = 0 OR used_bytes + ? <= quota_bytes)",
        )
        .bind(row.size)
        .bind(mailbox_id)
        .bind(row.size)
        .execute(&mut **tx)
        .await
        .map_err(Error::from)?;
        if charged.rows_affected() == 0 {
            return Err(InsertError::OverQuota);
        }
        let inserted = sqlx::query(
            "INSERT INTO messages (folder_id, uid, modseq, blob_path, size, header, internal_date, flags, delivery_key) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(folder.id)
        .bind(uid)
        .bind(modseq)
        .bind(row.blob_path)
        .bind(row.size)
        .bind(row.header.as_deref())
        .bind(row.internal_date)
        .bind(row.flags.join(" "))
        .bind(row.delivery_key)
        .execute(&mut **tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(InsertError::DuplicateKey)
            }
            Err(e) => return Err(InsertError::Store(e.into())),
        }
        Ok(Delivered {
            uid,
            uidvalidity,
            modseq,
            duplicate: false,
        })
    }

    /// All messages of a folder in UID order.
    pub async fn messages(&self, folder_id: i64) -> Result<Vec<MessageMeta>> {
        let rows = sqlx::query(
            "SELECT id, uid, modseq, blob_path, size, internal_date, flags FROM messages WHERE folder_id = ? ORDER BY uid",
        )
        .bind(folder_id)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        Ok(rows.iter().map(message_from_row).collect())
    }

    /// Number of messages in a mailbox's folder; a cheap check for tests and benchmarks.
    pub async fn count_messages(&self, address: &str, folder: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages m JOIN folders f ON f.id = m.folder_id \
             JOIN mailboxes b ON b.id = f.mailbox_id WHERE b.address = ? AND f.name = ?",
        )
        .bind(crate::directory::canonical_address(address))
        .bind(folder)
        .fetch_one(&mut *self.reader().await?)
        .await?;
        Ok(row.get("n"))
    }

    /// Total number of stored messages across all mailboxes.
    pub async fn count_all_messages(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM messages")
            .fetch_one(&mut *self.reader().await?)
            .await?;
        Ok(row.get("n"))
    }
}

/// How a STORE-like update changes a message's flags.
/// Where a new message goes: the mailbox (for its quota and blob directory) and folder.
struct Target<'a> {
    mailbox_id: i64,
    home: &'a str,
    folder: &'a FolderInfo,
}

/// Why a new message was not stored; the caller words the quota refusal.
enum Refused {
    OverQuota,
    Store(Error),
}

impl From<Error> for Refused {
    fn from(e: Error) -> Refused {
        Refused::Store(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagChange {
    Replace,
    Add,
    Remove,
}

impl Store {
    /// Removes messages by UID and records them as expunged with a fresh modseq, so other
    /// sessions (on any replica) learn about it. Returns the UIDs actually removed. Each
    /// message row owns its blob (COPY hard-links), so blobs are deleted after commit.
    pub async fn expunge(&self, folder_id: i64, uids: &[i64]) -> Result<Vec<i64>> {
        Ok(self
            .expunge_where(folder_id, Expunge::Uids(uids))
            .await?
            .uids)
    }

    /// Expunges the messages flagged `\Deleted` (only those among `among`, when given),
    /// choosing them inside the expunging transaction so a flag changed concurrently is
    /// honoured either entirely or not at all.
    pub async fn expunge_deleted(&self, folder_id: i64, among: Option<&[i64]>) -> Result<Expunged> {
        self.expunge_where(folder_id, Expunge::Deleted(among)).await
    }

    /// Expunges those of `uids` that are flagged `\Deleted`, for a caller that knows which
    /// messages are (an IMAP session's view of its folder), which saves looking for them.
    /// The flag is still tested in the expunging transaction: a message whose `\Deleted` was
    /// removed meanwhile stays.
    pub async fn expunge_flagged(&self, folder_id: i64, uids: &[i64]) -> Result<Expunged> {
        self.expunge_where(folder_id, Expunge::Flagged(uids)).await
    }

    async fn expunge_where(&self, folder_id: i64, which: Expunge<'_>) -> Result<Expunged> {
        if matches!(which, Expunge::Uids([]) | Expunge::Flagged([])) {
            return Ok(Expunged::default());
        }
        if self.backend == Backend::Sqlite {
            return self.expunge_batched(folder_id, which).await;
        }
        let backend = self.backend;
        let done = self
            .write(Durability::Synced, async |tx| {
                let bumped = bump_folder(tx, backend, folder_id, 0).await?;
                let gone: Vec<(i64, String, i64)> = expunge_candidates(tx, folder_id, &which)
                    .await?
                    .into_iter()
                    .map(|c| (c.uid, c.blob_path, c.size))
                    .collect();
                if gone.is_empty() {
                    // Nothing to remove: give the modseq back so idle sessions are not woken.
                    return Ok(None);
                }
                for chunk in gone.chunks(crate::IN_LIST_CHUNK) {
                    let sql = format!(
                        "DELETE FROM messages WHERE folder_id = ? AND uid IN ({})",
                        crate::placeholders(chunk.len())
                    );
                    let mut delete = sqlx::query(&sql).bind(folder_id);
                    for (uid, _, _) in chunk {
                        delete = delete.bind(*uid);
                    }
                    delete.execute(&mut **tx).await?;
                    let sql = format!(
                        "INSERT INTO expunged (folder_id, uid, modseq) VALUES {}",
                        vec!["(?, ?, ?)"; chunk.len()].join(", ")
                    );
                    let mut insert = sqlx::query(&sql);
                    for (uid, _, _) in chunk {
                        insert = insert.bind(folder_id).bind(*uid).bind(bumped.modseq);
                    }
                    insert.execute(&mut **tx).await?;
                }
                let freed: i64 = gone.iter().map(|g| g.2).sum();
                sqlx::query("UPDATE mailboxes SET used_bytes = CASE WHEN used_bytes >= ? THEN used_bytes - ? ELSE 0 END WHERE id = ?")
                    .bind(freed)
                    .bind(freed)
                    .bind(bumped.mailbox_id)
                    .execute(&mut **tx)
                    .await?;
                tx.commit_in_place().await?;
                Ok::<_, Error>(Some((bumped.modseq, gone)))
            })
            .await?;
        let Some((modseq, gone)) = done else {
            return Ok(Expunged::default());
        };
        self.changes.committed(folder_id, modseq);
        Ok(self.reclaim(gone, modseq).await)
    }

    /// SQLite: one batch per [`BATCH_ROWS`] candidates frees their quota, records their
    /// tombstones and deletes them (for `\Deleted`, only those still so flagged, tested by
    /// each statement inside the batch's transaction). Candidates are read before the gate
    /// only when the caller does not know them. The batch commits relaxed, like Dovecot's
    /// expunges; the blobs go once a WAL flush made it durable.
    async fn expunge_batched(&self, folder_id: i64, which: Expunge<'_>) -> Result<Expunged> {
        let (uids, recheck_flag): (Vec<i64>, bool) = match which {
            Expunge::Uids(uids) => (uids.to_vec(), false),
            Expunge::Flagged(uids) => (uids.to_vec(), true),
            Expunge::Deleted(_) => {
                let mut conn = self.reader().await?;
                let candidates = expunge_candidates(&mut conn, folder_id, &which).await?;
                (candidates.iter().map(|c| c.uid).collect(), true)
            }
        };
        let flagged = if recheck_flag {
            " AND (' ' || LOWER(flags) || ' ') LIKE '% \\deleted %'"
        } else {
            ""
        };
        let mut gone: Vec<(i64, String, i64)> = Vec::new();
        let mut modseq = None;
        for chunk in uids.chunks(BATCH_ROWS) {
            let among =
                || std::iter::once(Arg::Int(folder_id)).chain(chunk.iter().map(|u| Arg::Int(*u)));
            let which = format!(
                "FROM messages WHERE folder_id = ? AND uid IN ({}){flagged}",
                crate::placeholders(chunk.len())
            );
            let mut batch = Batch::transaction();
            batch.push(
                "UPDATE folders SET highest_modseq = highest_modseq + 1 WHERE id = ? RETURNING highest_modseq",
                [Arg::Int(folder_id)],
            );
            batch.push(
                &format!(
                    "UPDATE mailboxes SET used_bytes = MAX(used_bytes - COALESCE((SELECT SUM(size) {which}), 0), 0) \
                     WHERE id = (SELECT mailbox_id FROM folders WHERE id = ?)"
                ),
                among().chain([Arg::Int(folder_id)]),
            );
            batch.push(
                &format!(
                    "INSERT INTO expunged (folder_id, uid, modseq) \
                     SELECT folder_id, uid, (SELECT highest_modseq FROM folders WHERE id = ?) {which}"
                ),
                std::iter::once(Arg::Int(folder_id)).chain(among()),
            );
            batch.push(
                &format!("DELETE {which} RETURNING uid, blob_path, size"),
                among(),
            );
            for row in self
                .write_batch(Durability::Relaxed, &batch.commit())
                .await?
            {
                match row.try_get::<i64, _>("highest_modseq") {
                    Ok(m) => modseq = Some(m),
                    Err(_) => gone.push((row.get("uid"), row.get("blob_path"), row.get("size"))),
                }
            }
        }
        let Some(modseq) = modseq.filter(|_| !gone.is_empty()) else {
            return Ok(Expunged::default());
        };
        self.changes.committed(folder_id, modseq);
        gone.sort_unstable_by_key(|g| g.0);
        Ok(self.reclaim(gone, modseq).await)
    }

    /// Hands the blobs of expunged messages (uid, blob, size) to the writer, which removes
    /// them once the expunge is on disk, and reports the UIDs.
    async fn reclaim(&self, gone: Vec<(i64, String, i64)>, modseq: i64) -> Expunged {
        let mut uids = Vec::with_capacity(gone.len());
        let mut paths = Vec::with_capacity(gone.len());
        for (uid, blob, _) in gone {
            uids.push(uid);
            paths.push(self.blobs.path(&blob));
        }
        self.writers.remove_when_durable(paths).await;
        Expunged {
            uids,
            modseq: Some(modseq),
        }
    }

    /// Changes the flags of the given UIDs; each changed message gets a new modseq. Returns
    /// the messages as they are afterwards, in UID order ([`Store::store_flags`] without
    /// the CONDSTORE details).
    pub async fn update_flags(
        &self,
        folder_id: i64,
        uids: &[i64],
        change: FlagChange,
        flags: &[String],
    ) -> Result<Vec<crate::imap::FlagState>> {
        let update = self
            .store_flags(folder_id, uids, change, flags, None)
            .await?;
        let mut out = update.changed;
        out.extend(update.unchanged);
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }
}

/// What an expunge removed, in UID order, and the modseq it committed (none when nothing
/// was removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expunged {
    pub uids: Vec<i64>,
    pub modseq: Option<i64>,
}

/// A message an expunge means to remove.
struct Candidate {
    uid: i64,
    blob_path: String,
    size: i64,
}

/// The messages `which` selects, as they are now on `conn`.
async fn expunge_candidates(
    conn: &mut sqlx::AnyConnection,
    folder_id: i64,
    which: &Expunge<'_>,
) -> Result<Vec<Candidate>> {
    let candidate = |row: &sqlx::any::AnyRow| Candidate {
        uid: row.get("uid"),
        blob_path: row.get("blob_path"),
        size: row.get("size"),
    };
    let mut out = Vec::new();
    match which {
        Expunge::Uids(uids) => {
            for chunk in uids.chunks(crate::IN_LIST_CHUNK) {
                let sql = format!(
                    "SELECT id, uid, blob_path, size FROM messages WHERE folder_id = ? AND uid IN ({})",
                    crate::placeholders(chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(folder_id);
                for uid in chunk {
                    query = query.bind(*uid);
                }
                out.extend(query.fetch_all(&mut *conn).await?.iter().map(candidate));
            }
        }
        Expunge::Deleted(_) | Expunge::Flagged(_) => {
            let among: Option<std::collections::HashSet<i64>> = match which {
                Expunge::Deleted(among) => among.map(|a| a.iter().copied().collect()),
                Expunge::Flagged(uids) => Some(uids.iter().copied().collect()),
                Expunge::Uids(_) => None,
            };
            // LIKE narrows the scan (LOWER: MariaDB compares this column case-sensitively);
            // the exact test is done here.
            let rows = sqlx::query(
                "SELECT id, uid, blob_path, size, flags FROM messages WHERE folder_id = ? AND LOWER(flags) LIKE ?",
            )
            .bind(folder_id)
            .bind("%deleted%")
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let uid: i64 = row.get("uid");
                let flags: String = row.get("flags");
                let deleted = flags
                    .split_whitespace()
                    .any(|f| f.eq_ignore_ascii_case("\\Deleted"));
                if deleted && among.as_ref().is_none_or(|a| a.contains(&uid)) {
                    out.push(candidate(&row));
                }
            }
        }
    }
    out.sort_unstable_by_key(|c| c.uid);
    Ok(out)
}

/// Which messages [`Store::expunge_where`] removes.
enum Expunge<'a> {
    Uids(&'a [i64]),
    /// Those flagged `\Deleted`, optionally only among these UIDs.
    Deleted(Option<&'a [i64]>),
    /// These UIDs, which the caller believes flagged `\Deleted`; each goes only if it is.
    Flagged(&'a [i64]),
}

/// Flags compare case-insensitively (RFC 3501 §2.3.2) but keep the spelling first given.
pub fn apply_flag_change(current: &[String], change: FlagChange, flags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = match change {
        FlagChange::Replace => Vec::new(),
        _ => current.to_vec(),
    };
    match change {
        FlagChange::Replace | FlagChange::Add => {
            for f in flags {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(f)) {
                    out.push(f.clone());
                }
            }
        }
        FlagChange::Remove => out.retain(|o| !flags.iter().any(|f| f.eq_ignore_ascii_case(o))),
    }
    out
}

enum InsertError {
    DuplicateKey,
    OverQuota,
    Store(Error),
}

impl From<Error> for InsertError {
    fn from(e: Error) -> Self {
        InsertError::Store(e)
    }
}

fn over_quota(mailbox: &crate::MailboxRow, size: i64) -> Error {
    Error::OverQuota {
        address: mailbox.address.clone(),
        used: mailbox.used_bytes,
        size,
        quota: mailbox.quota_bytes,
    }
}

pub(crate) fn folder_from_row(r: &sqlx::any::AnyRow) -> FolderInfo {
    FolderInfo {
        id: r.get("id"),
        mailbox_id: r.get("mailbox_id"),
        name: r.get("name"),
        special_use: r.get("special_use"),
        subscribed: r.get::<i64, _>("subscribed") != 0,
        uidvalidity: r.get("uidvalidity"),
        uidnext: r.get("uidnext"),
        highest_modseq: r.get("highest_modseq"),
    }
}

pub(crate) fn message_from_row(r: &sqlx::any::AnyRow) -> MessageMeta {
    let flags: String = r.get("flags");
    MessageMeta {
        id: r.get("id"),
        uid: r.get("uid"),
        modseq: r.get("modseq"),
        blob_path: r.get("blob_path"),
        size: r.get("size"),
        internal_date: r.get("internal_date"),
        flags: flags.split_whitespace().map(str::to_string).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::bytes_owned::Part;

    fn message(parts: &[&[u8]]) -> NewMessage {
        NewMessage {
            parts: parts.iter().map(|p| Part::Owned(p.to_vec())).collect(),
            internal_date: 0,
            flags: Vec::new(),
            delivery_key: None,
        }
    }

    #[test]
    fn header_is_the_section_through_the_blank_line() {
        let m = message(&[b"Subject: a\r\nTo: b\r\n\r\nbody\r\n\r\nmore\r\n"]);
        assert_eq!(
            m.header().as_deref(),
            Some(&b"Subject: a\r\nTo: b\r\n\r\n"[..])
        );
        // The blank line split across parts (a Received line prepended, then the data).
        let m = message(&[b"Received: x\r\n", b"Subject: a\r\n\r", b"\nbody\r\n"]);
        assert_eq!(
            m.header().as_deref(),
            Some(&b"Received: x\r\nSubject: a\r\n\r\n"[..])
        );
        // No body: all header.
        let m = message(&[b"Subject: a\r\n"]);
        assert_eq!(m.header().as_deref(), Some(&b"Subject: a\r\n"[..]));
        // Too long for the cache: none, so it is read from the blob.
        let long = format!("X-Long: {}\r\n\r\nbody", "y".repeat(HEADER_CACHE_MAX));
        assert!(message(&[long.as_bytes()]).header().is_none());
        let long_body = format!("Subject: a\r\n\r\n{}", "z".repeat(2 * HEADER_CACHE_MAX));
        assert_eq!(
            message(&[long_body.as_bytes()]).header().as_deref(),
            Some(&b"Subject: a\r\n\r\n"[..])
        );
    }
}
